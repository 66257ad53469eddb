/* test_shm.c — bp_shm: chunks and huge blocks carved from one memfd that another process
 * maps. A producer writes messages into bp_bufs of a shared pool and sends (region, offset,
 * length) over a unix socket (the memfd passed once with SCM_RIGHTS); a consumer process
 * checks every byte where it lies, without a copy, and acks; the producer releases on the
 * ack. A consumer killed mid-stream leaves the producer's pool consistent and its buffers
 * reclaimable. A full memfd and a bad size are clean errors. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static bp_pool *shared_pool(bp_shm *shm, size_t chunk_size)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.chunk_size = chunk_size;
    cfg.arenas = 1;
    cfg.os = bp_shm_os(shm);
    cfg.memory_limit = 0;
    return bp_pool_new(&cfg);
}

/* Bytes of the memfd backed by memory now (tmpfs counts 512-byte blocks). */
static size_t backed_bytes(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (size_t)st.st_blocks * 512 : 0;
}

static void bad_sizes(void)
{
    errno = 0;
    CHECK(bp_shm_new(0, 0) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(bp_shm_new(5 * MiB, 0) == NULL); /* not a multiple of 4 MiB */
    CHECK_EQ(errno, EINVAL);
    bp_shm_destroy(NULL);
}

/* Blocks are at their region's offset in the memfd, as a second mapping of it shows; metadata
 * is not in the memfd; purging and unmapping give the memfd's pages back. */
static void blocks_live_in_the_memfd(void)
{
    bp_shm *shm = bp_shm_new(64 * MiB, 42);
    REQUIRE(shm != NULL);
    CHECK_EQ(bp_shm_size(shm), 64 * MiB);
    bp_pool *pool = shared_pool(shm, 4 * MiB);
    REQUIRE(pool != NULL);
    CHECK_EQ(bp_shm_used(shm), 0); /* the pool's own mapping is private */
    unsigned char *view = mmap(NULL, 64 * MiB, PROT_READ, MAP_SHARED, bp_shm_fd(shm), 0);
    REQUIRE(view != MAP_FAILED);

    char *small = bp_alloc(pool, 100);
    char *normal = bp_alloc(pool, 1 * MiB);
    char *huge = bp_alloc(pool, 9 * MiB);
    REQUIRE(small != NULL && normal != NULL && huge != NULL);
    CHECK_EQ(bp_shm_used(shm), 4 * MiB + 9 * MiB); /* one chunk, one huge block */
    memset(small, 'a', 100);
    memset(normal, 'b', 1 * MiB);
    memset(huge, 'c', 9 * MiB);
    uint32_t id = 0;
    uint64_t off = 0;
    CHECK_EQ(bp_region_of(small, &id, &off), 0);
    CHECK_EQ(id, 42);
    CHECK(view[off] == 'a' && view[off + 99] == 'a');
    CHECK_EQ(bp_region_of(normal + 1000, &id, &off), 0);
    CHECK(view[off] == 'b' && view[off - 1000 + 1 * MiB - 1] == 'b');
    CHECK_EQ(bp_region_of(huge, &id, &off), 0);
    CHECK(off + 9 * MiB <= 64 * MiB);
    CHECK(view[off] == 'c' && view[off + 9 * MiB - 1] == 'c');

    /* freed and purged: the memfd's pages go (fallocate PUNCH_HOLE), not only ours */
    size_t before = backed_bytes(bp_shm_fd(shm));
    CHECK(before >= 10 * MiB);
    bp_free(normal);
    bp_free(huge);
    bp_pool_trim(pool);
    size_t after = backed_bytes(bp_shm_fd(shm));
    CHECK(after + 9 * MiB + 1 * MiB <= before + 64 * KiB);
    CHECK(small[0] == 'a'); /* a live block keeps its bytes */
    bp_free(small);
    bp_pool_trim(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(bp_shm_used(shm), 0);
    CHECK(backed_bytes(bp_shm_fd(shm)) <= 64 * KiB);
    munmap(view, 64 * MiB);
    bp_shm_destroy(shm);
}

/* A memfd with no room: ENOMEM, a consistent pool that serves again once room is back. */
static void full_memfd(void)
{
    bp_shm *shm = bp_shm_new(8 * MiB, 0);
    REQUIRE(shm != NULL);
    bp_pool *pool = shared_pool(shm, 1 * MiB);
    REQUIRE(pool != NULL);
    void *blocks[16];
    unsigned n = 0;
    errno = 0;
    while (n < 16 && (blocks[n] = bp_alloc(pool, 1 * MiB)) != NULL)
        n++;
    CHECK_EQ(errno, ENOMEM);
    /* chunks take 4 MiB of address each (the chunk map's granule): 2 fit in 8 MiB */
    CHECK_EQ(n, 2);
    CHECK_EQ(bp_pool_check(pool), 0);
    errno = 0;
    CHECK(bp_alloc(pool, 20 * MiB) == NULL); /* a huge block larger than the memfd */
    CHECK_EQ(errno, ENOMEM);
    bp_free(blocks[--n]);
    bp_pool_trim(pool);
    void *again = bp_alloc(pool, 1 * MiB);
    CHECK(again != NULL);
    bp_free(again);
    while (n > 0)
        bp_free(blocks[--n]);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(bp_shm_used(shm), 0);
    bp_shm_destroy(shm);
}

/* ---- two processes ---------------------------------------------------------------------- */

typedef struct message {
    uint64_t seq;
    uint64_t offset;
    uint32_t region;
    uint32_t len;
} message;

#define WINDOW   512 /* messages in flight */
#define PATTERN  (64 * KiB)
#define MAX_SIZE (300 * KiB) /* a few normal runs among the small ones */
static uint8_t pattern[PATTERN + MAX_SIZE];

static size_t message_size(test_rng *rng)
{
    uint64_t r = test_below(rng, 1000);
    if (r == 0)
        return 1 + test_below(rng, MAX_SIZE);
    if (r < 50)
        return 1 + test_below(rng, 32 * KiB);
    return 1 + test_below(rng, 2 * KiB);
}

static const uint8_t *content(uint64_t seq)
{
    return pattern + (seq * 7919) % PATTERN;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
    }
    return true;
}

static void send_fd(int sock, int fd)
{
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.space,
                        .msg_controllen = sizeof ctl.space};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    REQUIRE(sendmsg(sock, &mh, MSG_NOSIGNAL) == 1);
}

