/* buf.c — bp_buf: life cycle and reference counts, memory ownership and growth, indexes,
 * bytes in and out, views, and the exported copies of bufpool.h's inline buffer calls (layout
 * in bufpool.h, "Buffer fast paths (ABI)", and buf_internal.h). */
#define BP_EXPORT_BUF_FAST_PATHS 1 /* bufpool.h's inline buffer calls are defined here */
#include "buf_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#define NO_LIMIT BP_BUF_NO_LIMIT

const char *bp_strerror(int code)
{
    switch (code) {
    case BP_OK: return "success";
    case BP_EBOUNDS: return "index or length out of bounds";
    case BP_ENOMEM: return "out of memory";
    case BP_ECAP: return "maximum capacity reached";
    case BP_ERDONLY: return "read-only buffer";
    case BP_ESHARED: return "memory shared with views";
    case BP_EINVAL: return "invalid argument or encoding";
    case BP_EIO: return "system call failed (see errno)";
    case BP_EAGAIN: return "would block (see errno)";
    case BP_ETOOLONG: return "frame over its maximum";
    case BP_NOTFOUND: return "not found";
    case BP_NEED_MORE: return "no whole frame yet";
    case BP_SKIPPED: return "frame over its maximum dropped";
    default: return "unknown bufpool error";
    }
}

/* ---- memory and life cycle -------------------------------------------------------------- */

bp_pool *bp_buf_pool(const bp_buf *b)
{
    return bp_pool_of_block(b);
}

void bp_buf_mem_acquire(bp_mem *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
}

/* The header's block, and its extension when that has a block of its own. */
static void free_owner(bp_buf *owner)
{
    bp_buf_ext *x = owner->more.ext;
    if (x->detached)
        bp_free(x);
    bp_free(owner);
}

void bp_buf_mem_release(bp_mem *m)
{
    /* A count of 1 is ours alone: nobody else can change it, so no atomic is needed. */
    if (__atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) != 1 &&
        __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    switch (m->kind) {
    case BP_MEM_POOLED: bp_free(m); break;
    case BP_MEM_EXTERNAL:
        if (m->free_fn != NULL)
            m->free_fn(m->external, m->ud);
        free_owner(m->owner);
        break;
    default: free_owner(m->owner); break;
    }
}

static void ext_init(bp_buf_ext *x, bp_buf *owner, size_t capacity, size_t max)
{
    memset(x, 0, sizeof *x);
    x->capacity = capacity;
    x->max_capacity = max;
    x->mem = &x->self;
    x->self.refs = 1;
    x->self.kind = BP_MEM_INLINE;
    x->self.owner = owner;
}

bp_buf *bp_buf_header_new(bp_pool *pool, size_t inline_bytes, uint32_t flags, size_t max)
{
    size_t head = BP_BUF_HEADER + ((flags & BP_BUF_EXT) ? BP_BUF_EXT_SIZE : 0);
    if (inline_bytes > NO_LIMIT) {
        errno = ENOMEM;
        return NULL;
    }
    bp_buf *b = bp_alloc(pool, head + inline_bytes);
    if (b == NULL)
        return NULL;
    b->data = (uint8_t *)b + head;
    b->reader = b->writer = b->limit = 0;
    b->state = 1 | (uint64_t)flags << 32;
    if (flags & BP_BUF_EXT) {
        b->more.ext = (bp_buf_ext *)(void *)((uint8_t *)b + BP_BUF_HEADER);
        ext_init(b->more.ext, b, 0, max);
    } else {
        b->more.max_capacity = max;
    }
    return b;
}

bp_mem *bp_buf_mem_of(const bp_buf *b)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    if (x != NULL)
        return x->mem;
    if (bp_buf_flags(b) & BP_BUF_GROWN)
        return (bp_mem *)(void *)(b->data - BP_MEM_HEADER);
    return NULL;
}

bp_buf_ext *bp_buf_ext_get(bp_buf *b)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    if (x != NULL)
        return x;
    x = bp_alloc(bp_buf_pool(b), sizeof *x);
    if (x == NULL)
        return NULL;
    ext_init(x, b, b->limit, b->more.max_capacity);
    x->detached = true;
    if (bp_buf_flags(b) & BP_BUF_GROWN)
        x->mem = (bp_mem *)(void *)(b->data - BP_MEM_HEADER);
    b->more.ext = x;
    bp_buf_add_flags(b, BP_BUF_EXT);
    return x;
}

