/* buf_region.c — bp_buf_region_of: where a buffer's readable bytes lie in a region (shared or
 * registered memory), through the public calls bp_buf_iov and bp_region_of. */
#include "bufpool.h"

#include <errno.h>
#include <sys/uio.h>

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
