/* test_tcache.c — thread caches at their edges: a destroyed pool's orphaned cache and the
 * next pool in its slot, threads that cannot have a cache, and caches reclaimed from threads
 * that sleep holding them (bp_pool_trim and the idle interval). */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

static bp_pool *new_pool(size_t page, size_t chunk, unsigned arenas)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = page;
    cfg.chunk_size = chunk;
    cfg.arenas = arenas;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

/* ---- a destroyed pool's orphaned cache ---------------------------------------------------
 * The destroyed pool had fewer classes than the next pool in its slot: the next pool's
 * requests for its larger classes must not index past the orphan's bins. */

/* Fills this thread's cache for the pool: every bin's stack holds pointers, so anything that
 * reads the cache's memory as bins of another pool finds non-empty garbage. */
static void fill_cache(bp_pool *pool)
{
    static void *blocks[512];
    for (unsigned cls = 0; cls < pool->engine.cache_classes; cls++) {
        for (unsigned i = 0; i < 512; i++)
            blocks[i] = bp_alloc(pool, pool->engine.sc.size[cls]);
        for (unsigned i = 0; i < 512; i++)
            bp_free(blocks[i]);
    }
}

static void orphan_then_bigger_pool(void *arg)
{
    (void)arg;
    bp_pool *small = new_pool(4096, 8192, 1); /* 32 classes */
    REQUIRE(small->engine.sc.nclasses < 40);
    fill_cache(small); /* this thread now has a full cache for the slot */
    uint32_t slot = small->tc_slot;
    bp_pool_destroy(small);

    bp_pool *big = new_pool(8192, 4 << 20, 1); /* 68 classes, same slot */
    REQUIRE(big->tc_slot == slot);
    /* the classes the orphan has no bins for first: a smaller one would replace it */
    for (size_t size = big->max_cached_size; size >= 16; size -= size / 4 + 1) {
        void *p = bp_alloc(big, size);
        REQUIRE(p != NULL);
        memset(p, 0xab, size);
        bp_free(p);
    }
    REQUIRE(bp_pool_check(big) == 0);
    bp_pool_destroy(big);
}

static void test_orphan_fewer_classes(void)
{
    char out[4096];
    int status = test_in_child(orphan_then_bigger_pool, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "child status %#x, stderr:\n%s\n", status, out);
}

/* A block of the new pool allocated on another thread and freed on the thread that holds
 * the orphan: the free must reach the new pool, not a stale bin of the old one. */
typedef struct alloc_job {
    bp_pool *pool;
    size_t size;
    void *blocks[64];
} alloc_job;

static void *alloc_blocks(void *arg)
{
    alloc_job *job = arg;
    for (unsigned i = 0; i < 64; i++)
        job->blocks[i] = bp_alloc(job->pool, job->size);
    return NULL;
}

static void orphan_then_foreign_free(void *arg)
{
    (void)arg;
    bp_pool *small = new_pool(4096, 8192, 1);
    fill_cache(small);
    bp_pool_destroy(small);
    bp_pool *big = new_pool(8192, 4 << 20, 2);
    size_t sizes[] = {32768, 20480, 8192, 64}; /* classes past the orphan's bins first */
    for (unsigned s = 0; s < 4; s++) {
        alloc_job job = {.pool = big, .size = sizes[s]};
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, alloc_blocks, &job) == 0);
        pthread_join(t, NULL);
        for (unsigned i = 0; i < 64; i++) {
            REQUIRE(job.blocks[i] != NULL);
            bp_free(job.blocks[i]);
        }
    }
    bp_thread_flush(big);
    bp_stats st = {.struct_size = sizeof st};
    REQUIRE(bp_pool_stats(big, &st) == 0);
    REQUIRE(st.active_bytes == 0); /* every block came back to the new pool */
    REQUIRE(bp_pool_check(big) == 0);
    bp_pool_destroy(big);
}

static void test_orphan_foreign_free(void)
{
    char out[4096];
    int status = test_in_child(orphan_then_foreign_free, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "child status %#x, stderr:\n%s\n", status, out);
}

/* ---- no pthread key left -----------------------------------------------------------------
 * Thread caches need a key (its destructor flushes the cache at exit). When the process has
 * used every key before bufpool's first allocation, threads run uncached instead. Must run
 * before anything in this process allocates from a pool. */

static void *alloc_on_thread(void *arg)
{
    bp_pool *pool = arg;
    void *blocks[100];
    for (unsigned i = 0; i < 100; i++)
        blocks[i] = bp_alloc(pool, 16 + i * 40);
    for (unsigned i = 0; i < 100; i++)
        bp_free(blocks[i]);
    return blocks[0] != NULL ? pool : NULL;
}

