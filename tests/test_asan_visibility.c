/* test_asan_visibility.c — in an ASan build, pool memory a program must not touch is
 * poisoned: a use after free and an overflow past the usable size inside a chunk are
 * reported by ASan (each planted in a child process, whose report the parent reads), while
 * every byte up to bp_usable_size, which the API promises, may be used. Built only for the
 * ASan configuration. */
#include "front.h"
#include "test.h"

#include <string.h>

typedef void (*bug_fn)(bp_pool *pool);

static void run_bug(void *arg)
{
    ((bug_fn)arg)(bp_pool_new(NULL)); /* returning means nothing was reported */
}

static void expect_report(const char *name, bug_fn fn, const char *word)
{
    char out[16384];
    int status = test_in_child(run_bug, (void *)fn, out, sizeof out);
    bool reported = !(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
                    strstr(out, "AddressSanitizer") != NULL && strstr(out, word) != NULL;
    CHECK(reported);
    if (!reported)
        fprintf(stderr, "  %s: status %#x\n%.2000s\n", name, status, out);
}

static void use_after_free(bp_pool *pool)
{
    volatile char *keep = bp_alloc(pool, 64); /* the subpage stays */
    volatile char *p = bp_alloc(pool, 64);
    bp_free((void *)p);
    p[10] = 1;
    (void)keep;
}

static void use_after_free_cached_normal(bp_pool *pool)
{
    volatile char *p = bp_alloc(pool, 20000);
    bp_free((void *)p);
    p[19999] = 1;
}

static void overflow_past_usable(bp_pool *pool)
{
    volatile char *p = bp_alloc(pool, 100); /* a 112-byte class */
    p[112] = 1;                             /* the next element, free */
}

/* Writes every usable byte of blocks from each entry point; returning means ASan was quiet. */
static void fill(void *p)
{
    memset(p, 0x5a, bp_usable_size(p));
}

static void use_up_to_usable(bp_pool *pool)
{
    void *small = bp_alloc(pool, 100); /* 12 bytes past the request */
    void *normal = bp_alloc(pool, 40000);
    void *aligned = bp_aligned_alloc(pool, 256, 300);
    void *zeroed = bp_calloc(pool, 3, 33);
    void *huge = bp_alloc(pool, (5 << 20) + 1);
    void *in_place = bp_realloc(pool, bp_alloc(pool, 97), 100); /* same class: stays */
    void *moved = bp_realloc(pool, bp_alloc(pool, 20), 1000);
    void *blocks[] = {small, normal, aligned, zeroed, huge, in_place, moved};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        fill(blocks[i]);
        bp_free(blocks[i]);
    }
}

static void expect_quiet(const char *name, bug_fn fn)
{
    char out[16384];
    int status = test_in_child(run_bug, (void *)fn, out, sizeof out);
    bool quiet =
        WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "AddressSanitizer") == NULL;
    CHECK(quiet);
    if (!quiet)
        fprintf(stderr, "  %s: status %#x\n%.2000s\n", name, status, out);
}

static void read_of_untouched_chunk(bp_pool *pool)
{
    volatile char *p = bp_alloc(pool, 64 << 10); /* a run at the start of a fresh chunk */
    char c = p[(64 << 10) + 4096];               /* the free pages after it */
    (void)c;
}

int main(void)
{
    if (!BP_ASAN) {
        printf("not an ASan build\n");
        return 1; /* CMake adds this test to the ASan configuration only */
    }
    RUN_NAMED("use after free (small)",
              expect_report("uaf small", use_after_free, "use-after-poison"));
    RUN_NAMED("use after free (cached normal)",
              expect_report("uaf normal", use_after_free_cached_normal, "use-after-poison"));
    RUN_NAMED("overflow past the usable size",
              expect_report("overflow", overflow_past_usable, "use-after-poison"));
    RUN_NAMED("every usable byte may be used", expect_quiet("usable", use_up_to_usable));
    RUN_NAMED("read of free chunk pages",
              expect_report("untouched", read_of_untouched_chunk, "use-after-poison"));
    return test_report();
}
