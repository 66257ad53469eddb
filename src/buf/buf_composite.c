/* buf_composite.c — composite buffers (parts appended and prepended without copying, slices
 * of other buffers taken as parts, consolidation past a part count), copies between buffers,
 * iovec export and reservation for readv/writev, and search; all of it also works on
 * contiguous buffers, which count as one segment. */
#define _GNU_SOURCE /* IOV_MAX */
#include "buf_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define NO_LIMIT BP_BUF_NO_LIMIT

/* A composite's extension (c is one). */
static bp_buf_ext *cx(const bp_buf *c)
{
    return c->more.ext;
}

/* The part holding byte idx (idx < capacity), by binary search over the offsets. */
static uint32_t part_at(const bp_buf *c, size_t idx)
{
    const bp_buf_ext *x = cx(c);
    uint32_t lo = 0, hi = x->nparts;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (x->parts[mid].offset <= idx)
            lo = mid;
        else
            hi = mid;
    }
    while (lo + 1 < x->nparts && x->parts[lo].len == 0)
        lo++;
    return lo;
}

bp_buf *bp_buf_composite(bp_pool *pool, unsigned max_parts)
{
    if (max_parts > (1u << 20)) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *c = bp_buf_header_new(pool, 0, BP_BUF_EXT | BP_BUF_COMPOSITE, NO_LIMIT);
    if (c == NULL)
        return NULL;
    bp_buf_ext *x = cx(c);
    c->data = NULL;
    x->mem = NULL;
    x->max_parts = max_parts ? max_parts : BP_NO_PART_LIMIT;
    x->consolidate_at = BP_CONSOLIDATE_DEFAULT;
    bp_leak_track(pool, c);
    return c;
}

int bp_buf_set_consolidate_at(bp_buf *c, unsigned parts)
{
    if (!bp_buf_is_composite(c) || (bp_buf_flags(c) & BP_BUF_VIEW) || parts > UINT16_MAX)
        return BP_EINVAL;
    cx(c)->consolidate_at = (uint16_t)parts;
    return BP_OK;
}

/* Room in the parts array for `count` parts (count <= max_parts), which doubles as it fills
 * (from 4, or from a max_parts of up to 16 at once: the composite was sized by its maker): a
 * composite of few parts costs little, one of many no more than twice its parts. BP_ENOMEM
 * leaves it as it was. */
static int reserve_parts(bp_buf *c, uint32_t count)
{
    bp_buf_ext *x = cx(c);
    if (count <= x->parts_cap)
        return BP_OK;
    uint32_t cap = x->parts_cap ? x->parts_cap : x->max_parts <= 16 ? x->max_parts : 4;
    while (cap < count)
        cap *= 2;
    cap = BP_MIN(cap, BP_MAX(x->max_parts, count));
    bp_part *parts = bp_realloc(bp_buf_pool(c), x->parts, (size_t)cap * sizeof(bp_part));
    if (parts == NULL)
        return BP_ENOMEM;
    x->parts = parts;
    x->parts_cap = cap;
    return BP_OK;
}

/* Drops the references parts[from, to) hold. */
static void release_parts(bp_buf *c, uint32_t from, uint32_t to)
{
    bp_part *parts = cx(c)->parts;
    for (uint32_t i = from; i < to; i++) {
        if (parts[i].mem != NULL)
            bp_buf_mem_release(parts[i].mem);
        bp_buf_release(parts[i].buf);
    }
}

bp_mem *bp_buf_part_mem(bp_part *p)
{
    if (p->mem == NULL)
        p->mem = bp_buf_mem_ref(p->buf); /* the buffer is still plain: nobody else has it */
    return p->mem;
}

/* Whether a part of buf, whose reference the composite takes, needs a reference on buf's
 * memory: not when that reference is buf's only one. Then nobody else can grow, move or free
 * buf's bytes while the composite holds buf (views of them hold the memory themselves), and
 * the part costs no extension for a plain buffer and no atomic for any. */
static bool part_needs_mem(const bp_buf *buf)
{
    return (__atomic_load_n(&buf->state, __ATOMIC_RELAXED) & BP_BUF_REFS_MASK) != 1;
}