/* The memory a view of b would hold (b contiguous): a plain buffer gets its extension, whose
 * `self` then counts the views of the header's block. NULL (ENOMEM) when refused. */
static bp_mem *mem_for_view(bp_buf *b)
{
    bp_mem *m = bp_buf_mem_of(b);
    if (m != NULL)
        return m;
    bp_buf_ext *x = bp_buf_ext_get(b);
    return x != NULL ? x->mem : NULL;
}

bp_mem *bp_buf_mem_ref(bp_buf *b)
{
    bp_mem *m = mem_for_view(b);
    if (m != NULL)
        bp_buf_mem_acquire(m);
    return m;
}

bp_buf *bp_buf_new_slow(bp_pool *pool, size_t initial, size_t max)
{
    if (max == 0 || max > NO_LIMIT)
        max = NO_LIMIT;
    if (initial > max) {
        errno = EINVAL;
        return NULL;
    }
    /* the fields one by one, only those a plain buffer has */
    bp_buf *b = bp_alloc(pool, BP_BUF_HEADER + initial);
    if (b == NULL)
        return NULL;
    b->data = (uint8_t *)b + BP_BUF_HEADER;
    b->reader = b->writer = 0;
    b->limit = initial;
    b->state = 1;
    b->more.max_capacity = max;
    bp_leak_track(pool, b);
    return b;
}

bp_buf *bp_buf_new_headroom(bp_pool *pool, size_t headroom, size_t initial, size_t max)
{
    if (max == 0 || max > NO_LIMIT)
        max = NO_LIMIT;
    if (headroom > max || initial > max - headroom) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *b = bp_buf_new_slow(pool, headroom + initial, max);
    if (b != NULL)
        b->reader = b->writer = headroom;
    return b;
}

bp_buf *bp_buf_wrap(bp_pool *pool, void *mem, size_t cap, size_t len,
                    void (*free_fn)(void *mem, void *ud), void *ud, unsigned flags)
{
    if (len > cap || (mem == NULL && cap > 0) || cap > NO_LIMIT) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *b = bp_buf_header_new(pool, 0, BP_BUF_EXT | (flags & BP_RDONLY), cap);
    if (b == NULL)
        return NULL;
    bp_buf_ext *x = b->more.ext;
    x->self.kind = BP_MEM_EXTERNAL;
    x->self.free_fn = free_fn;
    x->self.ud = ud;
    x->self.external = mem;
    /* empty memory may be NULL; data never is (it stays at the header's end then), so no
     * zero-length copy sees a null pointer */
    if (mem != NULL)
        b->data = mem;
    bp_buf_set_cap(b, cap);
    b->writer = len;
    bp_leak_track(pool, b);
    return b;
}

bp_buf *bp_buf_retain(bp_buf *b)
{
    uint64_t before = __atomic_fetch_add(&b->state, 1, __ATOMIC_RELAXED);
    if (BP_CHECKED && (before & BP_BUF_REFS_MASK) == 0)
        bp_fatal("bp_buf_retain(%p): the buffer was already released", (void *)b);
    return b;
}

bool bp_buf_release_slow(bp_buf *b)
{
    /* A count of 1 is the caller's alone (nobody else holds a reference that could retain
     * it), so the sole owner's release needs no atomic read-modify-write. */
    uint64_t state = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
    if ((state & BP_BUF_REFS_MASK) != 1) {
        if (BP_CHECKED && (state & BP_BUF_REFS_MASK) == 0)
            bp_fatal("bp_buf_release(%p): release of a released buffer", (void *)b);
        state = __atomic_sub_fetch(&b->state, 1, __ATOMIC_ACQ_REL);
        if ((state & BP_BUF_REFS_MASK) != 0)
            return false;
    } else {
        state -= 1;
        __atomic_store_n(&b->state, state, __ATOMIC_RELAXED); /* a second release finds 0 */
    }
    uint32_t flags = (uint32_t)(state >> 32);
    if (!(flags & BP_BUF_EXT)) {
        if (flags & BP_BUF_GROWN)
            bp_buf_mem_release((bp_mem *)(void *)(b->data - BP_MEM_HEADER));
        bp_free(b);
        return true;
    }
    bp_buf_ext *x = b->more.ext;
    if (bp_unlikely(x->leak != NULL))
        bp_leak_untrack(b);
    if (flags & BP_BUF_COMPOSITE)
        bp_buf_composite_free_parts(b);
    else if (x->mem != &x->self)
        bp_buf_mem_release(x->mem);
    bp_buf_mem_release(&x->self); /* last: it may free this header */
    return true;
}

