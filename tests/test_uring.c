/* test_uring.c — bp_uring: every chunk and huge block of a pool on its layer is an io_uring
 * fixed buffer while it is mapped (READ_FIXED / WRITE_FIXED with the index and offset from
 * bp_region_of move the right bytes; an unmapped chunk's index is empty in the kernel's
 * table), registered memory is never purged (the kernel would go on writing pages the
 * process no longer sees), a refused registration or a full table fails the allocation
 * with ENOMEM and leaves the pool usable, a ring that cannot be set up (io_uring missing or
 * disabled: injected) is a clean NULL + errno, and a provided-buffer ring stays filled from
 * the pool while its completions come back as bp_bufs. */
#define _GNU_SOURCE
#include "front.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* src/uring.c's test hooks (see there) */
extern int bp_uring_fault_setup;
extern unsigned long bp_uring_fault_register_at;

static bp_pool *pool_on(bp_uring *u, int purge_decay_ms)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.cache_bytes = 0; /* normal blocks go back to their chunk (and its purge) when freed */
    cfg.chunk_size = 256 * KiB;
    cfg.arenas = 1;
    cfg.huge_cache_bytes = 0; /* a freed huge block is unmapped (and unregistered) at once */
    cfg.purge_decay_ms = purge_decay_ms;
    cfg.os = bp_uring_os(u);
    return bp_pool_new(&cfg);
}

static unsigned char byte_at(uint64_t seed, size_t i)
{
    return (unsigned char)((i * 131) ^ (seed >> (i % 56)) ^ (i >> 9));
}

/* A temporary file holding len patterned bytes. */
static int patterned_file(uint64_t seed, size_t len)
{
    int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    unsigned char block[4096];
    for (size_t done = 0; done < len;) {
        size_t n = BP_TEST_MIN(sizeof block, len - done);
        for (size_t i = 0; i < n; i++)
            block[i] = byte_at(seed, done + i);
        REQUIRE(pwrite(fd, block, n, (off_t)done) == (ssize_t)n);
        done += n;
    }
    return fd;
}

