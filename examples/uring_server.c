/* uring_server.c — examples/echo_server.c on io_uring: a TCP echo server on loopback whose
 * receives pick a bp_buf in the kernel from a provided-buffer ring that bufpool keeps filled
 * (bp_uring_provide, bp_uring_recv_buf), and which writes each buffer back with WRITE_FIXED
 * from the fixed buffer its pool's chunk is registered as (bp_uring_os, bp_buf_region_of).
 * Every system call of the serving loop is one io_uring_submit_and_wait for a whole batch of
 * completions: no epoll_wait, read or write.
 *   uring_server [PORT [CONNECTIONS]]   as echo_server: PORT 0 (default) picks a free one; it
 *                                       prints "listening on PORT"; with CONNECTIONS > 0 it
 *                                       exits after serving that many
 *   uring_server --probe                exits 0 when io_uring can be used here, else says why
 *   uring_server --load PORT CONNECTIONS SECONDS SIZE
 *                                       a load client for the benchmark (either server):
 *                                       CONNECTIONS connections each echo SIZE-byte messages
 *                                       one at a time for SECONDS; prints "requests N in S s"
 * The server ignores SIGPIPE: WRITE_FIXED is a write(2), which has no MSG_NOSIGNAL, so a
 * client gone before reading would otherwise kill it; the write fails with EPIPE instead. */
#define _GNU_SOURCE
#include "bufpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_ENTRIES 256
#define BUF_GROUP    1
#define RECV_BUFFERS 256        /* provided buffers: a power of two */
#define RECV_SIZE    (16 << 10) /* bytes of each */

/* A connection has exactly one request in flight: a receive (pending NULL) or the write of
 * pending's readable bytes, so that what it echoes keeps its order. */
typedef struct conn {
    int fd;
    bp_buf *pending;
} conn;

typedef struct server {
    bp_uring *u;
    struct io_uring *ring;
    int listen_fd;
    long served;
} server;

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        perror("uring_server: listen");
        exit(1);
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return fd;
}