uint32_t bp_buf_refcnt(const bp_buf *b)
{
    return (uint32_t)(__atomic_load_n(&b->state, __ATOMIC_RELAXED) & BP_BUF_REFS_MASK);
}

/* ---- indexes ---------------------------------------------------------------------------- */

size_t bp_buf_capacity(const bp_buf *b)
{
    return bp_buf_cap(b);
}
size_t bp_buf_max_capacity(const bp_buf *b)
{
    return bp_buf_max(b);
}
bool bp_buf_is_readonly(const bp_buf *b)
{
    return (bp_buf_flags(b) & BP_RDONLY) != 0;
}

/* Bytes the memory under data holds from data on, whatever the capacity says. */
static size_t room(const bp_buf *b)
{
    if (bp_buf_is_composite(b))
        return bp_buf_cap(b);
    const bp_mem *m = bp_buf_mem_of(b);
    const uint8_t *block = (const uint8_t *)b; /* a plain buffer's own block */
    if (m != NULL && m->kind == BP_MEM_POOLED)
        block = (const uint8_t *)m;
    else if (m != NULL && m->kind == BP_MEM_INLINE)
        block = (const uint8_t *)m->owner;
    else if (m != NULL)
        return bp_buf_cap(b); /* wrapped memory: what the caller gave */
    return bp_usable_size(block) - (size_t)(b->data - block);
}

size_t bp_buf_fast_writable(const bp_buf *b)
{
    size_t capacity = bp_buf_cap(b), max = bp_buf_max(b);
    if (max == capacity) /* views, wrapped memory */
        return capacity - b->writer;
    return BP_MIN(room(b), max) - b->writer;
}

int bp_buf_set_index(bp_buf *b, size_t reader, size_t writer)
{
    if (reader > writer || writer > bp_buf_cap(b))
        return BP_EBOUNDS;
    b->reader = reader;
    b->writer = writer;
    return BP_OK;
}

void bp_buf_mark(const bp_buf *b, bp_mark *m)
{
    m->reader = b->reader;
    m->writer = b->writer;
}

int bp_buf_reset(bp_buf *b, const bp_mark *m)
{
    return bp_buf_set_index(b, m->reader, m->writer);
}

void bp_buf_clear(bp_buf *b)
{
    b->reader = b->writer = 0;
}

int bp_buf_discard_read(bp_buf *b)
{
    if (bp_buf_flags(b) & BP_RDONLY)
        return BP_ERDONLY;
    if (b->reader == 0)
        return BP_OK;
    if (bp_buf_is_composite(b))
        return bp_buf_composite_discard_read(b);
    const bp_mem *m = bp_buf_mem_of(b);
    if (m != NULL && __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) > 1)
        return BP_ESHARED;
    memmove(b->data, b->data + b->reader, b->writer - b->reader);
    b->writer -= b->reader;
    b->reader = 0;
    return BP_OK;
}

/* Netty's rule: double from 64 B up to 4 MiB, then 4 MiB steps; never past max. */
size_t bp_buf_grow_capacity(size_t min_capacity, size_t max_capacity)
{
    const size_t step = (size_t)4 << 20;
    if (min_capacity > step) {
        size_t cap = min_capacity / step * step;
        return cap > max_capacity - step ? max_capacity : cap + step;
    }
    size_t cap = 64;
    while (cap < min_capacity)
        cap <<= 1;
    return BP_MIN(cap, max_capacity);
}

/* Copies all of b's bytes, [0, capacity), `front` bytes into new pooled memory of
 * new_capacity bytes, which b then uses; the old memory stays for the views and composites
 * that look at it. */
static int move_to_new_memory(bp_buf *b, size_t new_capacity, size_t front)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    bp_mem *old = bp_buf_mem_of(b); /* NULL: the header's own block, nobody else's */
    bp_mem *m = bp_alloc(bp_buf_pool(b), BP_MEM_HEADER + new_capacity);
    if (m == NULL)
        return BP_ENOMEM;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->kind = BP_MEM_POOLED;
    memcpy((uint8_t *)m + BP_MEM_HEADER + front, b->data, bp_buf_cap(b));
    if (x != NULL)
        x->mem = m;
    else
        bp_buf_add_flags(b, BP_BUF_GROWN);
    b->data = (uint8_t *)m + BP_MEM_HEADER;
    bp_buf_set_cap(b, new_capacity);
    if (old != NULL && (x == NULL || old != &x->self))
        bp_buf_mem_release(old);
    return BP_OK;
}