void bp_buf_composite_free_parts(bp_buf *c)
{
    bp_buf_ext *x = cx(c);
    release_parts(c, 0, x->nparts);
    bp_free(x->parts);
    x->parts = NULL;
    x->nparts = 0;
    x->parts_cap = 0;
}

unsigned bp_buf_part_count(const bp_buf *b)
{
    return bp_buf_is_composite(b) ? cx(b)->nparts : 1;
}

/* Adds [data, data + len) of contiguous buf (whose reference the composite takes) at the end,
 * with a reference on the memory those bytes lie in: while the composite holds it, buf's
 * owner sees the memory shared (bp_buf_discard_read gives BP_ESHARED, growth copies instead
 * of moving), so the bytes stay where the part points, as they were. The parts array has
 * room (reserve_parts). */
static int add_part(bp_buf *c, bp_buf *buf, uint8_t *data, size_t len)
{
    bp_mem *m = NULL;
    if (part_needs_mem(buf)) {
        m = bp_buf_mem_ref(buf); /* a plain buffer gets its extension: refused, ENOMEM */
        if (m == NULL)
            return BP_ENOMEM;
    }
    bp_buf_ext *x = cx(c);
    bp_assert(x->nparts < x->parts_cap);
    x->parts[x->nparts++] = (bp_part){buf, m, data, x->capacity, len};
    x->capacity += len;
    return BP_OK;
}

/* Whether c, with `count` parts, is to be copied into one (its consolidation threshold). */
static bool past_threshold(const bp_buf *c, uint64_t count)
{
    uint16_t at = cx(c)->consolidate_at;
    return at != 0 && count > at;
}

/* Replaces c's parts by one new buffer of `capacity` bytes that holds, in order, front's
 * readable bytes, c's bytes [from, c's capacity), then back's readable bytes (front and
 * back may be NULL; capacity is at least all of them): Netty's consolidation, one copy. c's
 * indexes are the caller's to move. BP_ENOMEM leaves c as it was. */
static int copy_into_one(bp_buf *c, size_t from, const bp_buf *front, const bp_buf *back,
                         size_t capacity)
{
    bp_buf_ext *x = cx(c);
    size_t front_len = front ? front->writer - front->reader : 0;
    size_t middle = x->capacity - from, back_len = back ? back->writer - back->reader : 0;
    bp_assert(capacity >= front_len + middle + back_len);
    bp_buf *one = bp_buf_new(bp_buf_pool(c), capacity, capacity);
    if (one == NULL)
        return BP_ENOMEM;
    /* now, so that add_part below cannot fail */
    if (bp_buf_ext_get(one) == NULL || reserve_parts(c, 1) != BP_OK) {
        bp_buf_release(one);
        return BP_ENOMEM;
    }
    if (front_len > 0)
        bp_buf_get_bytes(front, front->reader, one->data, front_len);
    if (middle > 0)
        bp_buf_composite_copy_out(c, from, one->data + front_len, middle);
    if (back_len > 0)
        bp_buf_get_bytes(back, back->reader, one->data + front_len + middle, back_len);
    one->writer = capacity;
    release_parts(c, 0, x->nparts);
    x->nparts = 0;
    x->capacity = 0;
    int err = add_part(c, one, one->data, capacity);
    bp_assert(err == BP_OK);
    return err;
}

/* Appending needs: no writable bytes at the end (they would sit between the old bytes and
 * the new), the part count and the maximum capacity. */
static int check_append(const bp_buf *c, size_t len)
{
    const bp_buf_ext *x = cx(c);
    if (c->writer != x->capacity)
        return BP_EINVAL;
    if (len > x->max_capacity - x->capacity)
        return BP_ECAP;
    return BP_OK;
}

