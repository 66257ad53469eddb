/* thread_cache.c — per-thread, per-pool caches: creation and arena binding, refill and
 * overflow in batches, Netty's trim rule, bp_thread_flush, thread exit, orphaned caches of
 * destroyed pools, and reclaiming other threads' caches (layout and handshake in front.h). */
#include "front.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- the static objects a thread starts with ------------------------------------------- */

/* All zero: every bin has head == empty == full == NULL. Never written. */
static union {
    bp_tcache tc;
    char bytes[sizeof(bp_tcache) + BP_TCACHE_BINS * sizeof(bp_tcache_bin)];
} empty_storage;
#define EMPTY_CACHE (&empty_storage.tc)

/* bufpool.h's bp_fast_tls: exported, the inline fast paths of programs read it. */
__thread bp_tls_state bp_fast_tls = {
    .bins = {[0 ... BP_TCACHE_SLOTS] = empty_storage.tc.bins},
};

/* This thread's own cache per slot (NULL: none). bp_fast_tls.bins[slot] shows its bins, except
 * while a reclaimer holds the cache (then the static empty cache). */
static __thread bp_tcache *tls_caches[BP_TCACHE_SLOTS];

static void set_slot_cache(unsigned slot, bp_tcache *tc)
{
    tls_caches[slot] = tc == EMPTY_CACHE ? NULL : tc;
    __atomic_store_n(&bp_fast_tls.bins[slot], tc->bins, __ATOMIC_RELEASE);
}

/* NEW: no cache yet; LIVE: caches are created on demand and flushed at exit; DEAD: the thread
 * is exiting (or could not register for exit, or is registering) and runs uncached. */
enum thread_state { THREAD_NEW, THREAD_LIVE, THREAD_DEAD };
static __thread unsigned char thread_state;

/* Guards slot allocation, every pool's list of caches, arena binding counts, a cache's
 * `pool` field once the cache is published, and reclaiming: a reclaimer holds it throughout,
 * so an owner that finds its bins taken waits for it. Taken before any arena lock, never
 * after, and never by a thread with bp_fast_tls.busy set. */
static bp_mutex registry_lock = BP_MUTEX_INIT;
static uint64_t slots_used;

static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static bool thread_key_made; /* false: the process had no key left; every thread runs uncached */

static void thread_exit(void *arg);

static void make_thread_key(void)
{
    thread_key_made = pthread_key_create(&thread_key, thread_exit) == 0;
    if (!thread_key_made)
        bp_message("no pthread key left: threads run without caches (every request takes its "
                   "arena's lock)");
}

/* ---- fork ------------------------------------------------------------------------------- */

void bp_tcache_prefork(void)
{
    bp_mutex_lock(&registry_lock);
}

void bp_tcache_postfork_parent(void)
{
    bp_mutex_unlock(&registry_lock);
}

void bp_tcache_postfork_child(void)
{
    bp_mutex_unlock(&registry_lock);
}

/* ---- slots ------------------------------------------------------------------------------ */

void bp_tcache_pool_created(bp_pool *pool)
{
    bp_mutex_lock(&registry_lock);
    pool->tc_slot = BP_TCACHE_SLOTS;
    if (~slots_used != 0) {
        unsigned slot = (unsigned)__builtin_ctzll(~slots_used);
        slots_used |= (uint64_t)1 << slot;
        pool->tc_slot = slot;
    }
    /* checked and tool builds check (or announce) every request: their fast paths miss */
    pool->fast.slot = BP_CHECKED || BP_TRACK ? BP_TCACHE_SLOTS : pool->tc_slot;
    pool->tcaches = NULL;
    bp_mutex_unlock(&registry_lock);
}

static void unlink_from_pool(bp_tcache *tc)
{
    __atomic_add_fetch(&tc->pool->retired_hits, __atomic_load_n(&tc->hits_total, __ATOMIC_RELAXED),
                       __ATOMIC_RELAXED);
    bp_list_unlink(&tc->pool->tcaches, tc, pool_prev, pool_next);
    __atomic_sub_fetch(&tc->arena->bound_threads, 1, __ATOMIC_RELAXED);
    tc->pool_prev = tc->pool_next = NULL;
}

/* Every cache of the pool, in whatever thread, is emptied of its (now meaningless) entries
 * and orphaned; its thread releases it the next time it touches the slot, or at exit. The
 * slot is free for the next pool: the orphan's bins send that pool's first requests to the
 * slow path, which notices. */
