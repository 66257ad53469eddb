/* buf_internal.h — bp_buf's private half, shared by buf.c, buf_composite.c and leak.c: the
 * extension, memory ownership, composite parts and the flags of the header's state word. The
 * header itself (struct bp_buf) is public: bufpool.h, "Buffer fast paths (ABI)". */
#ifndef BP_BUF_INTERNAL_H
#define BP_BUF_INTERNAL_H

#include "os.h"
#include "pool_hooks.h"
#include "track.h"

/* ------------------------------------------------------------------------------------------
 * A buffer's bytes live in one of three places: inline in the header's own block, in a
 * wrapped caller's memory, or in a separate pooled block made when the buffer grew. Each is
 * described by a bp_mem whose refs count the buffers whose bytes lie there (for the header's
 * own block or wrapped memory the header's life counts as one of them), so that memory a
 * view or a composite still looks at outlives the buffer it came from.
 *
 *   plain buffer:        [ bp_buf (48 bytes) | inline data ... ]
 *   made with extension: [ bp_buf | bp_buf_ext | inline data ... ]   (views, wraps,
 *                                                                     composites)
 *   grown memory:        [ bp_mem (BP_MEM_HEADER bytes) | data ... ]
 *
 * Most buffers need none of that bookkeeping: a plain buffer (state == 1 with no flags) has
 * no bp_mem of its own; its block is its header's, and nobody else holds it. The extension
 * comes when something needs it: at creation for views, wrapped memory and composites (in
 * the header's block), and later (a block of its own, `detached`) when a view or composite
 * first takes a reference on a plain buffer's memory, or when leak detection tracks it. A
 * grown buffer without an extension (BP_BUF_GROWN) finds its bp_mem just below data.
 *
 * Why a pointer and not an extension placed in front of the header: a plain buffer must be
 * able to gain one after it was made (its first view, its first composite, a tracked
 * buffer), and only a pointer lets the header's block stay where it is.
 *
 * Invariants: for a buffer with BP_BUF_EXT, more.ext is its extension and ext->capacity its
 * capacity (limit is ext->capacity for a writable contiguous one, 0 otherwise), else
 * more.max_capacity is its maximum and limit its capacity; a contiguous buffer's data is
 * never NULL (empty wrapped memory points it at the header's end) and [data, data +
 * capacity) lies in its memory (ext->mem; with BP_BUF_GROWN and no extension the block at
 * data - BP_MEM_HEADER; else the header's own block); a composite has data == NULL, mem ==
 * NULL and parts[0..nparts) tiling [0, capacity) in order (parts[i].offset == the sum of the
 * previous lengths), each holding a reference to its buffer and, unless that reference is
 * the buffer's only one, one to the memory its bytes lie in (so the part's other owners can
 * neither free nor move them: they see them shared). A
 * composite view (BP_BUF_VIEW, from a slice) has capacity == max_capacity, before and after
 * bp_buf_discard_read. Flags are only ever added, by the thread using the buffer, with an
 * atomic OR (other threads may retain and release it meanwhile), except BP_BUF_GROWN, which
 * bp_buf_shrink takes away with an atomic AND when the bytes go back to the header's own
 * block; the reference count changes
 * with atomics only, except at 1, where the holder is alone.
 * ------------------------------------------------------------------------------------------ */
enum bp_mem_kind { BP_MEM_INLINE, BP_MEM_EXTERNAL, BP_MEM_POOLED };

typedef struct bp_mem {
    uint32_t refs;                        /* atomic */
    uint8_t kind;                         /* enum bp_mem_kind */
    void (*free_fn)(void *mem, void *ud); /* BP_MEM_EXTERNAL */
    void *ud;
    void *external; /* BP_MEM_EXTERNAL: the caller's memory */
    bp_buf *owner;  /* INLINE and EXTERNAL: the header whose block (and extension) this is */
} bp_mem;

typedef struct bp_part {
    bp_buf *buf;   /* a reference the composite holds */
    bp_mem *mem;   /* a reference on the memory data lies in, or NULL: the composite holds
                    * buf's only reference (bp_buf_part_mem makes one when a view needs it) */
    uint8_t *data; /* the part's bytes */
    size_t offset; /* where they start in the composite */
    size_t len;
} bp_part;
/* The memory a part's bytes lie in, for a view of them: made now (the buffer's extension)
 * for a part that holds none, which the part then holds as any other; NULL on ENOMEM. */
bp_mem *bp_buf_part_mem(bp_part *p);

struct bp_leak;

struct bp_buf_ext {
    size_t capacity, max_capacity;
    bp_mem *mem;    /* whose memory data lies in; NULL for a composite */
    bp_part *parts; /* composites */
    uint32_t nparts, max_parts;
    struct bp_leak *leak; /* leak record when this buffer is tracked */
    bool detached;        /* a block of its own (attached after the buffer was made) */
    /* composites: a part count past consolidate_at (0: never) is copied into one part; the
     * parts array has room for parts_cap parts, nparts <= parts_cap <= max_parts (which is
     * BP_NO_PART_LIMIT for one made with 0); both fit the padding after detached */
    uint16_t consolidate_at;
    uint32_t parts_cap;
    bp_mem self; /* the header's own block (inline data, or the wrapped memory) */
};
typedef struct bp_buf_ext bp_buf_ext;

/* Flags, in the high half of the state word beside BP_RDONLY. */
#define BP_BUF_COMPOSITE 0x100u /* a composite */
#define BP_BUF_VIEW      0x200u /* a composite slice, whose capacity never grows */
#define BP_BUF_EXT       0x400u /* more.ext is the extension */
#define BP_BUF_GROWN     0x800u /* no extension, and the bytes moved to a pooled bp_mem */

