/* test_stats.c — the statistics snapshot against what a scripted sequence implies (exact
 * figures), the JSON form parsed by python3 with the same figures, the SVG well formed with
 * one element per page of each chunk, stats_print at exit, and every BUFPOOL_CONF key
 * round-tripping while bad values are refused with a message naming the key. */
#include "internal.h"
#include "test.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static bp_pool *scripted_pool(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.small_cache = cfg.normal_cache = 0;
    cfg.purge_decay_ms = -1;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    memset(pool->run_cache_limit, 0, sizeof pool->run_cache_limit);
    return pool;
}

/* 10 small (100 B -> 112), 3 normal (64 KiB), 1 huge (5 MiB); then 4 small and 1 normal go. */
static void script(bp_pool *pool, void **keep)
{
    void *small[10], *normal[3];
    for (int i = 0; i < 10; i++)
        small[i] = bp_alloc(pool, 100);
    for (int i = 0; i < 3; i++)
        normal[i] = bp_alloc(pool, 64 << 10);
    keep[0] = bp_alloc(pool, (size_t)5 << 20);
    for (int i = 0; i < 4; i++)
        bp_free(small[i]);
    bp_free(normal[0]);
    for (int i = 4; i < 10; i++)
        keep[1 + i - 4] = small[i];
    keep[7] = normal[1];
    keep[8] = normal[2];
}

static void test_snapshot(void)
{
    bp_pool *pool = scripted_pool();
    void *keep[9];
    script(pool, keep);
    bp_stats s;
    s.struct_size = 1;
    CHECK_EQ(bp_pool_stats(pool, &s), BP_EINVAL);
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.version, BP_STATS_VERSION);
    CHECK_EQ(s.alloc_small, 10);
    CHECK_EQ(s.alloc_normal, 3);
    CHECK_EQ(s.alloc_huge, 1);
    CHECK_EQ(s.free_small, 4);
    CHECK_EQ(s.free_normal, 1);
    CHECK_EQ(s.free_huge, 0);
    CHECK_EQ(s.active_blocks, 9);
    CHECK_EQ(s.active_bytes, 6 * 112 + 2 * 65536 + ((size_t)5 << 20));
    CHECK_EQ(s.huge_bytes, (size_t)5 << 20);
    CHECK_EQ(s.chunk_bytes, (size_t)4 << 20);
    CHECK_EQ(s.mapped_bytes, (size_t)9 << 20);
    CHECK_EQ(s.chunks, 1);
    CHECK_EQ(s.chunks_mapped, 1);
    CHECK_EQ(s.cache_hits, 0);
    unsigned c112 = bp_size_to_class(&pool->sc, 100);
    CHECK_EQ(s.class_stats[c112].size, 112);
    CHECK_EQ(s.class_stats[c112].subpages, 1);
    CHECK_EQ(s.class_stats[c112].elements, 512);
    CHECK_EQ(s.class_stats[c112].free_elements, 506);
    /* the chunk: a 7-page subpage run and two 8-page runs in use (one 8-page run freed) */
    CHECK_EQ(s.lists[BP_QINIT].chunks, 1);
    CHECK_EQ(s.lists[BP_QINIT].used_bytes, 23 * 8192);
    CHECK_EQ(s.lists[BP_QINIT].free_bytes, (512 - 23) * 8192);
    CHECK_EQ(s.dirty_bytes, 8 * 8192); /* the freed run, not purged (decay -1) */
    CHECK_EQ(s.arena_stats[0].allocations, 14);
    CHECK_EQ(s.arena_stats[0].frees, 5);
    for (int i = 0; i < 9; i++)
        bp_free(keep[i]);
    bp_pool_destroy(pool);
}

static void test_cache_hits(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    bp_pool *pool = bp_pool_new(&cfg);
    for (int i = 0; i < 1000; i++)
        bp_free(bp_alloc(pool, 64)); /* the first misses, the rest hit */
    bp_stats s;
    s.struct_size = sizeof s;
    bp_pool_stats(pool, &s);
    CHECK_EQ(s.cache_hits, 1000); /* the miss refills, then serves from the bin */
    CHECK_EQ(s.alloc_small, 128); /* one refill of 128 blocks */
    CHECK_EQ(s.cached_bytes, 128 * 64);
    CHECK_EQ(s.class_stats[bp_size_to_class(&pool->sc, 64)].cached, 128);
    bp_pool_destroy(pool);
}

/* Runs python3 on the file and returns its stdout (one line). */
static void python(const char *code, const char *path, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 -c '%s' %s", code, path);
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    pclose(p);
}

