/* front.h — the front of the library: thread caches (thread_cache.c), pools (pool.c), their
 * options (options.c), the background thread (background.c) and the entry points (alloc.c). */
#ifndef BP_FRONT_H
#define BP_FRONT_H

#include "arena.h"
#include "chunk_map.h"
#include "track.h"

#include <pthread.h>
/* ------------------------------------------------------------------------------------------
 * thread_cache.c — per thread and per pool: bounded stacks of blocks, served back without a
 * lock or an atomic operation.
 *
 * One bin per class, a stack that grows down inside [full, empty):
 *
 *     full ............ head ............ empty        (addresses grow to the right)
 *     |  room to push  |  cached blocks   |
 *
 * bp_free stores at head[-1] unless head == full; bp_alloc loads head[0] unless
 * head == empty. The oldest entries sit next to `empty`; trim and overflow give those back.
 *
 * A thread reaches its cache for a pool through bp_fast_tls.bins[pool->fast.slot] (the
 * struct is bufpool.h's: the fast paths are inline there). Every slot
 * starts at the static empty cache, whose bins have head == empty == full == NULL: alloc
 * misses, free overflows, both land in the slow path, which sets the thread up. So the fast paths
 * never ask "initialised?", and nothing ever writes to the shared static objects. Bin 0 stays in
 * that state in every cache: bp_free indexes bins by class + 1 straight from unit_info, so a unit
 * without a block (0) lands in bin 0 and goes to the slow path with no extra test.
 *
 * Invariants: full <= head <= empty and empty - full == capacity in every bin; an entry is
 * a live block of the cache's pool whose class is the bin's (bin - 1); hits counts the
 * allocations the bin served since the last trim (the one counter a hit updates: trims are
 * decided at refills and overflows, once the bins' hits reach trim_interval); 1 <= fill <=
 * max(capacity / 2, 1) for a bin with capacity.
 * ------------------------------------------------------------------------------------------ */
/* pools with thread caches at once (others go uncached); bins every cache has, whatever its
 * pool's classes, so a cache outlives its pool's class count */
#define BP_TCACHE_SLOTS     BP_FAST_SLOTS
#define BP_TRIM_CHECK_EVERY 8
#define BP_TCACHE_BINS      (BP_MAX_CLASSES + 1)

/* bufpool.h's struct bp_fast_bin: the inline fast paths pop and push there. hits: allocations
 * served since the last trim; capacity: entries the bin holds at most (<= 32768); fill:
 * blocks the next refill takes (grows while the bin runs dry within an interval, halves when
 * a trim finds entries it did not need). */
typedef struct bp_fast_bin bp_tcache_bin;

typedef struct bp_tcache bp_tcache;

struct bp_tcache {
    uint32_t nbins;                   /* classes + 1 */
    uint32_t slow_events;             /* refills and overflows: a trim is looked for every
                                       * BP_TRIM_CHECK_EVERY of them */
    bp_pool *pool;                    /* NULL once orphaned: its pool was destroyed (atomic) */
    bp_arena *arena;                  /* the arena this thread is bound to in the pool */
    bp_tcache *pool_prev, *pool_next; /* the pool's caches (registry lock) */
    size_t map_size;
    bp_tcache_bin **owner_slot; /* the owner thread's bp_fast_tls.bins[slot], for a reclaimer */
    uint32_t *owner_busy;       /* the owner thread's bp_fast_tls.busy */
    uint64_t last_active_ms;    /* monotonic time of the owner's last refill or trim (atomic) */
    uint64_t hits_total;        /* hits summed at each trim and flush; read by stats (atomic) */
    size_t cached_bytes;        /* bytes in the bins at the last trim or flush (atomic) */
    /* Per bin, what it would hold plus its hits had the program freed nothing into it since
     * the frees were last counted: ledger[b] == count + hits - uncounted frees (mod 2^32).
     * Refills add, flushes and hit resets subtract; counting the frees sets it to count +
     * hits. So the fast path's push needs no counter. */
    uint32_t ledger[BP_TCACHE_BINS];
    bp_tcache_bin bins[]; /* [BP_TCACHE_BINS]; bin c + 1 caches class c; bin 0 and bins from
                           * nbins on always look empty and full */
};
_Static_assert(sizeof(bp_tcache_bin) == BP_BIN_SIZE, "unit_info encodes bin offsets");
_Static_assert(offsetof(struct bp_fast_bin, head) == 0 &&
                   offsetof(struct bp_fast_bin, empty) == 8 &&
                   offsetof(struct bp_fast_bin, full) == 16 &&
                   offsetof(struct bp_fast_bin, hits) == 24,
               "the fast paths' bin layout (BP_FAST_ABI_VERSION 1)");