/* Moves the bytes to memory that holds new_capacity, unless the memory they are in already
 * does. All of [0, capacity) moves, not only what the writer index covers: bytes set past it
 * or read into reserved extents wait for bp_buf_commit. The old memory stays for views and
 * composites that look at it. */
static int grow_contiguous(bp_buf *b, size_t new_capacity)
{
    if (room(b) >= new_capacity) {
        bp_unpoison(b->data, new_capacity); /* ASan builds: the block's slack comes into use */
        bp_buf_set_cap(b, new_capacity);
        return BP_OK;
    }
    bp_pool *pool = bp_buf_pool(b);
    bp_buf_ext *x = bp_buf_ext_of(b);
    bp_mem *old = bp_buf_mem_of(b); /* NULL: the header's own block, nobody else's */
    if (old != NULL && old->kind == BP_MEM_POOLED &&
        __atomic_load_n(&old->refs, __ATOMIC_ACQUIRE) == 1) {
        bp_mem *m = bp_realloc(pool, old, BP_MEM_HEADER + new_capacity);
        if (m == NULL)
            return BP_ENOMEM;
        if (x != NULL)
            x->mem = m;
        b->data = (uint8_t *)m + BP_MEM_HEADER;
        bp_buf_set_cap(b, new_capacity);
        return BP_OK;
    }
    return move_to_new_memory(b, new_capacity, 0);
}

/* Room for `front` more bytes in front of all of b's (contiguous, writable) bytes, with both
 * indexes moved up over it: one move in place when the memory is b's alone and large
 * enough, else one copy to new memory (the old stays for those who share it). */
static int grow_front(bp_buf *b, size_t front)
{
    size_t capacity = bp_buf_cap(b), new_capacity = capacity + front;
    const bp_mem *m = bp_buf_mem_of(b); /* NULL: the header's own block, nobody else's */
    bool alone = m == NULL || __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) == 1;
    if (alone && room(b) >= new_capacity) {
        bp_unpoison(b->data, new_capacity);
        memmove(b->data + front, b->data, capacity);
        bp_buf_set_cap(b, new_capacity);
    } else {
        int err = move_to_new_memory(b, new_capacity, front);
        if (err != BP_OK)
            return err;
    }
    b->reader += front;
    b->writer += front;
    return BP_OK;
}

int bp_buf_ensure_writable(bp_buf *b, size_t n)
{
    uint32_t flags = bp_buf_flags(b);
    if (flags & BP_RDONLY) /* room or not: readv must not get extents of a read-only one */
        return BP_ERDONLY;
    size_t capacity = bp_buf_cap(b), max = bp_buf_max(b);
    if (bp_likely(n <= capacity - b->writer))
        return BP_OK;
    if (n > max - b->writer)
        return BP_ECAP;
    size_t new_capacity = bp_buf_grow_capacity(b->writer + n, max);
    if (flags & BP_BUF_COMPOSITE)
        return bp_buf_composite_grow(b, new_capacity);
    return grow_contiguous(b, new_capacity);
}

/* ---- the exported copies of bufpool.h's inline calls (the typed ones come with the header
 * itself, BP_EXPORT_BUF_FAST_PATHS making them external definitions here) --------------- */

size_t bp_buf_readable(const bp_buf *b)
{
    return bp_buf_fastpath_readable(b);
}
size_t bp_buf_writable(const bp_buf *b)
{
    return bp_buf_fastpath_writable(b);
}
int bp_buf_read_bytes(bp_buf *b, void *dst, size_t n)
{
    return bp_buf_fastpath_read_bytes(b, dst, n);
}
int bp_buf_write_bytes(bp_buf *b, const void *src, size_t n)
{
    return bp_buf_fastpath_write_bytes(b, src, n);
}
bool bp_buf_release(bp_buf *b)
{
    return bp_buf_fastpath_release(b);
}
bp_buf *bp_buf_new(bp_pool *pool, size_t initial, size_t max)
{
    return bp_buf_fastpath_new(pool, initial, max);
}
size_t bp_buf_peek(const bp_buf *b, const uint8_t **p)
{
    return bp_buf_fastpath_peek(b, p);
}
size_t bp_buf_reader_index(const bp_buf *b)
{
    return b->reader;
}
size_t bp_buf_writer_index(const bp_buf *b)
{
    return b->writer;
}
int bp_buf_skip(bp_buf *b, size_t n)
{
    return bp_buf_fastpath_skip(b, n);
}

