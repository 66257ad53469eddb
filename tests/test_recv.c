/* test_recv.c — adaptive receive and the return codes of non-blocking I/O: the receive sizer
 * against Netty's AdaptiveRecvByteBufAllocator rules, bp_buf_recv_fd reading into the room
 * there is and growing by the guess, drained buffers giving their memory back (1,000 idle
 * connections' buffers within 1 KiB each), would-block as BP_EAGAIN with errno kept, a read
 * interrupted by a signal made again, and a pipe whose reader has gone answered with EPIPE
 * rather than SIGPIPE. */
#define _GNU_SOURCE /* gettid */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bp_pool *pool;

static void socket_pair(int sv[2], bool nonblocking)
{
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0, sv) == 0);
}

/* ---- the sizer --------------------------------------------------------------------------- */

static void test_sizer_bounds(void)
{
    bp_recv_sizer s;
    CHECK_EQ(bp_recv_sizer_init(&s, 0, 0, 0), BP_OK);
    CHECK_EQ(bp_recv_sizer_guess(&s), 2048); /* Netty's defaults: 64, 2048, 65536 */
    CHECK_EQ(bp_recv_sizer_init(&s, 64, 1000, 65536), BP_OK);
    CHECK_EQ(bp_recv_sizer_guess(&s), 1024); /* rounded up to the table */
    CHECK_EQ(bp_recv_sizer_init(&s, 100, 100, 100), BP_OK);
    CHECK_EQ(bp_recv_sizer_guess(&s), 112); /* the one size of [100, 100] rounded up */

    bp_recv_sizer before = s;
    CHECK_EQ(bp_recv_sizer_init(&s, 4096, 2048, 0), BP_EINVAL); /* min > initial */
    CHECK_EQ(bp_recv_sizer_init(&s, 0, 8192, 4096), BP_EINVAL); /* initial > max */
    CHECK_EQ(bp_recv_sizer_init(&s, 0, 0, ((size_t)1 << 30) + 1), BP_EINVAL);
    CHECK(memcmp(&s, &before, sizeof s) == 0); /* untouched */
}

static void test_sizer_adapts(void)
{
    bp_recv_sizer s;
    REQUIRE(bp_recv_sizer_init(&s, 64, 1024, 65536) == BP_OK);
    bp_recv_sizer_record(&s, 1024); /* filled: four sizes up at once */
    CHECK_EQ(bp_recv_sizer_guess(&s), 16384);
    bp_recv_sizer_record(&s, 16384);
    CHECK_EQ(bp_recv_sizer_guess(&s), 65536); /* never past max */
    bp_recv_sizer_record(&s, 65536);
    CHECK_EQ(bp_recv_sizer_guess(&s), 65536);
    bp_recv_sizer_record(&s, 100); /* one small read: not yet */
    CHECK_EQ(bp_recv_sizer_guess(&s), 65536);
    bp_recv_sizer_record(&s, 100); /* the second: one size down */
    CHECK_EQ(bp_recv_sizer_guess(&s), 32768);
    bp_recv_sizer_record(&s, 20000); /* between the size below and the guess: no change */
    CHECK_EQ(bp_recv_sizer_guess(&s), 32768);
    for (int i = 0; i < 200; i++)
        bp_recv_sizer_record(&s, 1);
    CHECK_EQ(bp_recv_sizer_guess(&s), 64); /* never under min */
}

/* ---- reading ----------------------------------------------------------------------------- */

