/* thread_cache.c — per-thread, per-pool caches: creation and arena binding, refill and
 * overflow in batches, Netty's trim rule, bp_thread_flush, thread exit and orphaned caches of
 * destroyed pools (layout and invariants in internal.h). */
#include "internal.h"

#include <string.h>

/* ---- the static objects a thread starts with ------------------------------------------- */

/* All zero: every bin has head == empty == full == NULL. Never written. */
static union {
    bp_tcache tc;
    char bytes[sizeof(bp_tcache) + (BP_MAX_CLASSES + 1) * sizeof(bp_tcache_bin)];
} empty_storage;
#define EMPTY_CACHE (&empty_storage.tc)

__thread bp_tcache_bin *bp_tls_bins[BP_TCACHE_SLOTS + 1] = {
    [0 ... BP_TCACHE_SLOTS] = empty_storage.tc.bins,
};

static bp_tcache *slot_cache(unsigned slot)
{
    return bp_tcache_of(bp_tls_bins[slot]);
}

static void set_slot_cache(unsigned slot, bp_tcache *tc)
{
    bp_tls_bins[slot] = tc->bins;
}

/* NEW: no cache yet; LIVE: caches are created on demand and flushed at exit; DEAD: the thread
 * is exiting (or could not register for exit, or is registering) and runs uncached. */
enum thread_state { THREAD_NEW, THREAD_LIVE, THREAD_DEAD };
static __thread unsigned char thread_state;

/* Guards slot allocation, every pool's list of caches, arena binding counts, and a cache's
 * `pool` field once the cache is published. Taken before any arena lock, never after. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t slots_used;

static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *arg);

static void make_thread_key(void)
{
    if (pthread_key_create(&thread_key, thread_exit) != 0)
        bp_fatal("pthread_key_create failed: thread caches cannot be flushed at thread exit");
}

/* ---- fork ------------------------------------------------------------------------------- */

void bp_tcache_prefork(void)
{
    pthread_mutex_lock(&registry_lock);
}

void bp_tcache_postfork_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

void bp_tcache_postfork_child(void)
{
    pthread_mutex_init(&registry_lock, NULL);
}

/* ---- slots ------------------------------------------------------------------------------ */

void bp_tcache_pool_created(bp_pool *pool)
{
    pthread_mutex_lock(&registry_lock);
    pool->tc_slot = BP_TCACHE_SLOTS;
    if (~slots_used != 0) {
        unsigned slot = (unsigned)__builtin_ctzll(~slots_used);
        slots_used |= (uint64_t)1 << slot;
        pool->tc_slot = slot;
    }
    pool->tcaches = NULL;
    pthread_mutex_unlock(&registry_lock);
}

static void unlink_from_pool(bp_tcache *tc)
{
    __atomic_add_fetch(&tc->pool->retired_hits, __atomic_load_n(&tc->hits_total, __ATOMIC_RELAXED),
                       __ATOMIC_RELAXED);
    if (tc->pool_prev != NULL)
        tc->pool_prev->pool_next = tc->pool_next;
    else
        tc->pool->tcaches = tc->pool_next;
    if (tc->pool_next != NULL)
        tc->pool_next->pool_prev = tc->pool_prev;
    __atomic_sub_fetch(&tc->arena->bound_threads, 1, __ATOMIC_RELAXED);
    tc->pool_prev = tc->pool_next = NULL;
}

/* Every cache of the pool, in whatever thread, is emptied of its (now meaningless) entries
 * and orphaned; its thread releases it the next time it touches the slot, or at exit. The
 * slot is free for the next pool: the orphan's bins send that pool's first requests to the
 * slow path, which notices. */
void bp_tcache_pool_destroying(bp_pool *pool)
{
    pthread_mutex_lock(&registry_lock);
    while (pool->tcaches != NULL) {
        bp_tcache *tc = pool->tcaches;
        unlink_from_pool(tc);
        for (uint32_t b = 0; b < tc->nbins; b++)
            tc->bins[b].head = tc->bins[b].empty = tc->bins[b].full = NULL;
        tc->pool = NULL;
    }
    if (pool->tc_slot < BP_TCACHE_SLOTS)
        slots_used &= ~((uint64_t)1 << pool->tc_slot);
    pthread_mutex_unlock(&registry_lock);
}

/* ---- creating and releasing caches ------------------------------------------------------ */

