/* test_memory.c — memory return and limits: purging when the decay policy says and not
 * otherwise, retained chunks ending the map/unmap churn at a band edge, memory_limit enforced
 * exactly with the pool serving again after a refusal, and RSS dropping on bp_pool_trim. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* A counting OS layer over the default one. */
typedef struct counting_os {
    unsigned long maps, unmaps, purges;
    size_t purged;
} counting_os;

static void *count_map(size_t size, size_t align, void *ctx)
{
    ((counting_os *)ctx)->maps++;
    return bp_os_default()->map(size, align, NULL);
}

static int count_unmap(void *addr, size_t size, void *ctx)
{
    ((counting_os *)ctx)->unmaps++;
    return bp_os_default()->unmap(addr, size, NULL);
}

static int count_purge(void *addr, size_t size, void *ctx)
{
    counting_os *c = ctx;
    c->purges++;
    c->purged += size;
    return bp_os_default()->purge(addr, size, NULL);
}

static bp_os os_for(counting_os *c)
{
    return (bp_os){.map = count_map, .unmap = count_unmap, .purge = count_purge, .ctx = c};
}

/* An uncached pool (blocks go straight back to their runs) over a counting OS layer. */
static bp_pool *pool_with(const bp_os *os, int decay_ms, unsigned retained, size_t limit,
                          bool run_cache)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.chunk_size = (size_t)1 << 20;
    cfg.small_cache = cfg.normal_cache = 0;
    cfg.purge_decay_ms = decay_ms;
    cfg.retained_chunks = retained;
    cfg.memory_limit = limit;
    cfg.os = os;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    if (!run_cache)
        memset(pool->engine.run_cache_limit, 0, sizeof pool->engine.run_cache_limit);
    return pool;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void test_purge_at_once(void)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, 0, 2, 0, false);
    void *keep = bp_alloc(pool, 64 << 10); /* keeps the chunk in use */
    void *p = bp_alloc(pool, 64 << 10);
    CHECK_EQ(c.purged, 0);
    bp_free(p);
    CHECK_EQ(c.purged, 64 << 10); /* exactly the freed run */
    CHECK_EQ(c.purges, 1);
    bp_free(keep);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* purge_decay_ms 0 means at once for every freed run: one above the thread caches' classes
 * does not wait in the run cache (which keeps runs backed) for the next trim. */
static void test_purge_at_once_past_the_caches(void)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, 0, 2, 0, true); /* the run cache as configured */
    void *keep = bp_alloc(pool, 64 << 10);
    void *p = bp_alloc(pool, 64 << 10);
    bp_free(p);
    CHECK_EQ(c.purged, 64 << 10);
    bp_stats st = {.struct_size = sizeof st};
    REQUIRE(bp_pool_stats(pool, &st) == 0);
    CHECK_EQ(st.run_cache_bytes, 0);
    bp_free(keep);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static void test_purge_after_decay(void)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, 200, 2, 0, false);
    void *keep = bp_alloc(pool, 64 << 10);
    void *p = bp_alloc(pool, 64 << 10);
    void *wall = bp_alloc(pool, 64 << 10); /* p's pages stay a free run of their own */
    bp_free(p);
    CHECK_EQ(c.purged, 0); /* young: stays backed */
    /* Epochs last half the decay and start on slow paths: a page freed within one epoch is
     * marked at the next and purged at the one after. */
    sleep_ms(150);
    void *q = bp_alloc(pool, 128 << 10); /* epoch 2 marks it */
    CHECK_EQ(c.purged, 0);
    sleep_ms(150);
    bp_free(bp_alloc(pool, 128 << 10)); /* epoch 3 purges it */
    CHECK_EQ(c.purged, 64 << 10);
    bp_free(q);
    bp_free(wall);
    bp_free(keep);
    bp_arena_counters k;
    bp_pool_counters(pool, &k);
    CHECK_EQ(k.purged_bytes, c.purged);
    bp_pool_destroy(pool);
}

static void test_purge_never_but_on_trim(void)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, -1, 2, 0, false);
    void *keep = bp_alloc(pool, 64 << 10);
    void *blocks[4];
    for (int i = 0; i < 4; i++)
        blocks[i] = bp_alloc(pool, 32 << 10);
    for (int i = 0; i < 4; i++)
        bp_free(blocks[i]);
    sleep_ms(50);
    bp_free(bp_alloc(pool, 128 << 10));
    CHECK_EQ(c.purged, 0);
    size_t back = bp_pool_trim(pool);
    /* the pages that were freed (the 128 KiB block reused the four 32 KiB ones); pages never
     * touched are not backed and need no purge */
    CHECK_EQ(c.purged, 128 << 10);
    CHECK_EQ(back, c.purged);
    CHECK_EQ(bp_pool_trim(pool), 0); /* nothing dirty is left */
    bp_free(keep);
    bp_pool_destroy(pool);
}