static void test_recv_grows_by_guess(void)
{
    int sv[2];
    socket_pair(sv, false);
    static char big[10000];
    memset(big, 'x', sizeof big);
    bp_recv_sizer s;
    REQUIRE(bp_recv_sizer_init(&s, 0, 0, 0) == BP_OK);

    /* an empty buffer grows to the guess, not to some fixed 64 KiB */
    bp_buf *b = bp_buf_new(pool, 0, 0);
    CHECK_EQ(write(sv[0], big, 100), 100);
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], &s), 100);
    CHECK_EQ(bp_buf_capacity(b), 2048);
    bp_buf_release(b);

    /* room at least the guess: read into all of it, nothing grows */
    b = bp_buf_new(pool, 4096, 8192);
    CHECK_EQ(bp_buf_write_bytes(b, "12345", 5), BP_OK);
    CHECK_EQ(write(sv[0], big, sizeof big), (ssize_t)sizeof big);
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], &s), 4091);
    CHECK_EQ(bp_buf_capacity(b), 4096);
    CHECK_EQ(bp_recv_sizer_guess(&s), 32768); /* filled the guess: up four sizes */
    /* less room than the guess: it grows, but never past max */
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], &s), 4096);
    CHECK_EQ(bp_buf_capacity(b), 8192);
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], &s), BP_ECAP); /* full at its maximum */
    bp_buf_release(b);

    /* no sizer: the room there is */
    b = bp_buf_new(pool, 64, 0);
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], NULL), 64);
    bp_buf_release(b);

    static char mem[16];
    bp_buf *ro = bp_buf_wrap(pool, mem, sizeof mem, 0, NULL, NULL, BP_RDONLY);
    CHECK_EQ(bp_buf_recv_fd(ro, sv[1], &s), BP_ERDONLY);
    bp_buf_release(ro);
    close(sv[0]);
    close(sv[1]);
}

static void test_would_block(void)
{
    int sv[2];
    socket_pair(sv, true);
    bp_buf *b = bp_buf_new(pool, 64, 0);
    errno = 0;
    CHECK_EQ(bp_buf_readv_fd(b, sv[1], 0), BP_EAGAIN);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    bp_recv_sizer s;
    REQUIRE(bp_recv_sizer_init(&s, 0, 0, 0) == BP_OK);
    errno = 0;
    CHECK_EQ(bp_buf_recv_fd(b, sv[1], &s), BP_EAGAIN);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ(bp_buf_readable(b), 0);

    /* fill the socket until a write takes nothing */
    bp_buf *out = bp_buf_new(pool, 65536, 0);
    REQUIRE(bp_buf_write_zero(out, 65536) == BP_OK);
    ssize_t w;
    size_t sent = 0;
    while ((w = bp_buf_writev_fd(out, sv[0], 0)) > 0) {
        sent += (size_t)w;
        bp_buf_clear(out);
        REQUIRE(bp_buf_write_zero(out, 65536) == BP_OK);
    }
    CHECK_EQ(w, BP_EAGAIN);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ(bp_buf_reader_index(out), 0); /* nothing moved */
    CHECK(sent > 0);
    CHECK_STR(bp_strerror(BP_EAGAIN), "would block (see errno)");
    bp_buf_release(out);
    bp_buf_release(b);
    close(sv[0]);
    close(sv[1]);
}

/* A read interrupted by a signal is made again. The signal comes once the reader sleeps
 * in the kernel (its /proc state says S), from a handler installed without SA_RESTART, so
 * readv itself returns EINTR; the bytes come after the handler ran. */
static int interrupts; /* atomic: the handler counts, the sending thread waits for it */
static void on_usr1(int sig)
{
    (void)sig;
    __atomic_fetch_add(&interrupts, 1, __ATOMIC_SEQ_CST);
}

typedef struct interrupter {
    pthread_t reader;
    pid_t reader_tid;
    int fd;
} interrupter;

static bool sleeping(pid_t tid)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *end = strrchr(text, ')'); /* the state follows the command name */
    return end != NULL && end[1] == ' ' && end[2] == 'S';
}

static void *interrupt_then_send(void *arg)
{
    interrupter *it = arg;
    while (!sleeping(it->reader_tid))
        sched_yield();
    pthread_kill(it->reader, SIGUSR1);
    while (__atomic_load_n(&interrupts, __ATOMIC_SEQ_CST) == 0)
        sched_yield();
    REQUIRE(write(it->fd, "late", 4) == 4);
    return NULL;
}