_Static_assert(BP_BIN_SIZE *BP_TCACHE_BINS <= UINT16_MAX, "bin offsets fit unit_info's 16 bits");

/* What the fast paths read of the thread: the handshake's busy flag (below) and the bins
 * per pool slot (a cache's `bins`; the last slot never holds a real cache; the fast paths add
 * a byte offset, bp_bin_offset, to reach a bin). One object, so one thread-pointer address
 * serves the flag and the bins load (and one GOT entry in the shared library). */
typedef struct bp_fast_thread bp_tls_state; /* bufpool.h: bins[], and busy (1 while in use) */
_Static_assert(offsetof(struct bp_fast_thread, busy) == (BP_FAST_SLOTS + 1) * sizeof(void *),
               "the fast paths' thread layout (BP_FAST_ABI_VERSION 1)");

/* Reclaiming another thread's cache (bp_pool_trim, idle caches) without an atomic on the
 * owner's side: an asymmetric handshake.
 *
 *   owner, around every use of its bins       reclaimer (holding the registry lock)
 *     busy = 1                                  swap the owner's bp_fast_tls.bins[slot] to the
 *     (compiler barrier)                        static empty cache
 *     bins = bp_fast_tls.bins[slot]   (acquire)      membarrier(): every thread of the process
 *     ... pop or push ...                         passes a full barrier
 *     busy = 0                   (release)      wait until the owner's busy == 0
 *                                               flush the bins; put the pointer back
 *
 * The barrier splits the owner's instruction stream: an operation that loaded the bins
 * pointer before it also stored busy = 1 before it, so the reclaimer sees busy and waits;
 * one that loads after it finds the empty cache and goes to the slow path, which waits for
 * the registry lock before it uses its cache again. The owner pays two plain stores per
 * operation. busy is never held while taking the registry lock (the reclaimer holds it while
 * it waits), and operations do not nest. Without membarrier (old kernels, seccomp) threads
 * reclaim only their own caches. */
