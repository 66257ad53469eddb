/* test_echo.c — starts examples/echo_server on an ephemeral loopback port, sends it 4 MiB of
 * patterned bytes, checks the echo byte for byte, and sees the server exit after serving the
 * one connection. The server's path is the first argument. */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOTAL ((size_t)4 << 20)

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(i * 131 + (i >> 10));
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
        execl(argv[1], argv[1], "0", "1", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[64] = {0};
    ssize_t n = read(out[0], line, sizeof line - 1);
    int port = 0;
    REQUIRE(n > 0 && sscanf(line, "listening on %d", &port) == 1 && port > 0);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);

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
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("echoed %zu bytes through port %d\n", received, port);
    return test_report();
}
