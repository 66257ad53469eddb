/* arena.h — an arena: one lock and everything it protects, the slow paths of
 * allocation and free, huge blocks, transfer and run caches, counters (arena.c). */
#ifndef BP_ARENA_H
#define BP_ARENA_H

#include "chunk.h"
#include "chunk_list.h"
#include "lock.h"
#include "subpage.h"

/* ------------------------------------------------------------------------------------------
 * arena.c — one lock and everything it protects: the subpage pools, the chunk lists, the
 * huge blocks and the counters.
 *
 * Invariants: under lock, small[c] holds exactly the subpages of class c with free
 * elements, plus at most one fully free subpage per class; every chunk of the arena is in
 * exactly one of lists[]; active_bytes == the sum of the class sizes of blocks the bitmaps
 * and runs show in use (huge: mapping sizes), which includes blocks waiting in thread caches
 * and transfer caches.
 * ------------------------------------------------------------------------------------------ */
/* One class's share of an arena's counters. allocs and frees count blocks leaving and
 * entering the bitmaps and runs (under the lock), cache_fills those of allocs that refilled a
 * thread cache; cache_hits is added to atomically, by a thread cache bound to this arena at
 * each of its trims and flushes. So the program's allocations of the class are cache_hits +
 * allocs - cache_fills (the rest went to it directly). program_frees counts the program's
 * frees of the class: those a cache took (derived from its ledger, added at its trims,
 * flushes and overflows) and those that went to an arena directly. */
typedef struct bp_class_counters {
    uint64_t allocs, frees;
    uint64_t cache_fills;
    uint64_t cache_hits;    /* atomic */
    uint64_t program_frees; /* atomic */
} bp_class_counters;

/* The arena's totals, declared once: each is a field of bp_arena_counters and, by the same
 * name, of the public bp_stats, so sums over arenas are written once (X(type, name)). */
#define BP_ARENA_TOTALS(X)                                                                         \
    X(uint64_t, alloc_small)                                                                       \
    X(uint64_t, alloc_normal)                                                                      \
    X(uint64_t, alloc_huge)                                                                        \
    X(uint64_t, free_small)                                                                        \
    X(uint64_t, free_normal)                                                                       \
    X(uint64_t, free_huge)                                                                         \
    X(uint64_t, chunks_mapped)                                                                     \
    X(uint64_t, chunks_unmapped)                                                                   \
    X(uint64_t, lock_allocs)   /* lock acquisitions that allocated blocks */                       \
    X(uint64_t, lock_frees)    /* ... that freed blocks */                                         \
    X(uint64_t, chunks_reused) /* new-chunk needs met by a retained chunk */                       \
    X(uint64_t, purged_bytes)  /* bytes of free pages given back with the OS layer's purge */      \
    X(size_t, active_bytes)    /* bytes in live blocks, at class size */                           \
    X(size_t, chunk_bytes)     /* bytes of chunk memory mapped */                                  \
    X(size_t, huge_bytes)      /* bytes of huge blocks mapped */
#define BP_TOTAL_FIELD(type, name) type name;
#define BP_TOTAL_ADD(type, name)   out->name += in->name;

typedef struct bp_arena_counters {
    BP_ARENA_TOTALS(BP_TOTAL_FIELD)
    bp_class_counters classes[BP_MAX_CLASSES];
} bp_arena_counters;

/* A transfer cache: blocks of one class that a thread cache overflowed with, linked through
 * their first word, waiting for a thread of this arena to refill from them. count is raised
 * before a push links its blocks and lowered after a take unlinked them, so it never reads
 * below the blocks in the stack, and equals them whenever no push or take is under way: it
 * limits growth, and stats read it instead of walking blocks other threads may be writing. */
typedef struct bp_transfer {
    void *head;
    uint32_t count;
} __attribute__((aligned(16))) bp_transfer;

