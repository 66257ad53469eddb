/* test_os_limits.c — the real OS's limits, each reached in a child process so this one is
 * unaffected: an address-space limit (RLIMIT_AS, `ulimit -v`) and vm.max_map_count. At either
 * an allocation loop ends with NULL/ENOMEM, the pool stays consistent, every block can be
 * freed (an munmap the kernel refuses at the map-count limit does not abort), and once the
 * limit is gone the pool gives everything back and serves again. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* ThreadSanitizer maps its own memory as the program runs, and dies when it cannot. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* The default OS layer, with its refusals counted (reported, not asserted: where the kernel
 * refuses depends on how it merged the mappings). */
typedef struct counts {
    unsigned long map_refusals, unmap_refusals;
} counts;

static void *counted_map(size_t size, size_t align, void *ctx)
{
    void *p = bp_os_default()->map(size, align, NULL);
    ((counts *)ctx)->map_refusals += p == NULL;
    return p;
}

static int counted_unmap(void *addr, size_t size, void *ctx)
{
    int err = bp_os_default()->unmap(addr, size, NULL);
    ((counts *)ctx)->unmap_refusals += err != 0;
    return err;
}

static int counted_purge(void *addr, size_t size, void *ctx)
{
    (void)ctx;
    return bp_os_default()->purge(addr, size, NULL);
}

static void run_in_child(const char *name, void (*fn)(void *arg))
{
    char out[8192];
    int status = test_in_child(fn, NULL, out, sizeof out);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  %s: child status %#x; its stderr:\n%s\n", name, status, out);
    else
        fputs(out, stdout); /* what the child reported */
}

static void child_done(void)
{
    fflush(stdout);
    _exit(test_failures == 0 ? 0 : 1);
}

/* ---- RLIMIT_AS ---------------------------------------------------------------------------- */

static size_t address_space_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    REQUIRE(f != NULL);
    unsigned long pages = 0;
    REQUIRE(fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void under_address_space_limit(void *arg)
{
    (void)arg;
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    void *warm = bp_alloc(pool, 100); /* the thread cache and the first chunk, before the limit */
    REQUIRE(warm != NULL);
    struct rlimit lim = {.rlim_cur = address_space_now() + 64 * MiB};
    lim.rlim_max = lim.rlim_cur;
    REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);

    enum { MAX_BLOCKS = 1024 };
    static void *blocks[MAX_BLOCKS];
    unsigned n = 0;
    errno = 0;
    while (n < MAX_BLOCKS && (blocks[n] = bp_alloc(pool, 1 * MiB)) != NULL)
        memset(blocks[n++], 1, 4096);
    CHECK(n > 0 && n < MAX_BLOCKS);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(bp_alloc(pool, 128 * MiB) == NULL); /* a huge block does not fit either */
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(bp_pool_check(pool), 0);
    for (unsigned i = 0; i < n; i++)
        bp_free(blocks[i]);
    bp_pool_trim(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    void *again = bp_alloc(pool, 1 * MiB), *huge = bp_alloc(pool, 16 * MiB);
    CHECK(again != NULL && huge != NULL);
    bp_free(again);
    bp_free(huge);
    bp_free(warm);
    printf("  under a limit of 64 MiB more address space: %u blocks of 1 MiB, then ENOMEM\n", n);
    bp_pool_destroy(pool);
    child_done();
}

static void test_address_space_limit(void)
{
    run_in_child("RLIMIT_AS", under_address_space_limit);
}

/* ---- vm.max_map_count ------------------------------------------------------------------- */

static long max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long n = -1;
    if (f != NULL) {
        if (fscanf(f, "%ld", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

/* Takes the process to its map-count limit: a PROT_NONE reservation with every other page made
 * readable splits into one mapping per page, until the kernel refuses the next split. Returns
 * the reservation (to unmap when done), of *len bytes. */
static char *fill_map_count(long max, size_t *len)
{
    size_t pages = 2 * (size_t)max + 64;
    *len = pages * 4096;
    char *filler = mmap(NULL, *len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(filler != MAP_FAILED);
    size_t page = 1;
    while (page < pages && mprotect(filler + page * 4096, 4096, PROT_READ) == 0)
        page += 2;
    REQUIRE(page < pages); /* the limit, not the reservation's end, stopped it */
    CHECK_EQ(errno, ENOMEM);
    return filler;
}

static void at_map_count_limit(void *arg)
{
    (void)arg;
    long max = max_map_count();
    counts c = {0, 0};
    bp_os os = {.map = counted_map, .unmap = counted_unmap, .purge = counted_purge, .ctx = &c};
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = 4 * KiB;
    cfg.chunk_size = 8 * KiB; /* a mapping per block: the limit comes quickly */
    cfg.arenas = 1;
    cfg.small_cache = cfg.normal_cache = 0;
    cfg.retained_chunks = 0;
    cfg.os = &os;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);

    enum { EARLY = 256, MAX_LATE = 4096 };
    static void *early[EARLY], *late[MAX_LATE];
    for (unsigned i = 0; i < EARLY; i++) /* chunks mapped before the limit */
        REQUIRE((early[i] = bp_alloc(pool, 8 * KiB)) != NULL);
    size_t filler_len;
    char *filler = fill_map_count(max, &filler_len);

    /* At the limit: the loop ends with ENOMEM (a mapping whose alignment slack cannot be cut
     * away is given up, not kept at 4 MiB of address space per 8 KiB chunk). */
    unsigned n = 0;
    errno = 0;
    while (n < MAX_LATE && (late[n] = bp_alloc(pool, 8 * KiB)) != NULL)
        n++;
    CHECK(n < MAX_LATE);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(bp_pool_check(pool), 0);

    /* Every block can be freed at the limit, where unmapping a chunk that the kernel merged
     * with a neighbour needs a split it refuses. */
    for (unsigned i = 0; i < EARLY; i++)
        bp_free(early[i]);
    for (unsigned i = 0; i < n; i++)
        bp_free(late[i]);
    bp_pool_trim(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    size_t kept = pool->engine.memory.counted;

    /* Below the limit again: what was refused goes at the next trim; the pool serves. */
    REQUIRE(munmap(filler, filler_len) == 0);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    void *again = bp_alloc(pool, 8 * KiB);
    CHECK(again != NULL);
    bp_free(again);
    CHECK_EQ(bp_pool_check(pool), 0);
    printf("  at vm.max_map_count %ld: %u more blocks, then ENOMEM; %lu mappings and %lu unmaps "
           "refused; %zu KiB kept mapped until the limit went\n",
           max, n, c.map_refusals, c.unmap_refusals, kept >> 10);
    bp_pool_destroy(pool);
    child_done();
}

static void test_map_count_limit(void)
{
    long max = max_map_count();
    if (max <= 0 || max > (1L << 20)) { /* too many mappings to make in a test */
        printf("  vm.max_map_count is %ld: not tested here\n", max);
        return;
    }
    if (UNDER_TSAN) {
        printf("  a ThreadSanitizer build cannot run at the map-count limit: not tested\n");
        return;
    }
    run_in_child("vm.max_map_count", at_map_count_limit);
}

int main(void)
{
    RUN(test_address_space_limit);
    RUN(test_map_count_limit);
    return test_report();
}
