/* chunk_map.h — the chunk map: address -> chunk in one load, for bp_free(ptr) without a
 * pool argument (chunk_map.c). */
#ifndef BP_CHUNK_MAP_H
#define BP_CHUNK_MAP_H

#include "fast.h"

typedef struct bp_chunk bp_chunk;

/* ------------------------------------------------------------------------------------------
 * chunk_map.c — address -> chunk, for bp_free(ptr) without a pool argument.
 *
 * One flat table with an entry per 4 MiB granule of the 47-bit user address space (2^25
 * entries, 256 MiB of address space). It is reserved read-only, so it costs neither memory
 * nor commit charge: untouched pages read as zeros (no chunk), and a page is made writable
 * the first time a chunk registers in it (each page covers 2 GiB of addresses). Lookups are
 * one shift, one mask and one load, with no branch on the way.
 *
 * Every chunk starts on a granule boundary and no granule holds two chunks (smaller chunks
 * are mapped with granule alignment), so the granule of an address names at most one chunk;
 * the slow paths check that the address lies inside it. A chunk registers every granule it
 * covers; a huge block registers its first granule only (it is freed by its base address).
 * Readers take no lock. Before the table is reserved (at load, or at the first pool), the
 * pointer names a one-entry table that answers "no chunk" for NULL.
 * ------------------------------------------------------------------------------------------ */
/* bufpool.h's bp_fast_chunk_map: entries point at the chunks' first member (fast). */
#define bp_chunk_map bp_fast_chunk_map

/* 0, or ENOMEM when the table cannot be reserved or a page of it made writable. */
int bp_chunk_map_init(void);
/* false when the table cannot take the entries (see bp_chunk_map_init). */
bool bp_chunk_map_register(uintptr_t base, size_t size, bp_chunk *chunk);
void bp_chunk_map_unregister(uintptr_t base, size_t size);
void bp_chunk_map_prefork(void);
void bp_chunk_map_postfork_parent(void);
void bp_chunk_map_postfork_child(void);

bp_inline bp_chunk *bp_chunk_map_lookup(uintptr_t addr)
{
    return (bp_chunk *)__atomic_load_n(
        &bp_chunk_map[(addr >> BP_MAP_GRANULE_SHIFT) & (BP_MAP_ENTRIES - 1)], __ATOMIC_ACQUIRE);
}

#endif /* BP_CHUNK_MAP_H */
