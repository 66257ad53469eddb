/* uring.c — bp_uring: a pool's chunks and huge blocks as io_uring fixed buffers (an OS layer
 * that registers each one in a sparse fixed-buffer table as it is mapped, and takes it out
 * before it is unmapped), and a provided-buffer ring kept filled with bp_bufs from a pool.
 * Built without liburing (BP_HAVE_LIBURING undefined: CMake found none), every call answers
 * ENOSYS, so the API is the same in every build and a program decides at run time. */
#define _GNU_SOURCE
#include "front.h"

#include <errno.h>

#ifdef BP_HAVE_LIBURING
#include <liburing.h>

/* Test hooks (tests/test_uring.c), for what a kernel cannot be made to refuse on demand:
 * bp_uring_fault_setup, when nonzero, is the errno the next bp_uring_new's ring setup fails
 * with (as io_uring_queue_init does where io_uring is missing, ENOSYS, or disabled, EPERM);
 * bp_uring_fault_register_at, when nonzero, counts registrations down and fails the one
 * that reaches zero with EFAULT, as the kernel does for memory it cannot pin. */
bp_hidden int bp_uring_fault_setup;
bp_hidden unsigned long bp_uring_fault_register_at;

/* The kernel's bounds on a fixed-buffer table (IORING_MAX_REG_BUFFERS) and on a ring's and
 * a provided-buffer ring's entries. */
#define URING_MAX_TABLE        16384u
#define URING_MAX_RING_ENTRIES 32768u

typedef struct fixed_slot {
    uintptr_t addr; /* 0: the slot is free (sparse in the kernel's table) */
    size_t size;
} fixed_slot;

/* The fixed-buffer table and the provided-buffer ring of one io_uring.
 *
 * Invariants. Fixed buffers (under lock): slot i has addr != 0 exactly when entry i of the
 * kernel's table holds [addr, addr + size), a chunk or huge block that region_add gave the
 * region (id i, offset 0) and region_remove has not taken back; a free slot's index is on
 * free_slots exactly once; nfree + live + lost == nslots, lost counting the slots the kernel
 * refused to empty (kept out of use). Registered memory is never purged: the
 * kernel holds its pages pinned, and madvise or a hole punch would give the process new
 * pages while the kernel goes on reading and writing the old ones.
 * Provided buffers (one thread at a time: the one reaping completions): ring place i (below
 * ring_entries) has two bids, i and i + ring_entries, used in turn, so that a completion
 * handed in twice finds its bid empty. For every place, exactly one of: bufs[bid] of one of
 * its bids is a buffer with no readable bytes and ring_size writable ones whose address the
 * ring has handed to the kernel under that bid (once: it comes back in exactly one
 * completion), and the other bid's entry is NULL; or both are NULL and the bid to use next
 * is on missing (the pool refused a buffer; the next call tries again). */
struct bp_uring {
    bp_os os; /* what bp_uring_os hands out; ctx = this struct */
    bp_os inner;
    struct io_uring *ring;
    struct io_uring own_ring; /* ring points here when bp_uring_new made it */
    size_t map_size;          /* of the mapping this struct and its arrays lie in */
    pthread_mutex_t lock;
    unsigned nslots, nfree, live, lost;
    fixed_slot *slots;    /* [nslots] */
    uint32_t *free_slots; /* [nslots], a stack: the lowest index on top at first */

    struct io_uring_buf_ring *buf_ring; /* NULL: no provided buffers */
    size_t buf_ring_map_size;
    unsigned ring_entries;
    uint16_t group;
    size_t ring_size; /* bytes of each provided buffer */
    bp_pool *ring_pool;
    bp_buf **bufs;     /* [2 * ring_entries], by bid */
    uint16_t *missing; /* [ring_entries] */
    unsigned nmissing;
};

/* ---- the OS layer ------------------------------------------------------------------------ */

static void *uring_map(size_t size, size_t align, void *ctx)
{
    const bp_uring *u = ctx;
    return u->inner.map(size, align, u->inner.ctx);
}

static void *uring_map_memory(size_t size, size_t align, bp_map_kind kind, void *ctx)
{
    const bp_uring *u = ctx;
    if (u->inner.map_memory != NULL)
        return u->inner.map_memory(size, align, kind, u->inner.ctx);
    return u->inner.map(size, align, u->inner.ctx);
}

static int uring_unmap(void *addr, size_t size, void *ctx)
{
    const bp_uring *u = ctx;
    return u->inner.unmap(addr, size, u->inner.ctx);
}

