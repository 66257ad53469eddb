/* test_options.c — BUFPOOL_CONF as bp_config_init reads it: a bad key, value or page/chunk
 * combination is reported (once per process, naming the program and pid) and the default
 * kept, so whatever the environment holds the config makes a pool; bp_pool_new still refuses
 * the same values set in code. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* A child's checks end in its exit status, test_in_child's caller sees them fail: counted
 * from child_start, not from what the parent had failed before the fork. */
static void child_start(void)
{
    test_failures = 0;
}

static void child_done(void)
{
    fflush(stderr);
    _exit(test_failures == 0 ? 0 : 1);
}

/* The child's stderr and how it ended, with the stderr printed when it failed. */
static void expect_clean_child(int status, const char *what, const char *err)
{
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "  %s: wait status %#x; stderr:\n%s\n", what, (unsigned)status, err);
}

static size_t count(const char *text, const char *word)
{
    size_t n = 0;
    for (const char *p = strstr(text, word); p != NULL; p = strstr(p + 1, word))
        n++;
    return n;
}

/* ---- a bad combination: reported, defaults kept, the pool made ---------------------------- */

static void init_and_make_pools(void *conf)
{
    child_start();
    setenv("BUFPOOL_CONF", conf, 1);
    bp_config cfg;
    bp_config_init(&cfg);
    CHECK_EQ(cfg.page_size, 8192);
    CHECK_EQ(cfg.chunk_size, (size_t)4 << 20);
    CHECK_EQ(cfg.arenas, 3); /* the good key beside the bad ones is applied */
    bp_pool *pool = bp_pool_new(&cfg);
    CHECK(pool != NULL);
    bp_pool_destroy(pool);
    void *p = bp_alloc(bp_pool_default(), 100); /* made from BUFPOOL_CONF too */
    CHECK(p != NULL);
    bp_free(p);
    child_done();
}

static void test_bad_combination_keeps_defaults(void)
{
    struct {
        const char *conf, *key;
    } bad[] = {
        {"chunk_size:3M,arenas:3", "chunk_size"}, /* not a power of two */
        {"arenas:3,page_size:12K", "page_size"},  /* not a power of two */
        {"chunk_size:8K,arenas:3", "chunk_size"}, /* below page_size << 1 */
        {"chunk_size:1G,arenas:3", "chunk_size"}, /* above page_size << 14 */
        {"page_size:64K,chunk_size:64K,arenas:3", "chunk_size"},
        {"chunk_size:64K,arenas:3,page_size:64K", "chunk_size"}, /* in either order */
        {"page_size:4K,chunk_size:128M,arenas:3", "chunk_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[4096];
        int status = test_in_child(init_and_make_pools, (void *)bad[i].conf, err, sizeof err);
        expect_clean_child(status, bad[i].conf, err);
        CHECK(strstr(err, bad[i].key) != NULL && strstr(err, "default") != NULL);
        CHECK(strstr(err, "cannot create") == NULL);
    }
}

static void init_good(void *conf)
{
    child_start();
    setenv("BUFPOOL_CONF", conf, 1);
    bp_config cfg;
    bp_config_init(&cfg);
    CHECK_EQ(cfg.page_size, 65536);
    CHECK_EQ(cfg.chunk_size, (size_t)128 << 10);
    bp_pool *pool = bp_pool_new(&cfg);
    CHECK(pool != NULL);
    bp_pool_destroy(pool);
    child_done();
}

static void test_good_combination_in_either_order(void)
{
    const char *good[] = {"page_size:64K,chunk_size:128K", "chunk_size:128K,page_size:64K"};
    for (size_t i = 0; i < 2; i++) {
        char err[4096];
        int status = test_in_child(init_good, (void *)good[i], err, sizeof err);
        expect_clean_child(status, good[i], err);
        CHECK_EQ(strlen(err), 0); /* nothing to report */
    }
}

/* pool == NULL with EINVAL, and a message naming the field. */
static void expect_refused(size_t page, size_t chunk, const char *field)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = page;
    cfg.chunk_size = chunk;
    char err[1024];
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fds[1], 2);
    errno = 0;
    bp_pool *pool = bp_pool_new(&cfg);
    int e = errno;
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], err, sizeof err - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    CHECK(pool == NULL);
    CHECK_EQ(e, EINVAL);
    CHECK(strstr(err, field) != NULL);
    if (pool != NULL)
        bp_pool_destroy(pool);
}

static void test_same_values_in_code_refused(void)
{
    expect_refused(8192, (size_t)3 << 20, "chunk_size");
    expect_refused(12288, (size_t)4 << 20, "page_size");
    expect_refused(8192, 8192, "chunk_size");
    expect_refused(8192, (size_t)1 << 30, "chunk_size");
    expect_refused(65536, 65536, "chunk_size");
    expect_refused(4096, (size_t)128 << 20, "chunk_size");
}

/* Random BUFPOOL_CONF strings over the keys and values that matter most: whatever they say,
 * bp_config_init gives a config bp_pool_new accepts. */
