/* test_buf_edges.c — bp_buf at its edges: writev to a peer that has gone (no SIGPIPE), readv
 * into the room there is, growth that keeps every byte of the capacity, empty wrapped memory,
 * composites that keep their parts' bytes alive and unchanged, failed calls that change
 * nothing, writes whose source lies in the buffer itself, and overlong varints. */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static bp_pool *pool;

static bp_buf *filled(const char *text)
{
    bp_buf *b = bp_buf_new(pool, strlen(text), 0);
    REQUIRE(b != NULL && bp_buf_write_bytes(b, text, strlen(text)) == BP_OK);
    return b;
}

/* Whether the readable bytes of b are exactly text. */
static bool reads_as(const bp_buf *b, const char *text)
{
    char got[256];
    size_t n = strlen(text);
    return bp_buf_readable(b) == n && n <= sizeof got &&
           bp_buf_get_bytes(b, bp_buf_reader_index(b), got, n) == BP_OK &&
           memcmp(got, text, n) == 0;
}

/* ---- writev to a descriptor whose reader has gone --------------------------------------- */

/* In a child: the outcome is exit codes, so a death by SIGPIPE is seen as such. */
static void write_to_closed_socket(void *arg)
{
    (void)arg;
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        _exit(10);
    close(sv[1]);
    bp_buf *b = filled("nobody reads this");
    for (int i = 0; i < 3; i++) { /* the memory of a non-socket must not mislead later calls */
        errno = 0;
        ssize_t w = bp_buf_writev_fd(b, sv[0], 0);
        if (w != BP_EIO)
            _exit(11);
        if (errno != EPIPE)
            _exit(12);
    }
    if (bp_buf_reader_index(b) != 0) /* a failed write moves nothing */
        _exit(13);
    bp_buf_release(b);
    close(sv[0]);
}

/* A pipe is no socket: writev serves it, and with SIGPIPE ignored (what the README advises
 * for pipes) a reader that has gone is BP_EIO with EPIPE. A socket written next, on another
 * descriptor, is still written without the signal. */
