/* buf_composite.c — composite buffers (parts appended without copying, consolidation), iovec
 * export and reservation for readv/writev, and search; all of it also works on contiguous
 * buffers, which count as one segment. */
#define _GNU_SOURCE /* IOV_MAX */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define NO_LIMIT (SIZE_MAX / 2)

bp_buf *bp_buf_composite(bp_pool *pool, unsigned max_parts)
{
    if (max_parts == 0 || max_parts > (1u << 20)) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *c = bp_buf_header_new(pool, 0);
    if (c == NULL)
        return NULL;
    c->parts = bp_alloc(pool, (size_t)max_parts * sizeof(bp_part));
    if (c->parts == NULL) {
        bp_free(c);
        return NULL;
    }
    c->flags = BP_BUF_COMPOSITE;
    c->mem = NULL;
    c->max_parts = max_parts;
    c->max_capacity = NO_LIMIT;
    bp_leak_track(c);
    return c;
}

/* Drops the references parts[from, to) hold. */
static void release_parts(bp_buf *c, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) {
        bp_buf_mem_release(c->parts[i].mem);
        bp_buf_release(c->parts[i].buf);
    }
}

void bp_buf_composite_free_parts(bp_buf *c)
{
    release_parts(c, 0, c->nparts);
    bp_free(c->parts);
    c->parts = NULL;
    c->nparts = 0;
}

unsigned bp_buf_part_count(const bp_buf *b)
{
    return (b->flags & BP_BUF_COMPOSITE) ? b->nparts : 1;
}

/* Adds [data, data + len) of contiguous buf (whose reference the composite takes) at the end,
 * with a reference on the memory those bytes lie in: while the composite holds it, buf's
 * owner sees the memory shared (bp_buf_discard_read gives BP_ESHARED, growth copies instead
 * of moving), so the bytes stay where the part points, as they were. */
static void add_part(bp_buf *c, bp_buf *buf, uint8_t *data, size_t len)
{
    bp_buf_mem_acquire(buf->mem);
    c->parts[c->nparts++] = (bp_part){buf, buf->mem, data, c->capacity, len};
    c->capacity += len;
}

int bp_buf_append(bp_buf *c, bp_buf *part)
{
    if (!(c->flags & BP_BUF_COMPOSITE) || (part->flags & BP_BUF_COMPOSITE) || part == c)
        return BP_EINVAL;
    if (c->nparts == c->max_parts)
        return BP_ECAP;
    size_t len = part->writer - part->reader;
    if (c->writer != c->capacity) {
        /* writable space at the end (from growth) would sit between old and new bytes */
        return BP_EINVAL;
    }
    if (len > c->max_capacity - c->capacity)
        return BP_ECAP;
    add_part(c, part, part->data + part->reader, len);
    c->writer += len;
    return BP_OK;
}

/* The part holding byte idx (idx < capacity), by binary search over the offsets. */
static uint32_t part_at(const bp_buf *c, size_t idx)
{
    uint32_t lo = 0, hi = c->nparts;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (c->parts[mid].offset <= idx)
            lo = mid;
        else
            hi = mid;
    }
    while (lo + 1 < c->nparts && c->parts[lo].len == 0)
        lo++;
    return lo;
}

void bp_buf_composite_copy_out(const bp_buf *c, size_t idx, void *dst, size_t n)
{
    uint8_t *out = dst;
    for (uint32_t i = n ? part_at(c, idx) : 0; n > 0; i++) {
        const bp_part *p = &c->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(n, p->len - off);
        memmove(out, p->data + off, take);
        out += take;
        idx += take;
        n -= take;
    }
}

int bp_buf_composite_copy_in(bp_buf *c, size_t idx, const void *src, size_t n)
{
    if (n == 0)
        return BP_OK;
    uint32_t first = part_at(c, idx);
    /* check every part first: a failed call writes nothing */
    size_t at = idx, left = n;
    for (uint32_t i = first; left > 0; i++) {
        const bp_part *p = &c->parts[i];
        if (p->buf->flags & BP_RDONLY)
            return BP_ERDONLY;
        size_t take = BP_MIN(left, p->len - (at - p->offset));
        at += take;
        left -= take;
    }
    const uint8_t *in = src;
    for (uint32_t i = first; n > 0; i++) {
        bp_part *p = &c->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(n, p->len - off);
        memmove(p->data + off, in, take);
        in += take;
        idx += take;
        n -= take;
    }
    return BP_OK;
}

