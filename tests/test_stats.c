/* test_stats.c — the statistics snapshot against what a scripted sequence implies (exact
 * figures, per class too, and for a caller built against version 1), the JSON form parsed by
 * python3 with the same figures, the SVG well formed with one element per page and a key,
 * reports written to a stream that allocates from the pool, snapshots under cross-thread
 * traffic, stats_print at exit, and every BUFPOOL_CONF key round-tripping while bad values
 * are refused with a message naming the key. */
#define _GNU_SOURCE /* fopencookie */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
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
    memset(pool->engine.run_cache_limit, 0, sizeof pool->engine.run_cache_limit);
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
    /* chunk and huge memory, the chunk's metadata and one huge-descriptor slab */
    size_t mapped = ((size_t)9 << 20) + bp_arena_overhead_bytes(&pool->arenas[0]);
    CHECK_EQ(mapped, ((size_t)9 << 20) + bp_chunk_meta_size(&pool->engine) + (64 << 10));
    CHECK_EQ(s.mapped_bytes, mapped);
    CHECK_EQ(s.chunks, 1);
    CHECK_EQ(s.chunks_mapped, 1);
    CHECK_EQ(s.cache_hits, 0);
    unsigned c112 = bp_size_to_class(&pool->engine.sc, 100);
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
    CHECK_EQ(s.class_stats[bp_size_to_class(&pool->engine.sc, 64)].cached, 128);
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
             6 * 112 + 2 * 65536 + ((size_t)5 << 20),
             ((size_t)9 << 20) + bp_arena_overhead_bytes(&pool->arenas[0]), 23 * 8192,
             (512 - 23) * 8192);
    CHECK(strcmp(got, expect) == 0);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "  json: '%s' expected '%s'\n", got, expect);

    f = fopen(path, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_SVG), BP_OK);
    fclose(f);
    python("import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); "
           "g = [x for x in d.getElementsByTagName(\"g\") if x.getAttribute(\"class\") == "
           "\"chunk\"]; "
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
    /* the first line says which program and process printed the report */
    char *eol = strchr(out, '\n');
    if (eol != NULL)
        *eol = '\0';
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "pid %ld", (long)pid);
    CHECK(strstr(out, program_invocation_short_name) != NULL && strstr(out, pid_text) != NULL);
    if (strstr(out, pid_text) == NULL)
        fprintf(stderr, "  first line: '%s'\n", out);
}

/* ---- the program's allocations and the arenas' operations ------------------------------ */

static void *allocate_and_exit(void *arg)
{
    bp_pool *pool = arg;
    for (int i = 0; i < 500; i++)
        bp_free(bp_alloc(pool, 100)); /* hits counted by the fast path, added at exit */
    return NULL;
}

/* The mixed sizes examples/stats.c allocates, a third freed; another thread's allocations;
 * one huge block. The program's allocations are counted exactly, per class too, apart from
 * the blocks the arenas handed out in batches. */