/* Recently freed runs of one normal class too large for thread caches, kept whole (neither
 * coalesced nor split) so that the next allocation of the class skips the run search and
 * the chunk-list moves. Under the arena lock; bounded by the pool's run_cache_limit. The
 * runs count as used pages of their chunks but not as active bytes. */
#define BP_RUN_CACHE_SLOTS  8
#define BP_HUGE_CACHE_SLOTS 16 /* freed huge mappings an arena keeps at most */
typedef struct bp_run_cache {
    uint32_t count;
    void *runs[BP_RUN_CACHE_SLOTS];
} bp_run_cache;

struct bp_arena {
    bp_lock lock;
    bp_engine *engine; /* the pool's classes, memory and tuning */
    bp_pool *pool;     /* the owner, opaque here: chunks carry it */
    unsigned index;
    bp_chunk_list lists[BP_NLISTS];
    bp_chunk *huge;       /* doubly linked through prev/next */
    bp_chunk *retained;   /* empty chunks kept mapped for reuse, linked through next */
    unsigned nretained;   /* <= the pool's retained_chunks, plus chunks whose unmap the
                           * OS refused */
    bp_chunk *quarantine; /* checked builds: freed huge blocks, oldest first, through
                           * next (kind HUGE_FREED) */
    unsigned nquarantined;
    /* huge mappings let go under the lock (out of the huge cache or the quarantine), already
     * out of the chunk map and still counted: unmapped by whoever releases the lock, after it
     * (arena.c's arena_unlock); empty whenever the lock is free */
    struct pending_unmap *unmap_pending;
    /* Freed huge mappings kept for reuse (see arena.c's huge cache): entries 0..nhuge_cached-1,
     * oldest first, each still mapped, registered as HUGE_FREED and counted in mapped_bytes;
     * huge_cached_bytes is the sum of their map_size, <= the pool's huge_cache_bytes. */
    struct bp_huge_cached {
        bp_chunk *huge;
        uint64_t freed_ms; /* monotonic time it was cached: decay releases it from there */
    } huge_cache[BP_HUGE_CACHE_SLOTS];
    unsigned nhuge_cached;
    size_t huge_cached_bytes;
    size_t huge_slack_bytes;      /* of the live huge blocks: map_size - size summed (a reused
                                   * mapping larger than its block; counted as overhead) */
    uint64_t next_purge_ms;       /* monotonic time of the next purge epoch */
    bp_chunk *desc_free;          /* unused huge descriptors, linked through next */
    struct desc_slab *desc_slabs; /* mappings the descriptors are carved from */
    bp_arena_counters counters;
    unsigned bound_threads;                 /* thread caches bound here (registry lock) */
    bp_subpage_link small[BP_MAX_CLASSES];  /* pools of subpages with free elements */
    bp_transfer transfer[BP_MAX_CLASSES];   /* outside the lock: see bp_transfer */
    bp_run_cache run_cache[BP_MAX_CLASSES]; /* classes >= the pool's cache_classes */
} __attribute__((aligned(64)));

/* A walk over every pooled chunk of an arena: each list's in list order, then the retained
 * ones. Under the arena's lock, moving and freeing no chunk. `list` is the current chunk's
 * list, BP_NLISTS for a retained one.
 *   for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);) ... w.chunk */
typedef struct bp_arena_walk {
    const bp_arena *arena;
    int list;
    bp_chunk *chunk;
} bp_arena_walk;
bp_inline bp_arena_walk bp_arena_walk_start(const bp_arena *arena)
{
    return (bp_arena_walk){arena, -1, NULL};
}
bp_inline bp_chunk *bp_arena_walk_next(bp_arena_walk *w)
{
    bp_chunk *c = w->chunk != NULL ? w->chunk->next : NULL;
    while (c == NULL && w->list < BP_NLISTS) {
        w->list++;
        c = w->list < BP_NLISTS ? w->arena->lists[w->list].head : w->arena->retained;
    }
    w->chunk = c;
    return c;
}