void bp_tcache_pool_destroying(bp_pool *pool)
{
    bp_mutex_lock(&registry_lock);
    while (pool->tcaches != NULL) {
        bp_tcache *tc = pool->tcaches;
        unlink_from_pool(tc);
        for (uint32_t b = 0; b < tc->nbins; b++)
            tc->bins[b].head = tc->bins[b].empty = tc->bins[b].full = NULL;
        __atomic_store_n(&tc->pool, NULL, __ATOMIC_RELAXED);
    }
    if (pool->tc_slot < BP_TCACHE_SLOTS)
        slots_used &= ~((uint64_t)1 << pool->tc_slot);
    bp_mutex_unlock(&registry_lock);
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
    if (thread_key_made && pthread_setspecific(thread_key, &thread_state) == 0)
        thread_state = THREAD_LIVE;
    return thread_state == THREAD_LIVE;
}

static unsigned bin_capacity(const bp_pool *pool, unsigned cls)
{
    return cls < pool->engine.cache_classes ? pool->bin_capacity[cls] : 0;
}

/* Under the registry lock: initialises arenas up to i. */
static bp_arena *arena_at(bp_pool *pool, unsigned i)
{
    bp_assert(bp_mutex_held(&registry_lock));
    for (unsigned next = pool->arenas_ready; next <= i; next++) {
        bp_arena_init(&pool->arenas[next], &pool->engine, next);
        __atomic_store_n(&pool->arenas_ready, next + 1, __ATOMIC_RELEASE);
    }
    return &pool->arenas[i];
}

bp_arena *bp_tcache_arena_at(bp_pool *pool, unsigned i)
{
    bp_mutex_lock(&registry_lock);
    bp_arena *arena = arena_at(pool, i);
    bp_mutex_unlock(&registry_lock);
    return arena;
}

/* Under the registry lock: the arena with the fewest bound threads (the first on a tie),
 * where an arena not yet initialised has none: the first of those is initialised only once
 * every ready arena has a thread. */
static bp_arena *bind_arena(bp_pool *pool)
{
    bp_assert(bp_mutex_held(&registry_lock));
    unsigned ready = pool->arenas_ready;
    bp_arena *best = &pool->arenas[0];
    for (unsigned i = 1; i < ready && best->bound_threads > 0; i++)
        if (pool->arenas[i].bound_threads < best->bound_threads)
            best = &pool->arenas[i];
    if (best->bound_threads > 0 && ready < pool->narenas)
        best = arena_at(pool, ready);
    __atomic_add_fetch(&best->bound_threads, 1, __ATOMIC_RELAXED);
    return best;
}

static bp_tcache *tcache_new(bp_pool *pool)
{
    uint32_t nbins = pool->engine.sc.nclasses + 1;
    size_t entries = 0;
    for (unsigned cls = 0; cls < pool->engine.sc.nclasses; cls++)
        entries += bin_capacity(pool, cls);
    /* Bins for every class any pool can have, those past nbins left zero (empty and full):
     * once this cache is an orphan, the next pool in its slot may have more classes, and
     * its fast paths must find bins that send them to the slow path, not stack entries. */
    size_t stacks = bp_align_up(sizeof(bp_tcache) + BP_TCACHE_BINS * sizeof(bp_tcache_bin), 64);
    size_t map_size = bp_align_up(stacks + entries * sizeof(void *), 4096);
    bp_tcache *tc = bp_os_map(bp_os_default(), map_size, 4096);
    if (tc == NULL)
        return NULL;
    tc->nbins = nbins;
    tc->map_size = map_size;
    tc->owner_slot = &bp_fast_tls.bins[pool->tc_slot];
    tc->owner_busy = &bp_fast_tls.busy;
    tc->last_active_ms = bp_now_ms();
    void **stack = (void **)((char *)tc + stacks);
    for (unsigned cls = 0; cls < pool->engine.sc.nclasses; cls++) {
        bp_tcache_bin *bin = &tc->bins[cls + 1];
        bin->capacity = (uint16_t)bin_capacity(pool, cls);
        /* Start with about 32 KiB worth per refill: many small blocks, few large ones. */
        uint32_t fill = BP_MIN(BP_MAX(bin->capacity / 2u, 1u),
                               BP_MAX((32u << 10) / pool->engine.sc.size[cls], 1u));
        bin->fill = (uint16_t)fill;
        bin->full = stack;
        stack += bin->capacity;
        bin->empty = bin->head = stack;
    }
    bp_mutex_lock(&registry_lock);
    tc->pool = pool;
    tc->arena = bind_arena(pool);
    bp_list_push(&pool->tcaches, tc, pool_prev, pool_next);
    bp_mutex_unlock(&registry_lock);
    return tc;
}