static void write_to_pipes(void *arg)
{
    (void)arg;
    int p[2], sv[2];
    char got[8];
    if (pipe(p) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        _exit(20);
    for (int i = 0; i < 2; i++) { /* the second call takes the remembered path */
        bp_buf *b = filled("piped");
        if (bp_buf_writev_fd(b, p[1], 0) != 5 || read(p[0], got, 5) != 5 ||
            memcmp(got, "piped", 5) != 0)
            _exit(21);
        bp_buf_release(b);
    }
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    bp_buf *b = filled("lost");
    errno = 0;
    if (bp_buf_writev_fd(b, p[1], 0) != BP_EIO || errno != EPIPE)
        _exit(22);
    signal(SIGPIPE, SIG_DFL);
    close(sv[1]);
    errno = 0;
    if (bp_buf_writev_fd(b, sv[0], 0) != BP_EIO || errno != EPIPE)
        _exit(23);
    bp_buf_release(b);
}

/* A pipe whose reader has gone, SIGPIPE at its default (death): the write is BP_EIO with
 * EPIPE, the process lives, no SIGPIPE is left pending and the mask is as it was. A thread
 * that blocks SIGPIPE itself keeps its mask, and the signal stays pending for it. */
static void write_to_pipe_gone_default(void *arg)
{
    (void)arg;
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    if (pipe(p) != 0)
        _exit(30);
    close(p[0]);
    bp_buf *b = filled("lost");
    for (int i = 0; i < 2; i++) {
        errno = 0;
        if (bp_buf_writev_fd(b, p[1], 0) != BP_EIO || errno != EPIPE)
            _exit(31);
        sigset_t now;
        if (sigpending(&now) != 0 || sigismember(&now, SIGPIPE))
            _exit(32);
        if (pthread_sigmask(SIG_BLOCK, NULL, &now) != 0 || sigismember(&now, SIGPIPE))
            _exit(33);
    }
    sigset_t pipe_only, now;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    if (bp_buf_writev_fd(b, p[1], 0) != BP_EIO || errno != EPIPE)
        _exit(34);
    if (sigpending(&now) != 0 || !sigismember(&now, SIGPIPE)) /* the program's to take */
        _exit(35);
    if (pthread_sigmask(SIG_BLOCK, NULL, &now) != 0 || !sigismember(&now, SIGPIPE))
        _exit(36);
    bp_buf_release(b);
    close(p[1]);
}

static void check_child(void (*fn)(void *), const char *what)
{
    char out[512];
    int status = test_in_child(fn, NULL, out, sizeof out);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: child killed by signal %d%s\n", what, WTERMSIG(status),
                WTERMSIG(status) == SIGPIPE ? " (SIGPIPE)" : "");
    } else if (WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: child failed at step %d\n%s", what, WEXITSTATUS(status), out);
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_writev_peer_gone(void)
{
    check_child(write_to_closed_socket, "closed socket");
    check_child(write_to_pipes, "pipes");
    check_child(write_to_pipe_gone_default, "pipe gone, SIGPIPE default");
}

/* A regular file is no socket either; its bytes arrive whole. */
static void test_writev_file(void)
{
    char path[] = "/tmp/bufpool-writev-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    bp_buf *c = bp_buf_composite(pool, 2);
    bp_buf_append(c, filled("file "));
    bp_buf_append(c, filled("bytes"));
    CHECK_EQ(bp_buf_writev_fd(c, fd, 0), 10);
    char got[16] = {0};
    CHECK_EQ(pread(fd, got, sizeof got, 0), 10);
    CHECK(memcmp(got, "file bytes", 10) == 0);
    bp_buf_release(c);
    close(fd);
}

/* ---- readv into the room there is -------------------------------------------------------- */

static void test_readv_uses_room(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    bp_buf *b = bp_buf_new(pool, 4096, 0);
    CHECK_EQ(write(sv[0], "hello", 5), 5);
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), 5);
    CHECK_EQ(bp_buf_capacity(b), 4096); /* 5 bytes fit: nothing grew */
    bp_buf_release(b);

    /* capped at 8 KiB with 4091 bytes writable: the read fills them */
    b = bp_buf_new(pool, 4096, 8192);
    static char big[10000];
    memset(big, 'x', sizeof big);
    CHECK_EQ(bp_buf_write_bytes(b, "12345", 5), BP_OK);
    CHECK_EQ(write(sv[0], big, sizeof big), (ssize_t)sizeof big);
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), 4091);
    CHECK_EQ(bp_buf_capacity(b), 4096);
    /* full: it grows, never past its maximum */
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), 4096);
    CHECK_EQ(bp_buf_capacity(b), 8192);
    /* full at its maximum: BP_ECAP, and the bytes wait in the socket */
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), BP_ECAP);
    CHECK_EQ(bp_buf_readable(b), 8192);
    CHECK_EQ(bp_buf_skip(b, 8192), BP_OK);
    CHECK_EQ(bp_buf_discard_read(b), BP_OK);
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), 10000 - 4091 - 4096);
    /* an explicit max reads no more than asked, into the room there is */
    CHECK_EQ(write(sv[0], big, 100), 100);
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 30), 30);
    CHECK_EQ(bp_buf_capacity(b), 8192);
    bp_buf_release(b);

    /* an empty buffer grows to hold what comes */
    b = bp_buf_new(pool, 0, 0);
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), 64);
    CHECK_EQ(bp_buf_capacity(b), 64);
    bp_buf_release(b);
    close(sv[0]);
    close(sv[1]);
}

/* ---- growth keeps the whole old capacity ------------------------------------------------- */

/* Bytes written into reserved extents before the commit, and bytes set past the writer
 * index, survive growth out of the header block and out of memory views share. */
