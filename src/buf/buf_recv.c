/* buf_recv.c — adaptive receive (Netty's AdaptiveRecvByteBufAllocator: a per-connection
 * guess of how much the next read brings, which reads grow into) and giving a drained
 * buffer's memory back, so that an idle connection holds no buffer memory. */
#include "buf_internal.h"

#include <errno.h>
#include <string.h>

/* The sizes a guess takes, as Netty's SIZE_TABLE: 16-byte steps from 16 to 496, then
 * doubling from 512 to 1 GiB. Computed rather than stored, so no table can drift. */
#define SMALL_STEPS   31                 /* 16 .. 496 */
#define SIZE_COUNT    (SMALL_STEPS + 22) /* 512 << 0 .. 512 << 21 (1 GiB) */
#define GROW_STEPS    4u /* Netty's INDEX_INCREMENT: after a read that filled the guess */
#define SHRINK_STEPS  1u /* Netty's INDEX_DECREMENT: after two that came in under it */
#define DEFAULT_MIN   64
#define DEFAULT_FIRST 2048
#define DEFAULT_MAX   65536

static size_t size_at(unsigned index)
{
    return index < SMALL_STEPS ? (size_t)(index + 1) * 16 : (size_t)512 << (index - SMALL_STEPS);
}

/* The first size of the table at or above n (the last for anything past it). */
static unsigned index_of(size_t n)
{
    unsigned i = 0;
    while (i + 1 < SIZE_COUNT && size_at(i) < n)
        i++;
    return i;
}

int bp_recv_sizer_init(bp_recv_sizer *s, size_t min, size_t initial, size_t max)
{
    min = min ? min : DEFAULT_MIN;
    initial = initial ? initial : DEFAULT_FIRST;
    max = max ? max : DEFAULT_MAX;
    if (min > initial || initial > max || max > size_at(SIZE_COUNT - 1))
        return BP_EINVAL;
    unsigned lo = index_of(min), hi = index_of(max);
    if (size_at(hi) > max && hi > lo) /* the guess never passes max */
        hi--;
    unsigned first = index_of(initial);
    first = first < lo ? lo : first > hi ? hi : first;
    *s = (bp_recv_sizer){.index = (uint8_t)first,
                         .min_index = (uint8_t)lo,
                         .max_index = (uint8_t)hi,
                         .shrink_next = false,
                         .guess = (uint32_t)size_at(first)};
    return BP_OK;
}

size_t bp_recv_sizer_guess(const bp_recv_sizer *s)
{
    return s->guess;
}

/* Netty's record(): a read at or under the size one step down counts towards shrinking
 * (the second in a row shrinks), one that reached the guess grows it by four steps at
 * once, one in between changes nothing. */
void bp_recv_sizer_record(bp_recv_sizer *s, size_t bytes_read)
{
    unsigned index = s->index;
    if (bytes_read <= size_at(index >= SHRINK_STEPS ? index - SHRINK_STEPS : 0)) {
        if (s->shrink_next) {
            index = index >= s->min_index + SHRINK_STEPS ? index - SHRINK_STEPS : s->min_index;
            s->shrink_next = false;
        } else {
            s->shrink_next = true;
        }
    } else if (bytes_read >= s->guess) {
        index = index + GROW_STEPS <= s->max_index ? index + GROW_STEPS : s->max_index;
        s->shrink_next = false;
    }
    s->index = (uint8_t)index;
    s->guess = (uint32_t)size_at(index);
}

ssize_t bp_buf_recv_fd(bp_buf *b, int fd, bp_recv_sizer *s)
{
    size_t writable = bp_buf_cap(b) - b->writer, max_room = bp_buf_max(b) - b->writer;
    /* The room there is first, unless it is under the sizer's minimum (none, say): a read
     * that may well say EAGAIN must not make an idle connection's buffer grow. Then growth
     * by the guess (never past the maximum: the room left there when less). */
    if (writable < (s != NULL ? size_at(s->min_index) : 1)) {
        size_t want = s != NULL ? BP_MIN((size_t)s->guess, max_room) : 1;
        int err = bp_buf_ensure_writable(b, BP_MAX(want, 1));
        if (err != BP_OK)
            return err;
    } else if (bp_buf_flags(b) & BP_RDONLY) {
        return BP_ERDONLY;
    }
    size_t attempted;
    ssize_t r = bp_buf_read_room(b, fd, 0, &attempted);
    if (r > 0 && s != NULL)
        bp_recv_sizer_record(s, (size_t)r);
    return r;
}

/* ---- giving memory back ------------------------------------------------------------------ */

/* Releases b's parts and their array: nothing is left but the header. */
static void shrink_composite(bp_buf *c)
{
    bp_buf_ext *x = c->more.ext;
    bp_buf_composite_free_parts(c);
    x->capacity = 0;
    if (bp_buf_flags(c) & BP_BUF_VIEW)
        x->max_capacity = 0; /* a slice still never grows */
}

/* Contiguous b goes back to its header's block (capacity 0: growth finds the block's room
 * again) when its bytes moved out of it, and that block is nobody else's to look at. The
 * memory they moved to is released: freed, or left to the views and composites that hold
 * it. Views and wrapped memory never grow, so they have nothing to give back. */
static void shrink_contiguous(bp_buf *b)
{
    uint8_t *home = (uint8_t *)b + BP_BUF_HEADER; /* where a plain buffer's bytes start */
    bp_buf_ext *x = bp_buf_ext_of(b);
    bp_mem *grown = bp_buf_mem_of(b);
    if (x == NULL && !(bp_buf_flags(b) & BP_BUF_GROWN))
        return;
    /* an extension made with the buffer is a view's or wrapped memory's */
    if (x != NULL && (!x->detached || grown == &x->self || grown->kind != BP_MEM_POOLED ||
                      __atomic_load_n(&x->self.refs, __ATOMIC_ACQUIRE) != 1))
        return;
    if (x != NULL)
        x->mem = &x->self;
    __atomic_fetch_and(&b->state, ~((uint64_t)BP_BUF_GROWN << 32), __ATOMIC_RELAXED);
    b->data = home;
    bp_buf_set_cap(b, 0);
    bp_buf_mem_release(grown);
}

int bp_buf_shrink(bp_buf *b)
{
    if (b->writer != b->reader)
        return BP_EINVAL;
    if (bp_buf_is_composite(b))
        shrink_composite(b);
    else
        shrink_contiguous(b);
    b->reader = b->writer = 0;
    return BP_OK;
}
