/* test_api.c — the public API at its edges: sizes 0 and SIZE_MAX, calloc overflow,
 * alignment, realloc across classes, bad configs, the default pool, pools made and
 * destroyed in a loop. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static bp_pool *new_pool(size_t page, size_t chunk)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = page;
    cfg.chunk_size = chunk;
    cfg.arenas = 2;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

static void test_zero_and_alignment(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    void *a = bp_alloc(pool, 0), *b = bp_alloc(pool, 0);
    CHECK(a != NULL && b != NULL && a != b);
    CHECK_EQ(bp_usable_size(a), 16);
    bp_free(a);
    bp_free(b);
    bp_free(NULL);
    CHECK_EQ(bp_usable_size(NULL), 0);
    test_rng rng = {test_seed(0xa119e)};
    for (int i = 0; i < 20000; i++) {
        size_t size = test_below(&rng, (size_t)1 << (test_below(&rng, 23) + 1));
        void *p = bp_alloc(pool, size);
        REQUIRE(p != NULL);
        CHECK_EQ((uintptr_t)p % 16, 0);
        CHECK(bp_usable_size(p) >= size);
        bp_free_sized(p, size);
    }
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static void test_too_large(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 50};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        CHECK(bp_alloc(pool, sizes[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(bp_aligned_alloc(pool, 64, sizes[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        void *p = bp_alloc(pool, 100);
        errno = 0;
        CHECK(bp_realloc(pool, p, sizes[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        CHECK_EQ(bp_usable_size(p), 112); /* untouched */
        bp_free(p);
    }
    errno = 0;
    CHECK(bp_calloc(pool, SIZE_MAX / 2 + 1, 2) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(bp_calloc(pool, (size_t)1 << 33, (size_t)1 << 33) == NULL);
    CHECK_EQ(errno, ENOMEM);
    /* still serving, nothing left behind */
    void *p = bp_alloc(pool, 1000);
    CHECK(p != NULL);
    bp_free(p);
    bp_arena_counters c;
    bp_thread_flush(pool);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.huge_bytes, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static void test_calloc_zeroes(void)
{
    bp_pool *pool = new_pool(8192, (size_t)1 << 20);
    size_t sizes[] = {1, 48, 1000, 5000, 30000, 100000, (size_t)1 << 20, ((size_t)1 << 20) + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = bp_alloc(pool, sizes[i]);
        memset(p, 0xa5, sizes[i]);
        bp_free(p);
        unsigned char *q = bp_calloc(pool, 1, sizes[i]);
        REQUIRE(q != NULL);
        size_t nonzero = 0;
        for (size_t j = 0; j < sizes[i]; j++)
            nonzero += q[j] != 0;
        CHECK_EQ(nonzero, 0);
        bp_free(q);
    }
    bp_pool_destroy(pool);
}

static void test_aligned(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    size_t bad[] = {0, 3, 48, 4096 + 16, (size_t)8 << 20};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(bp_aligned_alloc(pool, bad[i], 100) == NULL);
        CHECK_EQ(errno, EINVAL);
    }
    for (size_t align = 1; align <= ((size_t)4 << 20); align <<= 1) {
        size_t sizes[] = {0, 1, 100, align, align + align / 2, 3 * align, 40000};
        void *live[sizeof sizes / sizeof sizes[0]];
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = bp_aligned_alloc(pool, align, sizes[i]);
            REQUIRE(p != NULL);
            CHECK_EQ((uintptr_t)p % align, 0);
            CHECK_EQ((uintptr_t)p % 16, 0);
            CHECK(bp_usable_size(p) >= sizes[i]);
            memset(p, 0x5a, sizes[i]);
            live[i] = p;
        }
        CHECK_EQ(bp_pool_check(pool), 0);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            bp_free(live[i]);
    }
    bp_arena_counters c;
    bp_thread_flush(pool);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 31 + (i >> 8));
}

static size_t mismatches(const unsigned char *p, size_t n, unsigned seed)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += p[i] != (unsigned char)(seed + i * 31 + (i >> 8));
    return bad;
}

/* Grow one block through every class boundary up to a huge size and back down; contents
 * survive every move, and a resize inside the class stays in place. */