static bool is_registered(bp_uring *u, const void *addr)
{
    bool found = false;
    pthread_mutex_lock(&u->lock);
    for (unsigned i = 0; i < u->nslots && !found; i++)
        found = u->slots[i].addr != 0 && (uintptr_t)addr >= u->slots[i].addr &&
                (uintptr_t)addr - u->slots[i].addr < u->slots[i].size;
    pthread_mutex_unlock(&u->lock);
    return found;
}

/* Linear in the table: purges come from the decay timer and trims, not from allocations. */
static int uring_purge(void *addr, size_t size, void *ctx)
{
    bp_uring *u = ctx;
    if (is_registered(u, addr))
        return EBUSY; /* pinned: see the invariants; the pages stay as they are */
    return u->inner.purge != NULL ? u->inner.purge(addr, size, u->inner.ctx) : ENOSYS;
}

static int update_slot(bp_uring *u, unsigned index, void *addr, size_t size)
{
    if (addr != NULL && bp_uring_fault_register_at != 0 && --bp_uring_fault_register_at == 0)
        return EFAULT;
    struct iovec iov = {.iov_base = addr, .iov_len = size};
    __u64 tag = 0;
    int r = io_uring_register_buffers_update_tag(u->ring, index, &iov, &tag, 1);
    return r == 1 ? 0 : r < 0 ? -r : EIO;
}

static int uring_region_add(void *addr, size_t size, bp_map_kind kind, bp_region *out, void *ctx)
{
    (void)kind;
    bp_uring *u = ctx;
    pthread_mutex_lock(&u->lock);
    int err = u->nfree == 0 ? ENOSPC : 0;
    if (err == 0) {
        unsigned index = u->free_slots[--u->nfree];
        /* the kernel refuses what it cannot pin whole: above 1 GiB, or beyond RLIMIT_MEMLOCK
         * for a program without CAP_IPC_LOCK (ENOMEM) */
        err = update_slot(u, index, addr, size);
        if (err == 0) {
            u->slots[index] = (fixed_slot){.addr = (uintptr_t)addr, .size = size};
            u->live++;
            out->id = index;
            out->offset = 0;
        } else {
            u->nfree++;
        }
    }
    pthread_mutex_unlock(&u->lock);
    return err;
}

static void uring_region_remove(void *addr, size_t size, const bp_region *region, void *ctx)
{
    bp_uring *u = ctx;
    pthread_mutex_lock(&u->lock);
    unsigned index = region->id;
    if (index >= u->nslots || u->slots[index].addr != (uintptr_t)addr ||
        u->slots[index].size != size)
        bp_fatal("uring: region %u is not the fixed buffer at %p (%zu bytes)", index, addr, size);
    /* An I/O still in flight on the buffer keeps its pages until it completes (the kernel
     * holds them); the table slot is free at once. */
    int err = update_slot(u, index, NULL, 0);
    if (err != 0) {
        bp_message("uring: cannot unregister fixed buffer %u (errno %d); its slot stays used",
                   index, err);
        u->lost++;
    } else {
        u->free_slots[u->nfree++] = index;
    }
    u->slots[index].addr = 0;
    u->live--;
    pthread_mutex_unlock(&u->lock);
}

/* ---- the handle -------------------------------------------------------------------------- */

static int ring_setup(bp_uring *u, struct io_uring *ring, unsigned entries)
{
    if (ring != NULL) {
        u->ring = ring;
        return 0;
    }
    if (bp_uring_fault_setup != 0) {
        int err = bp_uring_fault_setup;
        bp_uring_fault_setup = 0;
        return err;
    }
    int r = io_uring_queue_init(entries, &u->own_ring, 0);
    if (r < 0)
        return -r;
    u->ring = &u->own_ring;
    return 0;
}