static void test_json_and_svg(void)
{
    bp_pool *pool = scripted_pool();
    void *keep[9];
    script(pool, keep);
    char path[] = "/tmp/bp_statsXXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_JSON), BP_OK);
    fclose(f);
    char got[512];
    python("import json,sys; d = json.load(open(sys.argv[1])); "
           "print(d[\"allocations\"][\"small\"], d[\"allocations\"][\"huge\"], "
           "d[\"frees\"][\"normal\"], d[\"active_bytes\"], d[\"mapped_bytes\"], "
           "d[\"lists\"][0][\"used_bytes\"], d[\"classes\"][6][\"free_elements\"], "
           "[(c[\"list\"], c[\"usage\"], c[\"free_bytes\"]) for c in d[\"chunk_list\"]])",
           path, got, sizeof got);
    char expect[256];
    snprintf(expect, sizeof expect, "10 1 1 %zu %zu %d 506 [('qInit', 5, %d)]\n",
             6 * 112 + 2 * 65536 + ((size_t)5 << 20), (size_t)9 << 20, 23 * 8192,
             (512 - 23) * 8192);
    CHECK(strcmp(got, expect) == 0);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "  json: '%s' expected '%s'\n", got, expect);

    f = fopen(path, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_SVG), BP_OK);
    fclose(f);
    python("import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); "
           "g = d.getElementsByTagName(\"g\"); "
           "print(len(g), all(len([r for r in x.getElementsByTagName(\"rect\") "
           "if r.getAttribute(\"class\").startswith(\"page\")]) == "
           "int(x.getAttribute(\"data-pages\")) "
           "for x in g), len([r for r in d.getElementsByTagName(\"rect\") "
           "if \"subpage\" in r.getAttribute(\"class\")]))",
           path, got, sizeof got);
    CHECK(strcmp(got, "1 True 7\n") == 0); /* one chunk, a rect per page, 7 subpage pages */
    if (strcmp(got, "1 True 7\n") != 0)
        fprintf(stderr, "  svg: '%s'\n", got);

    f = fopen(path, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_TEXT), BP_OK);
    fclose(f);
    python("import sys; t = open(sys.argv[1]).read(); print(\"qInit\" in t, \"allocs\" in t)", path,
           got, sizeof got);
    CHECK(strcmp(got, "True True\n") == 0);
    unlink(path);
    for (int i = 0; i < 9; i++)
        bp_free(keep[i]);
    bp_pool_destroy(pool);
}

static void test_stats_print_at_exit(void)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        setenv("BUFPOOL_CONF", "stats_print:1", 1);
        bp_config cfg;
        bp_config_init(&cfg);
        bp_pool *pool = bp_pool_new(&cfg);
        bp_free(bp_alloc(pool, 1000));
        exit(0); /* destructors run: the report */
    }
    close(fds[1]);
    char out[8192] = {0};
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    CHECK(strstr(out, "bufpool stats") != NULL && strstr(out, "qInit") != NULL);
}

/* What bp_options_apply says, captured from stderr. */
static int apply(bp_config *cfg, const char *conf, char *msg, size_t len)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    int errors = bp_options_apply(cfg, conf, "BUFPOOL_CONF");
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], msg, len - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    return errors;
}

static void test_config_keys(void)
{
    struct {
        const char *conf;
        size_t offset, width;
        long long expect;
    } good[] = {
#define F(field) offsetof(bp_config, field), sizeof(((bp_config *)0)->field)
        {"page_size:16K", F(page_size), 16384},
        {"chunk_size:16M", F(chunk_size), 16 << 20},
        {"arenas:7", F(arenas), 7},
        {"small_cache:100", F(small_cache), 100},
        {"normal_cache:9", F(normal_cache), 9},
        {"max_cached:64k", F(max_cached), 65536},
        {"trim_interval:1000", F(trim_interval), 1000},
        {"memory_limit:1G", F(memory_limit), 1 << 30},
        {"retained_chunks:5", F(retained_chunks), 5},
        {"purge_decay_ms:-1", F(purge_decay_ms), -1},
        {"purge_decay_ms:250", F(purge_decay_ms), 250},
        {"leak_level:3", F(leak_level), 3},
        {"stats_print:1", F(stats_print), 1},
#undef F
    };
    char msg[1024];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        bp_config cfg;
        bp_config_defaults(&cfg);
        CHECK_EQ(apply(&cfg, good[i].conf, msg, sizeof msg), 0);
        long long v = 0;
        const char *field = (const char *)&cfg + good[i].offset;
        if (good[i].width == sizeof(size_t))
            v = (long long)*(const size_t *)field;
        else if (good[i].width == sizeof(int))
            v = *(const int *)field;
        CHECK_EQ(v, good[i].expect);
    }
    const char *bad[] = {"page_size:5x",
                         "chunk_size:-1",
                         "arenas:99999",
                         "small_cache:1e3",
                         "trim_interval:0",
                         "purge_decay_ms:-2",
                         "leak_level:4",
                         "stats_print:2",
                         "memory_limit:",
                         "retained_chunks:x",
                         "max_cached:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bp_config cfg, before;
        bp_config_defaults(&cfg);
        before = cfg;
        CHECK_EQ(apply(&cfg, bad[i], msg, sizeof msg), 1);
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(strchr(bad[i], ':') - bad[i]), bad[i]);
        CHECK(strstr(msg, key) != NULL && strstr(msg, "accepted") != NULL);
        CHECK(memcmp(&cfg, &before, sizeof cfg) == 0); /* the default is kept */
    }
    bp_config cfg;
    bp_config_defaults(&cfg);
    CHECK_EQ(apply(&cfg, "arenas:3,no_such_key:1,leak_level:2", msg, sizeof msg), 1);
    CHECK(strstr(msg, "no_such_key") != NULL && strstr(msg, "stats_print") != NULL);
    CHECK_EQ(cfg.arenas, 3);
    CHECK_EQ(cfg.leak_level, 2);
}

int main(void)
{
    RUN(test_snapshot);
    RUN(test_cache_hits);
    RUN(test_json_and_svg);
    RUN(test_stats_print_at_exit);
    RUN(test_config_keys);
    return test_report();
}
