/* subpage.h — a subpage: one run cut into equal elements of a small class, and the
 * arena's per-class lists of them (subpage.c). */
#ifndef BP_SUBPAGE_H
#define BP_SUBPAGE_H

#include "size_classes.h"

typedef struct bp_chunk bp_chunk;
typedef struct bp_subpage bp_subpage;

/* ------------------------------------------------------------------------------------------
 * subpage.c — one run cut into equal elements of one small class.
 *
 * free_bits has bit i set when element i is free (so "find a free element" is a count of
 * trailing zeros). A subpage with free elements is linked into its arena's pool for its
 * class; a full one is not. When its last element comes back it is released to the chunk,
 * unless it is the only subpage of its class in the pool (kept so that a class used in
 * bursts does not split and coalesce a run on every allocation).
 *
 * Invariants: free_count == popcount(free_bits); bits at or past elem_count are 0;
 * in_pool <=> free_count > 0; the words below search_word hold no free element.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_subpage_link {
    bp_subpage *prev, *next;
} bp_subpage_link;

struct bp_subpage {
    bp_subpage_link link; /* in the arena's pool for this class (circular, with a head) */
    bp_chunk *chunk;      /* opaque here: the owner, for the arena */
    uintptr_t run_base;   /* address of the run's first element */
    uint32_t run_offset;  /* first page of the run */
    uint32_t run_pages;
    uint32_t elem_size;
    uint32_t div_magic; /* ceil(2^32 / elem_size) */
    uint16_t elem_count;
    uint16_t free_count;
    uint16_t words;       /* 64-bit words of free_bits in use */
    uint16_t search_word; /* no free element below this word */
    uint8_t class_index;
    bool in_pool;
    uint64_t free_bits[]; /* (page_size / 16 / 64) words, of which `words` are used */
};

/* Bytes of one subpage slot for a pool with this page size. */
size_t bp_subpage_slot_size(size_t page_size);
/* run_base: the address of the run's first byte (run_offset's page in the chunk). */
void bp_subpage_init(bp_subpage *sp, bp_chunk *chunk, uintptr_t run_base, uint32_t run_offset,
                     unsigned cls, const bp_size_classes *sc);
/* Element index of a newly taken element; the subpage must have a free one. */
uint32_t bp_subpage_take(bp_subpage *sp);
/* Element index for a pointer, or -1 when p is not the start of an element of sp. */
long bp_subpage_index_of(const bp_subpage *sp, uintptr_t p);
bp_inline bool bp_subpage_is_free(const bp_subpage *sp, uint32_t idx)
{
    return (sp->free_bits[idx >> 6] >> (idx & 63)) & 1;
}
void bp_subpage_give(bp_subpage *sp, uint32_t idx);
void bp_subpage_pool_init(bp_subpage_link *head);
void bp_subpage_pool_push(bp_subpage_link *head, bp_subpage *sp);
void bp_subpage_pool_remove(bp_subpage *sp);
int bp_subpage_check(const bp_subpage *sp);

#endif /* BP_SUBPAGE_H */
