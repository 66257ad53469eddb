/* test_shim_conf.c — a bad BUFPOOL_CONF under the malloc library (ctest sets LD_PRELOAD):
 * programs started with it run as usual, the default pool made with the defaults kept, the
 * bad keys reported once on stderr. */
#define _GNU_SOURCE
#include "test.h"

#include <malloc.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bad_confs[] = {"chunk_size:3M", "chunk_size:8K", "page_size:12K",
                                  "page_size:64K,chunk_size:64K"};

static void read_all(int fd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t r;
    while (n < len - 1 && (r = read(fd, buf + n, len - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}

/* Runs argv with BUFPOOL_CONF=conf (LD_PRELOAD inherited); its stdout and stderr. */
static int run_with_conf(const char *conf, char *const argv[], char *out, size_t out_len, char *err,
                         size_t err_len)
{
    int o[2], e[2];
    REQUIRE(pipe(o) == 0 && pipe(e) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(o[0]);
        close(e[0]);
        setenv("BUFPOOL_CONF", conf, 1);
        alarm(20);
        execv(argv[0], argv);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    read_all(o[0], out, out_len); /* small outputs: one pipe to its end, then the other */
    read_all(e[0], err, err_len);
    close(o[0]);
    close(e[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void expect_ran(const char *what, const char *conf, int status, const char *err)
{
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECK(ok);
    CHECK(strstr(err, "cannot create") == NULL);
    if (!ok)
        fprintf(stderr, "  %s with BUFPOOL_CONF=%s: wait status %#x; stderr:\n%s\n", what, conf,
                (unsigned)status, err);
}

static void test_active(void)
{
    const char *preload = getenv("LD_PRELOAD");
    REQUIRE(preload != NULL && strstr(preload, "bufpool-malloc") != NULL);
}

static void test_echo_runs(void)
{
    char *argv[] = {"/bin/echo", "hi", NULL};
    for (size_t i = 0; i < sizeof bad_confs / sizeof bad_confs[0]; i++) {
        char out[256], err[4096];
        int status = run_with_conf(bad_confs[i], argv, out, sizeof out, err, sizeof err);
        expect_ran("/bin/echo", bad_confs[i], status, err);
        CHECK(strcmp(out, "hi\n") == 0);
        CHECK(strstr(err, "BUFPOOL_CONF") != NULL && strstr(err, "default") != NULL);
    }
}

/* This program again, as a child that checks the default pool it runs on. */
static int child_main(void)
{
    void *p = malloc(100);
    size_t usable = malloc_usable_size(p); /* bufpool's 112-byte class: preloaded */
    free(p);
    void *q = malloc((size_t)5 << 20); /* huge with the default 4 MiB chunks */
    memset(q, 1, (size_t)5 << 20);
    free(q);
    printf("usable %zu\n", usable);
    return usable == 112 && q != NULL ? 0 : 1;
}

static void test_program_runs_on_defaults(void)
{
    char self[] = "/proc/self/exe", arg[] = "--child";
    char *argv[] = {self, arg, NULL};
    for (size_t i = 0; i < sizeof bad_confs / sizeof bad_confs[0]; i++) {
        char out[256], err[4096];
        int status = run_with_conf(bad_confs[i], argv, out, sizeof out, err, sizeof err);
        expect_ran("the child", bad_confs[i], status, err);
        CHECK(strcmp(out, "usable 112\n") == 0);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return child_main();
    RUN(test_active);
    RUN(test_echo_runs);
    RUN(test_program_runs_on_defaults);
    return test_report();
}