/* netty#14257: a block the size of a chunk, allocated and freed in a loop, empties its chunk
 * each time. Without retention that is a map and an unmap per iteration. */
static unsigned long chunk_maps_for_oscillation(unsigned retained, bool run_cache)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, 10000, retained, 0, run_cache);
    bp_free(bp_alloc(pool, 100)); /* set-up mappings out of the way */
    unsigned long before = c.maps;
    for (int i = 0; i < 200; i++) {
        void *p = bp_alloc(pool, 1 << 20);
        REQUIRE(p != NULL);
        memset(p, 1, 64);
        bp_free(p);
    }
    unsigned long maps = c.maps - before;
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    return maps;
}

static void test_no_churn_at_band_edge(void)
{
    unsigned long churn = chunk_maps_for_oscillation(0, false);
    unsigned long retained = chunk_maps_for_oscillation(2, false);
    unsigned long defaults = chunk_maps_for_oscillation(2, true);
    CHECK_EQ(churn, 2 * 200); /* a chunk and its metadata every iteration */
    CHECK(retained <= 2);
    CHECK(defaults <= 2);
    printf("  200 chunk-sized alloc/free pairs: %lu mappings without retention, %lu with\n", churn,
           retained);
}

static void test_memory_limit(void)
{
    counting_os c = {0};
    bp_os os = os_for(&c);
    bp_pool *pool = pool_with(&os, 10000, 2, 0, true);
    /* room for three chunks with their metadata, which the limit counts too */
    size_t limit = 3 * (((size_t)1 << 20) + bp_chunk_meta_size(&pool->engine));
    pool->engine.memory.limit = limit;
    void *blocks[6];
    for (int i = 0; i < 6; i++) {
        blocks[i] = bp_alloc(pool, 512 << 10); /* two per 1 MiB chunk */
        REQUIRE(blocks[i] != NULL);
    }
    CHECK_EQ(pool->engine.memory.counted, limit);
    errno = 0;
    CHECK(bp_alloc(pool, 512 << 10) == NULL); /* a fourth chunk would pass the limit */
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(bp_alloc(pool, (size_t)2 << 20) == NULL); /* and so would a huge block */
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(pool->engine.memory.counted, limit);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(blocks[5]);
    blocks[5] = bp_alloc(pool, 512 << 10); /* serves again from the freed space */
    CHECK(blocks[5] != NULL);
    for (int i = 0; i < 6; i++)
        bp_free(blocks[i]);
    bp_pool_trim(pool);
    void *huge = bp_alloc(pool, (size_t)2 << 20); /* fits now */
    CHECK(huge != NULL);
    CHECK(pool->engine.memory.counted <= limit);
    bp_free(huge);
    bp_pool_destroy(pool);
}

/* A buffer under a 16 MiB limit grows as far in a pool that kept freed memory for reuse
 * (normal runs in run caches, retained and empty chunks, cached blocks) as in a fresh pool:
 * before refusing, the pool gives back what it keeps. */
static size_t grow_until_refused(bp_pool *pool)
{
    bp_buf *b = bp_buf_new(pool, 64, 0);
    REQUIRE(b != NULL);
    static uint8_t bytes[64 << 10];
    memset(bytes, 0x5a, sizeof bytes);
    int rc;
    while ((rc = bp_buf_write_bytes(b, bytes, sizeof bytes)) == 0)
        ;
    CHECK_EQ(rc, BP_ENOMEM);
    size_t capacity = bp_buf_capacity(b);
    bp_buf_release(b);
    return capacity;
}

static void test_limit_reclaims_before_failing(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.memory_limit = (size_t)16 << 20;
    bp_pool *fresh = bp_pool_new(&cfg);
    bp_pool *used = bp_pool_new(&cfg);
    REQUIRE(fresh != NULL && used != NULL);
    size_t fresh_capacity = grow_until_refused(fresh);
    CHECK(fresh_capacity >= (size_t)4 << 20);

    void *blocks[256];
    unsigned n = 0;
    size_t sizes[] = {1 << 20, 512 << 10, 64 << 10, 24 << 10, 2 << 20, 4 << 10};
    for (unsigned i = 0; n < 256; i++) {
        void *p = bp_alloc(used, sizes[i % 6]);
        if (p == NULL)
            break;
        blocks[n++] = p;
    }
    CHECK(n < 256); /* the limit was reached */
    for (unsigned i = 0; i < n; i++)
        bp_free(blocks[i]);
    CHECK_EQ(grow_until_refused(used), fresh_capacity);
    CHECK(used->engine.memory.counted <= cfg.memory_limit);
    CHECK_EQ(bp_pool_check(used), 0);
    bp_pool_destroy(fresh);
    bp_pool_destroy(used);
}

/* Empty chunks another arena keeps (its qInit chunk, its retained ones) are given back when
 * this arena needs a chunk under the limit: the allocating thread is gone, nobody trims. */
