/* test_valgrind_visibility.c — in a valgrind build (-DBP_VALGRIND=ON) run under memcheck,
 * blocks are announced with client requests: a use after free and a read of a chunk's free
 * pages are reported by valgrind (each planted in a child, which valgrind follows). */
#include "internal.h"
#include "test.h"

#include <string.h>
#include <valgrind/memcheck.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*bug_fn)(bp_pool *pool);

static void expect_report(const char *name, bug_fn fn)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        bp_pool *pool = bp_pool_new(NULL);
        unsigned before = VALGRIND_COUNT_ERRORS;
        fn(pool);
        /* memcheck writes its report to its own copy of stderr: count instead */
        _exit(VALGRIND_COUNT_ERRORS > before ? 42 : 0);
    }
    close(fds[1]);
    char out[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    /* 42 from the count, or memcheck's --error-exitcode, which replaces it */
    bool reported = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    CHECK(reported);
    if (!reported)
        fprintf(stderr, "  %s: status %#x\n%.2000s\n", name, status, out);
}

static void use_after_free(bp_pool *pool)
{
    volatile char *keep = bp_alloc(pool, 64);
    volatile char *p = bp_alloc(pool, 64);
    bp_free((void *)p);
    p[10] = 1;
    (void)keep;
}

static void read_of_free_pages(bp_pool *pool)
{
    volatile char *p = bp_alloc(pool, 64 << 10);
    char c = p[(64 << 10) + 4096];
    (void)c;
}

int main(void)
{
    if (!RUNNING_ON_VALGRIND) {
        printf("run me under valgrind (scripts/test.sh does)\n");
        return 1;
    }
    RUN_NAMED("use after free", expect_report("uaf", use_after_free));
    RUN_NAMED("read of free chunk pages", expect_report("free pages", read_of_free_pages));
    return test_report();
}