/* Growth adds a part of new pooled memory at the end. */
int bp_buf_composite_grow(bp_buf *c, size_t min_capacity)
{
    if (c->nparts == c->max_parts)
        return BP_ECAP;
    size_t add = min_capacity - c->capacity;
    bp_buf *part = bp_buf_new(c->pool, add, add);
    if (part == NULL)
        return BP_ENOMEM;
    add_part(c, part, part->data, add);
    return BP_OK;
}

/* Parts read to their end are released; the rest move to the front. A view's maximum
 * capacity moves down with its capacity: it never grows. */
int bp_buf_composite_discard_read(bp_buf *c)
{
    uint32_t drop = 0;
    while (drop < c->nparts && c->parts[drop].offset + c->parts[drop].len <= c->reader)
        drop++;
    release_parts(c, 0, drop);
    size_t shift = drop < c->nparts ? c->parts[drop].offset : c->capacity;
    memmove(c->parts, c->parts + drop, (c->nparts - drop) * sizeof(bp_part));
    c->nparts -= drop;
    for (uint32_t i = 0; i < c->nparts; i++)
        c->parts[i].offset -= shift;
    c->capacity -= shift;
    if (c->flags & BP_BUF_VIEW)
        c->max_capacity -= shift;
    c->reader -= shift;
    c->writer -= shift;
    return BP_OK;
}

bp_buf *bp_buf_composite_slice(bp_buf *c, size_t idx, size_t len, unsigned flags)
{
    bp_buf *s = bp_buf_composite(c->pool, c->nparts ? c->nparts : 1);
    if (s == NULL)
        return NULL;
    for (uint32_t i = len ? part_at(c, idx) : c->nparts; len > 0; i++) {
        bp_part *p = &c->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(len, p->len - off);
        bp_buf *v = bp_buf_view_mem(c->pool, p->mem, p->data + off, take, p->buf->flags | flags);
        if (v == NULL) {
            bp_buf_release(s);
            return NULL;
        }
        add_part(s, v, v->data, take);
        idx += take;
        len -= take;
    }
    s->writer = s->capacity;
    s->max_capacity = s->capacity;
    s->flags |= BP_BUF_VIEW | ((c->flags | flags) & BP_RDONLY);
    return s;
}

int bp_buf_consolidate(bp_buf *c)
{
    if (!(c->flags & BP_BUF_COMPOSITE))
        return BP_EINVAL;
    if (c->nparts <= 1)
        return BP_OK;
    bp_buf *one = bp_buf_new(c->pool, c->capacity, c->capacity);
    if (one == NULL)
        return BP_ENOMEM;
    bp_buf_composite_copy_out(c, 0, one->data, c->capacity);
    one->writer = c->capacity;
    release_parts(c, 0, c->nparts);
    c->nparts = 0;
    size_t capacity = c->capacity;
    c->capacity = 0;
    add_part(c, one, one->data, capacity);
    return BP_OK;
}

/* ---- segments: a contiguous buffer is one ----------------------------------------------- */

typedef struct segment {
    uint8_t *data;
    size_t offset, len;
} segment;

static uint32_t segment_count(const bp_buf *b)
{
    return (b->flags & BP_BUF_COMPOSITE) ? b->nparts : 1;
}

static segment segment_get(const bp_buf *b, uint32_t i)
{
    if (!(b->flags & BP_BUF_COMPOSITE))
        return (segment){b->data, 0, b->capacity};
    return (segment){b->parts[i].data, b->parts[i].offset, b->parts[i].len};
}

static uint32_t segment_at(const bp_buf *b, size_t idx)
{
    return (b->flags & BP_BUF_COMPOSITE) && b->nparts > 0 ? part_at(b, idx) : 0;
}

int bp_buf_iov(const bp_buf *b, size_t off, size_t len, struct iovec *iov, int max, size_t *covered)
{
    if (max <= 0 || max > IOV_MAX)
        return BP_EINVAL;
    if (off > b->capacity || len > b->capacity - off)
        return BP_EBOUNDS;
    int n = 0;
    size_t done = 0;
    for (uint32_t i = len ? segment_at(b, off) : segment_count(b); done < len && n < max; i++) {
        segment s = segment_get(b, i);
        size_t start = off + done - s.offset, take = BP_MIN(len - done, s.len - start);
        if (take == 0)
            continue;
        iov[n].iov_base = s.data + start;
        iov[n].iov_len = take;
        n++;
        done += take;
    }
    if (covered != NULL)
        *covered = done;
    return n;
}