static void test_eintr_retried(void)
{
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_usr1; /* no SA_RESTART: the kernel returns EINTR */
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
    int sv[2];
    socket_pair(sv, false);
    interrupter it = {pthread_self(), gettid(), sv[0]};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, interrupt_then_send, &it) == 0);
    bp_buf *b = bp_buf_new(pool, 64, 0);
    ssize_t r = bp_buf_readv_fd(b, sv[1], 0);
    int err = errno;
    pthread_join(t, NULL);
    CHECK_EQ(__atomic_load_n(&interrupts, __ATOMIC_SEQ_CST), 1);
    if (r < 0)
        fprintf(stderr, "readv_fd: %zd (%s), errno %d\n", r, bp_strerror((int)r), err);
    CHECK_EQ(r, 4);
    bp_buf_release(b);
    close(sv[0]);
    close(sv[1]);
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- pipes: EPIPE, never SIGPIPE --------------------------------------------------------- */

/* In a child with SIGPIPE's default action (death): exit codes say what went wrong. */
static void write_to_gone_pipe(void *arg)
{
    (void)arg;
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    if (pipe(p) != 0)
        _exit(10);
    close(p[0]);
    bp_buf *b = bp_buf_new(pool, 16, 0);
    bp_buf_write_bytes(b, "nobody", 6);
    for (int i = 0; i < 2; i++) { /* the second takes the remembered no-socket path */
        errno = 0;
        if (bp_buf_writev_fd(b, p[1], 0) != BP_EIO)
            _exit(11);
        if (errno != EPIPE)
            _exit(12);
    }
    sigset_t now, pending;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    if (sigismember(&now, SIGPIPE)) /* the mask is as it was */
        _exit(13);
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) /* and the signal the write raised was taken */
        _exit(14);
    /* a SIGPIPE the caller blocked and left pending stays pending */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    raise(SIGPIPE);
    if (bp_buf_writev_fd(b, p[1], 0) != BP_EIO || errno != EPIPE)
        _exit(15);
    sigpending(&pending);
    if (!sigismember(&pending, SIGPIPE))
        _exit(16);
    bp_buf_release(b);
    _exit(0);
}