int bp_buf_append(bp_buf *c, bp_buf *part)
{
    if (!bp_buf_is_composite(c) || bp_buf_is_composite(part) || part == c)
        return BP_EINVAL;
    bp_buf_ext *x = cx(c);
    size_t len = part->writer - part->reader;
    int err = check_append(c, len);
    if (err != BP_OK)
        return err;
    if (past_threshold(c, (uint64_t)x->nparts + 1)) {
        err = copy_into_one(c, 0, NULL, part, x->capacity + len);
        if (err == BP_OK) {
            bp_buf_release(part); /* its bytes were copied; the reference was handed over */
            c->writer += len;
        }
        return err;
    }
    if (x->nparts >= x->max_parts)
        return BP_ECAP;
    err = reserve_parts(c, x->nparts + 1);
    if (err == BP_OK)
        err = add_part(c, part, part->data + part->reader, len);
    if (err == BP_OK)
        c->writer += len;
    return err;
}

/* Moves the parts of composite s (a slice: each part a view, s holds their references) to
 * the end of c, which takes their references over; s goes. Past c's threshold the bytes are
 * copied into one part instead. Nothing changes on failure (s stays the caller's then). */
static int take_parts(bp_buf *c, bp_buf *s)
{
    bp_buf_ext *x = cx(c), *sx = cx(s);
    size_t len = s->writer - s->reader;
    int err = check_append(c, len);
    if (err != BP_OK)
        return err;
    uint64_t count = (uint64_t)x->nparts + sx->nparts;
    if (past_threshold(c, count)) {
        err = copy_into_one(c, 0, NULL, s, x->capacity + len);
    } else if (count > x->max_parts) {
        err = BP_ECAP;
    } else {
        err = reserve_parts(c, (uint32_t)count);
        if (err == BP_OK) {
            for (uint32_t i = 0; i < sx->nparts; i++) {
                bp_part p = sx->parts[i];
                p.offset = x->capacity;
                x->capacity += p.len;
                x->parts[x->nparts++] = p;
            }
            sx->nparts = 0; /* the references are c's now */
        }
    }
    if (err != BP_OK)
        return err;
    c->writer += len;
    bp_buf_release(s);
    return BP_OK;
}

int bp_buf_append_slice(bp_buf *c, bp_buf *src, size_t n)
{
    if (!bp_buf_is_composite(c) || src == c)
        return BP_EINVAL;
    if (n > src->writer - src->reader)
        return BP_EBOUNDS;
    int err = check_append(c, n);
    if (err != BP_OK || n == 0)
        return err;
    bp_buf *s = bp_buf_slice(src, src->reader, n, 0);
    if (s == NULL)
        return BP_ENOMEM;
    err = bp_buf_is_composite(s) ? take_parts(c, s) : bp_buf_append(c, s);
    if (err != BP_OK) {
        bp_buf_release(s);
        return err;
    }
    src->reader += n;
    return BP_OK;
}

/* Drops c's bytes below its reader index without copying: the parts read to their end go,
 * the one the reader index lies in is cut at it; both indexes move down to match. */
static void drop_read_bytes(bp_buf *c)
{
    bp_buf_composite_discard_read(c);
    bp_buf_ext *x = cx(c);
    size_t cut = c->reader;
    if (cut == 0)
        return;
    bp_assert(x->nparts > 0 && x->parts[0].offset == 0 && cut < x->parts[0].len);
    x->parts[0].data += cut;
    x->parts[0].len -= cut;
    for (uint32_t i = 1; i < x->nparts; i++)
        x->parts[i].offset -= cut;
    x->capacity -= cut;
    c->reader = 0;
    c->writer -= cut;
}

