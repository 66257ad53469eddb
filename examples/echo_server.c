/* echo_server.c — an epoll TCP echo server on loopback that reads into bp_bufs with readv
 * and writes them back with writev.
 *   echo_server [PORT [CONNECTIONS]]   PORT 0 (default) picks a free one; it prints
 *   "listening on PORT"; with CONNECTIONS > 0 it exits after serving that many.
 * It leaves SIGPIPE alone: bp_buf_writev_fd never raises it, so a client that goes away
 * without reading is an error code (BP_EIO, errno EPIPE) that closes its connection; a
 * descriptor with nothing to read or no room to write is BP_EAGAIN. */
#define _GNU_SOURCE
#include "bufpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    bp_buf *pending; /* bytes read and not yet written back */
} conn;

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        perror("echo_server: listen");
        exit(1);
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return fd;
}

/* Writes back what is pending; returns false when the connection is finished with. */
static bool flush_pending(int ep, conn *c)
{
    while (bp_buf_readable(c->pending) > 0) {
        ssize_t w = bp_buf_writev_fd(c->pending, c->fd, 0);
        if (w == BP_EAGAIN) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); /* resume when the peer reads */
            return true;
        }
        if (w < 0)
            return false;
    }
    bp_buf_clear(c->pending);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return true;
}

/* Reads what the peer sent and echoes it; returns false at end of stream or on error. */
static bool serve(int ep, conn *c)
{
    for (;;) {
        ssize_t r = bp_buf_readv_fd(c->pending, c->fd, 64 << 10);
        if (r == 0)
            return false;
        if (r == BP_EAGAIN)
            return true; /* all read: wait for the next event */
        if (r < 0 || !flush_pending(ep, c))
            return false;
        if (bp_buf_readable(c->pending) > 0)
            return true; /* waiting for EPOLLOUT */
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    long want = argc > 2 ? atol(argv[2]) : 0, served = 0;
    bp_pool *pool = bp_pool_default();
    int lfd = listen_on(port);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    while (want == 0 || served < want) {
        struct epoll_event events[64];
        int n = epoll_wait(ep, events, 64, -1);
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (c == NULL) { /* the listening socket */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = malloc(sizeof *c);
                    c->fd = fd;
                    c->pending = bp_buf_new(pool, 4096, 0);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            bool alive = (events[i].events & EPOLLOUT) ? flush_pending(ep, c) : serve(ep, c);
            if (!alive || (events[i].events & (EPOLLERR | EPOLLHUP))) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                bp_buf_release(c->pending);
                free(c);
                served++;
            }
        }
    }
    close(ep);
    close(lfd);
    return 0;
}
