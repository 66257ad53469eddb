/* test_threads.c — thread caches under many threads: a stress run with cross-thread frees,
 * thread churn, Netty's trim rule, batching of returns, frees after thread exit, several
 * pools per thread, and pools destroyed while threads still hold caches for them. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>

static bool under_sanitizer(void)
{
    const char *s = getenv("BP_SANITIZER");
    return s != NULL && *s != '\0';
}

static bp_pool *new_pool(unsigned arenas, size_t chunk)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = arenas;
    cfg.chunk_size = chunk;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

static unsigned bound_threads(bp_pool *pool)
{
    unsigned n = 0;
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        n += pool->arenas[i].bound_threads;
    return n;
}

/* ---- a mailbox per thread: other threads drop blocks in, the owner frees them ------------ */

#define MAILBOX_SIZE 1024
typedef struct mailbox {
    pthread_mutex_t lock;
    void *blocks[MAILBOX_SIZE];
    size_t sizes[MAILBOX_SIZE];
    unsigned n;
} mailbox;

typedef struct stress_arg {
    bp_pool *pool;
    unsigned id, nthreads;
    uint64_t seed;
    long ops;
    mailbox *boxes;
    long failures;
    long handed;
} stress_arg;

static unsigned char pattern(const void *p, size_t i)
{
    return (unsigned char)(((uintptr_t)p >> 4) * 131 + i * 7);
}

static void fill(void *p, size_t n)
{
    unsigned char *b = p;
    size_t step = n > 256 ? n / 64 : 1; /* big blocks: sample, ends included */
    for (size_t i = 0; i < n; i += step)
        b[i] = pattern(p, i);
    if (n > 0)
        b[n - 1] = pattern(p, n - 1);
}

static bool intact(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t step = n > 256 ? n / 64 : 1;
    for (size_t i = 0; i < n; i += step)
        if (b[i] != pattern(p, i))
            return false;
    return n == 0 || b[n - 1] == pattern(p, n - 1);
}

static void free_checked(stress_arg *a, void *p, size_t size)
{
    if (!intact(p, size))
        a->failures++;
    bp_free(p);
}

static void drain(stress_arg *a)
{
    mailbox *box = &a->boxes[a->id];
    pthread_mutex_lock(&box->lock);
    for (unsigned i = 0; i < box->n; i++)
        free_checked(a, box->blocks[i], box->sizes[i]);
    box->n = 0;
    pthread_mutex_unlock(&box->lock);
}