static void test_program_allocations(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.chunk_size = 1 << 20;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    static void *blocks[1200];
    uint64_t expect[BP_MAX_CLASSES] = {0};
    uint64_t x = 42;
    for (int i = 0; i < 1200; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = (x >> 33) % 4 == 0 ? 16 + (x >> 40) % 60000 : 16 + (x >> 40) % 2000;
        blocks[i] = bp_alloc(pool, size);
        expect[bp_size_to_class(&pool->engine.sc, size)]++;
    }
    for (int i = 0; i < 1200; i += 3)
        bp_free(blocks[i]);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, allocate_and_exit, pool) == 0);
    pthread_join(t, NULL);
    expect[bp_size_to_class(&pool->engine.sc, 100)] += 500;
    void *huge = bp_alloc(pool, (size_t)2 << 20);
    bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.program_allocations, 1701);
    uint64_t arena_small = 0, arena_normal = 0, freed = 0, mismatched = 0;
    for (unsigned c = 0; c < pool->engine.sc.nclasses; c++) {
        mismatched += s.class_ops[c].program_allocations != expect[c];
        if (s.class_ops[c].program_allocations != expect[c])
            fprintf(stderr, "  class %u: %llu program allocations, expected %llu\n", c,
                    (unsigned long long)s.class_ops[c].program_allocations,
                    (unsigned long long)expect[c]);
        *(bp_class_is_small(&pool->engine.sc, c) ? &arena_small : &arena_normal) +=
            s.class_ops[c].arena_allocations;
        freed += s.class_ops[c].arena_frees;
        CHECK(s.class_ops[c].cache_fills <= s.class_ops[c].arena_allocations);
    }
    CHECK_EQ(mismatched, 0);
    CHECK_EQ(arena_small, s.alloc_small);
    CHECK_EQ(arena_normal, s.alloc_normal);
    CHECK_EQ(freed, s.free_small + s.free_normal);
    CHECK(s.lock_allocs > 0 && s.lock_allocs < s.alloc_small + s.alloc_normal); /* batches */

    char path[] = "/tmp/bp_statsXXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_TEXT), BP_OK);
    fclose(f);
    char got[256];
    python("import sys; t = open(sys.argv[1]).read(); "
           "print(\"1701 allocations by the program\" in t)",
           path, got, sizeof got);
    CHECK(strcmp(got, "True\n") == 0);
    f = fopen(path, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_JSON), BP_OK);
    fclose(f);
    python("import json,sys; d = json.load(open(sys.argv[1])); "
           "print(d[\"program_allocations\"], sum(c[\"program_allocations\"] for c in "
           "d[\"classes\"]), d[\"lock_acquisitions\"][\"alloc\"] > 0)",
           path, got, sizeof got);
    CHECK(strcmp(got, "1701 1700 True\n") == 0);
    if (strcmp(got, "1701 1700 True\n") != 0)
        fprintf(stderr, "  json: '%s'\n", got);
    unlink(path);
    bp_free(huge);
    for (int i = 0; i < 1200; i++)
        if (i % 3 != 0)
            bp_free(blocks[i]);
    bp_pool_destroy(pool);
}

typedef struct free_job {
    void **blocks;
    int n;
} free_job;

static void *free_and_exit(void *arg)
{
    free_job *job = arg;
    for (int i = 0; i < job->n; i++)
        bp_free(job->blocks[i]); /* a thread that only frees: its bins overflow, never trim */
    return NULL;
}

/* The program's frees, per class: this thread's (still in its cache, uncounted by any
 * flush), another thread's that allocated and freed, a thread that only freed blocks this
 * one allocated, and a huge block. Each is counted exactly, though bp_free's fast path has
 * no counter. */
static void test_program_frees(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    enum { N = 3000 };
    static void *blocks[N];
    uint64_t expect[BP_MAX_CLASSES] = {0};
    uint64_t x = 7;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 16 + (x >> 40) % ((x >> 33) % 4 == 0 ? 60000 : 2000);
        blocks[i] = bp_alloc(pool, size);
        REQUIRE(blocks[i] != NULL);
        if (i % 3 == 0 || i >= N / 2)
            expect[bp_size_to_class(&pool->engine.sc, size)]++;
    }
    for (int i = 0; i < N / 2; i += 3)
        bp_free(blocks[i]);
    free_job job = {blocks + N / 2, N - N / 2};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, free_and_exit, &job) == 0);
    pthread_join(t, NULL);
    REQUIRE(pthread_create(&t, NULL, allocate_and_exit, pool) == 0);
    pthread_join(t, NULL);
    expect[bp_size_to_class(&pool->engine.sc, 100)] += 500;
    bp_free(bp_alloc(pool, 2 * cfg.chunk_size)); /* huge: no class */
    uint64_t total = 1;
    for (unsigned c = 0; c < pool->engine.sc.nclasses; c++)
        total += expect[c];

    bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.program_frees, total);
    uint64_t mismatched = 0;
    for (unsigned c = 0; c < pool->engine.sc.nclasses; c++) {
        mismatched += s.class_ops[c].program_frees != expect[c];
        if (s.class_ops[c].program_frees != expect[c])
            fprintf(stderr, "  class %u: %llu program frees, expected %llu\n", c,
                    (unsigned long long)s.class_ops[c].program_frees,
                    (unsigned long long)expect[c]);
    }
    CHECK_EQ(mismatched, 0);

    /* the same after this thread's cache trims and flushes */
    bp_pool_trim(pool);
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.program_frees, total);

    char path[] = "/tmp/bp_statsXXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_JSON), BP_OK);
    fclose(f);
    char got[256], want[256];
    python("import json,sys; d = json.load(open(sys.argv[1])); "
           "print(d[\"program_frees\"], sum(c[\"program_frees\"] for c in d[\"classes\"]))",
           path, got, sizeof got);
    snprintf(want, sizeof want, "%llu %llu\n", (unsigned long long)total,
             (unsigned long long)total - 1);
    CHECK(strcmp(got, want) == 0);
    f = fopen(path, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_TEXT), BP_OK);
    fclose(f);
    snprintf(want, sizeof want, "; %llu frees", (unsigned long long)total);
    FILE *r = fopen(path, "r");
    REQUIRE(r != NULL);
    char text[4096];
    size_t len = fread(text, 1, sizeof text - 1, r);
    text[len] = 0;
    fclose(r);
    CHECK(strstr(text, want) != NULL);
    unlink(path);
    for (int i = 0; i < N / 2; i++)
        if (i % 3 != 0)
            bp_free(blocks[i]);
    bp_pool_destroy(pool);
}