size_t bp_buf_peek_slow(const bp_buf *b, const uint8_t **p)
{
    struct iovec first;
    size_t covered = 0;
    *p = NULL;
    if (b->writer == b->reader ||
        bp_buf_iov(b, b->reader, b->writer - b->reader, &first, 1, &covered) != 1)
        return 0;
    *p = first.iov_base;
    return covered;
}

/* ---- bytes ------------------------------------------------------------------------------ */

/* Both copies accept NULL for zero bytes, and a source or destination inside b itself
 * (memmove: a range of b copied over an overlapping one). */
static void copy_out(const bp_buf *b, size_t idx, void *dst, size_t n)
{
    if (n == 0)
        return;
    if (bp_likely(b->data != NULL))
        memmove(dst, b->data + idx, n);
    else
        bp_buf_composite_copy_out(b, idx, dst, n);
}

static int copy_in(bp_buf *b, size_t idx, const void *src, size_t n)
{
    if (bp_buf_flags(b) & BP_RDONLY)
        return BP_ERDONLY;
    if (n == 0)
        return BP_OK;
    if (bp_likely(b->data != NULL)) {
        memmove(b->data + idx, src, n);
        return BP_OK;
    }
    return bp_buf_composite_copy_in(b, idx, src, n);
}

/* Where [src, src + n) lies inside the bytes of contiguous b, or SIZE_MAX when it does not:
 * growth may move those bytes and free the memory they were in. */
static size_t offset_inside(const bp_buf *b, const void *src, size_t n)
{
    uintptr_t at = (uintptr_t)src, start = (uintptr_t)b->data;
    size_t capacity = bp_buf_cap(b);
    if (b->data == NULL || at < start || at - start > capacity || n > capacity - (at - start))
        return SIZE_MAX;
    return at - start;
}

int bp_buf_get_bytes(const bp_buf *b, size_t idx, void *dst, size_t n)
{
    if (idx > b->writer || n > b->writer - idx)
        return BP_EBOUNDS;
    copy_out(b, idx, dst, n);
    return BP_OK;
}

int bp_buf_set_bytes(bp_buf *b, size_t idx, const void *src, size_t n)
{
    size_t capacity = bp_buf_cap(b);
    if (idx > capacity || n > capacity - idx)
        return BP_EBOUNDS;
    return copy_in(b, idx, src, n);
}

int bp_buf_read_slow(bp_buf *b, void *dst, size_t n)
{
    if (n > b->writer - b->reader)
        return BP_EBOUNDS;
    copy_out(b, b->reader, dst, n);
    b->reader += n;
    return BP_OK;
}

int bp_buf_write_slow(bp_buf *b, const void *src, size_t n)
{
    size_t inside = n > bp_buf_cap(b) - b->writer ? offset_inside(b, src, n) : SIZE_MAX;
    int err = bp_buf_ensure_writable(b, n);
    if (err == BP_OK && inside != SIZE_MAX)
        src = b->data + inside; /* the bytes moved with the rest of b */
    if (err == BP_OK)
        err = copy_in(b, b->writer, src, n);
    if (err == BP_OK)
        b->writer += n;
    return err;
}

int bp_buf_prepend_bytes(bp_buf *b, const void *src, size_t n)
{
    uint32_t flags = bp_buf_flags(b);
    if (flags & BP_RDONLY)
        return BP_ERDONLY;
    if (n == 0)
        return BP_OK;
    size_t reader = b->reader;
    if (n > reader) {
        size_t capacity = bp_buf_cap(b), max = bp_buf_max(b);
        if ((flags & BP_BUF_COMPOSITE) || n - reader > max - capacity)
            return BP_ECAP;
        size_t front = bp_buf_grow_capacity(capacity + (n - reader), max) - capacity;
        size_t inside = offset_inside(b, src, n);
        int err = grow_front(b, front);
        if (err != BP_OK)
            return err;
        if (inside != SIZE_MAX)
            src = b->data + front + inside; /* the bytes moved with the rest of b */
        reader = b->reader;
    }
    int err = copy_in(b, reader - n, src, n);
    if (err == BP_OK)
        b->reader = reader - n;
    return err;
}

/* ---- varints (the fixed-width typed calls are bufpool.h's, exported from here) ---------- */

