/* buf.c — bp_buf: life cycle and reference counts, memory ownership and growth, indexes,
 * typed big/little-endian access, bytes in and out, and views (layout in internal.h). */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define NO_LIMIT (SIZE_MAX / 2)

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
    case BP_NOTFOUND: return "not found";
    default: return "unknown bufpool error";
    }
}

/* ---- memory and life cycle -------------------------------------------------------------- */

static bp_buf *header_of(bp_mem *self)
{
    return (bp_buf *)((char *)self - offsetof(bp_buf, self));
}

void bp_buf_mem_acquire(bp_mem *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
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
            m->free_fn(m->ext, m->ud);
        bp_free(header_of(m));
        break;
    default: bp_free(header_of(m)); break;
    }
}

/* Inlined into bp_buf_new: the header's fields one by one (a memset of the whole header
 * costs more than the allocation). */
bp_inline bp_buf *header_new(bp_pool *pool, size_t inline_bytes)
{
    if (inline_bytes > NO_LIMIT) {
        errno = ENOMEM;
        return NULL;
    }
    bp_buf *b = bp_alloc(pool, BP_BUF_HEADER + inline_bytes);
    if (b == NULL)
        return NULL;
    b->data = NULL;
    b->reader = b->writer = b->capacity = b->max_capacity = 0;
    b->mem = &b->self;
    b->pool = pool;
    b->refcnt = 1;
    b->flags = 0;
    b->nparts = b->max_parts = 0;
    b->parts = NULL;
    b->leak = NULL;
    b->self.refs = 1;
    b->self.kind = BP_MEM_INLINE;
    b->self.free_fn = NULL;
    return b;
}

bp_buf *bp_buf_header_new(bp_pool *pool, size_t inline_bytes)
{
    return header_new(pool, inline_bytes);
}

bp_buf *bp_buf_new(bp_pool *pool, size_t initial, size_t max)
{
    if (max == 0)
        max = NO_LIMIT;
    if (initial > max) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *b = header_new(pool, initial);
    if (b == NULL)
        return NULL;
    b->data = (uint8_t *)b + BP_BUF_HEADER;
    b->capacity = initial;
    b->max_capacity = max;
    bp_leak_track(b);
    return b;
}

bp_buf *bp_buf_wrap(bp_pool *pool, void *mem, size_t cap, size_t len,
                    void (*free_fn)(void *mem, void *ud), void *ud, unsigned flags)
{
    if (len > cap || (mem == NULL && cap > 0)) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *b = bp_buf_header_new(pool, 0);
    if (b == NULL)
        return NULL;
    b->self.kind = BP_MEM_EXTERNAL;
    b->self.free_fn = free_fn;
    b->self.ud = ud;
    b->self.ext = mem;
    /* empty memory may be NULL; data never is, so no zero-length copy sees a null pointer */
    b->data = mem != NULL ? mem : (uint8_t *)b + BP_BUF_HEADER;
    b->capacity = b->max_capacity = cap;
    b->writer = len;
    b->flags = flags & BP_RDONLY;
    bp_leak_track(b);
    return b;
}

bp_buf *bp_buf_retain(bp_buf *b)
{
    uint32_t before = __atomic_fetch_add(&b->refcnt, 1, __ATOMIC_RELAXED);
    if (BP_CHECKED && before == 0)
        bp_fatal("bp_buf_retain(%p): the buffer was already released", (void *)b);
    return b;
}