static void random_confs(void *arg)
{
    uint64_t seed = *(const uint64_t *)arg;
    int report_fd = dup(2), null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 2); /* hundreds of expected warnings */
    static const char *keys[] = {"page_size",  "chunk_size",     "chunk_size", "arenas",
                                 "max_cached", "purge_decay_ms", "bogus"};
    static const char *values[] = {"4K", "8K", "12K", "16K", "64K", "128K", "3M", "4M",
                                   "1G", "2G", "0",   "1",   "-1",  "x",    ""};
    test_rng rng = {seed};
    int refused = 0;
    for (int i = 0; i < 400; i++) {
        char conf[256];
        size_t len = 0;
        for (unsigned item = 0, items = 1 + (unsigned)test_below(&rng, 4); item < items; item++)
            len += (size_t)snprintf(conf + len, sizeof conf - len, "%s%s:%s", item ? "," : "",
                                    keys[test_below(&rng, sizeof keys / sizeof keys[0])],
                                    values[test_below(&rng, sizeof values / sizeof values[0])]);
        setenv("BUFPOOL_CONF", conf, 1);
        bp_config cfg;
        bp_config_init(&cfg);
        cfg.arenas = 1; /* cheap pools: the arena count is no part of a combination */
        bp_pool *pool = bp_pool_new(&cfg);
        if (pool == NULL && refused++ == 0)
            dprintf(report_fd, "  refused: BUFPOOL_CONF=%s\n", conf);
        bp_pool_destroy(pool);
    }
    _exit(refused == 0 ? 0 : 1);
}

static void test_random_confs_always_make_a_pool(void)
{
    uint64_t seed = test_seed(0xc0f1);
    char err[256];
    int status = test_in_child(random_confs, &seed, err, sizeof err);
    expect_clean_child(status, "random BUFPOOL_CONF strings", err);
}

/* ---- messages: once per process, naming the program and pid ------------------------------ */

static void init_three_times(void *conf)
{
    child_start();
    fprintf(stderr, "pid %ld\n", (long)getpid());
    setenv("BUFPOOL_CONF", conf, 1);
    bp_config cfg;
    bp_config_init(&cfg);
    bp_config_init(&cfg);
    bp_pool *pool = bp_pool_new(NULL); /* a third bp_config_init */
    bp_pool_destroy(pool);
    child_done();
}

static void test_warnings_once_with_program_and_pid(void)
{
    char err[8192];
    int status =
        test_in_child(init_three_times, "no_such_key:1,arenas:x,chunk_size:8K", err, sizeof err);
    expect_clean_child(status, "three bp_config_init", err);
    long pid = 0;
    CHECK(sscanf(err, "pid %ld", &pid) == 1);
    CHECK_EQ(count(err, "no_such_key"), 1);
    CHECK_EQ(count(err, "'x' for arenas"), 1);
    CHECK_EQ(count(err, "chunk_size 8192"), 1);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "bufpool: %s[%ld]: ", program_invocation_short_name, pid);
    size_t lines = 0, prefixed = 0;
    for (const char *line = strchr(err, '\n'); line != NULL && line[1] != '\0';
         line = strchr(line + 1, '\n')) {
        lines++;
        prefixed += strncmp(line + 1, prefix, strlen(prefix)) == 0;
    }
    CHECK_EQ(lines, 3);
    CHECK_EQ(prefixed, lines);
    if (prefixed != lines)
        fprintf(stderr, "  expected every line to start with '%s':\n%s", prefix, err);
}

/* bp_pool_new's own messages carry the prefix too: every message goes through bp_message. */
static void refuse_in_code(void *arg)
{
    child_start();
    (void)arg;
    fprintf(stderr, "pid %ld\n", (long)getpid());
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.leak_level = 9;
    CHECK(bp_pool_new(&cfg) == NULL);
    child_done();
}

static void test_pool_new_message_prefixed(void)
{
    char err[2048];
    int status = test_in_child(refuse_in_code, NULL, err, sizeof err);
    expect_clean_child(status, "bp_pool_new refusal", err);
    long pid = 0;
    CHECK(sscanf(err, "pid %ld", &pid) == 1);
    char expect[160];
    snprintf(expect, sizeof expect, "\nbufpool: %s[%ld]: bp_pool_new: leak_level 9",
             program_invocation_short_name, pid);
    CHECK(strstr(err, expect) != NULL);
    if (strstr(err, expect) == NULL)
        fprintf(stderr, "  expected '%s' in:\n%s", expect + 1, err);
}

int main(void)
{
    unsetenv("BUFPOOL_CONF");
    RUN(test_bad_combination_keeps_defaults);
    RUN(test_good_combination_in_either_order);
    RUN(test_same_values_in_code_refused);
    RUN(test_random_confs_always_make_a_pool);
    RUN(test_warnings_once_with_program_and_pid);
    RUN(test_pool_new_message_prefixed);
    return test_report();
}
