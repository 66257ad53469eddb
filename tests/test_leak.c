/* test_leak.c — the leak detector finds a planted leak at each level (with touch records
 * where the level keeps them), reports nothing for a clean run, nothing at level 0, reports
 * at bp_pool_destroy, reports each leak once, names frames by module and offset with the
 * addr2line command for file:line, and writes to a stream that allocates from the pool. */
#define _GNU_SOURCE /* fopencookie, dl_iterate_phdr, tdestroy */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <link.h>
#include <search.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bp_pool *pool_at(int level)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.leak_level = level;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

/* The report as text, and the number it returned. */
static size_t report(bp_pool *pool, char *text, size_t size)
{
    FILE *f = tmpfile();
    size_t n = bp_leak_report(pool, f);
    rewind(f);
    size_t len = fread(text, 1, size - 1, f);
    text[len] = '\0';
    fclose(f);
    return n;
}

static void leak_at_level(int level)
{
    bp_pool *pool = pool_at(level);
    char text[16384];
    /* the first buffer is always sampled; it leaks, 300 others are released */
    bp_buf *leaked = bp_buf_new(pool, 100, 0);
    bp_buf_touch(leaked, "after the header was parsed");
    bp_buf_write_u32_be(leaked, 7);
    bp_buf_touch(leaked, "queued for the writer");
    for (int i = 0; i < 300; i++) {
        bp_buf *b = bp_buf_new(pool, 64, 0);
        bp_buf_touch(b, "short-lived");
        bp_buf_release(b);
    }
    CHECK_EQ(report(pool, text, sizeof text), 1);
    char expect[64];
    snprintf(expect, sizeof expect, "%p", (void *)leaked);
    CHECK(strstr(text, "LEAK") != NULL && strstr(text, expect) != NULL);
    CHECK(strstr(text, "allocated at") != NULL);
    bool touches = strstr(text, "queued for the writer") != NULL &&
                   strstr(text, "after the header was parsed") != NULL &&
                   strstr(text, "test_leak.c") != NULL;
    CHECK_EQ(touches, level >= 2);
    CHECK(strstr(text, "short-lived") == NULL);
    if (level == 3) { /* every buffer is tracked: a second leak, a view, is found too (and
                       * only it: the first was reported already) */
        bp_buf *view = bp_buf_slice(leaked, 0, 4, BP_RDONLY);
        CHECK_EQ(report(pool, text, sizeof text), 1);
        snprintf(expect, sizeof expect, "%p", (void *)view);
        CHECK(strstr(text, expect) != NULL);
        bp_buf_release(view);
    }
    bp_buf_release(leaked);
    CHECK_EQ(report(pool, text, sizeof text), 0); /* clean */
    CHECK_EQ(strlen(text), 0);
    bp_pool_destroy(pool);
}

static void test_levels(void)
{
    for (int level = 1; level <= 3; level++)
        leak_at_level(level);
}

static void test_level_zero_tracks_nothing(void)
{
    bp_pool *pool = pool_at(0);
    char text[1024];
    bp_buf *b = bp_buf_new(pool, 10, 0);
    CHECK(bp_buf_ext_of(b) == NULL); /* untracked: no extension, so no leak record */
    CHECK_EQ(report(pool, text, sizeof text), 0);
    bp_buf_release(b);
    bp_pool_destroy(pool);
}

static void test_report_at_destroy(void)
{
    bp_pool *pool = pool_at(3);
    bp_buf *b = bp_buf_new(pool, 10, 0);
    bp_buf_touch(b, "never released");
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fds[1], 2);
    bp_pool_destroy(pool); /* b goes with it, reported */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char text[8192] = {0};
    ssize_t n = read(fds[0], text, sizeof text - 1);
    close(fds[0]);
    CHECK(n > 0 && strstr(text, "LEAK") != NULL && strstr(text, "never released") != NULL);
}

/* A child's checks end in its exit status, counted from child_start (not from what the
 * parent had failed before the fork). */
static void child_start(void)
{
    test_failures = 0;
}

static void child_done(void)
{
    fflush(stderr);
    _exit(test_failures == 0 ? 0 : 1);
}

static void test_report_once(void)
{
    bp_pool *pool = pool_at(3);
    char text[8192];
    bp_buf *b = bp_buf_new(pool, 10, 0);
    CHECK_EQ(report(pool, text, sizeof text), 1);
    CHECK_EQ(report(pool, text, sizeof text), 0); /* reported already */
    CHECK_EQ(strlen(text), 0);
    bp_buf *c = bp_buf_new(pool, 10, 0);
    CHECK_EQ(report(pool, text, sizeof text), 1); /* the new one only */
    char expect[64];
    snprintf(expect, sizeof expect, "%p", (void *)b);
    CHECK(strstr(text, expect) == NULL);
    snprintf(expect, sizeof expect, "%p", (void *)c);
    CHECK(strstr(text, expect) != NULL);
    bp_buf_release(b);
    bp_buf_release(c);
    bp_pool_destroy(pool);
}

/* Leaks a buffer and exits, which reports what is still unreported. */
static void leak_then_exit(void *report_first)
{
    child_start();
    bp_pool *pool = pool_at(3);
    bp_buf *b = bp_buf_new(pool, 10, 0);
    bp_buf_touch(b, "leaked in the child");
    if (report_first != NULL) {
        FILE *f = tmpfile();
        CHECK_EQ(bp_leak_report(pool, f), 1);
        fclose(f);
    }
    fflush(stderr);
    exit(test_failures == 0 ? 0 : 1); /* exit, not _exit: the atexit report runs */
}