bool bp_buf_release(bp_buf *b)
{
    /* A count of 1 is the caller's alone (nobody else holds a reference that could retain
     * it), so the sole owner's release needs no atomic instruction. */
    uint32_t count = __atomic_load_n(&b->refcnt, __ATOMIC_ACQUIRE);
    if (count != 1) {
        if (BP_CHECKED && count == 0)
            bp_fatal("bp_buf_release(%p): release of a released buffer", (void *)b);
        if (__atomic_sub_fetch(&b->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
            return false;
    }
    b->refcnt = 0;
    if (bp_unlikely(b->leak != NULL))
        bp_leak_untrack(b);
    if (bp_unlikely(b->flags & BP_BUF_COMPOSITE))
        bp_buf_composite_free_parts(b);
    else if (b->mem != &b->self)
        bp_buf_mem_release(b->mem);
    bp_buf_mem_release(&b->self); /* last: it may free this header */
    return true;
}

uint32_t bp_buf_refcnt(const bp_buf *b)
{
    return __atomic_load_n(&b->refcnt, __ATOMIC_RELAXED);
}

/* ---- indexes ---------------------------------------------------------------------------- */

size_t bp_buf_capacity(const bp_buf *b)
{
    return b->capacity;
}
size_t bp_buf_max_capacity(const bp_buf *b)
{
    return b->max_capacity;
}
size_t bp_buf_reader_index(const bp_buf *b)
{
    return b->reader;
}
size_t bp_buf_writer_index(const bp_buf *b)
{
    return b->writer;
}
size_t bp_buf_readable(const bp_buf *b)
{
    return b->writer - b->reader;
}
size_t bp_buf_writable(const bp_buf *b)
{
    return b->capacity - b->writer;
}
bool bp_buf_is_readonly(const bp_buf *b)
{
    return (b->flags & BP_RDONLY) != 0;
}

/* Bytes the memory under data holds from data on, whatever the capacity says. */
static size_t room(const bp_buf *b)
{
    if (b->flags & BP_BUF_COMPOSITE)
        return b->capacity;
    switch (b->mem->kind) {
    case BP_MEM_POOLED: return bp_usable_size(b->mem) - (size_t)(b->data - (uint8_t *)b->mem);
    case BP_MEM_INLINE: {
        const bp_buf *owner = header_of(b->mem);
        return bp_usable_size(owner) - (size_t)(b->data - (const uint8_t *)owner);
    }
    default: return b->capacity;
    }
}

size_t bp_buf_fast_writable(const bp_buf *b)
{
    if (b->max_capacity == b->capacity) /* views, wrapped memory */
        return b->capacity - b->writer;
    return BP_MIN(room(b), b->max_capacity) - b->writer;
}

int bp_buf_set_index(bp_buf *b, size_t reader, size_t writer)
{
    if (reader > writer || writer > b->capacity)
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
    if (b->flags & BP_RDONLY)
        return BP_ERDONLY;
    if (b->reader == 0)
        return BP_OK;
    if (b->flags & BP_BUF_COMPOSITE)
        return bp_buf_composite_discard_read(b);
    if (__atomic_load_n(&b->mem->refs, __ATOMIC_ACQUIRE) > 1)
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

/* Moves the bytes to memory that holds new_capacity, unless the memory they are in already
 * does. All of [0, capacity) moves, not only what the writer index covers: bytes set past it
 * or read into reserved extents wait for bp_buf_commit. The old memory stays for views and
 * composites that look at it. */
static int grow_contiguous(bp_buf *b, size_t new_capacity)
{
    if (room(b) >= new_capacity) {
        bp_unpoison(b->data, new_capacity); /* ASan builds: the block's slack comes into use */
        b->capacity = new_capacity;
        return BP_OK;
    }
    bp_mem *old = b->mem;
    if (old->kind == BP_MEM_POOLED && __atomic_load_n(&old->refs, __ATOMIC_ACQUIRE) == 1) {
        bp_mem *m = bp_realloc(b->pool, old, BP_MEM_HEADER + new_capacity);
        if (m == NULL)
            return BP_ENOMEM;
        b->mem = m;
        b->data = (uint8_t *)m + BP_MEM_HEADER;
        b->capacity = new_capacity;
        return BP_OK;
    }
    bp_mem *m = bp_alloc(b->pool, BP_MEM_HEADER + new_capacity);
    if (m == NULL)
        return BP_ENOMEM;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->kind = BP_MEM_POOLED;
    memcpy((uint8_t *)m + BP_MEM_HEADER, b->data, b->capacity);
    b->mem = m;
    b->data = (uint8_t *)m + BP_MEM_HEADER;
    b->capacity = new_capacity;
    if (old != &b->self)
        bp_buf_mem_release(old);
    return BP_OK;
}

int bp_buf_ensure_writable(bp_buf *b, size_t n)
{
    if (b->flags & BP_RDONLY) /* room or not: readv must not get extents of a read-only one */
        return BP_ERDONLY;
    if (bp_likely(n <= b->capacity - b->writer))
        return BP_OK;
    if (n > b->max_capacity - b->writer)
        return BP_ECAP;
    size_t new_capacity = bp_buf_grow_capacity(b->writer + n, b->max_capacity);
    if (b->flags & BP_BUF_COMPOSITE)
        return bp_buf_composite_grow(b, new_capacity);
    return grow_contiguous(b, new_capacity);
}

/* ---- bytes ------------------------------------------------------------------------------ */

/* Both copies accept NULL for zero bytes, and a source or destination inside b itself
 * (memmove: a range of b copied over an overlapping one). */
static void copy_out(const bp_buf *b, size_t idx, void *dst, size_t n)
{
    if (n == 0)
        return;
    if (bp_likely(!(b->flags & BP_BUF_COMPOSITE)))
        memmove(dst, b->data + idx, n);
    else
        bp_buf_composite_copy_out(b, idx, dst, n);
}

static int copy_in(bp_buf *b, size_t idx, const void *src, size_t n)
{
    if (b->flags & BP_RDONLY)
        return BP_ERDONLY;
    if (n == 0)
        return BP_OK;
    if (bp_likely(!(b->flags & BP_BUF_COMPOSITE))) {
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
    if ((b->flags & BP_BUF_COMPOSITE) || at < start || at - start > b->capacity ||
        n > b->capacity - (at - start))
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
    if (idx > b->capacity || n > b->capacity - idx)
        return BP_EBOUNDS;
    return copy_in(b, idx, src, n);
}

int bp_buf_read_bytes(bp_buf *b, void *dst, size_t n)
{
    if (bp_unlikely(n > b->writer - b->reader))
        return BP_EBOUNDS;
    copy_out(b, b->reader, dst, n);
    b->reader += n;
    return BP_OK;
}

int bp_buf_write_bytes(bp_buf *b, const void *src, size_t n)
{
    /* n - 1: zero bytes (src may be NULL) take the slow path, which copies nothing */
    if (bp_likely(n - 1 < b->capacity - b->writer &&
                  !(b->flags & (BP_RDONLY | BP_BUF_COMPOSITE)))) {
        memmove(b->data + b->writer, src, n);
        b->writer += n;
        return BP_OK;
    }
    size_t inside = n > b->capacity - b->writer ? offset_inside(b, src, n) : SIZE_MAX;
    int err = bp_buf_ensure_writable(b, n);
    if (err == BP_OK && inside != SIZE_MAX)
        src = b->data + inside; /* the bytes moved with the rest of b */
    if (err == BP_OK)
        err = copy_in(b, b->writer, src, n);
    if (err == BP_OK)
        b->writer += n;
    return err;
}

int bp_buf_skip(bp_buf *b, size_t n)
{
    if (n > b->writer - b->reader)
        return BP_EBOUNDS;
    b->reader += n;
    return BP_OK;
}

/* ---- typed access ----------------------------------------------------------------------- */

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static void store_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static void store_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The integer image of a value: bit patterns for floats, sign-kept bits for i8. */
#define TO_BITS(type, v)                                                                           \
    __extension__({                                                                                \
        uint64_t bits_ = 0;                                                                        \
        type v_ = (v);                                                                             \
        memcpy(&bits_, &v_, sizeof v_);                                                            \
        bits_;                                                                                     \
    })
#define FROM_BITS(type, bits)                                                                      \
    __extension__({                                                                                \
        type v_;                                                                                   \
        uint64_t b_ = (bits);                                                                      \
        memcpy(&v_, &b_, sizeof v_);                                                               \
        v_;                                                                                        \
    })

/* On a little-endian host TO_BITS/FROM_BITS keep the low bytes first, which is what a
 * width-n load/store expects. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "typed access assumes a LE host");

#define TYPED(name, type, width, order)                                                            \
    int bp_buf_get_##name(const bp_buf *b, size_t idx, type *out)                                  \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        if (idx > b->writer || (width) > b->writer - idx)                                          \
            return BP_EBOUNDS;                                                                     \
        copy_out(b, idx, tmp, (width));                                                            \
        *out = FROM_BITS(type, load_##order(tmp, (width)));                                        \
        return BP_OK;                                                                              \
    }                                                                                              \
    int bp_buf_set_##name(bp_buf *b, size_t idx, type v)                                           \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        if (idx > b->capacity || (width) > b->capacity - idx)                                      \
            return BP_EBOUNDS;                                                                     \
        store_##order(tmp, TO_BITS(type, v), (width));                                             \
        return copy_in(b, idx, tmp, (width));                                                      \
    }                                                                                              \
    int bp_buf_read_##name(bp_buf *b, type *out)                                                   \
    {                                                                                              \
        int err = bp_buf_get_##name(b, b->reader, out);                                            \
        if (err == BP_OK)                                                                          \
            b->reader += (width);                                                                  \
        return err;                                                                                \
    }                                                                                              \
    int bp_buf_write_##name(bp_buf *b, type v)                                                     \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        int err = bp_buf_ensure_writable(b, (width));                                              \
        if (err != BP_OK)                                                                          \
            return err;                                                                            \
        store_##order(tmp, TO_BITS(type, v), (width));                                             \
        err = copy_in(b, b->writer, tmp, (width));                                                 \
        if (err == BP_OK)                                                                          \
            b->writer += (width);                                                                  \
        return err;                                                                                \
    }

TYPED(u8, uint8_t, 1, be)
TYPED(i8, int8_t, 1, be)
TYPED(u16_be, uint16_t, 2, be)
TYPED(u16_le, uint16_t, 2, le)
TYPED(u24_be, uint32_t, 3, be)
TYPED(u24_le, uint32_t, 3, le)
TYPED(u32_be, uint32_t, 4, be)
TYPED(u32_le, uint32_t, 4, le)
TYPED(u64_be, uint64_t, 8, be)
TYPED(u64_le, uint64_t, 8, le)
TYPED(f32_be, float, 4, be)
TYPED(f32_le, float, 4, le)
TYPED(f64_be, double, 8, be)
TYPED(f64_le, double, 8, le)

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
    bp_buf *v = bp_buf_header_new(pool, 0);
    if (v == NULL)
        return NULL;
    bp_buf_mem_acquire(m);
    v->mem = m;
    v->data = data;
    v->capacity = v->max_capacity = len;
    v->writer = len;
    v->flags = flags & BP_RDONLY;
    bp_leak_track(v);
    return v;
}

bp_buf *bp_buf_view(bp_buf *b, size_t idx, size_t len, unsigned flags)
{
    return bp_buf_view_mem(b->pool, b->mem, b->data + idx, len, b->flags | flags);
}

bp_buf *bp_buf_slice(bp_buf *b, size_t idx, size_t len, unsigned flags)
{
    if (idx > b->capacity || len > b->capacity - idx) {
        errno = EINVAL;
        return NULL;
    }
    if (b->flags & BP_BUF_COMPOSITE)
        return bp_buf_composite_slice(b, idx, len, flags);
    return bp_buf_view(b, idx, len, flags);
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
    bp_buf *d = bp_buf_slice(b, 0, b->capacity, flags);
    if (d != NULL) {
        d->reader = b->reader;
        d->writer = b->writer;
    }
    return d;
}

bp_buf *bp_buf_copy(const bp_buf *b, size_t idx, size_t len)
{
    if (idx > b->capacity || len > b->capacity - idx) {
        errno = EINVAL;
        return NULL;
    }
    bp_buf *c = bp_buf_new(b->pool, len, 0);
    if (c == NULL)
        return NULL;
    copy_out(b, idx, c->data, len);
    c->writer = len;
    return c;
}
