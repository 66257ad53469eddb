/* os.h — the OS layer: mappings through a pool's bp_os table (metadata or chunk memory),
 * regions, remapping, and the count memory_limit keeps of them (os.c). */
#ifndef BP_OS_H
#define BP_OS_H

#include "base.h"

/* Metadata (and, for a layer without map_memory, everything). */
void *bp_os_map(const bp_os *os, size_t size, size_t align);
/* Chunk or huge-block memory: the layer's map_memory, else its map. */
void *bp_os_map_memory(const bp_os *os, size_t size, size_t align, bp_map_kind kind);
/* 0, or the OS layer's error: the range is then still mapped, and purged where the layer can
 * purge. Callers that keep nothing may ignore the result (the range stays reserved). */
int bp_os_unmap(const bp_os *os, void *addr, size_t size);

/* Where a mapping lies, as the layer's region_add said; `known` false when the layer has no
 * regions (or none was added). Fixed from just after the mapping to just before its unmap. */
typedef struct bp_os_region {
    bp_region id;
    bool known;
} bp_os_region;
/* The layer's region_add for [base, base + size) just mapped: 0 with *out set (known false
 * when the layer has no region_add), or the layer's errno value with *out unknown. */
int bp_os_region_add(const bp_os *os, uintptr_t base, size_t size, bp_map_kind kind,
                     bp_os_region *out);
/* The layer's region_remove, before that memory is unmapped (known cleared first, so that
 * bp_region_of stops answering before the layer forgets the region). */
void bp_os_region_remove(const bp_os *os, uintptr_t base, size_t size, bp_os_region *region);

/* ------------------------------------------------------------------------------------------
 * Counted memory: a pool's OS table and the bytes mapped through it for the pool (chunks, huge
 * blocks and their metadata), which memory_limit bounds. Mapping and counting happen in one
 * call, as do unmapping and uncounting, so no caller writes a rollback.
 *
 * A range the layer refuses to unmap (at vm.max_map_count, say) stays mapped, purged and
 * counted on the stuck list, whose node lives in the range's first bytes (so keeping it needs
 * no memory and nothing that could fail at the OS's limits); bp_os_retry_stuck tries again.
 *
 * Invariants: counted <= limit whenever limit != 0; counted == bytes mapped through the
 * calls below and not yet unmapped through them, plus bytes added with bp_os_count for a
 * mapping grown in place; stuck_bytes == the sum of the stuck ranges' counted bytes.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_os_stuck bp_os_stuck;
typedef struct bp_os_memory {
    bp_os os;
    size_t limit;       /* 0: none */
    size_t counted;     /* atomic */
    bp_os_stuck *stuck; /* atomic: a stack pushed with a CAS, taken whole with an exchange */
    size_t stuck_bytes; /* atomic */
} bp_os_memory;

/* Counts `bytes` before they are mapped: false, and nothing counted, when the limit would be
 * passed. */
bool bp_os_count(bp_os_memory *mem, size_t bytes);
void bp_os_uncount(bp_os_memory *mem, size_t bytes);
/* Counted bp_os_map / bp_os_map_memory: NULL (nothing counted) at the limit or when the
 * layer refuses. */
void *bp_os_map_counted(bp_os_memory *mem, size_t size, size_t align);
void *bp_os_map_memory_counted(bp_os_memory *mem, size_t size, size_t align, bp_map_kind kind);
/* Unmaps [addr, addr + size) and uncounts `counted` of its bytes (less than size for a range
 * memory_limit no longer counts in full); a range the layer refuses joins the stuck list,
 * still counted. Returns the bytes unmapped (size or 0). */
size_t bp_os_unmap_counted(bp_os_memory *mem, void *addr, size_t size, size_t counted);
/* Every stuck range tried once more; the bytes unmapped. Safe from any thread, at any time. */
size_t bp_os_retry_stuck(bp_os_memory *mem);
bp_inline size_t bp_os_stuck_bytes(bp_os_memory *mem)
{
    return __atomic_load_n(&mem->stuck_bytes, __ATOMIC_RELAXED);
}
bp_inline bool bp_os_has_stuck(bp_os_memory *mem)
{
    return __atomic_load_n(&mem->stuck, __ATOMIC_RELAXED) != NULL;
}
bp_inline size_t bp_os_counted(bp_os_memory *mem)
{
    return __atomic_load_n(&mem->counted, __ATOMIC_RELAXED);
}

/* Scratch memory from the default layer, never from a pool: for snapshots written to a stream
 * that may allocate from the pool they describe. Returns a mapping of at least `need` bytes
 * (64 KiB steps; its size in *cap_out) holding the first `keep` bytes of `mem` (NULL, or a
 * scratch mapping of `cap` bytes, unmapped once copied), or NULL with `mem` untouched. */
void *bp_os_scratch_grow(void *mem, size_t cap, size_t need, size_t keep, size_t *cap_out);
void bp_os_scratch_free(void *mem, size_t cap); /* mem may be NULL */

/* Resizing a mapping of the default layer (mremap); a custom layer (bp_os_can_remap false)
 * has no such call. in_place: grows into free pages after it or shrinks, else false and
 * nothing changed. A move takes two steps, so the caller can register the new address before
 * the old one is gone: remap_reserve gives an inaccessible range of `size` bytes aligned to
 * `align` (or NULL), remap_move moves the mapping's pages there (true), or releases the range
 * and leaves the mapping as it was (false); remap_release gives back a range not moved to. */
bool bp_os_can_remap(const bp_os *os);
bool bp_os_remap_in_place(void *addr, size_t old_size, size_t new_size);
void *bp_os_remap_reserve(size_t size, size_t align);
bool bp_os_remap_move(void *addr, size_t old_size, size_t new_size, void *reserved);
void bp_os_remap_release(void *reserved, size_t size);

#endif /* BP_OS_H */