static void test_reported_leak_not_again_at_exit(void)
{
    char err[8192];
    int status = test_in_child(leak_then_exit, NULL, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(err, "leaked in the child") != NULL); /* unreported: the exit report has it */
    status = test_in_child(leak_then_exit, "report first", err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(err, "LEAK") == NULL);
    if (strstr(err, "LEAK") != NULL)
        fprintf(stderr, "  reported again at exit:\n%s", err);
}

/* The main program's load bias: what its addresses minus it are for addr2line. */
static int first_object(struct dl_phdr_info *info, size_t size, void *bias)
{
    (void)size;
    *(uintptr_t *)bias = (uintptr_t)info->dlpi_addr;
    return 1; /* the first object is the program */
}

static void nothing_to_free(void *key)
{
    (void)key;
}

static bp_pool *comparator_pool;
static bp_buf *comparator_leak;

/* Allocates from inside tsearch, so that the backtrace holds a libc frame dladdr can name
 * (tsearch, which no sanitizer intercepts, unlike qsort). */
static int leak_in_comparator(const void *a, const void *b)
{
    if (comparator_leak == NULL)
        comparator_leak = bp_buf_new(comparator_pool, 10, 0);
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static void test_frames_by_module_and_offset(void)
{
    comparator_pool = pool_at(3);
    static int keys[2] = {2, 1};
    void *tree = NULL;
    tsearch(&keys[0], &tree, leak_in_comparator); /* the first key: nothing to compare */
    tsearch(&keys[1], &tree, leak_in_comparator);
    REQUIRE(comparator_leak != NULL);
    static char text[16384];
    CHECK_EQ(report(comparator_pool, text, sizeof text), 1);
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(len > 0);
    exe[len] = '\0';
    uintptr_t bias = 0;
    dl_iterate_phdr(first_object, &bias);
    uintptr_t fn = (uintptr_t)leak_in_comparator - bias;
    /* the program's frames as "(path+0xoffset)": one of them is the comparator's call */
    char frame[4200], command[4200];
    snprintf(frame, sizeof frame, "(%s+0x", exe);
    snprintf(command, sizeof command, "addr2line -p -f -i -e '%s' ", exe);
    bool found = false;
    for (const char *p = strstr(text, frame); p != NULL; p = strstr(p + 1, frame)) {
        uintptr_t off = (uintptr_t)strtoull(p + strlen(frame), NULL, 16);
        if (off > fn && off < fn + 4096) {
            char hex[32];
            snprintf(hex, sizeof hex, " %#lx", (unsigned long)off);
            const char *cmd = strstr(text, command);
            const char *eol = cmd ? strchr(cmd, '\n') : NULL;
            const char *in = cmd ? strstr(cmd, hex) : NULL;
            found = in != NULL && (eol == NULL || in < eol); /* the command has that address */
        }
    }
    CHECK(found);
    CHECK(strstr(text, "tsearch+0x") != NULL); /* libc's frame, named by dladdr */
    if (!found || strstr(text, "tsearch+0x") == NULL)
        fprintf(stderr, "  the comparator at +%#lx in %s; report:\n%s", (unsigned long)fn, exe,
                text);
    tdestroy(tree, nothing_to_free);
    bp_buf_release(comparator_leak);
    bp_pool_destroy(comparator_pool);
}

/* A stream whose writes allocate and release tracked buffers of the pool being reported. */
static char cookie_text[16384];
static size_t cookie_len;

static ssize_t cookie_write(void *pool, const char *data, size_t n)
{
    bp_buf *b = bp_buf_new(pool, n, 0); /* tracked at level 3: takes the leak lock */
    if (b == NULL || bp_buf_write_bytes(b, data, n) != 0)
        return -1;
    size_t k = BP_TEST_MIN(n, sizeof cookie_text - 1 - cookie_len);
    memcpy(cookie_text + cookie_len, data, k);
    cookie_len += k;
    bp_buf_release(b);
    return (ssize_t)n;
}

static void report_into_pool_stream(void *arg)
{
    child_start();
    (void)arg;
    alarm(20); /* a report that deadlocks on the leak lock dies of SIGALRM */
    bp_pool *pool = pool_at(3);
    bp_buf *leaked = bp_buf_new(pool, 10, 0);
    bp_buf_touch(leaked, "kept for the stream");
    FILE *f = fopencookie(pool, "w", (cookie_io_functions_t){.write = cookie_write});
    REQUIRE(f != NULL);
    setvbuf(f, NULL, _IONBF, 0); /* every fprintf reaches cookie_write at once */
    CHECK_EQ(bp_leak_report(pool, f), 1);
    fclose(f);
    CHECK(strstr(cookie_text, "LEAK") != NULL && strstr(cookie_text, "kept for the stream"));
    CHECK(strstr(cookie_text, "addr2line") != NULL);
    bp_buf_release(leaked);
    bp_pool_destroy(pool);
    child_done();
}

static void test_report_into_pool_stream(void)
{
    char err[8192];
    int status = test_in_child(report_into_pool_stream, NULL, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "  wait status %#x (SIGALRM is %d); stderr:\n%s", (unsigned)status, SIGALRM,
                err);
}

int main(void)
{
    RUN(test_levels);
    RUN(test_level_zero_tracks_nothing);
    RUN(test_report_at_destroy);
    RUN(test_report_once);
    RUN(test_reported_leak_not_again_at_exit);
    RUN(test_frames_by_module_and_offset);
    RUN(test_report_into_pool_stream);
    return test_report();
}