static bool thread_live(void)
{
    if (bp_likely(thread_state == THREAD_LIVE))
        return true;
    if (thread_state == THREAD_DEAD)
        return false;
    /* pthread_setspecific may allocate (keys past the first 32): as the malloc library, that
     * comes back here, so the thread runs uncached until it is registered. */
    thread_state = THREAD_DEAD;
    pthread_once(&thread_key_once, make_thread_key);
    /* Any non-NULL value: it makes the destructor run at exit. */
    if (pthread_setspecific(thread_key, &thread_state) == 0)
        thread_state = THREAD_LIVE;
    return thread_state == THREAD_LIVE;
}

static unsigned bin_capacity(const bp_pool *pool, unsigned cls)
{
    if (cls < pool->sc.nsmall)
        return pool->config.small_cache;
    return cls < pool->cache_classes ? pool->config.normal_cache : 0;
}

/* Under the registry lock: the arena with the fewest bound threads (the first on a tie). */
static bp_arena *bind_arena(bp_pool *pool)
{
    bp_arena *best = &pool->arenas[0];
    for (unsigned i = 1; i < pool->narenas; i++)
        if (pool->arenas[i].bound_threads < best->bound_threads)
            best = &pool->arenas[i];
    __atomic_add_fetch(&best->bound_threads, 1, __ATOMIC_RELAXED);
    return best;
}

static bp_tcache *tcache_new(bp_pool *pool)
{
    uint32_t nbins = pool->sc.nclasses + 1;
    size_t entries = 0;
    for (unsigned cls = 0; cls < pool->sc.nclasses; cls++)
        entries += bin_capacity(pool, cls);
    size_t stacks = bp_align_up(sizeof(bp_tcache) + nbins * sizeof(bp_tcache_bin), 64);
    size_t map_size = bp_align_up(stacks + entries * sizeof(void *), 4096);
    bp_tcache *tc = bp_os_map(bp_os_default(), map_size, 4096);
    if (tc == NULL)
        return NULL;
    tc->nbins = nbins;
    tc->map_size = map_size;
    tc->countdown = (int32_t)pool->config.trim_interval;
    void **stack = (void **)((char *)tc + stacks);
    for (unsigned cls = 0; cls < pool->sc.nclasses; cls++) {
        bp_tcache_bin *bin = &tc->bins[cls + 1];
        bin->capacity = (uint16_t)bin_capacity(pool, cls);
        /* Start with about 32 KiB worth per refill: many small blocks, few large ones. */
        uint32_t fill =
            BP_MIN(BP_MAX(bin->capacity / 2u, 1u), BP_MAX((32u << 10) / pool->sc.size[cls], 1u));
        bin->fill = (uint16_t)fill;
        bin->full = stack;
        stack += bin->capacity;
        bin->empty = bin->head = stack;
    }
    pthread_mutex_lock(&registry_lock);
    tc->pool = pool;
    tc->arena = bind_arena(pool);
    tc->pool_prev = NULL;
    tc->pool_next = pool->tcaches;
    if (pool->tcaches != NULL)
        pool->tcaches->pool_prev = tc;
    pool->tcaches = tc;
    pthread_mutex_unlock(&registry_lock);
    return tc;
}

/* This thread's live cache for `pool`, created on first use; NULL when the thread runs
 * uncached (exiting, out of slots, out of memory). */
static bp_tcache *tcache_get(bp_pool *pool)
{
    if (pool->tc_slot >= BP_TCACHE_SLOTS || !thread_live())
        return NULL;
    bp_tcache *tc = slot_cache(pool->tc_slot);
    if (bp_likely(tc != EMPTY_CACHE)) {
        if (bp_likely(tc->pool == pool))
            return tc;
        /* an orphan left by a destroyed pool that had this slot before */
        set_slot_cache(pool->tc_slot, EMPTY_CACHE);
        bp_os_unmap(bp_os_default(), tc, tc->map_size);
    }
    tc = tcache_new(pool);
    if (tc != NULL)
        set_slot_cache(pool->tc_slot, tc);
    return tc;
}

/* ---- moving entries to and from the arenas ---------------------------------------------- */

static uint32_t bin_count(const bp_tcache_bin *bin)
{
    return (uint32_t)(bin->empty - bin->head);
}

