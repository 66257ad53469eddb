/* tour.c — the README's five-minute tour as one program: a pool, blocks, a length-prefixed
 * message framed in bp_buf buffers, sent with writev and received with readv, and statistics.
 * `make` builds it as build/release/tour (beside hello, stats and echo_server); run it from
 * the repository root as ./build/release/tour. It prints what each step did and exits 0. */
#include "bufpool.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != BP_OK) {                                                                        \
            fprintf(stderr, "%s: %s\n", #call, bp_strerror(rc_));                                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* The sender: a 4-byte big-endian length in one buffer, the payload in another, gathered by a
 * composite into a single writev. */
static int send_message(bp_pool *pool, int fd, const char *text)
{
    bp_buf *header = bp_buf_new(pool, 4, 4);
    bp_buf *body = bp_buf_new(pool, strlen(text), 0);
    bp_buf *msg = bp_buf_composite(pool, 2);
    if (header == NULL || body == NULL || msg == NULL)
        return 1;
    CHECK_OK(bp_buf_write_bytes(body, text, strlen(text)));
    CHECK_OK(bp_buf_write_u32_be(header, (uint32_t)bp_buf_readable(body)));
    CHECK_OK(bp_buf_append(msg, header)); /* the composite takes over both references */
    CHECK_OK(bp_buf_append(msg, body));
    ssize_t sent = bp_buf_writev_fd(msg, fd, 0); /* one writev for both parts */
    printf("sent %zd bytes in %u parts\n", sent, bp_buf_part_count(msg));
    bp_buf_release(msg); /* releases the parts too */
    return sent == 4 + (ssize_t)strlen(text) ? 0 : 1;
}

/* The receiver: readv into a growing buffer until a whole frame is there, then decode it. */
static int receive_message(bp_pool *pool, int fd)
{
    bp_buf *in = bp_buf_new(pool, 64, 1 << 20);
    if (in == NULL)
        return 1;
    uint32_t len = 0;
    for (;;) {
        if (bp_buf_readable(in) >= 4) {
            CHECK_OK(bp_buf_get_u32_be(in, bp_buf_reader_index(in), &len));
            if (bp_buf_readable(in) >= 4 + (size_t)len)
                break;
        }
        /* into the room the buffer has; only a full one grows (doubling, at most to 1 MiB) */
        ssize_t got = bp_buf_readv_fd(in, fd, 0);
        if (got <= 0) {
            fprintf(stderr, "readv: %s\n", got == 0 ? "end of file" : bp_strerror((int)got));
            return 1;
        }
    }
    CHECK_OK(bp_buf_skip(in, 4));
    bp_buf *payload = bp_buf_read_slice(in, len); /* a view: no copy, holds a reference */
    bp_buf_release(in);                           /* the view keeps the memory alive */
    char text[64] = "";
    CHECK_OK(bp_buf_get_bytes(payload, 0, text, len < sizeof text - 1 ? len : sizeof text - 1));
    printf("received \"%s\" (%u bytes)\n", text, len);
    bp_buf_release(payload);
    return 0;
}

int main(void)
{
    /* 1. A pool: the defaults, then BUFPOOL_CONF, then whatever the program sets. */
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 2;
    bp_pool *pool = bp_pool_new(&cfg);
    if (pool == NULL) {
        perror("bp_pool_new");
        return 1;
    }

    /* 2. Blocks: rounded up to a size class, freed without naming the pool. */
    char *line = bp_alloc(pool, 1500);
    if (line == NULL)
        return 1;
    printf("bp_alloc(1500): %zu usable bytes\n", bp_usable_size(line));
    bp_free(line);

    /* 3. Buffers over a socket pair: framed, gathered, scattered. */
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        perror("socketpair");
        return 1;
    }
    if (send_message(pool, fds[0], "hello through bufpool") != 0 ||
        receive_message(pool, fds[1]) != 0)
        return 1;
    close(fds[0]);
    close(fds[1]);

    /* 4. Statistics: a snapshot, and the same as text, JSON or an SVG of every chunk. */
    bp_stats s = {.struct_size = sizeof s};
    CHECK_OK(bp_pool_stats(pool, &s));
    printf("arenas handed out %llu small blocks (thread caches refill in batches), "
           "%llu thread-cache hits, %zu bytes mapped\n",
           (unsigned long long)s.alloc_small, (unsigned long long)s.cache_hits, s.mapped_bytes);
    bp_pool_destroy(pool);
    return 0;
}
