/* test_echo.c — starts examples/echo_server on an ephemeral loopback port; first clients that
 * send and close without reading what comes back (the server's writes then meet a peer that
 * has gone, which must not kill it), then one that sends 4 MiB of patterned bytes and checks
 * the echo byte for byte; the server must exit normally after serving them all. The server's
 * path is the first argument. */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOTAL   ((size_t)4 << 20)
#define CLOSERS 500

static struct sockaddr_in server_addr;

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(i * 131 + (i >> 10));
}

/* A connected socket, or -1 (the server is gone). */
static int connect_to_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `len` bytes (what the socket takes of them at once), ends its stream, waits (bounded)
 * for the echo to start and closes with it unread: the kernel answers the server's next
 * bytes with a reset, while the server may still have bytes to read and write back. Returns
 * false when the server refused the connection. */
static bool close_without_reading(size_t len)
{
    static unsigned char junk[256 << 10];
    int fd = connect_to_server();
    if (fd < 0)
        return false;
    (void)send(fd, junk, BP_TEST_MIN(len, sizeof junk), MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    struct pollfd p = {fd, POLLIN, 0};
    (void)poll(&p, 1, 1000);
    close(fd);
    return true;
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    alarm(60); /* bounded, whatever happens */
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        char want[16];
        snprintf(want, sizeof want, "%d", CLOSERS + 1);
        execl(argv[1], argv[1], "0", want, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[64] = {0};
    ssize_t n = read(out[0], line, sizeof line - 1);
    int port = 0;
    REQUIRE(n > 0 && sscanf(line, "listening on %d", &port) == 1 && port > 0);

    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int status = 0, closers = 0;
    bool ended = false;
    while (closers < CLOSERS && !ended) {
        /* sizes from under one read to many: the reset meets the server at different points */
        bool connected = close_without_reading((size_t)4096 << (closers % 7));
        closers += connected;
        /* a refused connection means the server is gone: wait for it to be reaped */
        ended = waitpid(pid, &status, connected ? WNOHANG : 0) == pid;
    }
    int fd = ended ? -1 : connect_to_server();
    if (fd < 0) {
        if (!ended)
            waitpid(pid, &status, 0);
        fprintf(stderr, "the server ended after %d closing clients: %s %d\n", closers,
                WIFSIGNALED(status) ? "killed by signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CHECK(!"the server survives clients that close without reading");
        return test_report();
    }

    /* send and receive at once, so neither side's socket buffer fills up and stalls */
    size_t sent = 0, received = 0, wrong = 0;
    unsigned char chunk[65536];
    while (received < TOTAL) {
        struct pollfd p = {fd, (short)(POLLIN | (sent < TOTAL ? POLLOUT : 0)), 0};
        REQUIRE(poll(&p, 1, 10000) > 0);
        if ((p.revents & POLLOUT) && sent < TOTAL) {
            size_t len = BP_TEST_MIN(sizeof chunk, TOTAL - sent);
            for (size_t i = 0; i < len; i++)
                chunk[i] = byte_at(sent + i);
            ssize_t w = write(fd, chunk, len);
            REQUIRE(w > 0);
            sent += (size_t)w;
            if (sent == TOTAL)
                shutdown(fd, SHUT_WR);
        }
        if (p.revents & POLLIN) {
            ssize_t r = read(fd, chunk, sizeof chunk);
            REQUIRE(r > 0);
            for (ssize_t i = 0; i < r; i++)
                wrong += chunk[i] != byte_at(received + (size_t)i);
            received += (size_t)r;
        }
    }
    CHECK_EQ(received, TOTAL);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(read(fd, chunk, sizeof chunk), 0); /* the server closed after the echo */
    close(fd);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("echoed %zu bytes through port %d\n", received, port);
    return test_report();
}