/* Gives the n oldest entries (those next to `empty`) back to their arenas: to the transfer
 * caches on overflow (another thread will likely want them), to the bitmaps on trim, flush
 * and exit (the point there is to give memory back). */
static void bin_flush(bp_tcache_bin *bin, uint32_t n, bool transfer)
{
    uint32_t count = bin_count(bin);
    if (n > count)
        n = count;
    if (n == 0)
        return;
    bp_arena_free_batch(bin->empty - n, n, transfer);
    memmove(bin->head + n, bin->head, (count - n) * sizeof(void *));
    bin->head += n;
}

/* What stats read of another thread's cache: hits and cached bytes, stored atomically at the
 * owner's trims and flushes (the fast path itself keeps plain counters). */
static void publish_stats(bp_tcache *tc, uint64_t hits)
{
    size_t bytes = 0;
    for (uint32_t b = 1; b < tc->nbins; b++)
        bytes += (size_t)bin_count(&tc->bins[b]) * tc->pool->sc.size[b - 1];
    __atomic_store_n(&tc->hits_total, tc->hits_total + hits, __ATOMIC_RELAXED);
    __atomic_store_n(&tc->cached_bytes, bytes, __ATOMIC_RELAXED);
}

void bp_tcache_trim(bp_tcache *tc)
{
    /* Netty's rule: a bin that served fewer allocations than it can hold since the last
     * trim did not need the difference; that many of its oldest entries go back. */
    uint64_t hits = 0;
    for (uint32_t b = 1; b < tc->nbins; b++) {
        bp_tcache_bin *bin = &tc->bins[b];
        hits += bin->hits;
        if (bin->capacity > bin->hits && bin->head != bin->empty) {
            bin_flush(bin, bin->capacity - bin->hits, false);
            bin->fill = (uint16_t)BP_MAX(bin->fill / 2u, 1u); /* it held more than needed */
        }
        bin->hits = 0;
    }
    tc->trims++;
    tc->countdown = (int32_t)tc->pool->config.trim_interval;
    publish_stats(tc, hits);
}

void *bp_tcache_trim_returning(bp_tcache *tc, void *p)
{
    bp_tcache_trim(tc);
    return p;
}

static void tcache_flush_all(bp_tcache *tc)
{
    uint64_t hits = 0;
    for (uint32_t b = 1; b < tc->nbins; b++) {
        bin_flush(&tc->bins[b], bin_count(&tc->bins[b]), false);
        hits += tc->bins[b].hits;
        tc->bins[b].hits = 0;
    }
    tc->flushes++;
    publish_stats(tc, hits);
}

void *bp_tcache_alloc_slow(bp_pool *pool, unsigned cls)
{
    bp_tcache *tc = tcache_get(pool);
    if (tc == NULL)
        return bp_arena_alloc(bp_thread_arena(pool), cls);
    bp_tcache_bin *bin = &tc->bins[cls + 1];
    if (bin->capacity == 0)
        return bp_arena_alloc(tc->arena, cls);
    if (bin->head == bin->empty) {
        /* Refill from the transfer cache (blocks other threads gave back), else `fill`
         * blocks from the arena under one lock: the next misses are hits. */
        if (bin->hits >= bin->fill) /* ran dry again within the interval: take more */
            bin->fill = (uint16_t)BP_MIN(bin->fill * 2u, BP_MAX(bin->capacity / 2u, 1u));
        void **dst = bin->full;
        uint32_t got = bp_arena_transfer_take(tc->arena, cls, dst, bin->capacity);
        if (got == 0) {
            uint32_t want = bin->fill;
            dst = bin->empty - want;
            got = bp_arena_alloc_batch(tc->arena, cls, dst, want);
            if (got == 0)
                return NULL;
        }
        if (dst != bin->empty - got)
            memmove(bin->empty - got, dst, got * sizeof(void *));
        bin->head = bin->empty - got;
        tc->refills++;
    }
    void *p = *bin->head++;
    bin->hits++;
    if (--tc->countdown <= 0)
        bp_tcache_trim(tc);
    return p;
}

void bp_tcache_free_slow(bp_chunk *chunk, void *p, uint32_t info)
{
    bp_pool *pool = chunk->pool;
    unsigned cls = bp_info_class(info);
    bp_tcache *tc = cls < pool->cache_classes ? tcache_get(pool) : NULL;
    if (tc == NULL || tc->bins[cls + 1].capacity == 0) {
        bp_arena_free(chunk->arena, chunk, (uintptr_t)p, info);
        return;
    }
    bp_tcache_bin *bin = &tc->bins[cls + 1];
    if (bin->head == bin->full) {
        bin_flush(bin, BP_MAX(bin->capacity / 2, 1u), true);
        tc->flushes++;
    }
    *--bin->head = p;
}