static void *stress_thread(void *arg)
{
    stress_arg *a = arg;
    test_rng rng = {a->seed};
    enum { SLOTS = 512 };
    void *live[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    for (long op = 0; op < a->ops; op++) {
        unsigned s = (unsigned)test_below(&rng, SLOTS);
        if (live[s] != NULL) {
            unsigned to = (unsigned)test_below(&rng, a->nthreads);
            mailbox *box = &a->boxes[to];
            bool handed = false;
            if (to != a->id && test_below(&rng, 4) == 0) { /* a quarter go to another thread */
                pthread_mutex_lock(&box->lock);
                if (box->n < MAILBOX_SIZE) {
                    box->blocks[box->n] = live[s];
                    box->sizes[box->n++] = size[s];
                    handed = true;
                }
                pthread_mutex_unlock(&box->lock);
            }
            if (handed)
                a->handed++;
            else
                free_checked(a, live[s], size[s]);
            live[s] = NULL;
        } else {
            uint64_t r = test_below(&rng, 100);
            size_t n = r < 80   ? test_below(&rng, 512)
                       : r < 97 ? test_below(&rng, 40000)
                                : test_below(&rng, 300000);
            void *p = bp_alloc(a->pool, n);
            if (p == NULL || bp_usable_size(p) < n) {
                a->failures++;
                continue;
            }
            fill(p, n);
            live[s] = p;
            size[s] = n;
        }
        if (op % 64 == 0)
            drain(a);
    }
    for (unsigned s = 0; s < SLOTS; s++)
        if (live[s] != NULL)
            free_checked(a, live[s], size[s]);
    return NULL;
}

static void test_stress(void)
{
    enum { THREADS = 6 };
    bp_pool *pool = new_pool(2, (size_t)1 << 20);
    uint64_t seed = test_seed(0x7417eadull);
    mailbox boxes[THREADS];
    stress_arg args[THREADS];
    pthread_t tids[THREADS];
    long ops = under_sanitizer() ? 40000 : 200000;
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        boxes[i].n = 0;
    }
    for (unsigned i = 0; i < THREADS; i++) {
        args[i] =
            (stress_arg){pool, i, THREADS, seed + i * 0x9e3779b97f4a7c15ull, ops, boxes, 0, 0};
        pthread_create(&tids[i], NULL, stress_thread, &args[i]);
    }
    long failures = 0, handed = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(tids[i], NULL);
        failures += args[i].failures;
        handed += args[i].handed;
    }
    /* what is still in a mailbox is freed here, by yet another thread */
    for (unsigned i = 0; i < THREADS; i++) {
        args[i].id = i;
        drain(&args[i]);
        failures += args[i].failures;
    }
    bp_thread_flush(pool);
    CHECK_EQ(failures, 0);
    CHECK(handed > ops / 20);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    /* every thread's cache came back at exit; what remains live waits in transfer caches
     * (overflows pushed there by threads still running when an arena's last thread left) */
    size_t in_transfer = 0;
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        in_transfer += bp_arena_transfer_bytes(&pool->arenas[i]);
    CHECK_EQ(c.active_bytes, in_transfer);
    CHECK(bp_pool_trim(pool) > 0);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(bound_threads(pool), 1); /* the main thread, which drained the mailboxes */
    printf("  %ld ops in %d threads, %ld blocks freed by another thread\n", ops * THREADS, THREADS,
           handed);
    bp_pool_destroy(pool);
}

/* ---- thread churn ------------------------------------------------------------------------ */

static void *churn_thread(void *arg)
{
    bp_pool *pool = arg;
    void *keep[40];
    for (int i = 0; i < 40; i++)
        keep[i] = bp_alloc(pool, (size_t)(i * 97) % 3000 + 1);
    for (int i = 0; i < 40; i++)
        bp_free(keep[i]); /* into this thread's cache: live entries at exit */
    return bp_tcache_cached_blocks(pool) >= 40 ? NULL : (void *)1;
}

static void test_thread_churn(void)
{
    bp_pool *pool = new_pool(4, (size_t)1 << 20);
    int threads = under_sanitizer() ? 300 : 1000;
    long bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        void *ret;
        REQUIRE(pthread_create(&t, NULL, churn_thread, pool) == 0);
        pthread_join(t, &ret);
        bad += ret != NULL;
    }
    CHECK_EQ(bad, 0);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.alloc_small, c.free_small);
    CHECK_EQ(bound_threads(pool), 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* ---- trim -------------------------------------------------------------------------------- */

/* Bytes of the blocks this thread's cache holds for the pool. */
static size_t cached_bytes(bp_pool *pool)
{
    size_t bytes = 0;
    for (unsigned c = 0; c < pool->engine.sc.nclasses; c++)
        bytes += bp_tcache_cached_class(pool, c) * pool->engine.sc.size[c];
    return bytes;
}

/* BP_TRIM_CHECK_EVERY refills, each the first allocation of a class not used before (from
 * *next on): the cache looks for a due trim at one of them. */
static void refills(bp_pool *pool, unsigned *next)
{
    for (unsigned i = 0; i < BP_TRIM_CHECK_EVERY; i++)
        bp_free(bp_alloc(pool, pool->engine.sc.size[(*next)++]));
}

/* Netty's rule: at each trim, a bin gives back (capacity - allocations it served since the
 * previous trim) of its oldest entries. A trim is due once the bins served trim_interval
 * allocations, and happens at a later refill or overflow (the fast paths count nothing but
 * hits; the cache looks every BP_TRIM_CHECK_EVERY of them). */
static void test_trim(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.trim_interval = 1000;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    unsigned c64 = bp_size_to_class(&pool->engine.sc, 64),
             c128 = bp_size_to_class(&pool->engine.sc, 128);
    unsigned fresh = bp_size_to_class(&pool->engine.sc, 1024); /* classes the test uses once each */
    void *p[300];
    for (int i = 0; i < 300; i++) /* allocations 1..300 */
        p[i] = bp_alloc(pool, 64);
    for (int i = 0; i < 300; i++)
        bp_free(p[i]);
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 256); /* full; the rest went to the arena */
    for (int i = 0; i < 700; i++)                     /* allocations 301..1000 */
        bp_free(bp_alloc(pool, 128));
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 256); /* due, but no refill yet */
    refills(pool, &fresh);                            /* the first trim */
    /* the 64 B bin served 300 >= 256 in the first interval: it keeps everything */
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 256);
    for (int i = 0; i < 200; i++) /* 200 of the 64 B entries in use during interval two */
        p[i] = bp_alloc(pool, 64);
    for (int i = 0; i < 200; i++)
        bp_free(p[i]);
    for (int i = 0; i < 800; i++) /* 1000 allocations in the interval */
        bp_free(bp_alloc(pool, 128));
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 256);
    refills(pool, &fresh); /* the second trim: 256 - 200 go back */
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 200);
    CHECK_EQ(bp_tcache_cached_class(pool, c128), 128); /* one refill: half the bin */
    for (int i = 0; i < 1000; i++) /* interval three: no 64 B allocation, all 200 go back */
        bp_free(bp_alloc(pool, 128));
    refills(pool, &fresh);
    CHECK_EQ(bp_tcache_cached_class(pool, c64), 0);
    /* what the bin overflowed with at the start waits in the arena's transfer cache */
    bp_arena_counters c;
    bp_arena_drain_transfers(&pool->arenas[0]);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, cached_bytes(pool));
    CHECK(cached_bytes(pool) > 0);
    bp_thread_flush(pool);
    CHECK_EQ(bp_tcache_cached_blocks(pool), 0);
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    bp_pool_destroy(pool);
}