static void no_keys_left(void *arg)
{
    (void)arg;
    pthread_key_t key;
    unsigned keys = 0;
    while (pthread_key_create(&key, NULL) == 0)
        keys++;
    REQUIRE(keys > 0);
    bp_pool *pool = new_pool(8192, 4 << 20, 2);
    pthread_t t;
    void *result = NULL;
    REQUIRE(pthread_create(&t, NULL, alloc_on_thread, pool) == 0);
    pthread_join(t, &result);
    REQUIRE(result == pool);
    REQUIRE(alloc_on_thread(pool) == pool);      /* and on this thread */
    REQUIRE(bp_tcache_cached_blocks(pool) == 0); /* uncached: nothing waits in a cache */
    bp_stats st = {.struct_size = sizeof st};
    REQUIRE(bp_pool_stats(pool, &st) == 0 && st.active_bytes == 0);
    bp_pool_destroy(pool);
}

static void test_no_pthread_key(void)
{
    char out[4096];
    int status = test_in_child(no_keys_left, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "child status %#x, stderr:\n%s\n", status, out);
}

/* ---- reclaiming other threads' caches ------------------------------------------------------ */

static bool membarrier_available(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

static size_t active_bytes(bp_pool *pool)
{
    bp_stats st = {.struct_size = sizeof st};
    REQUIRE(bp_pool_stats(pool, &st) == 0);
    return st.active_bytes;
}

/* A thread that fills its cache, then sleeps until told, then works again. */
typedef struct sleeper {
    bp_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage; /* 0 filling, 1 asleep with a full cache, 2 woken, 3 done */
    long bad;  /* blocks whose bytes changed under the owner */
} sleeper;

static void set_stage(sleeper *s, int stage)
{
    pthread_mutex_lock(&s->lock);
    s->stage = stage;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void wait_stage(sleeper *s, int stage)
{
    pthread_mutex_lock(&s->lock);
    while (s->stage < stage)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* Allocates n blocks of sizes drawn from rng, fills each with a pattern of its address,
 * checks and frees them; returns the blocks found changed. */
static long churn(bp_pool *pool, test_rng *rng, unsigned n)
{
    static __thread void *blocks[256];
    static __thread size_t sizes[256];
    long bad = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = (unsigned)test_below(rng, 256);
        if (blocks[k] != NULL) {
            for (size_t j = 0; j < sizes[k]; j++)
                bad += ((unsigned char *)blocks[k])[j] != (unsigned char)((uintptr_t)blocks[k] + j);
            bp_free(blocks[k]);
        }
        sizes[k] = 16 + test_below(rng, test_below(rng, 8) == 0 ? 32768 : 512);
        blocks[k] = bp_alloc(pool, sizes[k]);
        REQUIRE(blocks[k] != NULL);
        for (size_t j = 0; j < sizes[k]; j++)
            ((unsigned char *)blocks[k])[j] = (unsigned char)((uintptr_t)blocks[k] + j);
    }
    for (unsigned k = 0; k < 256; k++) {
        if (blocks[k] != NULL)
            bp_free(blocks[k]);
        blocks[k] = NULL;
    }
    return bad;
}

static void *sleeper_thread(void *arg)
{
    sleeper *s = arg;
    test_rng rng = {0x51ee9e7};
    s->bad += churn(s->pool, &rng, 4000);
    set_stage(s, 1);
    wait_stage(s, 2);
    s->bad += churn(s->pool, &rng, 4000);
    set_stage(s, 3);
    return NULL;
}

static void test_trim_reclaims_sleeping_thread(void)
{
    if (!membarrier_available()) {
        printf("  membarrier is not available: only own caches can be reclaimed\n");
        return;
    }
    bp_pool *pool = new_pool(8192, 4 << 20, 2);
    sleeper s = {.pool = pool, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, sleeper_thread, &s) == 0);
    wait_stage(&s, 1);
    CHECK(active_bytes(pool) > 0); /* the sleeper's cache holds blocks */
    size_t released = bp_pool_trim(pool);
    CHECK(released > 0);
    CHECK_EQ(active_bytes(pool), 0); /* every block is back in the arenas */
    CHECK_EQ(bp_pool_check(pool), 0);
    set_stage(&s, 2); /* the owner wakes up and uses its (emptied) cache again */
    wait_stage(&s, 3);
    CHECK_EQ(s.bad, 0);
    bp_pool_trim(pool);
    CHECK_EQ(active_bytes(pool), 0);
    pthread_join(t, NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* Trims from this thread while another allocates and frees without pause: no block is handed
 * out twice or lost (each block's bytes stay the owner's; every block comes back). */
typedef struct racer {
    bp_pool *pool;
    unsigned ops;
    long bad;
    int done; /* atomic */
} racer;

static void *racer_thread(void *arg)
{
    racer *r = arg;
    test_rng rng = {0xace5};
    for (unsigned round = 0; round < r->ops / 1000; round++)
        r->bad += churn(r->pool, &rng, 1000);
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_trim_races_owner(void)
{
    if (!membarrier_available())
        return;
    bp_pool *pool = new_pool(8192, 1 << 20, 1);
    racer r = {.pool = pool,
               .ops = getenv("BP_SANITIZER") && *getenv("BP_SANITIZER") ? 40000 : 200000};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, racer_thread, &r) == 0);
    unsigned trims = 0;
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
        bp_pool_trim(pool);
        trims++;
    }
    pthread_join(t, NULL);
    printf("  %u trims during %u operations of the owner\n", trims, r.ops);
    CHECK(trims > 0);
    CHECK_EQ(r.bad, 0);
    bp_pool_trim(pool);
    CHECK_EQ(active_bytes(pool), 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* cache_idle_ms: a cache unused that long is emptied by another thread's trim; with 0 it is
 * kept. */
static size_t left_in_idle_cache(unsigned idle_ms)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 2;
    cfg.cache_idle_ms = idle_ms;
    cfg.trim_interval = 64;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    sleeper s = {.pool = pool, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, sleeper_thread, &s) == 0);
    wait_stage(&s, 1);
    struct timespec nap = {0, 150 * 1000 * 1000}; /* well past idle_ms */
    nanosleep(&nap, NULL);
    for (unsigned i = 0; i < 256; i++) /* this thread's trims look for idle caches */
        bp_free(bp_alloc(pool, 64));
    bp_thread_flush(pool); /* this thread's own cache: not what is measured */
    size_t left = active_bytes(pool);
    set_stage(&s, 2);
    wait_stage(&s, 3);
    pthread_join(t, NULL);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    return left;
}

static void test_idle_cache_reclaimed(void)
{
    if (!membarrier_available())
        return;
    CHECK_EQ(left_in_idle_cache(50), 0);
    CHECK(left_in_idle_cache(0) > 0);
}

/* Capacities follow the byte budget: the classes above the small ones share cache_bytes
 * (each at least one block, at most normal_cache), the bound stats report is the sum of
 * capacity x size, and cache_bytes 0 leaves those classes uncached. */
static void test_cache_byte_budget(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    const bp_size_classes *sc = &pool->engine.sc;
    CHECK_EQ(pool->max_cached_size, (size_t)256 << 10);
    size_t normal_bytes = 0, bound = 0;
    for (unsigned c = 0; c < pool->engine.cache_classes; c++) {
        size_t cap = pool->bin_capacity[c];
        bound += cap * sc->size[c];
        if (c < sc->nsmall) {
            CHECK_EQ(cap, cfg.small_cache);
        } else {
            CHECK(cap >= 1 && cap <= cfg.normal_cache);
            normal_bytes += cap * sc->size[c];
        }
    }
    CHECK(normal_bytes <= cfg.cache_bytes);
    bp_stats s = {.struct_size = sizeof s};
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    CHECK_EQ(s.cache_bound_bytes, bound);
    unsigned c256 = bp_size_to_class(sc, 256 << 10), c32 = bp_size_to_class(sc, 32 << 10);
    printf("  %u classes cached; 32 KiB holds %u, 256 KiB %u; a thread holds at most %zu B\n",
           pool->engine.cache_classes, pool->bin_capacity[c32], pool->bin_capacity[c256], bound);
    /* a 256 KiB pair is a thread-cache hit after the first */
    void *p = bp_alloc(pool, 256 << 10);
    bp_free(p);
    CHECK(bp_alloc(pool, 256 << 10) == p);
    bp_free(p);
    bp_pool_destroy(pool);

    cfg.cache_bytes = 0;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    CHECK_EQ(pool->engine.cache_classes, pool->engine.sc.nsmall);
    CHECK_EQ(pool->max_cached_size, pool->engine.sc.size[pool->engine.sc.nsmall - 1]);
    bp_pool_destroy(pool);
}

/* The library registers for membarrier when it loads, while the process has one thread: the
 * kernel then needs no grace period. Registered later, with threads running, the call waits
 * for one (about 13 ms), and the first thread to trim or reclaim idle caches would pay it in
 * the middle of its work. Before any bufpool call, an expedited barrier already works. */
static void test_membarrier_registered_at_load(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
        printf("  membarrier private expedited not available here: nothing to check\n");
        return;
    }
    CHECK_EQ(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0), 0);
}

int main(void)
{
    RUN(test_membarrier_registered_at_load); /* first: before any bufpool call */
    RUN(test_no_pthread_key);                /* first: nothing may have allocated yet */
    RUN(test_orphan_fewer_classes);
    RUN(test_orphan_foreign_free);
    RUN(test_trim_reclaims_sleeping_thread);
    RUN(test_trim_races_owner);
    RUN(test_idle_cache_reclaimed);
    RUN(test_cache_byte_budget);
    return test_report();
}