/* Submits what is prepared and returns the first completion's result (and flags). */
static int complete_one(struct io_uring *ring, unsigned *flags)
{
    REQUIRE(io_uring_submit(ring) >= 1);
    struct io_uring_cqe *cqe = NULL;
    REQUIRE(io_uring_wait_cqe(ring, &cqe) == 0);
    int res = cqe->res;
    if (flags != NULL)
        *flags = cqe->flags;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

/* READ_FIXED of len bytes at file offset `at` into p, through p's region; the result. */
static int read_fixed(bp_uring *u, int fd, void *p, size_t len, off_t at)
{
    uint32_t index = 0;
    uint64_t offset = 0;
    REQUIRE(bp_region_of(p, &index, &offset) == 0);
    struct io_uring_sqe *sqe = io_uring_get_sqe(bp_uring_ring(u));
    REQUIRE(sqe != NULL);
    io_uring_prep_read_fixed(sqe, fd, p, (unsigned)len, (uint64_t)at, (int)index);
    return complete_one(bp_uring_ring(u), NULL);
}

static size_t wrong_bytes(const unsigned char *p, uint64_t seed, size_t from, size_t len)
{
    size_t wrong = 0;
    for (size_t i = 0; i < len; i++)
        wrong += p[i] != byte_at(seed, from + i);
    return wrong;
}

/* Ends a test early (leaking on purpose) when the kernel has no io_uring for us. */
static bp_uring *uring_or_skip(unsigned fixed_buffers, const bp_os *inner)
{
    bp_uring *u = bp_uring_new(NULL, 64, fixed_buffers, inner);
    if (u == NULL)
        printf("  (io_uring unavailable here: errno %d; skipped)\n", errno);
    return u;
}

static void chunks_are_fixed_buffers(void)
{
    bp_uring *u = uring_or_skip(64, NULL);
    if (u == NULL)
        return;
    bp_pool *pool = pool_on(u, -1);
    REQUIRE(pool != NULL);
    CHECK_EQ(bp_uring_registered(u), 0);
    const uint64_t seed = 0x5eed0001;
    int fd = patterned_file(seed, 8 * MiB);

    unsigned char *small = bp_alloc(pool, 100);
    unsigned char *normal = bp_alloc(pool, 40 * KiB);
    unsigned char *huge = bp_alloc(pool, 3 * MiB);
    REQUIRE(small != NULL && normal != NULL && huge != NULL);
    CHECK_EQ(bp_uring_registered(u), 2); /* one chunk, one huge block */
    uint32_t small_index = 99, huge_index = 99;
    uint64_t offset = 0;
    CHECK_EQ(bp_region_of(small, &small_index, &offset), 0);
    CHECK_EQ(bp_region_of(huge, &huge_index, &offset), 0);
    CHECK_EQ(offset, 0); /* a huge block starts its fixed buffer */
    CHECK(small_index != huge_index);

    CHECK_EQ(read_fixed(u, fd, small, 100, 1000), 100);
    CHECK_EQ(wrong_bytes(small, seed, 1000, 100), 0);
    CHECK_EQ(read_fixed(u, fd, normal, 40 * KiB, 5), (int)(40 * KiB));
    CHECK_EQ(wrong_bytes(normal, seed, 5, 40 * KiB), 0);
    /* into the middle of the huge block: offset from the block's region */
    CHECK_EQ(read_fixed(u, fd, huge + 2 * MiB + 7, 1 * MiB - 7, 12345), (int)(1 * MiB - 7));
    CHECK_EQ(wrong_bytes(huge + 2 * MiB + 7, seed, 12345, 1 * MiB - 7), 0);

    /* a bp_buf written out with WRITE_FIXED from its region */
    bp_buf *b = bp_buf_new(pool, 3000, 3000);
    REQUIRE(b != NULL);
    for (size_t i = 0; i < 3000; i++)
        CHECK_EQ(bp_buf_write_u8(b, byte_at(seed, 70000 + i)), 0);
    CHECK_EQ(bp_buf_skip(b, 10), 0);
    uint32_t index = 0;
    size_t len = 0;
    CHECK_EQ(bp_buf_region_of(b, &index, &offset, &len), 0);
    CHECK_EQ(len, 2990);
    const uint8_t *bytes = NULL;
    CHECK_EQ(bp_buf_peek(b, &bytes), 2990);
    int out = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    REQUIRE(out >= 0);
    struct io_uring_sqe *sqe = io_uring_get_sqe(bp_uring_ring(u));
    io_uring_prep_write_fixed(sqe, out, bytes, (unsigned)len, 0, (int)index);
    CHECK_EQ(complete_one(bp_uring_ring(u), NULL), 2990);
    unsigned char back[2990];
    CHECK_EQ(pread(out, back, sizeof back, 0), (ssize_t)sizeof back);
    CHECK_EQ(wrong_bytes(back, seed, 70010, sizeof back), 0);
    close(out);
    bp_buf_release(b);

    /* more chunks, one fixed buffer each */
    void *blocks[6];
    for (unsigned i = 0; i < 6; i++) {
        blocks[i] = bp_alloc(pool, 200 * KiB);
        REQUIRE(blocks[i] != NULL);
        CHECK_EQ(read_fixed(u, fd, blocks[i], 200 * KiB, (off_t)(i * 4096)), (int)(200 * KiB));
        CHECK_EQ(wrong_bytes(blocks[i], seed, i * 4096, 200 * KiB), 0);
    }
    CHECK_EQ(bp_uring_registered(u), 8);

    /* chunks given back: out of the kernel's table before they are unmapped */
    uint32_t last_index = 0;
    CHECK_EQ(bp_region_of(blocks[5], &last_index, &offset), 0);
    void *gone = blocks[5]; /* only its address: the kernel checks it against the slot */
    for (unsigned i = 0; i < 6; i++)
        bp_free(blocks[i]);
    bp_pool_trim(pool);
    CHECK(bp_uring_registered(u) < 8);
    sqe = io_uring_get_sqe(bp_uring_ring(u));
    io_uring_prep_read_fixed(sqe, fd, gone, 16, 0, (int)last_index);
    CHECK_EQ(complete_one(bp_uring_ring(u), NULL), -EFAULT); /* an empty slot */

    bp_free(huge);
    bp_free(normal);
    bp_free(small);
    bp_pool_trim(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(bp_uring_registered(u), 0);
    close(fd);
    bp_uring_destroy(u);
}

/* Freed pages of a registered chunk are not purged, so what the kernel writes into the
 * block handed out again is what the program reads there. */
static void registered_memory_is_not_purged(const bp_os *inner, const char *what)
{
    bp_uring *u = uring_or_skip(16, inner);
    if (u == NULL)
        return;
    bp_pool *pool = pool_on(u, 0); /* purge at once, on every free */
    REQUIRE(pool != NULL);
    const uint64_t seed = 0x5eed0002;
    int fd = patterned_file(seed, 256 * KiB);
    void *keep = bp_alloc(pool, 64); /* the chunk stays */
    REQUIRE(keep != NULL);
    for (int round = 0; round < 4; round++) {
        unsigned char *p = bp_alloc(pool, 64 * KiB);
        REQUIRE(p != NULL);
        memset(p, 0xee, 64 * KiB); /* fault the pages in */
        bp_free(p);
        bp_pool_trim(pool); /* purges free pages: it would drop these */
        p = bp_alloc(pool, 64 * KiB);
        REQUIRE(p != NULL);
        CHECK_EQ(read_fixed(u, fd, p, 64 * KiB, round * 1000), (int)(64 * KiB));
        size_t wrong = wrong_bytes(p, seed, (size_t)round * 1000, 64 * KiB);
        if (wrong != 0)
            fprintf(stderr, "%s: round %d: %zu bytes the kernel wrote are not there\n", what, round,
                    wrong);
        CHECK_EQ(wrong, 0);
        bp_free(p);
    }
    bp_pool_trim(pool);
    bp_free(keep);
    bp_pool_destroy(pool);
    close(fd);
    bp_uring_destroy(u);
}

static void not_purged_default(void)
{
    registered_memory_is_not_purged(NULL, "default layer");
}

static void not_purged_shm(void)
{
    bp_shm *shm = bp_shm_new(16 * MiB, 0);
    REQUIRE(shm != NULL);
    registered_memory_is_not_purged(bp_shm_os(shm), "bp_shm");
    bp_shm_destroy(shm);
}

/* A registration the kernel refuses (injected, and a real one: a huge block above the
 * kernel's 1 GiB per buffer), and a full table: ENOMEM, the pool checks out, and serves the
 * next request the table has room for. */
static void refused_registrations(void)
{
    bp_uring *u = uring_or_skip(3, NULL);
    if (u == NULL)
        return;
    bp_pool *pool = pool_on(u, -1);
    REQUIRE(pool != NULL);
    void *first = bp_alloc(pool, 200 * KiB);
    REQUIRE(first != NULL);
    bp_uring_fault_register_at = 1; /* the next registration */
    errno = 0;
    CHECK(bp_alloc(pool, 200 * KiB) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(bp_uring_fault_register_at, 0);
    CHECK_EQ(bp_uring_registered(u), 1);
    CHECK_EQ(bp_pool_check(pool), 0);

    errno = 0;
    CHECK(bp_alloc(pool, 1 * ((size_t)1 << 30) + 4 * MiB) == NULL); /* the kernel: EFAULT */
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(bp_uring_registered(u), 1);

    void *second = bp_alloc(pool, 200 * KiB);
    void *third = bp_alloc(pool, 200 * KiB);
    CHECK(second != NULL && third != NULL);
    CHECK_EQ(bp_uring_registered(u), 3);
    errno = 0;
    CHECK(bp_alloc(pool, 200 * KiB) == NULL); /* the table is full */
    CHECK_EQ(errno, ENOMEM);
    CHECK(bp_alloc(pool, 1000) != NULL); /* what the chunks have still serves */
    bp_free(third);
    bp_pool_trim(pool); /* the empty chunk goes, and frees its slot */
    void *again = bp_alloc(pool, 200 * KiB);
    CHECK(again != NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(bp_uring_registered(u), 0);
    bp_uring_destroy(u);
}

/* No io_uring (ENOSYS) or io_uring disabled (EPERM): injected, since the kernel's setting is
 * the machine's. Also what the kernel does refuse: a caller's ring that has a fixed-buffer
 * table already (EBUSY), and counts out of range. Pools go on working either way. */
static void setup_errors(void)
{
    static const int injected[] = {ENOSYS, EPERM, ENOMEM};
    for (unsigned i = 0; i < sizeof injected / sizeof injected[0]; i++) {
        bp_uring_fault_setup = injected[i];
        errno = 0;
        CHECK(bp_uring_new(NULL, 0, 0, NULL) == NULL);
        CHECK_EQ(errno, injected[i]);
        CHECK_EQ(bp_uring_fault_setup, 0);
    }
    errno = 0;
    CHECK(bp_uring_new(NULL, 0, 16385, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(bp_uring_new(NULL, 65536, 0, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    void *p = bp_alloc(bp_pool_default(), 100);
    CHECK(p != NULL);
    bp_free(p);

    struct io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) != 0)
        return; /* no io_uring here: the injected errors were what could be tested */
    CHECK_EQ(io_uring_register_buffers_sparse(&ring, 4), 0);
    errno = 0;
    CHECK(bp_uring_new(&ring, 0, 8, NULL) == NULL);
    CHECK_EQ(errno, EBUSY);
    CHECK_EQ(io_uring_unregister_buffers(&ring), 0);
    bp_uring *u = bp_uring_new(&ring, 0, 8, NULL);
    REQUIRE(u != NULL);
    CHECK(bp_uring_ring(u) == &ring);
    bp_uring_destroy(u);
    /* the caller's ring is still the caller's, and works */
    io_uring_prep_nop(io_uring_get_sqe(&ring));
    CHECK_EQ(complete_one(&ring, NULL), 0);
    io_uring_queue_exit(&ring);
}

/* Submits a receive that picks its buffer from the group; the completion in *cqe. */
static void recv_into_group(struct io_uring *ring, int fd, uint16_t group,
                            struct io_uring_cqe *copy)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    REQUIRE(sqe != NULL);
    io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
    REQUIRE(io_uring_submit(ring) == 1);
    struct io_uring_cqe *cqe = NULL;
    REQUIRE(io_uring_wait_cqe(ring, &cqe) == 0);
    *copy = *cqe;
    io_uring_cqe_seen(ring, cqe);
}

/* Receives through an 8-buffer ring, many more messages than it holds, with every buffer
 * kept and with every buffer released: the ring never runs dry, each completion hands back
 * the bytes sent, and each buffer lies in a fixed buffer (WRITE_FIXED sends it back). */
static void provided_buffers(void)
{
    bp_uring *u = uring_or_skip(16, NULL);
    if (u == NULL)
        return;
    bp_pool *pool = pool_on(u, -1);
    REQUIRE(pool != NULL);
    struct io_uring *ring = bp_uring_ring(u);
    CHECK_EQ(bp_uring_provide(u, pool, 7, 6, 2048), EINVAL); /* not a power of two */
    CHECK_EQ(bp_uring_provide(u, pool, 7, 8, 0), EINVAL);
    CHECK_EQ(bp_uring_provide(u, pool, 7, 8, 2048), 0);
    CHECK_EQ(bp_uring_provide(u, pool, 8, 8, 2048), EINVAL); /* one ring per bp_uring */
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    test_rng rng = {test_seed(0x5eed0003)};
    bp_buf *kept[40];
    for (unsigned i = 0; i < 40; i++) {
        unsigned char msg[2048];
        size_t len = 1 + (size_t)test_below(&rng, sizeof msg);
        for (size_t k = 0; k < len; k++)
            msg[k] = byte_at(i, k);
        REQUIRE(write(fds[1], msg, len) == (ssize_t)len);
        struct io_uring_cqe cqe;
        recv_into_group(ring, fds[0], 7, &cqe);
        CHECK_EQ(cqe.res, (int)len);
        CHECK(cqe.flags & IORING_CQE_F_BUFFER);
        bp_buf *b = bp_uring_recv_buf(u, &cqe);
        REQUIRE(b != NULL);
        CHECK_EQ(bp_buf_readable(b), len);
        const uint8_t *got = NULL;
        CHECK_EQ(bp_buf_peek(b, &got), len);
        CHECK_EQ(wrong_bytes(got, i, 0, len), 0);
        errno = 0;
        CHECK(bp_uring_recv_buf(u, &cqe) == NULL); /* handed in twice */
        CHECK_EQ(errno, EINVAL);
        /* back through the socket from the buffer's fixed buffer */
        uint32_t index = 0;
        uint64_t offset = 0;
        size_t rlen = 0;
        CHECK_EQ(bp_buf_region_of(b, &index, &offset, &rlen), 0);
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_write_fixed(sqe, fds[0], got, (unsigned)rlen, 0, (int)index);
        CHECK_EQ(complete_one(ring, NULL), (int)len);
        unsigned char echo[2048];
        CHECK_EQ(read(fds[1], echo, sizeof echo), (ssize_t)len);
        CHECK_EQ(wrong_bytes(echo, i, 0, len), 0);
        if (i < 20)
            kept[i] = b; /* the first 20 held: the ring is refilled from the pool */
        else
            bp_buf_release(b);
    }
    for (unsigned i = 0; i < 20; i++)
        bp_buf_release(kept[i]);

    /* no buffer in a completion: an error or the end of stream */
    struct io_uring_cqe none = {.res = -ECONNRESET, .flags = 0};
    errno = 0;
    CHECK(bp_uring_recv_buf(u, &none) == NULL);
    CHECK_EQ(errno, ECONNRESET);
    close(fds[1]);
    struct io_uring_cqe eof;
    recv_into_group(ring, fds[0], 7, &eof);
    CHECK_EQ(eof.res, 0);
    errno = 1;
    CHECK(bp_uring_recv_buf(u, &eof) == NULL);
    CHECK_EQ(errno, 0);
    close(fds[0]);
    bp_uring_unprovide(u);
    errno = 0;
    CHECK(bp_uring_recv_buf(u, &eof) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    bp_uring_destroy(u);
}

/* A pool that cannot fill the ring: ENOMEM and nothing kept (the pool gets every buffer
 * back, the group is free for another try). */
static void provide_from_a_full_pool(void)
{
    bp_uring *u = uring_or_skip(4, NULL);
    if (u == NULL)
        return;
    bp_pool *pool = pool_on(u, -1);
    REQUIRE(pool != NULL);
    /* 4 chunks of 256 KiB hold 4 * 4 buffers of 64 KiB (the table has 4 slots) */
    CHECK_EQ(bp_uring_provide(u, pool, 1, 32, 64 * KiB), ENOMEM);
    CHECK_EQ(bp_pool_check(pool), 0);
    CHECK_EQ(bp_uring_provide(u, pool, 1, 8, 64 * KiB), 0);
    bp_uring_unprovide(u);
    bp_pool_destroy(pool);
    bp_uring_destroy(u);
}

int main(void)
{
    RUN(setup_errors);
    RUN(chunks_are_fixed_buffers);
    RUN(not_purged_default);
    RUN(not_purged_shm);
    RUN(refused_registrations);
    RUN(provided_buffers);
    RUN(provide_from_a_full_pool);
    return test_report();
}