/* The slow paths' side of the handshake (the fast paths use bufpool.h's helpers). */
bp_inline void bp_tcache_enter(void)
{
    bp_tls_state *t = bp_fast_thread_self();
    __atomic_store_n(&t->busy, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the store stays before the bins load */
}
bp_inline bp_tcache_bin *bp_tcache_bins(uint32_t slot)
{
    bp_tls_state *t = bp_fast_thread_self();
    return __atomic_load_n(&t->bins[slot], __ATOMIC_ACQUIRE);
}
bp_inline void bp_tcache_leave(void)
{
    bp_fast_bins_leave(bp_fast_thread_self());
}

bp_inline bp_tcache *bp_tcache_of(bp_tcache_bin *bins)
{
    return (bp_tcache *)((char *)bins - offsetof(bp_tcache, bins));
}
bp_inline bp_tcache_bin *bp_bin_at(bp_tcache_bin *bins, uint32_t offset)
{
    return (bp_tcache_bin *)((char *)bins + offset);
}

void *bp_tcache_alloc_slow(bp_pool *pool, unsigned cls);
void bp_tcache_free_slow(bp_chunk *chunk, void *p, uint32_t info);
/* The arena the calling thread is bound to in `pool` (binding it if needed). */
bp_arena *bp_thread_arena(bp_pool *pool);
/* Arena i of pool, initialised first (with every arena before it) if no thread has bound
 * there yet. i < pool->narenas. */
bp_arena *bp_tcache_arena_at(bp_pool *pool, unsigned i);
/* Called by bp_pool_new / bp_pool_destroy: a slot for the pool / orphan every cache. */
void bp_tcache_pool_created(bp_pool *pool);
void bp_tcache_pool_destroying(bp_pool *pool);
/* fork(): the registry lock is taken before and released (parent) or reset (child) after. */
void bp_tcache_prefork(void);
void bp_tcache_postfork_parent(void);
void bp_tcache_postfork_child(void);
/* Empties every thread's cache of the pool into the arenas: the calling thread's own, and
 * (where membarrier allows) every other thread's through the handshake above. */
void bp_tcache_reclaim_all(bp_pool *pool);
/* Empties the caches of the pool unused for at least cache_idle_ms; at most twice an
 * interval per pool, whoever calls it (an owner's trim, the background thread). */
void bp_tcache_reclaim_idle(bp_pool *pool);
/* Thread-cache hits and cached bytes for stats: every cache's as of its last trim or flush,
 * the calling thread's exact, plus what exited threads counted. */
void bp_tcache_stats(bp_pool *pool, uint64_t *hits, size_t *cached_bytes);
/* Adds to class_hits[cls] and class_frees[cls] (one per class of the pool) the calling
 * thread's cache hits and program frees not yet added to its arena's per-class counters. */
void bp_tcache_class_counts(bp_pool *pool, uint64_t *class_hits, uint64_t *class_frees);
/* Blocks this thread's cache for `pool` holds (for tests and stats). */
size_t bp_tcache_cached_blocks(bp_pool *pool);
size_t bp_tcache_cached_class(bp_pool *pool, unsigned cls);

/* ------------------------------------------------------------------------------------------
 * pool.c — a pool: its configuration, size classes, arenas and OS layer.
 * ------------------------------------------------------------------------------------------ */
struct bp_pool {
    /* first: what the inline bp_alloc reads (bufpool.h). fast.slot is tc_slot in release
     * builds, BP_TCACHE_SLOTS (every request misses) in checked and tool builds and for an
     * uncached pool; fast.bin_of has 0 for the classes not thread-cached. */
    struct bp_fast_pool fast;
    /* what the arenas and chunks read: classes, OS table and memory count (mapped bytes,
     * <= memory_limit), cache_classes, tuning, the transfer and run cache limits */
    bp_engine engine;
    uint32_t tc_slot; /* slot in bp_fast_tls.bins; BP_TCACHE_SLOTS = uncached */
    bp_config config; /* as resolved at bp_pool_new (defaults filled in) */
    uint16_t bin_capacity[BP_MAX_CLASSES]; /* thread-cache entries per class (0 past those) */
    size_t cache_bound_bytes; /* the most one thread's cache holds: sum of capacity x size */
    size_t max_cached_size;   /* size of the largest cached class (bp_alloc's fast path) */
    unsigned narenas;
    bp_arena *arenas; /* [narenas], inside this pool's mapping */
    /* arenas [0, arenas_ready) are initialised, the rest untouched (no memory behind them
     * until a thread binds there: arenas:4096 costs nothing up front). Grows one at a time,
     * under the registry lock; read with acquire; 1 <= arenas_ready <= narenas. */
    unsigned arenas_ready;
    size_t map_size;       /* bytes of the mapping that holds the pool and arenas */
    bp_tcache *tcaches;    /* every thread's cache for this pool (registry lock) */
    void *buf_state;       /* atomic: the buffer layer's (pool_hooks.h), NULL until it sets one */
    bp_pool *next_pool;    /* every live pool, for fork() (pool.c's pools_lock) */
    uint64_t retired_hits; /* atomic: thread-cache hits of caches already gone */
    uint64_t next_idle_scan_ms; /* atomic: when idle thread caches are looked for next */
    uint64_t magic;
};
#define BP_POOL_MAGIC 0x627566706f6f6c31ull /* "bufpool1" */
_Static_assert(offsetof(bp_pool, fast) == 0 && offsetof(struct bp_fast_pool, slot) == 0 &&
                   offsetof(struct bp_fast_pool, buf_slow) == 6 &&
                   offsetof(struct bp_fast_pool, bin_of) == 8,
               "the fast paths' pool layout (BP_FAST_ABI_VERSION 1)");

/* Checked builds: reports `what`(pool) and aborts unless pool is live (a destroyed pool's
 * mapping stays there, purged, in those builds). Release builds: nothing. */
#if BP_CHECKED
void bp_pool_check_live(const bp_pool *pool, const char *what);
#else
bp_inline void bp_pool_check_live(const bp_pool *pool, const char *what)
{
    (void)pool;
    (void)what;
}
#endif
/* Walks every arena, chunk, run and subpage; returns the number of problems found. */
int bp_pool_check(bp_pool *pool);
/* bp_pool_trim without the purge: what an allocation about to fail calls before it tries
 * again. Returns the bytes unmapped. */
size_t bp_pool_reclaim(bp_pool *pool);
/* How many of pool's arenas are initialised: loops over arenas stop there. */
bp_inline unsigned bp_pool_arenas_ready(const bp_pool *pool)
{
    return __atomic_load_n(&pool->arenas_ready, __ATOMIC_ACQUIRE);
}
/* background.c: starts the background thread unless it runs (or could not start); called
 * by the slow path of an allocation in a pool with background_thread set. */
void bp_background_ensure(void);
/* Passes the background thread made over the pools (for tests). */
uint64_t bp_background_passes(void);
/* fork(): the child has no background thread; the next slow path starts one. */
void bp_background_postfork_child(void);
/* Calls fn for every live pool (under the pool list's lock). */
void bp_pool_for_each(void (*fn)(bp_pool *pool));
/* Counters of all arenas added up. */
void bp_pool_counters(bp_pool *pool, bp_arena_counters *out);

/* alloc.c: the default pool once bp_pool_default made it; until then a pool prefix on which
 * every request misses, whose first bp_alloc_slow makes it (the malloc library's malloc). */
extern bp_hidden bp_pool *bp_default_pool;
/* alloc.c: a huge block with any power-of-two alignment (the malloc library's memalign
 * beyond the chunk size). */
void *bp_alloc_aligned_huge(bp_pool *pool, size_t align, size_t size);
/* bp_free, bp_realloc and bp_usable_size for the malloc library: `what` is the call the
 * program made (free, realloc, ...), named by misuse reports. */
void bp_free_as(void *p, const char *what);
void *bp_realloc_as(bp_pool *pool, void *p, size_t size, const char *what);
size_t bp_usable_size_as(const void *p, const char *what);

/* ------------------------------------------------------------------------------------------
 * options.c — configuration defaults and BUFPOOL_CONF parsing.
 * ------------------------------------------------------------------------------------------ */
void bp_config_defaults(bp_config *cfg);
/* Applies "key:value,..." to cfg; bad items are reported (naming `source`) and skipped, and
 * when the resulting chunk_size does not fit page_size both keep the values cfg had, so a
 * cfg that met bp_options_check still does. Returns the number of problems (bad items, and
 * one for a chunk that did not fit). Reports every time (bp_config_init once per value). */
int bp_options_apply(bp_config *cfg, const char *conf, const char *source);
/* 0, or EINVAL after a message naming the first field outside the range BUFPOOL_CONF accepts
 * (a power of two for page_size and chunk_size), or a chunk_size that is not
 * page_size << 1..14. What bp_pool_new checks. */
int bp_options_check(const bp_config *cfg);

#endif /* BP_FRONT_H */