void bp_arena_init(bp_arena *arena, bp_engine *engine, unsigned index);
void bp_arena_destroy(bp_arena *arena);
void *bp_arena_alloc(bp_arena *arena, unsigned cls);
/* Up to n blocks of class cls under one lock, stored to out[]; returns how many. */
unsigned bp_arena_alloc_batch(bp_arena *arena, unsigned cls, void **out, unsigned n);
/* Returns n blocks of one class (from a thread cache; any arenas of one pool): to their
 * arenas' transfer caches when `transfer` and there is room, else to the bitmaps, one lock
 * per arena. Reorders blocks[]. */
void bp_arena_free_batch(void **blocks, unsigned n, bool transfer);
/* Up to max blocks of class cls from the arena's transfer cache (lock-free); returns how
 * many. Blocks beyond max are freed to the bitmaps. */
unsigned bp_arena_transfer_take(bp_arena *arena, unsigned cls, void **out, unsigned max);
/* Every transfer cache of the arena back to the bitmaps. */
void bp_arena_drain_transfers(bp_arena *arena);
/* Bytes waiting in the arena's transfer caches, from their counts (no block is read): safe
 * under any traffic, exact while no thread pushes or takes. */
size_t bp_arena_transfer_bytes(bp_arena *arena);
void *bp_arena_alloc_aligned(bp_arena *arena, unsigned cls, size_t align);
/* A huge block of at least max(size, 1) bytes (a page multiple) aligned to align (0: none):
 * a cached freed mapping that fits, else a new one. `zero`: its first `size` bytes read zero
 * (a new mapping already does; a reused one is cleared). */
void *bp_arena_alloc_huge_cleared(bp_arena *arena, size_t size, size_t align, bool zero);
/* The same, zero = false. */
void *bp_arena_alloc_huge(bp_arena *arena, size_t size, size_t align);
/* What memory_limit counts for the arena beyond its chunks' and huge blocks' memory: chunk
 * metadata, huge descriptor slabs, cached huge mappings and the slack of reused ones. So the
 * pool's mapped bytes are the sum over arenas of chunk_bytes + huge_bytes + this, plus the
 * OS layer's stuck bytes (bp_os_stuck_bytes). */
size_t bp_arena_overhead_bytes(bp_arena *arena);
/* Frees the block at p in `chunk` (a pooled chunk, p inside it, info = its unit_info). */
void bp_arena_free(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info);
void bp_arena_free_huge(bp_arena *arena, bp_chunk *huge);
/* bp_realloc of the live huge block `huge` (of this arena) to new_size bytes, above the chunk
 * size: resized where it lies (a shrink, or growth into free pages after it or into the slack
 * of a reused mapping), or its pages moved to a larger range by the default OS layer's
 * mremap; its bytes up to the smaller size, its alignment, registration and descriptor are
 * kept. Returns the block's address, or NULL with the block untouched: a custom OS layer (no
 * remap), memory_limit, or the OS refusing; the caller then allocates and copies. */
void *bp_arena_realloc_huge(bp_arena *arena, bp_chunk *huge, size_t new_size);
/* Checked builds' test of a free of p, a block of `chunk` of this arena whose unit_info is
 * `info` (non-zero): reports `what`(p) and aborts when p is not the start of a block, or is
 * free already (its subpage's bit, or its run waiting in the run cache: O(1) either way). */
void bp_arena_check_free(bp_arena *arena, bp_chunk *chunk, const void *p, uint32_t info,
                         const char *what);
/* Releases the cached runs, empty subpages and empty chunks the arena keeps, and purges
 * every free page when `purge`; returns the bytes unmapped (and purged). */
size_t bp_arena_trim(bp_arena *arena, bool purge);
/* Takes the lock and purges the pages the decay rule says are due (purge_decay_ms); what the
 * slow paths do once an epoch, for the background thread. */
void bp_arena_purge_decayed(bp_arena *arena);
int bp_arena_check(bp_arena *arena);

#endif /* BP_ARENA_H */
