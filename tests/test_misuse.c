/* test_misuse.c — misuse is reported with the address, then the process aborts: double
 * frees, pointers into the middle of blocks, pointers no pool owns. Each case runs in a child
 * process whose stderr the parent reads. Checked builds catch each misuse at the call;
 * release builds catch a foreign pointer at once and the others when the block reaches its
 * arena, which the child forces with bp_thread_flush and bp_pool_trim. */
#include "internal.h"
#include "test.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*misuse_fn)(bp_pool *pool, char *addr, size_t len);

/* In the child: set up (writing the address the report must name), print it, commit the
 * misuse, and force what release builds check late (the arena sees the block). */
static void misuse_child(void *arg)
{
    misuse_fn fn = (misuse_fn)arg;
    char addr[64] = "";
    bp_pool *pool = bp_pool_new(NULL);
    fn(pool, addr, sizeof addr);
    fprintf(stderr, "ADDRESS %s\n", addr);
    fflush(stderr);
    fn(NULL, NULL, 0);
    bp_thread_flush(pool);
    bp_pool_trim(pool); /* returning: not caught, the parent sees a clean exit */
}

/* Expects the child to die of SIGABRT having printed every word of `expect` and, when
 * names_address, the address it wrote. */
static void expect_abort_named(const char *name, misuse_fn fn, const char *const *expect,
                               bool names_address)
{
    char out[4096];
    int status = test_in_child(misuse_child, (void *)fn, out, sizeof out);
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    char *at = strstr(out, "ADDRESS ");
    char address[64] = "";
    if (at != NULL)
        sscanf(at + 8, "%63s", address);
    bool named =
        !names_address || (address[0] != '\0' && strstr(at + 8 + strlen(address), address) != NULL);
    bool words = true;
    for (const char *const *w = expect; *w != NULL; w++)
        words &= at != NULL && strstr(at, *w) != NULL;
    CHECK(aborted);
    CHECK(named);
    CHECK(words);
    if (!aborted || !named || !words)
        fprintf(stderr, "  %s: status %#x, output:\n%s\n", name, status, out);
}

static void expect_abort(const char *name, misuse_fn fn, const char *const *expect)
{
    expect_abort_named(name, fn, expect, true);
}

/* Each case is called twice in the child: first with the pool to set up (writing the address
 * the report must name), then with NULLs to commit the misuse. */
static void *victim;
static void *keep;

static void double_free_small(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = bp_alloc(pool, 100);
        keep = bp_alloc(pool, 100); /* keeps the subpage from going back to its chunk */
        snprintf(addr, len, "%p", victim);
        bp_free(victim);
        return;
    }
    bp_free(victim);
}

static void double_free_normal(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = bp_alloc(pool, 64 << 10); /* above max_cached: straight to its arena */
        keep = bp_alloc(pool, 64 << 10);
        snprintf(addr, len, "%p", victim);
        bp_free(victim);
        return;
    }
    bp_free(victim);
}

static void double_free_cached_normal(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = bp_alloc(pool, 20 << 10); /* a thread-cached class */
        keep = bp_alloc(pool, 20 << 10);
        snprintf(addr, len, "%p", victim);
        bp_free(victim);
        return;
    }
    bp_free(victim);
}

static void interior_small(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = (char *)bp_alloc(pool, 100) + 16;
        snprintf(addr, len, "%p", victim);
        return;
    }
    bp_free(victim);
}

static void interior_normal(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = (char *)bp_alloc(pool, 256 << 10) + 64;
        snprintf(addr, len, "%p", victim);
        return;
    }
    bp_free(victim);
}

static void interior_huge(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = (char *)bp_alloc(pool, 9 << 20) + 8192;
        snprintf(addr, len, "%p", victim);
        return;
    }
    bp_free(victim);
}

static int a_global;

static void foreign_global(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        snprintf(addr, len, "%p", (void *)&a_global);
        return;
    }
    bp_free(&a_global);
}

static void foreign_malloc(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = malloc(100);
        snprintf(addr, len, "%p", victim);
        return;
    }
    bp_free(victim);
}

static void foreign_usable_size(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = malloc(100);
        snprintf(addr, len, "%p", victim);
        return;
    }
    printf("%zu\n", bp_usable_size(victim));
}

static void double_release(bp_pool *pool, char *addr, size_t len)
{
    if (pool != NULL) {
        victim = bp_buf_new(pool, 64, 0);
        snprintf(addr, len, "%p", victim);
        bp_buf_release(victim);
        return;
    }
    bp_buf_release(victim);
}

static void test_misuse(void)
{
    static const char *const double_free[] = {"double free", NULL};
    static const char *const not_start[] = {"not the start", NULL};
    static const char *const foreign[] = {"not allocated by bufpool", NULL};
    expect_abort("double free of a small block", double_free_small, double_free);
    expect_abort("double free of a 64 KiB block", double_free_normal, double_free);
    expect_abort("double free of a 20 KiB block", double_free_cached_normal, double_free);
    expect_abort("pointer inside a small block", interior_small, not_start);
    expect_abort("pointer inside a normal block", interior_normal, not_start);
    expect_abort("pointer inside a huge block", interior_huge, not_start);
    expect_abort("a global's address", foreign_global, foreign);
    expect_abort("a malloc() block", foreign_malloc, foreign);
    expect_abort("bp_usable_size of a malloc() block", foreign_usable_size, foreign);
    if (BP_ASAN) { /* the freed header is poisoned: ASan reports the access itself */
        static const char *const poisoned[] = {"use-after-poison", "bp_buf_release", NULL};
        expect_abort_named("bp_buf released twice", double_release, poisoned, false);
    } else if (BP_CHECKED) { /* release builds do not look: the header may be reused */
        static const char *const released[] = {"release of a released buffer", NULL};
        expect_abort("bp_buf released twice", double_release, released);
    }
}

int main(void)
{
    RUN(test_misuse);
    return test_report();
}
