/* engine.h — what the arenas and chunks of one pool share: its size classes, its memory
 * (OS table, limit and count) and its tuning, given to the engine instead of the pool. */
#ifndef BP_ENGINE_H
#define BP_ENGINE_H

#include "os.h"
#include "size_classes.h"

/* Set by bp_pool_new before its first arena and read-only after, except memory's counters
 * (atomic). The arena and chunk layers read their parameters here, so they need nothing of
 * bp_pool: `pool` is the owner, opaque to them, that chunks carry for the front's free path.
 *
 * Invariants: page_size == 1 << sc.page_shift; chunk_size == page_size * sc.chunk_pages;
 * cache_classes <= sc.nclasses; transfer_limit[c] == 0 for c >= cache_classes;
 * run_cache_limit[c] == 0 for c < cache_classes, and for every c when purge_decay_ms == 0. */
typedef struct bp_engine {
    bp_size_classes sc;
    bp_os_memory memory; /* the OS layer's table and what memory_limit counts */
    size_t page_size, chunk_size;
    uint32_t fast_slot;       /* what chunks tell the inline fast paths (bp_fast_chunk.slot) */
    unsigned cache_classes;   /* classes 0..cache_classes-1 are thread-cached */
    unsigned retained_chunks; /* empty chunks an arena keeps mapped */
    int purge_decay_ms;       /* free pages purged after about this long; 0 at once, -1 never */
    size_t huge_cache_bytes;  /* freed huge mappings an arena keeps, in bytes */
    uint32_t transfer_limit[BP_MAX_CLASSES];  /* blocks an arena's transfer cache may hold */
    uint32_t run_cache_limit[BP_MAX_CLASSES]; /* runs an arena's run cache may hold */
    bp_pool *pool;
} bp_engine;

#endif /* BP_ENGINE_H */