int bp_buf_prepend_part(bp_buf *c, bp_buf *part)
{
    if (!bp_buf_is_composite(c) || bp_buf_is_composite(part) || part == c)
        return BP_EINVAL;
    bp_buf_ext *x = cx(c);
    if (bp_buf_flags(c) & BP_BUF_VIEW) /* a slice never grows */
        return BP_ECAP;
    size_t len = part->writer - part->reader, kept = x->capacity - c->reader;
    if (len > x->max_capacity - kept)
        return BP_ECAP;
    /* the parts that stay once the read bytes are dropped, then one more */
    uint32_t first = c->reader < x->capacity ? part_at(c, c->reader) : x->nparts;
    uint64_t count = (uint64_t)(x->nparts - first) + 1;
    int err;
    if (past_threshold(c, count)) {
        size_t readable = c->writer - c->reader;
        err = copy_into_one(c, c->reader, part, NULL, len + kept);
        if (err != BP_OK)
            return err;
        bp_buf_release(part); /* copied; the reference was handed over */
        c->reader = 0;
        c->writer = len + readable;
        return BP_OK;
    }
    if (count > x->max_parts)
        return BP_ECAP;
    err = reserve_parts(c, x->nparts + 1); /* before dropping: nothing changes on failure */
    if (err != BP_OK)
        return err;
    bp_mem *m = NULL;
    if (part_needs_mem(part) && (m = bp_buf_mem_ref(part)) == NULL)
        return BP_ENOMEM;
    drop_read_bytes(c);
    memmove(x->parts + 1, x->parts, x->nparts * sizeof(bp_part));
    x->nparts++;
    x->parts[0] = (bp_part){part, m, part->data + part->reader, 0, len};
    for (uint32_t i = 1; i < x->nparts; i++)
        x->parts[i].offset += len;
    x->capacity += len;
    c->writer += len;
    return BP_OK;
}

void bp_buf_composite_copy_out(const bp_buf *c, size_t idx, void *dst, size_t n)
{
    uint8_t *out = dst;
    for (uint32_t i = n ? part_at(c, idx) : 0; n > 0; i++) {
        const bp_part *p = &cx(c)->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(n, p->len - off);
        memmove(out, p->data + off, take);
        out += take;
        idx += take;
        n -= take;
    }
}

/* BP_ERDONLY when a read-only part holds any of [idx, idx + n) (inside the capacity). */
static int check_parts_writable(const bp_buf *c, size_t idx, size_t n)
{
    for (uint32_t i = n ? part_at(c, idx) : 0; n > 0; i++) {
        const bp_part *p = &cx(c)->parts[i];
        if (bp_buf_flags(p->buf) & BP_RDONLY)
            return BP_ERDONLY;
        size_t take = BP_MIN(n, p->len - (idx - p->offset));
        idx += take;
        n -= take;
    }
    return BP_OK;
}

int bp_buf_composite_copy_in(bp_buf *c, size_t idx, const void *src, size_t n)
{
    int err = check_parts_writable(c, idx, n); /* first: a failed call writes nothing */
    if (err != BP_OK || n == 0)
        return err;
    const uint8_t *in = src;
    for (uint32_t i = part_at(c, idx); n > 0; i++) {
        bp_part *p = &cx(c)->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(n, p->len - off);
        memmove(p->data + off, in, take);
        in += take;
        idx += take;
        n -= take;
    }
    return BP_OK;
}

/* Growth adds a part of new pooled memory at the end; past the threshold the composite is
 * copied into one part of the new capacity instead. */
int bp_buf_composite_grow(bp_buf *c, size_t min_capacity)
{
    bp_buf_ext *x = cx(c);
    if (past_threshold(c, (uint64_t)x->nparts + 1))
        return copy_into_one(c, 0, NULL, NULL, min_capacity);
    if (x->nparts >= x->max_parts)
        return BP_ECAP;
    if (reserve_parts(c, x->nparts + 1) != BP_OK)
        return BP_ENOMEM;
    size_t add = min_capacity - x->capacity;
    bp_buf *part = bp_buf_new(bp_buf_pool(c), add, add);
    if (part == NULL)
        return BP_ENOMEM;
    int err = add_part(c, part, part->data, add);
    if (err != BP_OK)
        bp_buf_release(part);
    return err;
}

/* Parts read to their end are released; the rest move to the front. A view's maximum
 * capacity moves down with its capacity: it never grows. */
int bp_buf_composite_discard_read(bp_buf *c)
{
    bp_buf_ext *x = cx(c);
    uint32_t drop = 0;
    while (drop < x->nparts && x->parts[drop].offset + x->parts[drop].len <= c->reader)
        drop++;
    release_parts(c, 0, drop);
    size_t shift = drop < x->nparts ? x->parts[drop].offset : x->capacity;
    memmove(x->parts, x->parts + drop, (x->nparts - drop) * sizeof(bp_part));
    x->nparts -= drop;
    for (uint32_t i = 0; i < x->nparts; i++)
        x->parts[i].offset -= shift;
    x->capacity -= shift;
    if (bp_buf_flags(c) & BP_BUF_VIEW)
        x->max_capacity -= shift;
    c->reader -= shift;
    c->writer -= shift;
    return BP_OK;
}