/* A program built against version 1's header passes version 1's size: it gets those fields,
 * version 1, and nothing written past them. */
static void test_version1_caller(void)
{
    bp_pool *pool = scripted_pool();
    void *keep[9];
    script(pool, keep);
    size_t v1_size = offsetof(bp_stats, program_allocations);
    static union {
        bp_stats s;
        unsigned char bytes[sizeof(bp_stats)];
    } u;
    memset(&u, 0xab, sizeof u);
    u.s.struct_size = v1_size;
    CHECK_EQ(bp_pool_stats(pool, &u.s), BP_OK);
    CHECK_EQ(u.s.version, 1);
    CHECK_EQ(u.s.struct_size, v1_size);
    CHECK_EQ(u.s.alloc_small, 10);
    CHECK_EQ(u.s.arena_stats[0].allocations, 14);
    size_t touched = 0;
    for (size_t i = v1_size; i < sizeof u; i++)
        touched += u.bytes[i] != 0xab;
    CHECK_EQ(touched, 0);
    u.s.struct_size = v1_size - 1;
    CHECK_EQ(bp_pool_stats(pool, &u.s), BP_EINVAL);
    for (int i = 0; i < 9; i++)
        bp_free(keep[i]);
    bp_pool_destroy(pool);
}

/* ---- the picture ------------------------------------------------------------------------ */

/* 1536-byte blocks live in 3-page subpage runs: every page of every run, the last included,
 * has the class's colour, which the key names with the size. */
static void test_svg_subpage_runs(void)
{
    bp_pool *pool = scripted_pool();
    void *blocks[40];
    for (int i = 0; i < 40; i++) /* 16 to a run: three runs */
        blocks[i] = bp_alloc(pool, 1536);
    unsigned cls = bp_size_to_class(&pool->engine.sc, 1536);
    REQUIRE(pool->engine.sc.run_pages[cls] == 3);
    char path[] = "/tmp/bp_statsXXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK_EQ(bp_pool_print_stats(pool, f, BP_FORMAT_SVG), BP_OK);
    fclose(f);
    char got[512];
    char cmdpath[64]; /* python's argv[1] and argv[2]: the file and the class */
    snprintf(cmdpath, sizeof cmdpath, "%s %u", path, cls);
    python("import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); "
           "sub = [r.getAttribute(\"fill\") for r in d.getElementsByTagName(\"rect\") "
           "if \"subpage\" in r.getAttribute(\"class\").split()]; "
           "key = [x for x in d.getElementsByTagName(\"g\") if x.getAttribute(\"class\") == "
           "\"key\"]; "
           "k = key[0] if key else d.createElement(\"g\"); "
           "sw = [r.getAttribute(\"fill\") for r in k.getElementsByTagName(\"rect\") "
           "if r.getAttribute(\"data-class\") == sys.argv[2]]; "
           "words = \" \".join(t.firstChild.data for t in k.getElementsByTagName(\"text\")); "
           "bands = [r for r in k.getElementsByTagName(\"rect\") "
           "if r.getAttribute(\"class\") == \"band\"]; "
           "print(len(sub), len(set(sub)), sw == sub[:1], \"1536 B\" in words, "
           "\"8192 B\" in words, len(bands), \"overlap\" in words)",
           cmdpath, got, sizeof got);
    const char *expect = "9 1 True True True 6 True\n"; /* 3 runs of 3 pages, one colour */
    CHECK(strcmp(got, expect) == 0);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "  svg: '%s' expected '%s'\n", got, expect);
    unlink(path);
    for (int i = 0; i < 40; i++)
        bp_free(blocks[i]);
    bp_pool_destroy(pool);
}