/* A free submission entry: when the queue is full, what it holds is submitted first. */
static struct io_uring_sqe *next_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe == NULL) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static void submit_accept(server *s)
{
    struct io_uring_sqe *sqe = next_sqe(s->ring);
    io_uring_prep_accept(sqe, s->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

static void submit_recv(server *s, conn *c)
{
    struct io_uring_sqe *sqe = next_sqe(s->ring);
    io_uring_prep_recv(sqe, c->fd, NULL, 0, 0); /* length 0: the picked buffer's */
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data(sqe, c);
}

/* WRITE_FIXED of what c->pending holds, from the fixed buffer it lies in. */
static void submit_write(server *s, conn *c)
{
    uint32_t index = 0;
    uint64_t offset = 0;
    size_t len = 0;
    const uint8_t *bytes = NULL;
    if (bp_buf_region_of(c->pending, &index, &offset, &len) != 0 ||
        bp_buf_peek(c->pending, &bytes) != len) {
        fprintf(stderr, "uring_server: a received buffer outside the fixed buffers\n");
        exit(1);
    }
    struct io_uring_sqe *sqe = next_sqe(s->ring);
    io_uring_prep_write_fixed(sqe, c->fd, bytes, (unsigned)len, 0, (int)index);
    io_uring_sqe_set_data(sqe, c);
}

static void finish(server *s, conn *c)
{
    close(c->fd);
    if (c->pending != NULL)
        bp_buf_release(c->pending);
    free(c);
    s->served++;
}

static void on_accept(server *s, int fd)
{
    if (fd >= 0) {
        conn *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
        } else {
            *c = (conn){.fd = fd, .pending = NULL};
            submit_recv(s, c);
        }
    }
    submit_accept(s);
}

static void on_recv(server *s, conn *c, const struct io_uring_cqe *cqe)
{
    bp_buf *b = bp_uring_recv_buf(s->u, cqe);
    if (b != NULL) {
        c->pending = b;
        submit_write(s, c);
    } else if (errno == ENOBUFS) {
        submit_recv(s, c); /* the ring was empty for a moment: it is refilled by now */
    } else {
        finish(s, c); /* end of stream (errno 0) or an error */
    }
}

static void on_write(server *s, conn *c, int res)
{
    if (res <= 0) {
        finish(s, c); /* EPIPE, ECONNRESET: the client has gone */
        return;
    }
    bp_buf_skip(c->pending, (size_t)res);
    if (bp_buf_readable(c->pending) > 0) { /* a short write: the rest */
        submit_write(s, c);
        return;
    }
    bp_buf_release(c->pending);
    c->pending = NULL;
    submit_recv(s, c);
}

static int serve(int port, long want)
{
    signal(SIGPIPE, SIG_IGN);
    bp_uring *u = bp_uring_new(NULL, RING_ENTRIES, 0, NULL);
    if (u == NULL) {
        fprintf(stderr, "uring_server: no io_uring: %s\n", strerror(errno));
        return 1;
    }
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.os = bp_uring_os(u);
    bp_pool *pool = bp_pool_new(&cfg);
    int err = pool == NULL ? errno : bp_uring_provide(u, pool, BUF_GROUP, RECV_BUFFERS, RECV_SIZE);
    if (err != 0) {
        fprintf(stderr, "uring_server: no pool or buffer ring: %s\n", strerror(err));
        return 1;
    }
    server s = {.u = u, .ring = bp_uring_ring(u), .listen_fd = listen_on(port)};
    submit_accept(&s);
    while (want == 0 || s.served < want) {
        if (io_uring_submit_and_wait(s.ring, 1) < 0 && errno != EINTR)
            break;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(s.ring, head, cqe)
        {
            conn *c = io_uring_cqe_get_data(cqe);
            seen++;
            if (c == NULL)
                on_accept(&s, cqe->res);
            else if (c->pending == NULL)
                on_recv(&s, c, cqe);
            else
                on_write(&s, c, cqe->res);
        }
        io_uring_cq_advance(s.ring, seen);
    }
    /* the accept still in flight goes with the ring */
    close(s.listen_fd);
    bp_uring_unprovide(u);
    bp_pool_destroy(pool);
    bp_uring_destroy(u);
    return 0;
}

/* ---- the load client ---------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Each connection sends a message, reads its echo whole, and sends the next. */
static int load(int port, int nconns, double seconds, size_t size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct pollfd *fds = calloc((size_t)nconns, sizeof *fds);
    size_t *got = calloc((size_t)nconns, sizeof *got);
    char *msg = malloc(size), *in = malloc(size);
    if (fds == NULL || got == NULL || msg == NULL || in == NULL)
        return 1;
    memset(msg, 'x', size);
    for (int i = 0; i < nconns; i++) {
        fds[i] = (struct pollfd){.fd = socket(AF_INET, SOCK_STREAM, 0), .events = POLLIN};
        if (connect(fds[i].fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
            write(fds[i].fd, msg, size) != (ssize_t)size) {
            perror("uring_server --load: connect");
            return 1;
        }
    }
    long requests = 0;
    double start = now_s(), end = start + seconds;
    while (now_s() < end) {
        if (poll(fds, (nfds_t)nconns, 1000) <= 0)
            continue;
        for (int i = 0; i < nconns; i++) {
            if (!(fds[i].revents & POLLIN))
                continue;
            ssize_t r = read(fds[i].fd, in, size - got[i]);
            if (r <= 0) {
                fprintf(stderr, "uring_server --load: the server closed a connection\n");
                return 1;
            }
            got[i] += (size_t)r;
            if (got[i] == size) {
                got[i] = 0;
                requests++;
                if (write(fds[i].fd, msg, size) != (ssize_t)size)
                    return 1;
            }
        }
    }
    double took = now_s() - start;
    for (int i = 0; i < nconns; i++)
        close(fds[i].fd);
    printf("requests %ld in %.3f s\n", requests, took);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) {
        bp_uring *u = bp_uring_new(NULL, 8, 1, NULL);
        if (u == NULL) {
            printf("io_uring cannot be used here: %s\n", strerror(errno));
            return 1;
        }
        bp_uring_destroy(u);
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "--load") == 0)
        return load(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), (size_t)atol(argv[5]));
    return serve(argc > 1 ? atoi(argv[1]) : 0, argc > 2 ? atol(argv[2]) : 0);
}