/* ---- cross-thread frees are batched ------------------------------------------------------- */

typedef struct ring {
    void *slot[4096];
    unsigned head, tail; /* head: producer, tail: consumer */
    long count;
} ring;

static void *consumer(void *arg)
{
    ring *r = arg;
    for (long n = 0; n < r->count;) {
        unsigned head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        while (r->tail != head) {
            bp_free(r->slot[r->tail % 4096]);
            __atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
            n++;
        }
    }
    return NULL;
}

static void test_cross_thread_batching(void)
{
    bp_pool *pool = new_pool(2, (size_t)4 << 20);
    static ring r;
    r.head = r.tail = 0;
    r.count = under_sanitizer() ? 20000 : 200000;
    pthread_t t;
    pthread_create(&t, NULL, consumer, &r);
    for (long i = 0; i < r.count; i++) {
        while (r.head - __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE) == 4096)
            ;
        void *p = bp_alloc(pool, 64);
        memset(p, 1, 64);
        r.slot[r.head % 4096] = p;
        __atomic_store_n(&r.head, r.head + 1, __ATOMIC_RELEASE);
    }
    pthread_join(t, NULL);
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    /* refills take 128 blocks a lock, overflows give back 128 a lock */
    CHECK(c.lock_allocs * 64 <= (uint64_t)r.count);
    CHECK(c.lock_frees * 64 <= (uint64_t)r.count);
    printf("  %ld blocks: %llu locks to allocate, %llu locks to free\n", r.count,
           (unsigned long long)c.lock_allocs, (unsigned long long)c.lock_frees);
    bp_pool_destroy(pool);
}

/* ---- frees after the thread's caches are gone --------------------------------------------- */

static pthread_key_t late_key;
static bp_pool *late_pool;
static void *late_blocks[2];

/* Re-arms itself once, so its second call comes after every other destructor of the first
 * round, bufpool's included. */
static void late_destructor(void *arg)
{
    uintptr_t round = (uintptr_t)arg;
    bp_free(late_blocks[round - 1]);
    late_blocks[round - 1] = NULL;
    if (round == 1)
        pthread_setspecific(late_key, (void *)2);
}

