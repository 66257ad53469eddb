/* test_os_failure.c — the OS layer refuses the Nth mapping, for every N a short workload
 * reaches: each refusal is a clean NULL/ENOMEM, the pool stays consistent, serves again
 * once the OS does, and gives every mapping back when destroyed. */
#include "internal.h"
#include "test.h"

#include <errno.h>
#include <string.h>

/* A counting OS layer over the default one: map number `fail_at` (1-based) is refused. */
typedef struct fake_os {
    unsigned long maps, unmaps, fail_at, refused;
    size_t live_bytes;
} fake_os;

static void *fake_map(size_t size, size_t align, void *ctx)
{
    fake_os *f = ctx;
    if (++f->maps == f->fail_at) {
        f->refused++;
        return NULL;
    }
    void *p = bp_os_default()->map(size, align, NULL);
    if (p != NULL)
        f->live_bytes += size;
    return p;
}

static void fake_unmap(void *addr, size_t size, void *ctx)
{
    fake_os *f = ctx;
    f->unmaps++;
    f->live_bytes -= size;
    bp_os_default()->unmap(addr, size, NULL);
}

static bp_pool *new_pool(fake_os *f, bp_os *os)
{
    *os = (bp_os){.map = fake_map, .unmap = fake_unmap, .purge = NULL, .ctx = f};
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.chunk_size = (size_t)256 << 10;
    cfg.arenas = 1;
    cfg.os = os;
    return bp_pool_new(&cfg);
}

/* Small, normal, aligned and huge blocks over several chunks, freed in an order that empties
 * chunks (unmapping them) while new ones are being mapped. Returns allocations refused. */
static unsigned workload(bp_pool *pool, fake_os *f, int *problems)
{
    static const size_t sizes[] = {16, 3000, 40000, 100000, 300000, 24, 200000, 5000, 1 << 18};
    void *live[64];
    unsigned n = 0, refused = 0;
    for (unsigned i = 0; i < 64; i++) {
        size_t size = sizes[i % (sizeof sizes / sizeof sizes[0])];
        errno = 0;
        void *p = i % 11 == 10 ? bp_aligned_alloc(pool, 65536, size) : bp_alloc(pool, size);
        if (p == NULL) {
            refused++;
            if (errno != ENOMEM)
                (*problems)++;
            if (bp_pool_check(pool) != 0)
                (*problems)++;
            /* the OS answers again: the same request now succeeds */
            unsigned long fail_at = f->fail_at;
            f->fail_at = 0;
            p = bp_alloc(pool, size);
            f->fail_at = fail_at;
            if (p == NULL)
                (*problems)++;
        }
        if (p != NULL) {
            memset(p, (int)i, BP_MIN(size, (size_t)4096));
            live[n++] = p;
        }
        if (i % 4 == 3 && n > 0) { /* free an older block now and then */
            unsigned victim = n / 2;
            bp_free(live[victim]);
            live[victim] = live[--n];
        }
    }
    if (bp_pool_check(pool) != 0)
        (*problems)++;
    for (unsigned i = 0; i < n; i++)
        bp_free(live[i]);
    return refused;
}

static void test_every_mapping_fails_once(void)
{
    /* a clean run first, to learn how many mappings the workload makes */
    fake_os clean = {0};
    bp_os os;
    bp_pool *pool = new_pool(&clean, &os);
    REQUIRE(pool != NULL);
    int problems = 0;
    CHECK_EQ(workload(pool, &clean, &problems), 0);
    CHECK_EQ(problems, 0);
    bp_pool_destroy(pool);
    CHECK_EQ(clean.live_bytes, 0);
    CHECK_EQ(clean.maps, clean.unmaps);
    unsigned long total = clean.maps;
    CHECK(total >= 10);
    printf("the workload maps %lu times; failing each in turn\n", total);

    unsigned long failed_pools = 0, failed_allocs = 0;
    for (unsigned long n = 1; n <= total; n++) {
        fake_os f = {.fail_at = n};
        pool = new_pool(&f, &os);
        if (pool == NULL) { /* the pool's own mapping was refused */
            CHECK_EQ(errno, ENOMEM);
            CHECK_EQ(f.live_bytes, 0);
            failed_pools++;
            continue;
        }
        problems = 0;
        failed_allocs += workload(pool, &f, &problems);
        CHECK_EQ(problems, 0);
        CHECK_EQ(f.refused, 1);
        bp_pool_destroy(pool);
        CHECK_EQ(f.live_bytes, 0);
        CHECK_EQ(f.maps - f.refused, f.unmaps);
    }
    CHECK_EQ(failed_pools, 1);
    CHECK(failed_allocs >= total / 2);
    printf("%lu refusals: %lu at pool creation, %lu surfaced as NULL/ENOMEM\n", total, failed_pools,
           failed_allocs);
}

int main(void)
{
    RUN(test_every_mapping_fails_once);
    return test_report();
}