/* ---- reports into a stream that allocates from the pool -------------------------------- */

typedef struct collector {
    bp_pool *pool;
    bp_buf *buf;
    int writes, locked_writes;
} collector;

static bool any_arena_locked(bp_pool *pool)
{
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        if (__atomic_load_n(&pool->arenas[i].lock.state, __ATOMIC_RELAXED) != 0)
            return true;
    return false;
}

/* A write of the report: it allocates a block no thread cache holds (so the arena's lock is
 * taken) and appends to a bp_buf. While the report holds an arena's lock that would wait
 * for ever, so it is counted instead. */
static ssize_t collect(void *cookie, const char *data, size_t n)
{
    collector *c = cookie;
    c->writes++;
    if (any_arena_locked(c->pool)) {
        c->locked_writes++;
        return (ssize_t)n;
    }
    bp_free(bp_alloc(c->pool, (size_t)1 << 20));
    return bp_buf_write_bytes(c->buf, data, n) == BP_OK ? (ssize_t)n : -1;
}

static void test_report_into_pool_stream(void)
{
    bp_pool *pool = scripted_pool();
    void *keep[9];
    script(pool, keep);
    const bp_format formats[] = {BP_FORMAT_TEXT, BP_FORMAT_JSON, BP_FORMAT_SVG};
    const char first[] = {'b', '{', '<'};
    for (int i = 0; i < 3; i++) {
        collector c = {pool, bp_buf_new(pool, 0, 0), 0, 0};
        REQUIRE(c.buf != NULL);
        FILE *f = fopencookie(&c, "w", (cookie_io_functions_t){.write = collect});
        REQUIRE(f != NULL);
        setvbuf(f, NULL, _IONBF, 0); /* every fprintf reaches collect */
        CHECK_EQ(bp_pool_print_stats(pool, f, formats[i]), BP_OK);
        fclose(f);
        CHECK_EQ(c.locked_writes, 0);
        CHECK(c.writes > 0 && bp_buf_readable(c.buf) > 100);
        uint8_t lead = 0;
        CHECK(bp_buf_get_u8(c.buf, 0, &lead) == BP_OK && lead == (uint8_t)first[i]);
        if (c.locked_writes != 0)
            fprintf(stderr, "  format %d: %d of %d writes under an arena lock\n", i,
                    c.locked_writes, c.writes);
        bp_buf_release(c.buf);
    }
    for (int i = 0; i < 9; i++)
        bp_free(keep[i]);
    bp_pool_destroy(pool);
}

/* ---- snapshots under traffic ------------------------------------------------------------ */

#define RING 512

/* Blocks from the producer to the consumer: a single-producer single-consumer ring. */
typedef struct traffic {
    bp_pool *pool;
    long items;
    void *slot[RING];
    unsigned head, tail; /* atomic: consumer's and producer's positions */
    int done;            /* atomic: both have finished */
    long snapshots, bad_snapshots;
} traffic;

/* Allocates 64-byte blocks and fills them (their first word too, which links a block while
 * it waits in a transfer cache): its refills take what the consumer's overflows pushed. */
