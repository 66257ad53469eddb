/* shm_pipe.c — two processes share a pool's memory: the producer writes messages into
 * bp_bufs of a pool on a memfd (bp_shm) and sends only (region, offset, length) over a unix
 * socket; the consumer maps the memfd once (received with SCM_RIGHTS) and reads each message
 * where it lies, without a copy, then acks it so the producer can release the buffer.
 *
 *     shm_pipe [MESSAGES]        (default 10000; the consumer is a forked child)
 */
#include <bufpool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct note {
    uint64_t offset; /* in the memfd */
    uint32_t region; /* which memfd: bp_shm_new's region id (one here) */
    uint32_t len;
} note;

static int send_fd(int sock, int fd)
{
    char byte = 0;
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &mh, 0) == 1 ? 0 : -1;
}

static int receive_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c;
    int fd = -1;
    if (recvmsg(sock, &mh, 0) == 1 && (c = CMSG_FIRSTHDR(&mh)) != NULL &&
        c->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* One message at a time, for clarity: a real program batches notes and acks. */
static int consume(int sock)
{
    int fd = receive_fd(sock);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 1;
    const char *shared = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED)
        return 1;
    unsigned long messages = 0, bytes = 0, sum = 0;
    note n;
    while (read(sock, &n, sizeof n) == (ssize_t)sizeof n) {
        const char *text = shared + n.offset; /* the producer's buffer itself */
        for (uint32_t i = 0; i < n.len; i++)
            sum += (unsigned char)text[i];
        messages++;
        bytes += n.len;
        char ack = 1;
        if (write(sock, &ack, 1) != 1)
            return 1;
    }
    printf("consumer: %lu messages, %lu bytes read in place (checksum %lu)\n", messages, bytes,
           sum);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long total = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000;
    bp_shm *shm = bp_shm_new(64 << 20, 0);
    if (shm == NULL) {
        perror("bp_shm_new");
        return 1;
    }
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.os = bp_shm_os(shm);
    bp_pool *pool = bp_pool_new(&cfg);
    int sv[2];
    if (pool == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("shm_pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(sv[0]);
        int rc = consume(sv[1]);
        fflush(stdout);
        _exit(rc);
    }
    close(sv[1]);
    if (child < 0 || send_fd(sv[0], bp_shm_fd(shm)) != 0) {
        perror("shm_pipe");
        return 1;
    }
    unsigned long sum = 0;
    for (unsigned long i = 0; i < total; i++) {
        char text[96];
        int len = snprintf(text, sizeof text, "message %lu: %.*s", i, (int)(i % 64),
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/");
        for (int k = 0; k < len; k++)
            sum += (unsigned char)text[k];
        bp_buf *b = bp_buf_new(pool, (size_t)len, (size_t)len);
        note n;
        size_t contiguous;
        if (b == NULL || bp_buf_write_bytes(b, text, (size_t)len) != 0 ||
            bp_buf_region_of(b, &n.region, &n.offset, &contiguous) != 0) {
            fprintf(stderr, "shm_pipe: message %lu could not be made\n", i);
            return 1;
        }
        n.len = (uint32_t)contiguous;
        char ack;
        if (write(sv[0], &n, sizeof n) != (ssize_t)sizeof n || read(sv[0], &ack, 1) != 1) {
            fprintf(stderr, "shm_pipe: the consumer has gone\n");
            return 1;
        }
        bp_buf_release(b); /* the consumer is done with its bytes */
    }
    close(sv[0]);
    int status = 0;
    waitpid(child, &status, 0);
    printf("producer: %lu messages sent (checksum %lu)\n", total, sum);
    bp_pool_destroy(pool);
    bp_shm_destroy(shm);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