bp_buf *bp_buf_composite_slice(bp_buf *c, size_t idx, size_t len, unsigned flags)
{
    bp_pool *pool = bp_buf_pool(c);
    bp_buf_ext *x = cx(c);
    bp_buf *s = bp_buf_composite(pool, x->nparts ? x->nparts : 1);
    if (s == NULL)
        return NULL;
    cx(s)->consolidate_at = 0; /* a view of the parts: never copied */
    if (reserve_parts(s, x->nparts ? x->nparts : 1) != BP_OK) {
        bp_buf_release(s);
        errno = ENOMEM;
        return NULL;
    }
    for (uint32_t i = len ? part_at(c, idx) : x->nparts; len > 0; i++) {
        bp_part *p = &x->parts[i];
        size_t off = idx - p->offset, take = BP_MIN(len, p->len - off);
        bp_mem *m = bp_buf_part_mem(p);
        bp_buf *v = m == NULL ? NULL
                              : bp_buf_view_mem(pool, m, p->data + off, take,
                                                (bp_buf_flags(p->buf) | flags) & BP_RDONLY);
        if (v == NULL) {
            bp_buf_release(s);
            return NULL;
        }
        int err = add_part(s, v, v->data, take); /* v has its extension: no allocation */
        bp_assert(err == BP_OK);
        (void)err;
        idx += take;
        len -= take;
    }
    s->writer = cx(s)->capacity;
    cx(s)->max_capacity = cx(s)->capacity;
    bp_buf_add_flags(s, BP_BUF_VIEW | ((bp_buf_flags(c) | flags) & BP_RDONLY));
    return s;
}

int bp_buf_consolidate(bp_buf *c)
{
    if (!bp_buf_is_composite(c))
        return BP_EINVAL;
    bp_buf_ext *x = cx(c);
    if (x->nparts <= 1)
        return BP_OK;
    return copy_into_one(c, 0, NULL, NULL, x->capacity);
}

/* Copies in pieces of at most this many extents of src at a time. */
#define WRITE_BUF_EXTENTS 16

int bp_buf_write_buf(bp_buf *dst, bp_buf *src, size_t n)
{
    if (dst == src)
        return BP_EINVAL;
    if (n > src->writer - src->reader)
        return BP_EBOUNDS;
    int err = bp_buf_ensure_writable(dst, n);
    if (err == BP_OK && bp_buf_is_composite(dst))
        err = check_parts_writable(dst, dst->writer, n);
    if (err != BP_OK)
        return err;
    /* Growth above kept src's bytes where they were even when src views dst's memory (the
     * view holds the old memory), and set_bytes copies with memmove: the ranges may overlap
     * when dst views src's. */
    size_t done = 0;
    while (done < n) {
        struct iovec iov[WRITE_BUF_EXTENTS];
        size_t covered = 0;
        int count = bp_buf_iov(src, src->reader + done, n - done, iov, WRITE_BUF_EXTENTS, &covered);
        bp_assert(count > 0);
        for (int i = 0; i < count; i++) {
            err = bp_buf_set_bytes(dst, dst->writer + done, iov[i].iov_base, iov[i].iov_len);
            bp_assert(err == BP_OK); /* room and writability were checked above */
            done += iov[i].iov_len;
        }
    }
    dst->writer += n;
    src->reader += n;
    return BP_OK;
}

/* ---- segments: a contiguous buffer is one ----------------------------------------------- */

typedef struct segment {
    uint8_t *data;
    size_t offset, len;
} segment;

static uint32_t segment_count(const bp_buf *b)
{
    return bp_buf_is_composite(b) ? cx(b)->nparts : 1;
}