/* ---- threads ---------------------------------------------------------------------------- */

static unsigned thread_counter;
static __thread unsigned thread_number; /* 0 = not drawn yet */

bp_arena *bp_thread_arena(bp_pool *pool)
{
    bp_tcache *tc = tcache_get(pool);
    if (tc != NULL)
        return tc->arena;
    /* Uncached (exiting thread, no slot, no memory): deal threads out round-robin. */
    unsigned n = thread_number;
    if (n == 0)
        n = thread_number = __atomic_add_fetch(&thread_counter, 1, __ATOMIC_RELAXED);
    return &pool->arenas[(n - 1) % pool->narenas];
}

/* The pthread key destructor: from here on the thread runs uncached (frees from later
 * destructors go straight to the arenas); every cache is flushed into its pool, or just
 * released if its pool is gone. The registry lock keeps a concurrent bp_pool_destroy from
 * pulling a pool away mid-flush. */
static void thread_exit(void *arg)
{
    (void)arg;
    thread_state = THREAD_DEAD;
    for (unsigned slot = 0; slot < BP_TCACHE_SLOTS; slot++) {
        bp_tcache *tc = slot_cache(slot);
        if (tc == EMPTY_CACHE)
            continue;
        set_slot_cache(slot, EMPTY_CACHE);
        pthread_mutex_lock(&registry_lock);
        if (tc->pool != NULL) {
            bp_arena *arena = tc->arena;
            tcache_flush_all(tc);
            unlink_from_pool(tc);
            if (arena->bound_threads == 0) /* nobody left to refill from them */
                bp_arena_drain_transfers(arena);
        }
        pthread_mutex_unlock(&registry_lock);
        bp_os_unmap(bp_os_default(), tc, tc->map_size);
    }
}

void bp_thread_flush(bp_pool *pool)
{
    if (pool->tc_slot >= BP_TCACHE_SLOTS)
        return;
    bp_tcache *tc = slot_cache(pool->tc_slot);
    if (tc != EMPTY_CACHE && tc->pool == pool) {
        tcache_flush_all(tc);
        bp_arena_drain_transfers(tc->arena);
    }
}

static const bp_tcache *live_cache(bp_pool *pool)
{
    if (pool->tc_slot >= BP_TCACHE_SLOTS)
        return NULL;
    const bp_tcache *tc = slot_cache(pool->tc_slot);
    return tc == EMPTY_CACHE || tc->pool != pool ? NULL : tc;
}

void bp_tcache_stats(bp_pool *pool, uint64_t *hits, size_t *cached_bytes)
{
    const bp_tcache *mine = live_cache(pool);
    *hits = __atomic_load_n(&pool->retired_hits, __ATOMIC_RELAXED);
    *cached_bytes = 0;
    pthread_mutex_lock(&registry_lock);
    for (const bp_tcache *tc = pool->tcaches; tc != NULL; tc = tc->pool_next) {
        if (tc == mine)
            continue;
        *hits += __atomic_load_n(&tc->hits_total, __ATOMIC_RELAXED);
        *cached_bytes += __atomic_load_n(&tc->cached_bytes, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&registry_lock);
    if (mine != NULL) { /* this thread's own cache, exactly */
        *hits += mine->hits_total;
        for (uint32_t b = 1; b < mine->nbins; b++) {
            *hits += mine->bins[b].hits;
            *cached_bytes += (size_t)bin_count(&mine->bins[b]) * pool->sc.size[b - 1];
        }
    }
}

size_t bp_tcache_cached_blocks(bp_pool *pool)
{
    const bp_tcache *tc = live_cache(pool);
    size_t n = 0;
    for (uint32_t b = 1; tc != NULL && b < tc->nbins; b++)
        n += bin_count(&tc->bins[b]);
    return n;
}

size_t bp_tcache_cached_class(bp_pool *pool, unsigned cls)
{
    const bp_tcache *tc = live_cache(pool);
    return tc != NULL && cls + 1 < tc->nbins ? bin_count(&tc->bins[cls + 1]) : 0;
}
