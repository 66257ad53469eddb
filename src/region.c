/* region.c — where a block's memory lies: the region its OS layer's region_add gave its
 * chunk (or huge block), and the offset there, found from the chunk map. */
#include "chunk.h"
#include "chunk_map.h"

#include <errno.h>

int bp_region_of(const void *p, uint32_t *id, uint64_t *offset)
{
    uintptr_t addr = (uintptr_t)p;
    if (p == NULL)
        return EINVAL;
    bp_chunk *chunk = bp_chunk_map_lookup(addr);
    if (chunk == NULL || chunk->kind == BP_CHUNK_HUGE_FREED)
        return EINVAL;
    /* A huge block is registered at its first granule only, and a chunk smaller than the
     * granule leaves the rest of it unmapped: the address must lie inside the memory. */
    if (addr < chunk->base || addr - chunk->base >= chunk->map_size)
        return EINVAL;
    if (!__atomic_load_n(&chunk->region.known, __ATOMIC_RELAXED))
        return ENOENT;
    *id = chunk->region.id.id;
    *offset = chunk->region.id.offset + (addr - chunk->base);
    return 0;
}