static void test_pipe_no_sigpipe(void)
{
    char out[512];
    int status = test_in_child(write_to_gone_pipe, NULL, out, sizeof out);
    if (WIFSIGNALED(status))
        fprintf(stderr, "child killed by signal %d%s\n", WTERMSIG(status),
                WTERMSIG(status) == SIGPIPE ? " (SIGPIPE)" : "");
    else if (WEXITSTATUS(status) != 0)
        fprintf(stderr, "child failed at step %d\n%s", WEXITSTATUS(status), out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- giving memory back ------------------------------------------------------------------ */

static size_t live_bytes(void)
{
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    return c.active_bytes;
}

#define IDLE_CONNECTIONS 1000

static void test_idle_connections(void)
{
    static bp_buf *in[IDLE_CONNECTIONS];
    static bp_recv_sizer sizer[IDLE_CONNECTIONS];
    int sv[2];
    socket_pair(sv, true);
    static char request[700];
    memset(request, 'r', sizeof request);
    size_t start = live_bytes();
    for (int i = 0; i < IDLE_CONNECTIONS; i++) {
        REQUIRE(bp_recv_sizer_init(&sizer[i], 0, 0, 0) == BP_OK);
        in[i] = bp_buf_new(pool, 0, 0);
        REQUIRE(write(sv[0], request, sizeof request) == (ssize_t)sizeof request);
        CHECK_EQ(bp_buf_recv_fd(in[i], sv[1], &sizer[i]), (ssize_t)sizeof request);
        CHECK_EQ(bp_buf_recv_fd(in[i], sv[1], &sizer[i]), BP_EAGAIN);
        CHECK_EQ(bp_buf_capacity(in[i]), 2048); /* the read that would block grew nothing */
        CHECK_EQ(bp_buf_skip(in[i], sizeof request), BP_OK); /* the request handled */
    }
    size_t drained = (live_bytes() - start) / IDLE_CONNECTIONS;
    CHECK(drained > 1024); /* what an idle connection holds without bp_buf_shrink */
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        CHECK_EQ(bp_buf_shrink(in[i]), BP_OK);
    size_t idle = (live_bytes() - start) / IDLE_CONNECTIONS;
    printf("  per connection: %zu bytes drained, %zu after bp_buf_shrink\n", drained, idle);
    CHECK(idle <= 1024);
    /* a shrunk buffer is a buffer like any other */
    REQUIRE(write(sv[0], request, 10) == 10);
    CHECK_EQ(bp_buf_recv_fd(in[0], sv[1], &sizer[0]), 10);
    CHECK_EQ(bp_buf_reader_index(in[0]), 0);
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        bp_buf_release(in[i]);
    close(sv[0]);
    close(sv[1]);
}

static void test_shrink_cases(void)
{
    /* readable bytes: refused, nothing changes */
    bp_buf *b = bp_buf_new(pool, 0, 0);
    REQUIRE(bp_buf_write_bytes(b, "hello, world", 12) == BP_OK);
    CHECK_EQ(bp_buf_shrink(b), BP_EINVAL);
    CHECK_EQ(bp_buf_readable(b), 12);

    /* a view of the grown memory keeps it */
    bp_buf *v = bp_buf_read_slice(b, 12);
    REQUIRE(v != NULL);
    CHECK_EQ(bp_buf_shrink(b), BP_OK);
    CHECK_EQ(bp_buf_capacity(b), 0);
    char got[12];
    CHECK(bp_buf_read_bytes(v, got, 12) == BP_OK && memcmp(got, "hello, world", 12) == 0);
    CHECK_EQ(bp_buf_write_bytes(b, "again", 5), BP_OK); /* grows again, elsewhere */
    bp_buf_release(v);
    bp_buf_release(b);

    /* a buffer whose own block a view looks at keeps it */
    b = bp_buf_new(pool, 64, 0);
    REQUIRE(bp_buf_write_bytes(b, "inline", 6) == BP_OK);
    v = bp_buf_read_slice(b, 6);
    REQUIRE(bp_buf_write_zero(b, 200) == BP_OK && bp_buf_skip(b, 200) == BP_OK); /* grown */
    CHECK_EQ(bp_buf_shrink(b), BP_OK);
    CHECK(bp_buf_capacity(b) >= 206); /* nothing given back: the view reads the block */
    CHECK_EQ(bp_buf_write_bytes(b, "XXXXXX", 6), BP_OK);
    CHECK(bp_buf_read_bytes(v, got, 6) == BP_OK && memcmp(got, "inline", 6) == 0);
    bp_buf_release(v);
    bp_buf_release(b);

    /* a composite lets its parts go */
    bp_buf *c = bp_buf_composite(pool, 0);
    bp_buf *part = bp_buf_new(pool, 4, 0);
    REQUIRE(bp_buf_write_bytes(part, "part", 4) == BP_OK);
    bp_buf_retain(part);
    CHECK_EQ(bp_buf_append(c, part), BP_OK);
    CHECK_EQ(bp_buf_shrink(c), BP_EINVAL);
    CHECK_EQ(bp_buf_skip(c, 4), BP_OK);
    CHECK_EQ(bp_buf_shrink(c), BP_OK);
    CHECK_EQ(bp_buf_part_count(c), 0);
    CHECK_EQ(bp_buf_refcnt(part), 1);
    CHECK_EQ(bp_buf_write_bytes(c, "more", 4), BP_OK);
    bp_buf_release(part);
    bp_buf_release(c);

    /* wrapped memory: nothing to give back, only the indexes go to 0 */
    static char mem[8] = "wrapped";
    bp_buf *w = bp_buf_wrap(pool, mem, sizeof mem, 7, NULL, NULL, 0);
    CHECK_EQ(bp_buf_skip(w, 7), BP_OK);
    CHECK_EQ(bp_buf_shrink(w), BP_OK);
    CHECK_EQ(bp_buf_capacity(w), 8);
    CHECK_EQ(bp_buf_writer_index(w), 0);
    bp_buf_release(w);
}

int main(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_sizer_bounds);
    RUN(test_sizer_adapts);
    RUN(test_recv_grows_by_guess);
    RUN(test_would_block);
    RUN(test_eintr_retried);
    RUN(test_pipe_no_sigpipe);
    RUN(test_idle_connections);
    RUN(test_shrink_cases);
    CHECK_EQ(live_bytes(), 0);
    bp_pool_destroy(pool);
    return test_report();
}
