/* chunk_list.h — chunk lists: chunks grouped by usage in Netty's overlapping bands
 * (chunk_list.c). */
#ifndef BP_CHUNK_LIST_H
#define BP_CHUNK_LIST_H

#include "chunk.h"

/* ------------------------------------------------------------------------------------------
 * chunk_list.c — chunks grouped by usage, Netty's PoolChunkList.
 *
 *   list   usage band   on fuller: moves to   on emptier: moves to
 *   qInit  [0, 25)      q000                  stays (the arena's first chunk lives here)
 *   q000   [1, 50)      q025                  released (a chunk that empties out of q000)
 *   q025   [25, 75)     q050                  q000
 *   q050   [50, 100)    q075                  q025
 *   q075   [75, 100)    q100                  q050
 *   q100   [100]        -                     q075
 *
 * The bands overlap on purpose: a chunk near a boundary does not bounce between lists.
 * Allocation tries q050, q025, q000, qInit, q075: half-used chunks first, so that memory
 * concentrates in few chunks and the others can empty out.
 *
 * Invariant: every chunk in a list has min_usage <= usage < max_usage (q100: usage == 100;
 * qInit: usage < 25), and chunk->list points at the list that holds it.
 * ------------------------------------------------------------------------------------------ */
enum { BP_QINIT, BP_Q000, BP_Q025, BP_Q050, BP_Q075, BP_Q100, BP_NLISTS };

struct bp_chunk_list {
    bp_chunk *head;
    bp_chunk_list *next_list; /* fuller */
    bp_chunk_list *prev_list; /* emptier; NULL: release the chunk; self: stay */
    int min_usage, max_usage;
    uint32_t max_run_pages; /* the largest run a chunk in this list can still have free */
    uint32_t nchunks;
    const char *name;
};

void bp_chunk_lists_init(bp_chunk_list lists[BP_NLISTS], uint32_t chunk_pages);
void bp_chunk_list_add(bp_chunk_list *list, bp_chunk *chunk); /* files by usage from list on */
void bp_chunk_list_remove(bp_chunk_list *list, bp_chunk *chunk);
/* After an allocation from `chunk`: moves it to a fuller list if its usage says so. */
void bp_chunk_list_after_alloc(bp_chunk *chunk);
/* After a free into `chunk`: moves it to an emptier list; returns true when the chunk left
 * q000 empty, was unlinked, and should be released by the caller. */
bool bp_chunk_list_after_free(bp_chunk *chunk);
int bp_chunk_list_check(const bp_chunk_list *list);

#endif /* BP_CHUNK_LIST_H */