int bp_buf_reserve_iov(bp_buf *b, size_t n, struct iovec *iov, int max)
{
    if (max <= 0 || max > IOV_MAX) /* before anything grows: a failed call changes nothing */
        return BP_EINVAL;
    int err = bp_buf_ensure_writable(b, n);
    if (err != BP_OK)
        return err;
    return bp_buf_iov(b, b->writer, b->capacity - b->writer, iov, max, NULL);
}

int bp_buf_commit(bp_buf *b, size_t n)
{
    if (n > b->capacity - b->writer)
        return BP_EBOUNDS;
    if (b->flags & BP_RDONLY)
        return BP_ERDONLY;
    b->writer += n;
    return BP_OK;
}

ssize_t bp_buf_readv_fd(bp_buf *b, int fd, size_t max)
{
    struct iovec iov[64];
    /* into the writable bytes there are; only a full buffer grows, as one more byte would */
    int n = bp_buf_reserve_iov(b, 1, iov, 64);
    if (n < 0)
        return n;
    size_t want = max ? max : SIZE_MAX, total = 0;
    int used = 0;
    for (; used < n && total < want; used++) { /* read no more than asked */
        if (iov[used].iov_len > want - total)
            iov[used].iov_len = want - total;
        total += iov[used].iov_len;
    }
    ssize_t r = readv(fd, iov, used);
    if (r < 0)
        return BP_EIO;
    b->writer += (size_t)r;
    return r;
}

/* The descriptor this thread last found to be no socket (sendmsg said ENOTSOCK), written
 * with writev from then on without a failed sendmsg first; -1: none yet. */
static __thread int not_socket_fd = -1;

/* A socket is written with MSG_NOSIGNAL: a peer that has gone is EPIPE, not SIGPIPE. */
static ssize_t gather_write(int fd, struct iovec *iov, int n)
{
    if (fd != not_socket_fd) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w >= 0 || errno != ENOTSOCK)
            return w;
        not_socket_fd = fd;
    }
    return writev(fd, iov, n);
}

ssize_t bp_buf_writev_fd(bp_buf *b, int fd, size_t max)
{
    struct iovec iov[64];
    size_t len = b->writer - b->reader;
    if (max != 0 && max < len)
        len = max;
    int n = bp_buf_iov(b, b->reader, len, iov, 64, NULL);
    if (n < 0)
        return n;
    ssize_t w = gather_write(fd, iov, n);
    if (w < 0)
        return BP_EIO;
    b->reader += (size_t)w;
    return w;
}

/* ---- search ----------------------------------------------------------------------------- */

int bp_buf_index_of(const bp_buf *b, size_t from, size_t to, uint8_t byte, size_t *pos)
{
    if (to > b->writer)
        to = b->writer;
    if (from >= to)
        return BP_NOTFOUND;
    for (uint32_t i = segment_at(b, from); from < to; i++) {
        segment s = segment_get(b, i);
        size_t start = from - s.offset, take = BP_MIN(to - from, s.len - start);
        const uint8_t *hit = take ? memchr(s.data + start, byte, take) : NULL;
        if (hit != NULL) {
            *pos = s.offset + (size_t)(hit - s.data);
            return BP_OK;
        }
        from += take;
    }
    return BP_NOTFOUND;
}

int bp_buf_find(const bp_buf *b, size_t from, const void *needle, size_t n, size_t *pos)
{
    const uint8_t *nd = needle;
    if (n == 0) {
        if (from > b->writer)
            return BP_NOTFOUND;
        *pos = from;
        return BP_OK;
    }
    uint8_t window[256];
    while (from + n <= b->writer) {
        size_t at;
        if (bp_buf_index_of(b, from, b->writer - n + 1, nd[0], &at) != BP_OK)
            return BP_NOTFOUND;
        /* compare in pieces: the match may span parts */
        bool match = true;
        for (size_t done = 0; done < n && match; done += sizeof window) {
            size_t take = BP_MIN(n - done, sizeof window);
            bp_buf_get_bytes(b, at + done, window, take);
            match = memcmp(window, nd + done, take) == 0;
        }
        if (match) {
            *pos = at;
            return BP_OK;
        }
        from = at + 1;
    }
    return BP_NOTFOUND;
}