bp_uring *bp_uring_new(struct io_uring *ring, unsigned entries, unsigned fixed_buffers,
                       const bp_os *inner)
{
    if (entries == 0)
        entries = 256;
    if (fixed_buffers == 0)
        fixed_buffers = 1024;
    if (fixed_buffers > URING_MAX_TABLE || (ring == NULL && entries > URING_MAX_RING_ENTRIES)) {
        errno = EINVAL;
        return NULL;
    }
    if (inner == NULL)
        inner = bp_os_default();
    size_t map_size = bp_align_up(sizeof(bp_uring) + fixed_buffers * sizeof(fixed_slot) +
                                      fixed_buffers * sizeof(uint32_t),
                                  4096);
    bp_uring *u = bp_os_default()->map(map_size, 4096, NULL);
    if (u == NULL)
        return NULL; /* errno from mmap */
    u->map_size = map_size;
    u->nslots = u->nfree = fixed_buffers;
    u->slots = (fixed_slot *)(u + 1);
    u->free_slots = (uint32_t *)(u->slots + fixed_buffers);
    for (unsigned i = 0; i < fixed_buffers; i++)
        u->free_slots[i] = fixed_buffers - 1 - i;
    u->inner = *inner;
    pthread_mutex_init(&u->lock, NULL);
    int err = ring_setup(u, ring, entries);
    if (err == 0) {
        int r = io_uring_register_buffers_sparse(u->ring, fixed_buffers);
        err = r < 0 ? -r : 0; /* EBUSY: the caller's ring has a table already */
        if (err != 0 && ring == NULL)
            io_uring_queue_exit(&u->own_ring);
    }
    if (err != 0) {
        pthread_mutex_destroy(&u->lock);
        bp_os_default()->unmap(u, map_size, NULL);
        errno = err;
        return NULL;
    }
    u->os = (bp_os){
        .map = uring_map,
        .unmap = uring_unmap,
        .purge = uring_purge,
        .ctx = u,
        .map_memory = uring_map_memory,
        .region_add = uring_region_add,
        .region_remove = uring_region_remove,
    };
    return u;
}

struct io_uring *bp_uring_ring(bp_uring *u)
{
    return u->ring;
}

const bp_os *bp_uring_os(bp_uring *u)
{
    return &u->os;
}

unsigned bp_uring_registered(bp_uring *u)
{
    pthread_mutex_lock(&u->lock);
    unsigned live = u->live;
    pthread_mutex_unlock(&u->lock);
    return live;
}

void bp_uring_destroy(bp_uring *u)
{
    if (u == NULL)
        return;
    if (u->buf_ring != NULL)
        bp_fatal("uring %p: bp_uring_destroy with provided buffers: bp_uring_unprovide first",
                 (void *)u);
    if (bp_uring_registered(u) != 0)
        bp_fatal("uring %p: %u fixed buffers still registered: destroy the pools on its layer "
                 "first",
                 (void *)u, u->live);
    io_uring_unregister_buffers(u->ring);
    if (u->ring == &u->own_ring)
        io_uring_queue_exit(&u->own_ring);
    pthread_mutex_destroy(&u->lock);
    bp_os_default()->unmap(u, u->map_size, NULL);
}

/* ---- provided buffers -------------------------------------------------------------------- */

/* A fresh buffer for bid, handed to the kernel at the ring's tail; false when the pool has
 * none (bid goes on missing). */
static bool provide_one(bp_uring *u, uint16_t bid)
{
    bp_buf *b = bp_buf_new(u->ring_pool, u->ring_size, u->ring_size);
    struct iovec iov;
    if (b != NULL && bp_buf_reserve_iov(b, u->ring_size, &iov, 1) != 1) {
        bp_buf_release(b);
        b = NULL;
    }
    if (b == NULL) {
        u->missing[u->nmissing++] = bid;
        return false;
    }
    u->bufs[bid] = b;
    io_uring_buf_ring_add(u->buf_ring, iov.iov_base, (unsigned)u->ring_size, bid,
                          io_uring_buf_ring_mask(u->ring_entries), 0);
    io_uring_buf_ring_advance(u->buf_ring, 1);
    return true;
}

static void refill(bp_uring *u)
{
    unsigned n = u->nmissing;
    u->nmissing = 0;
    for (unsigned i = 0; i < n; i++)
        if (!provide_one(u, u->missing[i])) {
            /* the rest wait for the next call, still on missing */
            for (unsigned j = i + 1; j < n; j++)
                u->missing[u->nmissing++] = u->missing[j];
            return;
        }
}

void bp_uring_unprovide(bp_uring *u)
{
    if (u == NULL || u->buf_ring == NULL)
        return;
    io_uring_unregister_buf_ring(u->ring, u->group);
    for (unsigned bid = 0; bid < 2 * u->ring_entries; bid++)
        if (u->bufs[bid] != NULL)
            bp_buf_release(u->bufs[bid]);
    bp_os_default()->unmap(u->buf_ring, u->buf_ring_map_size, NULL);
    u->buf_ring = NULL;
    u->bufs = NULL;
    u->missing = NULL;
    u->nmissing = 0;
}

/* liburing 2.4's io_uring_setup_buf_ring, which Debian 12's liburing 2.3 lacks: the ring in
 * page-aligned memory of its own (the bid and missing arrays after it), registered with the
 * kernel under `group`. */