static void check_growth_keeps(bp_buf *b, const char *how)
{
    struct iovec iov[4];
    size_t at = bp_buf_writer_index(b);
    int n = bp_buf_reserve_iov(b, 8, iov, 4);
    REQUIRE(n == 1 && iov[0].iov_len >= 8);
    memcpy(iov[0].iov_base, "payload!", 8);
    CHECK_EQ(bp_buf_set_u8(b, at + 8, '#'), BP_OK);   /* past the writer index */
    REQUIRE(bp_buf_reserve_iov(b, 4096, iov, 4) > 0); /* grows and moves */
    CHECK_EQ(bp_buf_commit(b, 9), BP_OK);
    char got[9] = {0};
    CHECK_EQ(bp_buf_get_bytes(b, at, got, 9), BP_OK);
    if (memcmp(got, "payload!#", 9) != 0) {
        fprintf(stderr, "%s: got \"%.9s\"\n", how, got);
        CHECK(!"growth kept the bytes past the writer index");
    }
}

static void test_growth_keeps_capacity(void)
{
    bp_buf *b = bp_buf_new(pool, 16, 0); /* bytes inside the header block */
    check_growth_keeps(b, "from the header block");
    bp_buf *view = bp_buf_duplicate(b, 0); /* the memory is shared: growth copies */
    check_growth_keeps(b, "from shared memory");
    bp_buf_release(view);
    check_growth_keeps(b, "by realloc");
    bp_buf_release(b);
}

/* ---- wrapped memory that is empty -------------------------------------------------------- */

static int wrap_freed;
static void count_free(void *mem, void *ud)
{
    (void)ud;
    wrap_freed += mem == NULL;
}

