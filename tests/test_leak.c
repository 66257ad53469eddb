/* test_leak.c — the leak detector finds a planted leak at each level (with touch records
 * where the level keeps them), reports nothing for a clean run, nothing at level 0, and
 * reports at bp_pool_destroy. */
#include "internal.h"
#include "test.h"

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
    if (level == 3) { /* every buffer is tracked: a second leak, a view, is found too */
        bp_buf *view = bp_buf_slice(leaked, 0, 4, BP_RDONLY);
        CHECK_EQ(report(pool, text, sizeof text), 2);
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
    CHECK(b->leak == NULL);
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

int main(void)
{
    RUN(test_levels);
    RUN(test_level_zero_tracks_nothing);
    RUN(test_report_at_destroy);
    return test_report();
}