int bp_uring_provide(bp_uring *u, bp_pool *pool, uint16_t group, unsigned count, size_t size)
{
    if (u == NULL || pool == NULL || u->buf_ring != NULL || count == 0 ||
        count > URING_MAX_RING_ENTRIES || (count & (count - 1)) != 0 || size == 0 ||
        size > UINT32_MAX)
        return EINVAL;
    size_t ring_bytes = bp_align_up(count * sizeof(struct io_uring_buf), 4096);
    size_t map_size =
        bp_align_up(ring_bytes + count * (2 * sizeof(bp_buf *) + sizeof(uint16_t)), 4096);
    void *mem = bp_os_default()->map(map_size, 4096, NULL);
    if (mem == NULL)
        return ENOMEM;
    u->buf_ring = mem;
    u->buf_ring_map_size = map_size;
    u->bufs = (bp_buf **)((char *)mem + ring_bytes);
    u->missing = (uint16_t *)(u->bufs + 2 * count);
    u->nmissing = 0;
    u->ring_entries = count;
    u->ring_size = size;
    u->ring_pool = pool;
    u->group = group;
    io_uring_buf_ring_init(u->buf_ring);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = count, .bgid = group};
    int r = io_uring_register_buf_ring(u->ring, &reg, 0);
    if (r < 0) {
        bp_os_default()->unmap(mem, map_size, NULL);
        u->buf_ring = NULL;
        return -r; /* EEXIST: the group is taken; EINVAL: a kernel before 5.19 */
    }
    for (unsigned bid = 0; bid < count; bid++)
        if (!provide_one(u, (uint16_t)bid)) {
            bp_uring_unprovide(u);
            return ENOMEM;
        }
    return 0;
}

struct bp_buf *bp_uring_recv_buf(bp_uring *u, const struct io_uring_cqe *cqe)
{
    if (u == NULL || cqe == NULL || u->buf_ring == NULL) {
        errno = EINVAL;
        return NULL;
    }
    refill(u);
    if (!(cqe->flags & IORING_CQE_F_BUFFER)) {
        /* no buffer taken: an error (ENOBUFS when the ring was empty) or the end of stream */
        errno = cqe->res < 0 ? -cqe->res : cqe->res == 0 ? 0 : EINVAL;
        return NULL;
    }
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (bid >= 2 * u->ring_entries || u->bufs[bid] == NULL) {
        errno = EINVAL; /* a completion of another group, or one handed in twice */
        return NULL;
    }
    bp_buf *b = u->bufs[bid];
    u->bufs[bid] = NULL;
    if (cqe->res <= 0) { /* a buffer taken and nothing put in it: it goes straight back */
        errno = cqe->res < 0 ? -cqe->res : 0;
        struct iovec iov;
        bp_buf_reserve_iov(b, u->ring_size, &iov, 1);
        u->bufs[bid] = b;
        io_uring_buf_ring_add(u->buf_ring, iov.iov_base, (unsigned)u->ring_size, (uint16_t)bid,
                              io_uring_buf_ring_mask(u->ring_entries), 0);
        io_uring_buf_ring_advance(u->buf_ring, 1);
        return NULL;
    }
    if ((size_t)cqe->res > u->ring_size || bp_buf_commit(b, (size_t)cqe->res) != 0)
        bp_fatal("uring: a completion of %d bytes into a provided buffer of %zu", cqe->res,
                 u->ring_size);
    provide_one(u, (uint16_t)(bid ^ u->ring_entries)); /* or on missing, for the next call */
    return b;
}

#else /* no liburing: the same calls, each refusing with ENOSYS */

bp_uring *bp_uring_new(struct io_uring *ring, unsigned entries, unsigned fixed_buffers,
                       const bp_os *inner)
{
    (void)ring;
    (void)entries;
    (void)fixed_buffers;
    (void)inner;
    errno = ENOSYS;
    return NULL;
}

/* A bp_uring never exists in this build: the calls below only ever see NULL. */
struct io_uring *bp_uring_ring(bp_uring *u)
{
    (void)u;
    return NULL;
}

const bp_os *bp_uring_os(bp_uring *u)
{
    (void)u;
    return NULL;
}

unsigned bp_uring_registered(bp_uring *u)
{
    (void)u;
    return 0;
}

void bp_uring_destroy(bp_uring *u)
{
    (void)u;
}

int bp_uring_provide(bp_uring *u, bp_pool *pool, uint16_t group, unsigned count, size_t size)
{
    (void)u;
    (void)pool;
    (void)group;
    (void)count;
    (void)size;
    return ENOSYS;
}

void bp_uring_unprovide(bp_uring *u)
{
    (void)u;
}

struct bp_buf *bp_uring_recv_buf(bp_uring *u, const struct io_uring_cqe *cqe)
{
    (void)u;
    (void)cqe;
    errno = ENOSYS;
    return NULL;
}

#endif