typedef struct fill_job {
    bp_pool *pool;
    size_t block;
} fill_job;

static void *fill_to_limit_and_free(void *arg)
{
    fill_job *job = arg;
    void *blocks[64];
    unsigned n = 0;
    while (n < 64 && (blocks[n] = bp_alloc(job->pool, job->block)) != NULL)
        n++;
    for (unsigned i = 0; i < n; i++)
        bp_free(blocks[i]);
    return (void *)(uintptr_t)n;
}

static void test_limit_reclaims_other_arenas(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 2;
    cfg.chunk_size = (size_t)1 << 20;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    /* three chunks with their metadata, which the limit counts too */
    cfg.memory_limit = 3 * (((size_t)1 << 20) + bp_chunk_meta_size(&pool->engine));
    pool->engine.memory.limit = cfg.memory_limit;
    bp_arena *mine = bp_thread_arena(pool); /* this thread takes arena 0, the next arena 1 */
    fill_job job = {pool, 512 << 10};
    pthread_t t;
    void *filled = NULL;
    REQUIRE(pthread_create(&t, NULL, fill_to_limit_and_free, &job) == 0);
    pthread_join(t, &filled);
    CHECK_EQ((uintptr_t)filled, 6); /* three chunks of two blocks: the limit */
    CHECK(mine->counters.chunk_bytes == 0);
    void *small = bp_alloc(pool, 16);
    CHECK(small != NULL);
    bp_free(small);
    void *huge = bp_alloc(pool, (size_t)2 << 20);
    CHECK(huge != NULL);
    bp_free(huge);
    CHECK(pool->engine.memory.counted <= cfg.memory_limit);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Pages of [p, p + size) backed by memory. */
static size_t resident_pages(void *p, size_t size)
{
    size_t pages = (size + 4095) / 4096, n = 0;
    unsigned char *vec = malloc(pages);
    REQUIRE(vec != NULL && mincore(p, size, vec) == 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

static void *bind_and_allocate(void *arg)
{
    bp_free(bp_alloc(arg, 64));
    return NULL;
}

/* A pool with 4096 arenas costs the pages of the arenas threads bound to, not all of them;
 * each new thread still gets an arena of its own while there are arenas without threads. */
static void test_arenas_touched_when_bound(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 4096;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    bp_free(bp_alloc(pool, 64));
    size_t arena_pages = (sizeof(bp_arena) + 4095) / 4096;
    size_t touched = resident_pages(pool, pool->map_size);
    printf("  %zu of %zu pages of the pool's mapping resident (an arena spans %zu)\n", touched,
           pool->map_size / 4096, arena_pages);
    CHECK(touched <= (sizeof(bp_pool) + 4095) / 4096 + 2 * arena_pages + 2);
    CHECK_EQ(bp_pool_arenas_ready(pool), 1);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) { /* one after another: each finds every ready arena bound */
        REQUIRE(pthread_create(&t[i], NULL, bind_and_allocate, pool) == 0);
        pthread_join(t[i], NULL);
    }
    /* exited threads unbind: the next thread reuses arena 1 rather than touching more */
    CHECK_EQ(bp_pool_arenas_ready(pool), 2);
    bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.arenas, 4096);
    CHECK_EQ(s.program_allocations, 4);
    CHECK_EQ(bp_pool_check(pool), 0);
    CHECK_EQ(bp_pool_trim(pool) > 0, true);
    bp_pool_destroy(pool);
}

static void test_rss_drops_on_trim(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.purge_decay_ms = -1; /* only trim gives memory back */
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    enum { N = 1024 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) { /* 64 MiB in 64 KiB blocks, every page touched */
        blocks[i] = bp_alloc(pool, 64 << 10);
        memset(blocks[i], 1, 64 << 10);
    }
    size_t full = rss_bytes();
    for (int i = 0; i < N; i += 2) /* half freed: chunks stay mapped, half empty */
        bp_free(blocks[i]);
    size_t trimmed = bp_pool_trim(pool);
    size_t after = rss_bytes();
    CHECK(trimmed >= (size_t)24 << 20);
    CHECK(full - after >= (size_t)24 << 20);
    printf("  RSS %zu MiB with 64 MiB live; half freed and trimmed: %zu MiB (%zu MiB given back)\n",
           full >> 20, after >> 20, trimmed >> 20);
    for (int i = 1; i < N; i += 2)
        bp_free(blocks[i]);
    bp_pool_destroy(pool);
}

int main(void)
{
    RUN(test_purge_at_once);
    RUN(test_purge_at_once_past_the_caches);
    RUN(test_purge_after_decay);
    RUN(test_purge_never_but_on_trim);
    RUN(test_no_churn_at_band_edge);
    RUN(test_memory_limit);
    RUN(test_limit_reclaims_before_failing);
    RUN(test_limit_reclaims_other_arenas);
    RUN(test_rss_drops_on_trim);
    RUN(test_arenas_touched_when_bound);
    return test_report();
}