/* With busy set: this thread's cache for the slot (NULL: none), once no reclaimer holds it.
 * A reclaimer swapped the bins out and holds the registry lock until it puts them back. */
static bp_tcache *own_cache(unsigned slot)
{
    bp_tcache *tc = tls_caches[slot];
    while (tc != NULL && bp_tcache_bins(slot) != tc->bins) {
        bp_tcache_leave();
        bp_mutex_lock(&registry_lock);
        bp_mutex_unlock(&registry_lock);
        bp_tcache_enter();
    }
    return tc;
}

/* With busy set: this thread's live cache for `pool`, created on first use; NULL when the
 * thread runs uncached (exiting, out of slots, out of memory). */
static bp_tcache *tcache_get(bp_pool *pool)
{
    if (pool->tc_slot >= BP_TCACHE_SLOTS || !thread_live())
        return NULL;
    bp_tcache *tc = own_cache(pool->tc_slot);
    if (bp_likely(tc != NULL)) {
        if (bp_likely(__atomic_load_n(&tc->pool, __ATOMIC_RELAXED) == pool))
            return tc;
        /* an orphan left by a destroyed pool that had this slot before */
        set_slot_cache(pool->tc_slot, EMPTY_CACHE);
        bp_os_unmap(bp_os_default(), tc, tc->map_size);
    }
    bp_tcache_leave(); /* no cache of this slot to protect; tcache_new takes the registry */
    tc = tcache_new(pool);
    bp_tcache_enter();
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
static void bin_flush(bp_tcache *tc, uint32_t b, uint32_t n, bool transfer)
{
    bp_tcache_bin *bin = &tc->bins[b];
    uint32_t count = bin_count(bin);
    if (n > count)
        n = count;
    if (n == 0)
        return;
    bp_arena_free_batch(bin->empty - n, n, transfer);
    memmove(bin->head + n, bin->head, (count - n) * sizeof(void *));
    bin->head += n;
    tc->ledger[b] -= n;
}

/* Stats per class live in the arena the cache is bound to, where they outlast the thread. */
static bp_class_counters *bin_counters(bp_tcache *tc, uint32_t b)
{
    return &tc->arena->counters.classes[b - 1];
}

/* The program's frees into bin b since they were last counted, added to the class's count. */
static void count_bin_frees(bp_tcache *tc, uint32_t b)
{
    uint32_t seen = bin_count(&tc->bins[b]) + tc->bins[b].hits;
    uint32_t frees = seen - tc->ledger[b];
    if (frees != 0)
        __atomic_add_fetch(&bin_counters(tc, b)->program_frees, frees, __ATOMIC_RELAXED);
    tc->ledger[b] = seen;
}

/* A bin's hits since the last trim or flush, added to its class's count and reset. Returns
 * them. */
static uint32_t count_bin_hits(bp_tcache *tc, uint32_t b)
{
    uint32_t hits = tc->bins[b].hits;
    if (hits != 0)
        __atomic_add_fetch(&bin_counters(tc, b)->cache_hits, hits, __ATOMIC_RELAXED);
    tc->bins[b].hits = 0;
    tc->ledger[b] -= hits;
    return hits;
}

/* What stats read of another thread's cache: hits and cached bytes, stored atomically at the
 * owner's trims and flushes (the fast path itself keeps plain counters). */
static void publish_stats(bp_tcache *tc, uint64_t hits)
{
    size_t bytes = 0;
    for (uint32_t b = 1; b < tc->nbins; b++)
        bytes += (size_t)bin_count(&tc->bins[b]) * tc->pool->engine.sc.size[b - 1];
    __atomic_store_n(&tc->hits_total, tc->hits_total + hits, __ATOMIC_RELAXED);
    __atomic_store_n(&tc->cached_bytes, bytes, __ATOMIC_RELAXED);
}

/* With busy set, on the owner's cache. */
static void trim_bins(bp_tcache *tc, uint32_t in_use)
{
    /* Netty's rule: a bin that served fewer allocations than it can hold since the last
     * trim did not need the difference; that many of its oldest entries go back. The bin
     * being refilled or overflowing (in_use) is needed now and keeps its entries. */
    uint64_t hits = 0;
    for (uint32_t b = 1; b < tc->nbins; b++) {
        bp_tcache_bin *bin = &tc->bins[b];
        count_bin_frees(tc, b);
        if (b != in_use && bin->capacity > bin->hits && bin->head != bin->empty) {
            bin_flush(tc, b, bin->capacity - bin->hits, false);
            bin->fill = (uint16_t)BP_MAX(bin->fill / 2u, 1u); /* it held more than needed */
        }
        hits += count_bin_hits(tc, b);
    }
    __atomic_store_n(&tc->last_active_ms, bp_now_ms(), __ATOMIC_RELAXED);
    publish_stats(tc, hits);
}

/* With busy set, at a refill or an overflow (the fast paths keep no countdown): Netty's trim
 * once the bins served trim_interval allocations since the last one. A thread whose every
 * request hits trims nothing, as its bins hold what it uses; the idle-cache scan and
 * bp_pool_trim reach it if it stops. */
static bool trim_due(bp_tcache *tc, uint32_t in_use)
{
    /* summing the bins' hits costs a few instructions a bin: every BP_TRIM_CHECK_EVERY-th
     * refill or overflow looks, so that small bins that refill often do not pay it each time */
    if (++tc->slow_events % BP_TRIM_CHECK_EVERY != 0)
        return false;
    uint32_t hits = 0;
    for (uint32_t b = 1; b < tc->nbins; b++)
        hits += tc->bins[b].hits;
    if (hits < tc->pool->config.trim_interval)
        return false;
    trim_bins(tc, in_use);
    return true;
}

static void tcache_flush_all(bp_tcache *tc)
{
    uint64_t hits = 0;
    for (uint32_t b = 1; b < tc->nbins; b++) {
        count_bin_frees(tc, b);
        bin_flush(tc, b, bin_count(&tc->bins[b]), false);
        hits += count_bin_hits(tc, b);
    }
    publish_stats(tc, hits);
}

static bp_arena *uncached_arena(bp_pool *pool);

/* With busy set. */
static void *alloc_slow(bp_pool *pool, unsigned cls, bool *refilled)
{
    bp_tcache *tc = tcache_get(pool);
    if (tc == NULL)
        return bp_arena_alloc(uncached_arena(pool), cls);
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
        tc->ledger[cls + 1] += got;
        __atomic_store_n(&tc->last_active_ms, bp_now_ms(), __ATOMIC_RELAXED);
        *refilled = true;
    }
    void *p = *bin->head++;
    bin->hits++;
    if (*refilled)
        trim_due(tc, cls + 1);
    return p;
}