static void *produce(void *arg)
{
    traffic *t = arg;
    for (long i = 0; i < t->items; i++) {
        void *p = bp_alloc(t->pool, 64);
        if (p == NULL) /* the checks run on the main thread: the counters are not atomic */
            abort();
        memset(p, 0xa5, 64);
        unsigned tail = __atomic_load_n(&t->tail, __ATOMIC_RELAXED);
        while (tail - __atomic_load_n(&t->head, __ATOMIC_ACQUIRE) == RING)
            sched_yield();
        t->slot[tail % RING] = p;
        __atomic_store_n(&t->tail, tail + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *consume(void *arg)
{
    traffic *t = arg;
    for (long i = 0; i < t->items; i++) {
        unsigned head = __atomic_load_n(&t->head, __ATOMIC_RELAXED);
        while (__atomic_load_n(&t->tail, __ATOMIC_ACQUIRE) == head)
            sched_yield();
        void *p = t->slot[head % RING];
        __atomic_store_n(&t->head, head + 1, __ATOMIC_RELEASE);
        bp_free(p); /* its bin overflows into the producer's arena's transfer cache */
    }
    return NULL;
}

static void *snapshot(void *arg)
{
    traffic *t = arg;
    FILE *devnull = fopen("/dev/null", "w");
    while (devnull != NULL && !__atomic_load_n(&t->done, __ATOMIC_ACQUIRE)) {
        bp_stats s;
        s.struct_size = sizeof s;
        t->bad_snapshots += bp_pool_stats(t->pool, &s) != BP_OK;
        if (s.transfer_bytes % 64 != 0 || s.transfer_bytes > s.active_bytes) {
            if (t->bad_snapshots++ == 0)
                fprintf(stderr, "  a snapshot with %zu transfer bytes, %zu active\n",
                        s.transfer_bytes, s.active_bytes);
        }
        if (++t->snapshots % 16 == 0)
            t->bad_snapshots += bp_pool_print_stats(t->pool, devnull, BP_FORMAT_JSON) != BP_OK;
    }
    if (devnull == NULL)
        t->bad_snapshots++;
    else
        fclose(devnull);
    return NULL;
}

static void test_snapshots_under_transfer_traffic(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 2;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    const char *san = getenv("BP_SANITIZER");
    static traffic t;
    memset(&t, 0, sizeof t);
    t.pool = pool;
    t.items = san != NULL && *san != '\0' ? 100000 : 1000000;
    pthread_t prod, cons, snap;
    REQUIRE(pthread_create(&snap, NULL, snapshot, &t) == 0);
    REQUIRE(pthread_create(&prod, NULL, produce, &t) == 0);
    REQUIRE(pthread_create(&cons, NULL, consume, &t) == 0);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    __atomic_store_n(&t.done, 1, __ATOMIC_RELEASE);
    pthread_join(snap, NULL);
    CHECK(t.snapshots > 0);
    CHECK_EQ(t.bad_snapshots, 0);
    /* both threads gave their caches back at exit: what is still live waits in transfer
     * caches, pushed while the producer's arena still had its thread */
    bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.active_bytes, s.transfer_bytes);
    CHECK_EQ(bp_pool_check(pool), 0);
    printf("  %ld blocks through transfer caches, %ld snapshots\n", t.items, t.snapshots);
    bp_pool_destroy(pool);
}

/* transfer_bytes is exact when no thread is pushing or taking: after blocks of another
 * arena overflowed this thread's cache, and after that arena's thread took them back. */
typedef struct holder {
    bp_pool *pool;
    void *blocks[1000];
    pthread_barrier_t step;
} holder;

static void *hold_then_take(void *arg)
{
    holder *h = arg;
    for (int i = 0; i < 1000; i++)
        h->blocks[i] = bp_alloc(h->pool, 64);
    pthread_barrier_wait(&h->step); /* the main thread frees them */
    pthread_barrier_wait(&h->step);
    void *more[300];
    for (int i = 0; i < 300; i++) /* more than its bin held: it refills from the transfers */
        more[i] = bp_alloc(h->pool, 64);
    pthread_barrier_wait(&h->step);
    pthread_barrier_wait(&h->step);
    for (int i = 0; i < 300; i++)
        bp_free(more[i]);
    return NULL;
}

static void test_transfer_bytes_exact(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 2;
    static holder h;
    h.pool = bp_pool_new(&cfg);
    REQUIRE(h.pool != NULL);
    pthread_barrier_init(&h.step, NULL, 2);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, hold_then_take, &h) == 0);
    pthread_barrier_wait(&h.step);
    for (int i = 0; i < 1000; i++) /* this thread is bound to the other arena */
        bp_free(h.blocks[i]);
    bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(h.pool, &s) == BP_OK);
    unsigned c64 = bp_size_to_class(&h.pool->engine.sc, 64);
    CHECK(s.class_stats[c64].cached < 1000);
    CHECK_EQ(s.transfer_bytes, (1000 - s.class_stats[c64].cached) * 64);
    pthread_barrier_wait(&h.step);
    pthread_barrier_wait(&h.step);
    REQUIRE(bp_pool_stats(h.pool, &s) == BP_OK);
    CHECK_EQ(s.transfer_bytes, 0);
    pthread_barrier_wait(&h.step);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&h.step);
    bp_pool_destroy(h.pool);
}