static void test_wrap_empty(void)
{
    wrap_freed = 0;
    bp_buf *b = bp_buf_wrap(pool, NULL, 0, 0, count_free, NULL, 0);
    REQUIRE(b != NULL);
    CHECK(b->data != NULL); /* zero-length copies never see a null pointer */
    char dst[1];
    CHECK_EQ(bp_buf_get_bytes(b, 0, dst, 0), BP_OK);
    CHECK_EQ(bp_buf_get_bytes(b, 0, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_read_bytes(b, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_set_bytes(b, 0, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_write_bytes(b, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_write_u8(b, 1), BP_ECAP);
    bp_buf *copy = bp_buf_copy(b, 0, 0);
    REQUIRE(copy != NULL);
    CHECK_EQ(bp_buf_capacity(copy), 0);
    bp_buf_release(copy);
    bp_buf *s = bp_buf_slice(b, 0, 0, 0);
    REQUIRE(s != NULL);
    CHECK_EQ(bp_buf_get_bytes(s, 0, dst, 0), BP_OK);
    struct iovec iov[1];
    size_t covered = 1;
    CHECK_EQ(bp_buf_iov(b, 0, 0, iov, 1, &covered), 0);
    CHECK_EQ(covered, 0);
    size_t pos;
    CHECK_EQ(bp_buf_find(b, 0, "", 0, &pos), BP_OK);
    bp_buf_release(b);
    CHECK_EQ(wrap_freed, 0); /* the slice holds the memory */
    bp_buf_release(s);
    CHECK_EQ(wrap_freed, 1); /* free_fn gets the caller's pointer back: NULL */
    errno = 0;
    CHECK(bp_buf_wrap(pool, NULL, 1, 0, NULL, NULL, 0) == NULL && errno == EINVAL);
}

/* ---- composites and the memory of their parts -------------------------------------------- */

/* A part retained before it was appended, whose owner then writes until it moves: the
 * composite still reads the bytes it was given (they are not freed under it). */
static void test_composite_part_moves(void)
{
    bp_buf *part = bp_buf_new(pool, 16, 0);
    char text[100];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    REQUIRE(bp_buf_write_bytes(part, text, sizeof text) == BP_OK); /* now in pooled memory */
    REQUIRE(bp_buf_mem_of(part) != NULL && bp_buf_mem_of(part)->kind == BP_MEM_POOLED);
    size_t old_size = bp_usable_size(bp_buf_mem_of(part));
    bp_buf *c = bp_buf_composite(pool, 4);
    CHECK_EQ(bp_buf_append(c, bp_buf_retain(part)), BP_OK);
    static char more[20000];
    memset(more, 'm', sizeof more);
    CHECK_EQ(bp_buf_write_bytes(part, more, sizeof more), BP_OK); /* the owner moves */
    /* a block of the old one's size class: it gets the old block if that was freed */
    void *reuse = bp_alloc(pool, old_size);
    REQUIRE(reuse != NULL);
    memset(reuse, 'X', old_size);
    char got[sizeof text];
    CHECK_EQ(bp_buf_readable(c), sizeof text);
    CHECK_EQ(bp_buf_get_bytes(c, 0, got, sizeof got), BP_OK);
    CHECK(memcmp(got, text, sizeof text) == 0);
    bp_free(reuse);
    bp_buf_release(c);
    CHECK_EQ(bp_buf_refcnt(part), 1);
    bp_buf_release(part);
}

/* discard_read on a buffer a composite looks into would rewrite what the composite reads. */
static void test_composite_part_discard(void)
{
    bp_buf *part = filled("0123456789");
    bp_buf *c = bp_buf_composite(pool, 4);
    CHECK_EQ(bp_buf_append(c, bp_buf_retain(part)), BP_OK);
    CHECK_EQ(bp_buf_skip(part, 5), BP_OK);
    CHECK_EQ(bp_buf_discard_read(part), BP_ESHARED);
    CHECK(reads_as(part, "56789"));
    CHECK(reads_as(c, "0123456789"));
    bp_buf_release(c);
    CHECK_EQ(bp_buf_discard_read(part), BP_OK); /* the composite is gone: nobody else looks */
    CHECK(reads_as(part, "56789"));
    bp_buf_release(part);
}

/* A slice of a composite is a view: discarding its read parts never lets it grow. */
static void test_composite_slice_fixed(void)
{
    bp_buf *c = bp_buf_composite(pool, 4);
    bp_buf_append(c, filled("01234"));
    bp_buf_append(c, filled("56789"));
    bp_buf *s = bp_buf_slice(c, 0, 10, 0);
    REQUIRE(s != NULL);
    CHECK_EQ(bp_buf_part_count(s), 2);
    CHECK_EQ(bp_buf_write_u8(s, 1), BP_ECAP);
    CHECK_EQ(bp_buf_skip(s, 7), BP_OK);
    CHECK_EQ(bp_buf_discard_read(s), BP_OK);
    CHECK_EQ(bp_buf_part_count(s), 1);
    CHECK(reads_as(s, "789"));
    CHECK_EQ(bp_buf_capacity(s), bp_buf_max_capacity(s));
    CHECK_EQ(bp_buf_write_u8(s, 1), BP_ECAP);
    CHECK_EQ(bp_buf_ensure_writable(s, 1), BP_ECAP);
    CHECK_EQ(bp_buf_part_count(s), 1);
    CHECK(reads_as(s, "789"));
    bp_buf_release(s);
    CHECK(reads_as(c, "0123456789"));
    bp_buf_release(c);
}

/* ---- failed calls change nothing --------------------------------------------------------- */

static void test_reserve_iov_validates(void)
{
    struct iovec iov[2];
    bp_buf *b = bp_buf_new(pool, 64, 0);
    REQUIRE(bp_buf_write_bytes(b,
                               "0123456789012345678901234567890123456789012345678901234567890123",
                               64) == BP_OK);
    CHECK_EQ(bp_buf_reserve_iov(b, 100, iov, 0), BP_EINVAL);
    CHECK_EQ(bp_buf_reserve_iov(b, 100, iov, -1), BP_EINVAL);
    CHECK_EQ(bp_buf_capacity(b), 64);
    bp_buf_release(b);

    bp_buf *c = bp_buf_composite(pool, 4);
    CHECK_EQ(bp_buf_append(c, filled("abc")), BP_OK);
    CHECK_EQ(bp_buf_reserve_iov(c, 100, iov, 0), BP_EINVAL);
    CHECK_EQ(bp_buf_part_count(c), 1);
    CHECK_EQ(bp_buf_capacity(c), 3);
    CHECK_EQ(bp_buf_append(c, filled("def")), BP_OK); /* still appendable */
    CHECK(reads_as(c, "abcdef"));
    bp_buf_release(c);
}

/* ---- a write whose source lies in the buffer --------------------------------------------- */

static void test_write_from_itself(void)
{
    bp_buf *b = bp_buf_new(pool, 16, 0);
    char text[256];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)(' ' + i % 90);
    REQUIRE(bp_buf_write_bytes(b, text, 200) == BP_OK); /* pooled memory, capacity 256 */
    REQUIRE(bp_buf_write_bytes(b, text + 200, 56) == BP_OK);
    REQUIRE(bp_buf_writable(b) == 0);
    for (int round = 0; round < 3; round++) { /* each doubles: the memory moves */
        struct iovec iov[1];
        size_t len = bp_buf_readable(b);
        REQUIRE(bp_buf_iov(b, 0, len, iov, 1, NULL) == 1);
        CHECK_EQ(bp_buf_write_bytes(b, iov[0].iov_base, len), BP_OK);
    }
    CHECK_EQ(bp_buf_readable(b), 8 * sizeof text);
    bool same = true;
    for (size_t at = 0; at < 8 * sizeof text; at += sizeof text) {
        char got[sizeof text];
        bp_buf_get_bytes(b, at, got, sizeof got);
        same = same && memcmp(got, text, sizeof text) == 0;
    }
    CHECK(same);
    /* an overlapping copy inside the buffer, without growth */
    bp_buf_clear(b);
    CHECK_EQ(bp_buf_write_bytes(b, "abcdef", 6), BP_OK);
    struct iovec iov[1];
    REQUIRE(bp_buf_iov(b, 2, 4, iov, 1, NULL) == 1);
    CHECK_EQ(bp_buf_set_bytes(b, 0, iov[0].iov_base, 4), BP_OK);
    CHECK(reads_as(b, "cdefef"));
    bp_buf_release(b);
}

/* ---- varints ----------------------------------------------------------------------------- */

static int decode(const uint8_t *bytes, size_t n, uint64_t *v)
{
    bp_buf *b = bp_buf_new(pool, n, 0);
    bp_buf_write_bytes(b, bytes, n);
    int err = bp_buf_read_uvarint(b, v);
    size_t reader = bp_buf_reader_index(b);
    bp_buf_release(b);
    CHECK(err == BP_OK || reader == 0); /* a failed read moves nothing */
    return err;
}

static void test_uvarint_overlong(void)
{
    uint64_t v = 7;
    static const uint8_t overlong3[] = {0x80, 0x80, 0x00};
    static const uint8_t overlong2[] = {0x81, 0x00};
    static const uint8_t overlong10[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0x00};
    static const uint8_t zero[] = {0x00};
    static const uint8_t v128[] = {0x80, 0x01};
    static const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK_EQ(decode(overlong3, sizeof overlong3, &v), BP_EINVAL);
    CHECK_EQ(decode(overlong2, sizeof overlong2, &v), BP_EINVAL);
    CHECK_EQ(decode(overlong10, sizeof overlong10, &v), BP_EINVAL);
    CHECK_EQ(v, 7);
    CHECK(decode(zero, 1, &v) == BP_OK && v == 0);
    CHECK(decode(v128, 2, &v) == BP_OK && v == 128);
    CHECK(decode(max, sizeof max, &v) == BP_OK && v == UINT64_MAX);
}

int main(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_writev_peer_gone);
    RUN(test_writev_file);
    RUN(test_readv_uses_room);
    RUN(test_growth_keeps_capacity);
    RUN(test_wrap_empty);
    RUN(test_composite_part_moves);
    RUN(test_composite_part_discard);
    RUN(test_composite_slice_fixed);
    RUN(test_reserve_iov_validates);
    RUN(test_write_from_itself);
    RUN(test_uvarint_overlong);
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0); /* every buffer, part and grown memory went back */
    bp_pool_destroy(pool);
    return test_report();
}