void *bp_tcache_alloc_slow(bp_pool *pool, unsigned cls)
{
    bool refilled = false;
    bp_tcache_enter();
    void *p = alloc_slow(pool, cls, &refilled);
    bp_tcache_leave();
    if (refilled)
        bp_tcache_reclaim_idle(pool);
    return p;
}

/* With busy set; true after an overflow. */
static bool free_slow(bp_chunk *chunk, void *p, uint32_t info)
{
    bp_pool *pool = chunk->pool;
    unsigned cls = bp_info_class(info);
    bp_tcache *tc = cls < pool->engine.cache_classes ? tcache_get(pool) : NULL;
    if (tc == NULL || tc->bins[cls + 1].capacity == 0) {
        __atomic_add_fetch(&chunk->arena->counters.classes[cls].program_frees, 1, __ATOMIC_RELAXED);
        bp_arena_free(chunk->arena, chunk, (uintptr_t)p, info);
        return false;
    }
    bp_tcache_bin *bin = &tc->bins[cls + 1];
    bool overflow = bin->head == bin->full;
    if (overflow) {
        /* a thread that only frees may never trim: its frees are counted here */
        count_bin_frees(tc, cls + 1);
        bin_flush(tc, cls + 1, BP_MAX(bin->capacity / 2, 1u), true);
    }
    *--bin->head = p;
    if (overflow)
        trim_due(tc, cls + 1);
    return overflow;
}

void bp_tcache_free_slow(bp_chunk *chunk, void *p, uint32_t info)
{
    bp_tcache_enter();
    bool overflow = free_slow(chunk, p, info);
    bp_tcache_leave();
    if (overflow)
        bp_tcache_reclaim_idle(chunk->pool);
}

