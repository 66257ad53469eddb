/* test_valgrind_visibility.c — in a valgrind build (-DBP_VALGRIND=ON) run under memcheck,
 * blocks are announced with client requests: a use after free and a read of a chunk's free
 * pages are reported by valgrind (each planted in a child, which valgrind follows). */
#include "front.h"
#include "test.h"

#include <string.h>
#include <valgrind/memcheck.h>
#include <unistd.h>

typedef void (*bug_fn)(bp_pool *pool);

/* memcheck writes its report to its own copy of stderr: the child counts instead */
static void run_bug(void *arg)
{
    bp_pool *pool = bp_pool_new(NULL);
    unsigned before = VALGRIND_COUNT_ERRORS;
    ((bug_fn)arg)(pool);
    _exit(VALGRIND_COUNT_ERRORS > before ? 42 : 0);
}

static void expect_report(const char *name, bug_fn fn)
{
    char out[4096];
    int status = test_in_child(run_bug, (void *)fn, out, sizeof out);
    /* 42 from the count, or memcheck's --error-exitcode, which replaces it */
    bool reported = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    CHECK(reported);
    if (!reported)
        fprintf(stderr, "  %s: status %#x\n", name, status);
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