static segment segment_get(const bp_buf *b, uint32_t i)
{
    if (!bp_buf_is_composite(b))
        return (segment){b->data, 0, bp_buf_cap(b)};
    const bp_part *p = &cx(b)->parts[i];
    return (segment){p->data, p->offset, p->len};
}

static uint32_t segment_at(const bp_buf *b, size_t idx)
{
    return bp_buf_is_composite(b) && cx(b)->nparts > 0 ? part_at(b, idx) : 0;
}

int bp_buf_iov(const bp_buf *b, size_t off, size_t len, struct iovec *iov, int max, size_t *covered)
{
    if (max <= 0 || max > IOV_MAX)
        return BP_EINVAL;
    size_t capacity = bp_buf_cap(b);
    if (off > capacity || len > capacity - off)
        return BP_EBOUNDS;
    if (!bp_buf_is_composite(b)) { /* one segment: no walk */
        if (len > 0) {
            iov[0].iov_base = b->data + off;
            iov[0].iov_len = len;
        }
        if (covered != NULL)
            *covered = len;
        return len > 0;
    }
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
    return bp_buf_iov(b, b->writer, bp_buf_cap(b) - b->writer, iov, max, NULL);
}

int bp_buf_commit(bp_buf *b, size_t n)
{
    if (n > bp_buf_cap(b) - b->writer)
        return BP_EBOUNDS;
    if (bp_buf_flags(b) & BP_RDONLY)
        return BP_ERDONLY;
    b->writer += n;
    return BP_OK;
}

ssize_t bp_buf_read_room(bp_buf *b, int fd, size_t max, size_t *attempted)
{
    struct iovec iov[64];
    int n = bp_buf_iov(b, b->writer, bp_buf_cap(b) - b->writer, iov, 64, NULL);
    if (n < 0)
        return n;
    size_t want = max ? max : SIZE_MAX, total = 0;
    int used = 0;
    for (; used < n && total < want; used++) { /* read no more than asked */
        if (iov[used].iov_len > want - total)
            iov[used].iov_len = want - total;
        total += iov[used].iov_len;
    }
    *attempted = total;
    ssize_t r;
    do
        r = readv(fd, iov, used);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? BP_EAGAIN : BP_EIO;
    b->writer += (size_t)r;
    return r;
}

ssize_t bp_buf_readv_fd(bp_buf *b, int fd, size_t max)
{
    /* into the writable bytes there are; only a full buffer grows, as one more byte would */
    int err = bp_buf_ensure_writable(b, 1);
    if (err != BP_OK)
        return err;
    size_t attempted;
    return bp_buf_read_room(b, fd, max, &attempted);
}

/* The descriptor this thread last found to be no socket (sendmsg said ENOTSOCK), written
 * with writev from then on without a failed sendmsg first; -1: none yet. */
static __thread int not_socket_fd = -1;

/* writev with SIGPIPE blocked in this thread, so that a pipe whose reader has gone is EPIPE
 * and not the death of the process: a SIGPIPE the write raises is taken from the pending
 * set before the mask is restored. A thread that blocks SIGPIPE already is left alone (a
 * SIGPIPE pending then is the program's, and the write's merges with it); one that does not
 * has none pending (it would have been delivered), so the one taken is the write's. Two
 * system calls besides the write. */
static ssize_t writev_no_sigpipe(int fd, struct iovec *iov, int n)
{
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    bool ours = !sigismember(&old, SIGPIPE);
    ssize_t w = writev(fd, iov, n);
    int saved = errno;
    if (ours) {
        if (w < 0 && saved == EPIPE) {
            const struct timespec now = {0, 0};
            while (sigtimedwait(&pipe_only, NULL, &now) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    errno = saved;
    return w;
}

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
    return writev_no_sigpipe(fd, iov, n);
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
    ssize_t w;
    do
        w = gather_write(fd, iov, n);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? BP_EAGAIN : BP_EIO;
    b->reader += (size_t)w;
    /* a composite write queue lets the parts written go at once (errno is kept) */
    if (bp_buf_is_composite(b) && !(bp_buf_flags(b) & BP_RDONLY))
        bp_buf_composite_discard_read(b);
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