/* ---- threads ---------------------------------------------------------------------------- */

static unsigned thread_counter;
static __thread unsigned thread_number; /* 0 = not drawn yet */

bp_arena *bp_thread_arena(bp_pool *pool)
{
    /* The usual case in one load through the thread's bins: its cache for the pool names the
     * arena. No busy flag is needed to read it: a reclaimer only swaps the bins pointer (to
     * the empty cache, whose pool is NULL) and never frees a cache; an orphan's pool is NULL
     * or another pool. */
    if (bp_likely(pool->tc_slot < BP_TCACHE_SLOTS)) {
        const bp_tcache *tc = bp_tcache_of(bp_tcache_bins(pool->tc_slot));
        if (bp_likely(__atomic_load_n(&tc->pool, __ATOMIC_RELAXED) == pool))
            return tc->arena;
    }
    bp_tcache_enter();
    bp_tcache *tc = tcache_get(pool);
    bp_tcache_leave();
    return tc != NULL ? tc->arena : uncached_arena(pool);
}

/* Uncached (exiting thread, no slot, no memory): deal threads out round-robin. */
static bp_arena *uncached_arena(bp_pool *pool)
{
    unsigned n = thread_number;
    if (n == 0)
        n = thread_number = __atomic_add_fetch(&thread_counter, 1, __ATOMIC_RELAXED);
    return &pool->arenas[(n - 1) % bp_pool_arenas_ready(pool)];
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
        bp_tcache *tc = tls_caches[slot];
        if (tc == NULL)
            continue;
        bp_mutex_lock(&registry_lock); /* no reclaimer holds the cache from here on */
        set_slot_cache(slot, EMPTY_CACHE);
        if (tc->pool != NULL) {
            bp_arena *arena = tc->arena;
            tcache_flush_all(tc);
            unlink_from_pool(tc);
            if (arena->bound_threads == 0) /* nobody left to refill from them */
                bp_arena_drain_transfers(arena);
        }
        bp_mutex_unlock(&registry_lock);
        bp_os_unmap(bp_os_default(), tc, tc->map_size);
    }
}

/* With busy set: this thread's cache for the pool, if it has one. */
static bp_tcache *live_cache(bp_pool *pool)
{
    if (pool->tc_slot >= BP_TCACHE_SLOTS)
        return NULL;
    bp_tcache *tc = own_cache(pool->tc_slot);
    return tc == NULL || __atomic_load_n(&tc->pool, __ATOMIC_RELAXED) != pool ? NULL : tc;
}

void bp_thread_flush(bp_pool *pool)
{
    bp_tcache_enter();
    bp_tcache *tc = live_cache(pool);
    if (tc != NULL)
        tcache_flush_all(tc);
    bp_tcache_leave();
    if (tc != NULL)
        bp_arena_drain_transfers(tc->arena);
}

void bp_tcache_stats(bp_pool *pool, uint64_t *hits, size_t *cached_bytes)
{
    *hits = __atomic_load_n(&pool->retired_hits, __ATOMIC_RELAXED);
    *cached_bytes = 0;
    bp_tcache_enter();
    const bp_tcache *mine = live_cache(pool);
    if (mine != NULL) { /* this thread's own cache, exactly */
        *hits += mine->hits_total;
        for (uint32_t b = 1; b < mine->nbins; b++) {
            *hits += mine->bins[b].hits;
            *cached_bytes += (size_t)bin_count(&mine->bins[b]) * pool->engine.sc.size[b - 1];
        }
    }
    bp_tcache_leave();
    bp_mutex_lock(&registry_lock);
    for (const bp_tcache *tc = pool->tcaches; tc != NULL; tc = tc->pool_next) {
        if (tc == mine)
            continue;
        *hits += __atomic_load_n(&tc->hits_total, __ATOMIC_RELAXED);
        *cached_bytes += __atomic_load_n(&tc->cached_bytes, __ATOMIC_RELAXED);
    }
    bp_mutex_unlock(&registry_lock);
}

void bp_tcache_class_counts(bp_pool *pool, uint64_t *class_hits, uint64_t *class_frees)
{
    bp_tcache_enter();
    const bp_tcache *mine = live_cache(pool);
    for (uint32_t b = 1; mine != NULL && b < mine->nbins; b++) {
        const bp_tcache_bin *bin = &mine->bins[b];
        class_hits[b - 1] += bin->hits;
        class_frees[b - 1] += (uint32_t)(bin_count(bin) + bin->hits - mine->ledger[b]);
    }
    bp_tcache_leave();
}