static void test_realloc(void)
{
    bp_pool *pool = new_pool(8192, (size_t)1 << 20);
    const bp_size_classes *sc = &pool->engine.sc;
    unsigned char *p = bp_realloc(pool, NULL, 10);
    REQUIRE(p != NULL);
    fill(p, 10, 7);
    size_t have = 10;
    for (unsigned c = 0; c < sc->nclasses; c++) {
        size_t to = sc->size[c] + 1 <= pool->engine.chunk_size ? sc->size[c] + 1 : sc->size[c];
        unsigned char *q = bp_realloc(pool, p, to);
        REQUIRE(q != NULL);
        CHECK_EQ(mismatches(q, have, 7), 0);
        fill(q, to, 7);
        have = to;
        p = q;
        q = bp_realloc(pool, p, bp_usable_size(p)); /* the same class: in place */
        CHECK(q == p);
    }
    unsigned char *q = bp_realloc(pool, p, (size_t)3 << 20); /* huge */
    REQUIRE(q != NULL);
    CHECK_EQ(mismatches(q, have, 7), 0);
    fill(q, (size_t)3 << 20, 7);
    p = q;
    CHECK(bp_realloc(pool, p, ((size_t)3 << 20) - 100) == p); /* same pages: in place */
    for (unsigned c = sc->nclasses; c-- > 0;) {
        q = bp_realloc(pool, p, sc->size[c]);
        REQUIRE(q != NULL);
        CHECK_EQ(mismatches(q, sc->size[c], 7), 0);
        p = q;
    }
    q = bp_realloc(pool, p, 0);
    CHECK(q != NULL && bp_usable_size(q) == 16);
    bp_free(q);
    bp_arena_counters c;
    bp_thread_flush(pool);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* Bad configs fail with EINVAL and a message naming the field. */
static void expect_config_error(bp_config *cfg, const char *field)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    errno = 0;
    bp_pool *pool = bp_pool_new(cfg);
    int err = errno;
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char msg[512] = {0};
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    CHECK(pool == NULL);
    CHECK_EQ(err, EINVAL);
    CHECK(n > 0 && strstr(msg, field) != NULL);
    if (n <= 0 || strstr(msg, field) == NULL)
        fprintf(stderr, "  message for %s: '%s'\n", field, msg);
    if (pool != NULL)
        bp_pool_destroy(pool);
}

static void test_bad_config(void)
{
    bp_config cfg;
    size_t bad_pages[] = {0, 5000, 2048, 131072};
    for (size_t i = 0; i < sizeof bad_pages / sizeof bad_pages[0]; i++) {
        bp_config_defaults(&cfg);
        cfg.page_size = bad_pages[i];
        expect_config_error(&cfg, "page_size");
    }
    size_t bad_chunks[] = {0, 8192, (size_t)8192 << 15, (size_t)3 << 20, 12345};
    for (size_t i = 0; i < sizeof bad_chunks / sizeof bad_chunks[0]; i++) {
        bp_config_defaults(&cfg);
        cfg.chunk_size = bad_chunks[i];
        expect_config_error(&cfg, "chunk_size");
    }
    /* every field set directly outside the range BUFPOOL_CONF accepts, just past each end */
#define BAD(field, value)                                                                          \
    do {                                                                                           \
        bp_config_defaults(&cfg);                                                                  \
        cfg.field = (value);                                                                       \
        expect_config_error(&cfg, #field);                                                         \
    } while (0)
    BAD(arenas, 4097);
    BAD(small_cache, 32769);
    BAD(normal_cache, 32769);
    BAD(max_cached, ((size_t)1 << 30) + 1);
    BAD(trim_interval, 0);
    BAD(trim_interval, (1u << 30) + 1);
    BAD(retained_chunks, 1025);
    BAD(purge_decay_ms, -2);
    BAD(purge_decay_ms, 3600001);
    BAD(leak_level, -1);
    BAD(leak_level, 4);
    BAD(stats_print, -1);
    BAD(stats_print, 2);
#undef BAD
    /* the extremes that are allowed */
    bp_config_defaults(&cfg);
    cfg.page_size = 4096;
    cfg.chunk_size = 8192;
    bp_pool *pool = bp_pool_new(&cfg);
    CHECK(pool != NULL);
    void *p = bp_alloc(pool, 5000), *q = bp_alloc(pool, 9000);
    CHECK(p != NULL && q != NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(p);
    bp_free(q);
    bp_pool_destroy(pool);
}

static void test_default_pool(void)
{
    bp_pool *pool = bp_pool_default();
    CHECK(pool != NULL && pool == bp_pool_default());
    bp_config cfg;
    bp_pool_config(pool, &cfg);
    CHECK_EQ(cfg.page_size, 8192);
    CHECK(cfg.arenas >= 2);
    void *p = bp_alloc(pool, 123);
    CHECK(p != NULL);
    bp_free(p);
}

static size_t vm_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu", &size) != 1)
            size = 0;
        fclose(f);
    }
    return size;
}

/* Every mapping of a destroyed pool is gone: 1000 pools, each with small, normal and huge
 * blocks left live, leave the process no larger (measured once checked builds' ring of the
 * last 8 destroyed pools, kept to report their use, is full). */
static void test_pools_in_a_loop(void)
{
    size_t before = 0;
    for (int i = 0; i < 1020; i++) {
        if (i == 20)
            before = vm_pages();
        bp_pool *pool = new_pool(8192, (size_t)1 << 20);
        for (int j = 0; j < 20; j++)
            CHECK(bp_alloc(pool, (size_t)j * 3000 + 1) != NULL);
        CHECK(bp_alloc(pool, (size_t)2 << 20) != NULL);
        bp_pool_destroy(pool);
    }
    size_t after = vm_pages();
    CHECK(after <= before + 64); /* leaking one 1 MiB chunk a pool would add 256000 */
    if (after > before + 64)
        fprintf(stderr, "  VM grew from %zu to %zu pages\n", before, after);
}

int main(void)
{
    RUN(test_zero_and_alignment);
    RUN(test_too_large);
    RUN(test_calloc_zeroes);
    RUN(test_aligned);
    RUN(test_realloc);
    RUN(test_bad_config);
    RUN(test_default_pool);
    RUN(test_pools_in_a_loop);
    return test_report();
}