int bp_buf_get_uvarint(const bp_buf *b, size_t idx, uint64_t *out, size_t *len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        uint8_t byte;
        if (idx > b->writer || i >= b->writer - idx)
            return BP_EBOUNDS;
        copy_out(b, idx + i, &byte, 1);
        if (i == 9 && byte > 1)
            return BP_EINVAL; /* more than 64 bits */
        v |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            if (byte == 0 && i > 0)
                return BP_EINVAL; /* overlong: a shorter encoding says the same */
            *out = v;
            if (len != NULL)
                *len = i + 1;
            return BP_OK;
        }
    }
    return BP_EINVAL; /* an eleventh byte would follow */
}

int bp_buf_read_uvarint(bp_buf *b, uint64_t *out)
{
    size_t len;
    int err = bp_buf_get_uvarint(b, b->reader, out, &len);
    if (err == BP_OK)
        b->reader += len;
    return err;
}

int bp_buf_write_uvarint(bp_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        tmp[n++] |= v ? 0x80 : 0;
    } while (v != 0);
    return bp_buf_write_bytes(b, tmp, n);
}

/* ---- views and copies ------------------------------------------------------------------- */

bp_buf *bp_buf_view_mem(bp_pool *pool, bp_mem *m, uint8_t *data, size_t len, unsigned flags)
{
    bp_buf *v = bp_buf_header_new(pool, 0, BP_BUF_EXT | (flags & BP_RDONLY), len);
    if (v == NULL)
        return NULL;
    bp_buf_mem_acquire(m);
    v->more.ext->mem = m;
    v->data = data;
    bp_buf_set_cap(v, len);
    v->writer = len;
    bp_leak_track(pool, v);
    return v;
}

/* A contiguous view of [idx, idx + len) of contiguous b. */
static bp_buf *view(bp_buf *b, size_t idx, size_t len, unsigned flags)
{
    bp_mem *m = mem_for_view(b);
    if (m == NULL)
        return NULL;
    return bp_buf_view_mem(bp_buf_pool(b), m, b->data + idx, len, bp_buf_flags(b) | flags);
}

/* The part of composite c that holds all of [idx, idx + len) (len > 0), or NULL when the
 * range spans parts or is empty. */
static bp_part *part_holding(const bp_buf *c, size_t idx, size_t len)
{
    const bp_buf_ext *x = c->more.ext;
    if (len == 0 || x->nparts == 0)
        return NULL;
    uint32_t lo = 0, hi = x->nparts; /* parts[lo].offset <= idx < parts[hi].offset */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (x->parts[mid].offset <= idx)
            lo = mid;
        else
            hi = mid;
    }
    bp_part *p = &x->parts[lo];
    return idx - p->offset < p->len && len <= p->len - (idx - p->offset) ? p : NULL;
}

bp_buf *bp_buf_slice(bp_buf *b, size_t idx, size_t len, unsigned flags)
{
    size_t capacity = bp_buf_cap(b);
    if (idx > capacity || len > capacity - idx) {
        errno = EINVAL;
        return NULL;
    }
    if (!bp_buf_is_composite(b))
        return view(b, idx, len, flags);
    bp_part *p = part_holding(b, idx, len);
    if (p != NULL) { /* a plain view of that part's bytes, as cheap as one of a contiguous one */
        bp_mem *m = bp_buf_part_mem(p);
        if (m == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        return bp_buf_view_mem(bp_buf_pool(b), m, p->data + (idx - p->offset), len,
                               (bp_buf_flags(b) | bp_buf_flags(p->buf) | flags) & BP_RDONLY);
    }
    return bp_buf_composite_slice(b, idx, len, flags);
}

bp_buf *bp_buf_read_slice(bp_buf *b, size_t len)
{
    if (len > b->writer - b->reader) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *s = bp_buf_slice(b, b->reader, len, 0);
    if (s != NULL)
        b->reader += len;
    return s;
}

bp_buf *bp_buf_duplicate(bp_buf *b, unsigned flags)
{
    bp_buf *d = bp_buf_slice(b, 0, bp_buf_cap(b), flags);
    if (d != NULL) {
        d->reader = b->reader;
        d->writer = b->writer;
    }
    return d;
}

bp_buf *bp_buf_copy(const bp_buf *b, size_t idx, size_t len)
{
    size_t capacity = bp_buf_cap(b);
    if (idx > capacity || len > capacity - idx) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *c = bp_buf_new(bp_buf_pool(b), len, 0);
    if (c == NULL)
        return NULL;
    copy_out(b, idx, c->data, len);
    c->writer = len;
    return c;
}