static void *late_thread(void *arg)
{
    (void)arg;
    late_blocks[0] = bp_alloc(late_pool, 100);
    late_blocks[1] = bp_alloc(late_pool, 100);
    void *q = bp_alloc(late_pool, 100);
    bp_free(q); /* leaves a cached entry, flushed by bufpool's destructor */
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

static void test_free_after_thread_exit(void)
{
    late_pool = new_pool(2, (size_t)1 << 20);
    pthread_key_create(&late_key, late_destructor);
    pthread_t t;
    pthread_create(&t, NULL, late_thread, NULL);
    pthread_join(t, NULL);
    CHECK(late_blocks[0] == NULL && late_blocks[1] == NULL);
    bp_arena_counters c;
    bp_pool_counters(late_pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(bound_threads(late_pool), 0);
    CHECK_EQ(bp_pool_check(late_pool), 0);
    pthread_key_delete(late_key);
    bp_pool_destroy(late_pool);
}

/* ---- several pools; pools destroyed under live threads ------------------------------------ */

typedef struct multi_arg {
    bp_pool *pools[3];
    pthread_barrier_t *step;
    long failures;
} multi_arg;

static void *multi_thread(void *arg)
{
    multi_arg *a = arg;
    void *keep[3][50];
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 50; i++) {
                keep[k][i] = bp_alloc(a->pools[k], (size_t)(i * 37 + k) % 2000 + 1);
                memset(keep[k][i], k + 1, 1);
            }
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 50; i++) {
                if (*(unsigned char *)keep[k][i] != k + 1)
                    a->failures++;
                if (bp_chunk_map_lookup((uintptr_t)keep[k][i])->pool != a->pools[k])
                    a->failures++;
                bp_free(keep[k][i]);
            }
    }
    /* every pool holds cached entries now; pool 2 is destroyed while this thread lives */
    pthread_barrier_wait(a->step);
    pthread_barrier_wait(a->step);
    /* a new pool may take the destroyed pool's slot: it must not see the orphan's entries */
    bp_pool *fresh = a->pools[2];
    for (int i = 0; i < 300; i++) {
        void *p = bp_alloc(fresh, 64);
        if (p == NULL || bp_chunk_map_lookup((uintptr_t)p)->pool != fresh)
            a->failures++;
        else
            bp_free(p);
    }
    return NULL;
}

static void test_pools_and_threads(void)
{
    pthread_barrier_t step;
    pthread_barrier_init(&step, NULL, 3);
    multi_arg args[2];
    pthread_t tids[2];
    bp_pool *pools[3];
    for (int k = 0; k < 3; k++)
        pools[k] = new_pool(2, (size_t)1 << 20);
    for (int i = 0; i < 2; i++) {
        args[i] = (multi_arg){{pools[0], pools[1], pools[2]}, &step, 0};
        pthread_create(&tids[i], NULL, multi_thread, &args[i]);
    }
    pthread_barrier_wait(&step);
    uint32_t slot = pools[2]->tc_slot;
    bp_pool_destroy(pools[2]); /* two live threads hold caches for it */
    bp_pool *fresh = new_pool(2, (size_t)1 << 20);
    CHECK_EQ(fresh->tc_slot, slot);
    for (int i = 0; i < 2; i++)
        args[i].pools[2] = fresh;
    pthread_barrier_wait(&step);
    for (int i = 0; i < 2; i++) {
        pthread_join(tids[i], NULL);
        CHECK_EQ(args[i].failures, 0);
    }
    bp_pool *all[3] = {pools[0], pools[1], fresh};
    for (int k = 0; k < 3; k++) {
        bp_arena_counters c;
        bp_pool_counters(all[k], &c);
        CHECK_EQ(c.active_bytes, 0); /* the threads' caches came back at their exit */
        CHECK_EQ(bound_threads(all[k]), 0);
        CHECK_EQ(bp_pool_check(all[k]), 0);
        bp_pool_destroy(all[k]); /* after its threads exited */
    }
    pthread_barrier_destroy(&step);
}

int main(void)
{
    RUN(test_stress);
    RUN(test_thread_churn);
    RUN(test_trim);
    RUN(test_cross_thread_batching);
    RUN(test_free_after_thread_exit);
    RUN(test_pools_and_threads);
    return test_report();
}