#define BP_BUF_HEADER    sizeof(bp_buf) /* a multiple of 16: data after it stays aligned */
#define BP_BUF_EXT_SIZE  ((sizeof(bp_buf_ext) + 15) & ~(size_t)15)
#define BP_MEM_HEADER    ((sizeof(bp_mem) + 15) & ~(size_t)15)
#define BP_BUF_NO_LIMIT  (SIZE_MAX / 2)
#define BP_BUF_REFS_MASK 0xffffffffu
#define BP_NO_PART_LIMIT (1u << 30) /* max_parts of a composite made with 0 */

_Static_assert(sizeof(bp_buf) == 48 && offsetof(bp_buf, state) == 32 &&
                   offsetof(bp_buf, more) == 40,
               "bufpool.h's header layout (BP_BUF_ABI_VERSION 1)");
_Static_assert(((BP_BUF_COMPOSITE | BP_BUF_VIEW | BP_BUF_EXT | BP_BUF_GROWN) & BP_RDONLY) == 0,
               "flags apart from the public ones");

bp_inline uint32_t bp_buf_flags(const bp_buf *b)
{
    return (uint32_t)(__atomic_load_n(&b->state, __ATOMIC_RELAXED) >> 32);
}
bp_inline void bp_buf_add_flags(bp_buf *b, uint32_t flags)
{
    __atomic_fetch_or(&b->state, (uint64_t)flags << 32, __ATOMIC_RELAXED);
}
bp_inline bp_buf_ext *bp_buf_ext_of(const bp_buf *b)
{
    return (bp_buf_flags(b) & BP_BUF_EXT) ? b->more.ext : NULL;
}
bp_inline size_t bp_buf_cap(const bp_buf *b)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    return x != NULL ? x->capacity : b->limit;
}
bp_inline size_t bp_buf_max(const bp_buf *b)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    return x != NULL ? x->max_capacity : b->more.max_capacity;
}
/* Capacity changes keep the write limit in step (0 stays 0: read-only, composite). */
bp_inline void bp_buf_set_cap(bp_buf *b, size_t capacity)
{
    bp_buf_ext *x = bp_buf_ext_of(b);
    if (x != NULL)
        x->capacity = capacity;
    if (!(bp_buf_flags(b) & (BP_RDONLY | BP_BUF_COMPOSITE)))
        b->limit = capacity;
}
bp_inline bool bp_buf_is_composite(const bp_buf *b)
{
    return (bp_buf_flags(b) & BP_BUF_COMPOSITE) != 0;
}

/* buf.c */
/* The pool whose block the header is. */
bp_pool *bp_buf_pool(const bp_buf *b);
/* A header for a new buffer (state: one reference, `flags`) with an extension in its block
 * when flags has BP_BUF_EXT (self: refs 1, INLINE), then `inline_bytes`; data points at
 * them, limit and capacity are 0, max is `max`. NULL with errno ENOMEM. */
bp_buf *bp_buf_header_new(bp_pool *pool, size_t inline_bytes, uint32_t flags, size_t max);
/* b's extension, attached now when it has none; NULL (errno ENOMEM) when refused. */
bp_buf_ext *bp_buf_ext_get(bp_buf *b);
/* The memory b's bytes lie in with a reference taken on it (b contiguous), attaching an
 * extension when b is plain; NULL when that was refused. */
bp_mem *bp_buf_mem_ref(bp_buf *b);
/* The bp_mem b's bytes lie in (b contiguous); NULL for a plain buffer's own block, which has
 * none. */
bp_mem *bp_buf_mem_of(const bp_buf *b);
void bp_buf_mem_acquire(bp_mem *m);
void bp_buf_mem_release(bp_mem *m);
/* A contiguous view of [data, data + len), which lies in m (the view takes a reference). */
bp_buf *bp_buf_view_mem(bp_pool *pool, bp_mem *m, uint8_t *data, size_t len, unsigned flags);
/* buf_composite.c: copy n bytes at idx out of / into a composite (bounds checked by caller). */
void bp_buf_composite_copy_out(const bp_buf *c, size_t idx, void *dst, size_t n);
int bp_buf_composite_copy_in(bp_buf *c, size_t idx, const void *src, size_t n);
int bp_buf_composite_grow(bp_buf *c, size_t min_capacity);
void bp_buf_composite_free_parts(bp_buf *c);
bp_buf *bp_buf_composite_slice(bp_buf *c, size_t idx, size_t len, unsigned flags);
int bp_buf_composite_discard_read(bp_buf *c);
size_t bp_buf_grow_capacity(size_t min_capacity, size_t max_capacity);
/* One readv (EINTR retried) of up to max bytes (0: no limit) into the writable bytes b has
 * now, growing nothing; *attempted gets the bytes offered to it. Returns the bytes read, 0
 * at end of file, BP_EAGAIN or BP_EIO (errno kept). */
ssize_t bp_buf_read_room(bp_buf *b, int fd, size_t max, size_t *attempted);
/* leak.c */
void bp_leak_track_slow(bp_pool *pool, bp_buf *b);
bp_inline void bp_leak_track(bp_pool *pool, bp_buf *b)
{
    /* buf_slow: leak_level != 0 (or a checked or tool build, which asks the level) */
    if (bp_unlikely(((const struct bp_fast_pool *)pool)->buf_slow != 0))
        bp_leak_track_slow(pool, b);
}
/* b's record out of its pool's list and freed (b has one). */
void bp_leak_untrack(bp_buf *b);

#endif /* BP_BUF_INTERNAL_H */
