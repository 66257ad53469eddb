/* region.c — where a block's memory lies: the region its OS layer's region_add gave its
 * chunk (or huge block), and the offset there, found from the chunk map. */
#include "internal.h"

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
    if (!chunk->has_region)
        return ENOENT;
    *id = chunk->region.id;
    *offset = chunk->region.offset + (addr - chunk->base);
    return 0;
}

/* Through the public calls: bp_buf_iov names the memory of the readable bytes' first part,
 * whatever kind of buffer b is. */
int bp_buf_region_of(const struct bp_buf *b, uint32_t *id, uint64_t *offset, size_t *len)
{
    if (b == NULL || bp_buf_readable(b) == 0)
        return EINVAL;
    struct iovec iov;
    if (bp_buf_iov(b, bp_buf_reader_index(b), bp_buf_readable(b), &iov, 1, NULL) != 1)
        return EINVAL;
    int err = bp_region_of(iov.iov_base, id, offset);
    /* Past the first granule of a huge block: from index 0 of a contiguous buffer, which
     * lies in the same block (a fresh buffer's data starts in the block's first bytes). */
    uint8_t *at = iov.iov_base;
    if (err == EINVAL && b->data != NULL && at >= b->data &&
        bp_region_of(b->data, id, offset) == 0) {
        *offset += (uint64_t)(at - b->data);
        err = 0;
    }
    if (err == 0)
        *len = iov.iov_len;
    return err;
}