static int receive_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.space,
                        .msg_controllen = sizeof ctl.space};
    if (recvmsg(sock, &mh, 0) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* The consumer: maps the memfd read-only, checks each message where it lies and acks it by
 * its sequence number. Exits 0 after `total` messages, 2 on a wrong byte or message; after
 * `die_after` messages (when not 0) it stops acking and waits to be killed. */
static void consumer(int sock, uint64_t total, uint64_t die_after)
{
    int fd = receive_fd(sock);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        _exit(3);
    const uint8_t *view = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (view == MAP_FAILED)
        _exit(3);
    message batch[64];
    uint64_t acks[64];
    for (uint64_t seen = 0; seen < total;) {
        ssize_t r = read(sock, batch, sizeof batch);
        if (r <= 0 || r % (ssize_t)sizeof(message) != 0) {
            /* a record split across reads: finish it */
            size_t have = r > 0 ? (size_t)r : 0;
            if (r <= 0 ||
                !read_all(sock, (char *)batch + have, sizeof(message) - have % sizeof(message)))
                _exit(4);
            r = (ssize_t)(have + sizeof(message) - have % sizeof(message));
        }
        size_t n = (size_t)r / sizeof(message);
        for (size_t i = 0; i < n; i++) {
            const message *m = &batch[i];
            if (m->seq != seen + i || m->region != 5 || m->offset + m->len > (uint64_t)st.st_size ||
                memcmp(view + m->offset, content(m->seq), m->len) != 0) {
                fprintf(stderr, "consumer: message %ju wrong (offset %ju, length %u)\n",
                        (uintmax_t)m->seq, (uintmax_t)m->offset, m->len);
                _exit(2);
            }
            acks[i] = m->seq;
        }
        seen += n;
        if (die_after != 0 && seen >= die_after)
            for (;;)
                pause(); /* killed by the producer while it has messages in flight */
        if (!write_all(sock, acks, n * sizeof acks[0]))
            _exit(5);
    }
    _exit(0);
}

typedef struct producer_result {
    uint64_t sent, acked;
    bool consumer_gone;
} producer_result;

/* Sends `total` messages with at most WINDOW in flight; on an ack releases the oldest. When
 * kill_at != 0, kills the consumer once that many are sent and stops at the broken socket.
 * Leaves unacknowledged buffers in inflight[]. */
static producer_result producer(bp_pool *pool, int sock, pid_t child, uint64_t total,
                                uint64_t kill_at, test_rng *rng, bp_buf *inflight[WINDOW])
{
    producer_result res = {0, 0, false};
    message batch[64];
    size_t nbatch = 0;
    while (res.acked < total) {
        while (res.sent < total && res.sent - res.acked < WINDOW && nbatch < 64) {
            size_t len = message_size(rng);
            bp_buf *b = bp_buf_new(pool, len, len);
            REQUIRE(b != NULL);
            REQUIRE(bp_buf_write_bytes(b, content(res.sent), len) == 0);
            message *m = &batch[nbatch++];
            size_t contiguous = 0;
            REQUIRE(bp_buf_region_of(b, &m->region, &m->offset, &contiguous) == 0);
            REQUIRE(contiguous == len);
            m->seq = res.sent;
            m->len = (uint32_t)len;
            inflight[res.sent % WINDOW] = b;
            res.sent++;
        }
        if (nbatch > 0) {
            if (!write_all(sock, batch, nbatch * sizeof batch[0])) {
                res.consumer_gone = true;
                return res;
            }
            nbatch = 0;
        }
        if (kill_at != 0 && res.sent >= kill_at && child > 0) {
            kill(child, SIGKILL);
            child = 0;
        }
        /* acks: block only when the window is full or everything is sent */
        uint64_t acks[64];
        bool must_wait = res.sent - res.acked == WINDOW || res.sent == total;
        ssize_t r = recv(sock, acks, sizeof acks, must_wait ? 0 : MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            res.consumer_gone = true;
            return res;
        }
        if (r % (ssize_t)sizeof acks[0] != 0)
            REQUIRE(read_all(sock, (char *)acks + r, sizeof acks[0] - (size_t)r % sizeof acks[0]));
        size_t n = ((size_t)r + sizeof acks[0] - 1) / sizeof acks[0];
        for (size_t i = 0; i < n; i++) {
            REQUIRE(acks[i] == res.acked); /* in order */
            bp_buf_release(inflight[res.acked % WINDOW]);
            inflight[res.acked % WINDOW] = NULL;
            res.acked++;
        }
    }
    return res;
}

static uint64_t messages_to_send(void)
{
    const char *env = getenv("BP_SHM_MESSAGES");
    if (env != NULL)
        return strtoull(env, NULL, 0);
    const char *san = getenv("BP_SANITIZER");
    if (san != NULL && strcmp(san, "valgrind") == 0)
        return 20000;
    return san != NULL && *san != '\0' ? 100000 : 1000000;
}

static void run_pair(uint64_t total, uint64_t kill_at, uint64_t seed)
{
    bp_shm *shm = bp_shm_new(256 * MiB, 5);
    REQUIRE(shm != NULL);
    bp_pool *pool = shared_pool(shm, 4 * MiB);
    REQUIRE(pool != NULL);
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(sv[0]);
        consumer(sv[1], total, kill_at);
    }
    close(sv[1]);
    send_fd(sv[0], bp_shm_fd(shm));
    test_rng rng = {seed};
    static bp_buf *inflight[WINDOW];
    producer_result res = producer(pool, sv[0], child, total, kill_at, &rng, inflight);
    close(sv[0]);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    if (kill_at == 0) {
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(!res.consumer_gone);
        CHECK_EQ(res.acked, total);
        if (test_failures != 0)
            printf("seed %#jx, %ju messages: consumer status %#x\n", (uintmax_t)seed,
                   (uintmax_t)total, status);
    } else {
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK(res.consumer_gone);
        CHECK(res.sent > res.acked); /* buffers were left in flight */
    }
    /* the producer's pool is whole, and what the consumer never acked is reclaimed */
    CHECK_EQ(bp_pool_check(pool), 0);
    for (uint64_t s = res.acked; s < res.sent; s++)
        bp_buf_release(inflight[s % WINDOW]);
    bp_pool_trim(pool);
    bp_arena_counters counters;
    bp_pool_counters(pool, &counters);
    CHECK_EQ(counters.active_bytes, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    CHECK_EQ(bp_shm_used(shm), 0);
    bp_pool_destroy(pool);
    bp_shm_destroy(shm);
}

static void two_processes(void)
{
    uint64_t total = messages_to_send();
    uint64_t seed = test_seed(0x5eed5);
    printf("%ju messages\n", (uintmax_t)total);
    run_pair(total, 0, seed);
}

static void consumer_killed_mid_stream(void)
{
    run_pair(100000, 20000, 0x7e57);
}

int main(void)
{
    test_rng fill = {0xfeed};
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)test_rand(&fill);
    signal(SIGPIPE, SIG_IGN);
    RUN(bad_sizes);
    RUN(blocks_live_in_the_memfd);
    RUN(full_memfd);
    RUN(two_processes);
    RUN(consumer_killed_mid_stream);
    return test_report();
}