size_t bp_tcache_cached_blocks(bp_pool *pool)
{
    bp_tcache_enter();
    const bp_tcache *tc = live_cache(pool);
    size_t n = 0;
    for (uint32_t b = 1; tc != NULL && b < tc->nbins; b++)
        n += bin_count(&tc->bins[b]);
    bp_tcache_leave();
    return n;
}

size_t bp_tcache_cached_class(bp_pool *pool, unsigned cls)
{
    bp_tcache_enter();
    const bp_tcache *tc = live_cache(pool);
    size_t n = tc != NULL && cls + 1 < tc->nbins ? bin_count(&tc->bins[cls + 1]) : 0;
    bp_tcache_leave();
    return n;
}

/* ---- reclaiming other threads' caches (the handshake in front.h) ---------------------- */

static bool membarrier_registered;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void register_membarrier(void)
{
    membarrier_registered =
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* Registered when the library loads, while the process has (nearly always) one thread: the
 * kernel then needs no grace period. With threads running it waits for one (about 13 ms on
 * the machines measured), which the first thread to trim or look for idle caches would pay
 * in the middle of its work. Loaded later (dlopen), the first such call registers. */
__attribute__((constructor)) static void register_membarrier_at_load(void)
{
    pthread_once(&membarrier_once, register_membarrier);
}

static bool can_reclaim_others(void)
{
    pthread_once(&membarrier_once, register_membarrier);
    return membarrier_registered;
}

/* Under the registry lock, from a thread other than tc's owner: empties tc into the arenas.
 * A cache whose owner is installing it right now holds nothing yet and is skipped. */
static void reclaim_locked(bp_tcache *tc)
{
    bp_assert(bp_mutex_held(&registry_lock));
    bp_tcache_bin *bins = tc->bins;
    if (!__atomic_compare_exchange_n(tc->owner_slot, &bins, EMPTY_CACHE->bins, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        return;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        bp_fatal("membarrier failed after it was registered (errno %d)", errno);
    while (__atomic_load_n(tc->owner_busy, __ATOMIC_ACQUIRE) != 0)
        sched_yield(); /* the owner is inside one operation on its bins */
    tcache_flush_all(tc);
    __atomic_store_n(tc->owner_slot, tc->bins, __ATOMIC_RELEASE);
}

/* Under the registry lock: every cache of the pool but the caller's own whose owner was last
 * active at or before idle_before. */
static void reclaim_others_locked(bp_pool *pool, const bp_tcache *mine, uint64_t idle_before)
{
    bp_assert(bp_mutex_held(&registry_lock));
    for (bp_tcache *tc = pool->tcaches; tc != NULL; tc = tc->pool_next)
        if (tc != mine && __atomic_load_n(&tc->last_active_ms, __ATOMIC_RELAXED) <= idle_before)
            reclaim_locked(tc);
}

void bp_tcache_reclaim_all(bp_pool *pool)
{
    bp_tcache_enter();
    bp_tcache *mine = live_cache(pool);
    if (mine != NULL)
        tcache_flush_all(mine);
    bp_tcache_leave();
    if (!can_reclaim_others())
        return;
    bp_mutex_lock(&registry_lock);
    reclaim_others_locked(pool, mine, UINT64_MAX);
    bp_mutex_unlock(&registry_lock);
}

void bp_tcache_reclaim_idle(bp_pool *pool)
{
    uint64_t idle_ms = pool->config.cache_idle_ms;
    if (idle_ms == 0)
        return;
    uint64_t now = bp_now_ms();
    uint64_t due = __atomic_load_n(&pool->next_idle_scan_ms, __ATOMIC_RELAXED);
    if (now < due ||
        !__atomic_compare_exchange_n(&pool->next_idle_scan_ms, &due, now + BP_MAX(idle_ms / 2, 1),
                                     false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return; /* not yet, or another thread scans */
    if (!can_reclaim_others() || now < idle_ms)
        return;
    bp_tcache_enter();
    bp_tcache *mine = live_cache(pool);
    bp_tcache_leave();
    bp_mutex_lock(&registry_lock);
    reclaim_others_locked(pool, mine, now - idle_ms);
    bp_mutex_unlock(&registry_lock);
}