/* mapped_bytes never passes memory_limit, even when the snapshot reads one arena before a
 * block is freed there and another after a block was mapped in it. The main thread holds
 * arena 1's lock until the snapshot waits for it, having read arena 0. */
typedef struct limit_race {
    bp_pool *pool;
    bp_stats s;
} limit_race;

static void *take_snapshot(void *arg)
{
    limit_race *r = arg;
    r->s.struct_size = sizeof r->s;
    return bp_pool_stats(r->pool, &r->s) == BP_OK ? NULL : (void *)1;
}

/* The blocks below come from the arenas directly, as the public calls' tracking (ASan,
 * valgrind) never saw them: they go back the same way. */
static void free_huge_untracked(void *p)
{
    bp_chunk *huge = bp_chunk_map_lookup((uintptr_t)p);
    bp_arena_free_huge(huge->arena, huge);
}

static void test_mapped_within_limit(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 3;
    cfg.memory_limit = (size_t)6 << 20;
    cfg.huge_cache_bytes = 0; /* arena 0's freed block would stay mapped, counted */
    static limit_race r;
    r.pool = bp_pool_new(&cfg);
    REQUIRE(r.pool != NULL);
    size_t huge = (size_t)5 << 20;
    void *first = bp_arena_alloc_huge(&r.pool->arenas[0], huge, 0);
    REQUIRE(first != NULL);
    bp_arena *third = bp_tcache_arena_at(r.pool, 2); /* no thread bound there yet */
    bp_lock *lock1 = &r.pool->arenas[1].lock;
    bp_lock_acquire(lock1);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, take_snapshot, &r) == 0);
    while (__atomic_load_n(&lock1->state, __ATOMIC_ACQUIRE) != 2) /* it sleeps on the lock */
        sched_yield();
    free_huge_untracked(first);
    void *second = bp_arena_alloc_huge(third, huge, 0);
    REQUIRE(second != NULL); /* the limit held: one block at a time */
    bp_lock_release(lock1);
    void *failed;
    pthread_join(t, &failed);
    CHECK(failed == NULL);
    CHECK(r.s.mapped_bytes <= cfg.memory_limit);
    /* one huge block and a descriptor slab in each of arenas 0 and 2 */
    CHECK_EQ(r.s.mapped_bytes, huge + 2 * (64 << 10));
    free_huge_untracked(second);
    bp_pool_destroy(r.pool);
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
    RUN(test_program_allocations);
    RUN(test_program_frees);
    RUN(test_version1_caller);
    RUN(test_svg_subpage_runs);
    RUN(test_report_into_pool_stream);
    RUN(test_snapshots_under_transfer_traffic);
    RUN(test_transfer_bytes_exact);
    RUN(test_mapped_within_limit);
    RUN(test_stats_print_at_exit);
    RUN(test_config_keys);
    return test_report();
}
