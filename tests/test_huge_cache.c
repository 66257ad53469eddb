/* test_huge_cache.c — freed huge blocks kept mapped for reuse (huge_cache_bytes): reuse by a
 * block of about the same size without a new mapping, none for a much smaller one, release by
 * trim, by decay and before memory_limit fails an allocation, and bp_calloc clearing a reused
 * block. */
#include "internal.h"
#include "test.h"

#include <string.h>
#include <time.h>

typedef struct counting_os {
    unsigned long maps, unmaps;
} counting_os;

static void *count_map(size_t size, size_t align, void *ctx)
{
    ((counting_os *)ctx)->maps++;
    return bp_os_default()->map(size, align, NULL);
}

static int count_unmap(void *addr, size_t size, void *ctx)
{
    ((counting_os *)ctx)->unmaps++;
    return bp_os_default()->unmap(addr, size, NULL);
}

static int pass_purge(void *addr, size_t size, void *ctx)
{
    (void)ctx;
    return bp_os_default()->purge(addr, size, NULL);
}

static counting_os counts;
static bp_os os = {count_map, count_unmap, pass_purge, &counts};

static bp_pool *cache_pool(int decay_ms, size_t limit)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.huge_cache_bytes = (size_t)64 << 20;
    cfg.purge_decay_ms = decay_ms;
    cfg.memory_limit = limit;
    cfg.os = &os;
    memset(&counts, 0, sizeof counts);
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

/* Checked builds quarantine a freed huge block until 8 newer ones are freed; it reaches the
 * cache then. Release builds: nothing to do. */
static void through_quarantine(bp_pool *pool)
{
    void *newer[8];
    for (int i = 0; BP_CHECKED && i < 8; i++)
        newer[i] = bp_alloc(pool, (size_t)5 << 20);
    for (int i = 0; BP_CHECKED && i < 8; i++)
        bp_free(newer[i]);
}

static void test_reused_without_a_new_mapping(void)
{
    bp_pool *pool = cache_pool(-1, 0);
    size_t mib = (size_t)1 << 20;
    char *a = bp_alloc(pool, 20 * mib);
    REQUIRE(a != NULL);
    memset(a, 0x5a, 20 * mib);
    bp_free(a);
    through_quarantine(pool);
    unsigned long maps = counts.maps;
    char *b = bp_alloc(pool, 18 * mib); /* within 25 % of the freed mapping */
    CHECK(b == a);
    CHECK_EQ(counts.maps, maps);
    CHECK_EQ(bp_usable_size(b), 18 * mib);
    memset(b, 0x5a, 18 * mib);
    bp_free(b);
    through_quarantine(pool);
    char *z = bp_calloc(pool, 1, 19 * mib);
    CHECK(z == a);
    size_t nonzero = 0;
    for (size_t i = 0; i < 19 * mib; i++)
        nonzero += z[i] != 0;
    CHECK_EQ(nonzero, 0);
    bp_free(z);
    through_quarantine(pool);
    maps = counts.maps;
    char *small = bp_alloc(pool, 6 * mib); /* far smaller: a mapping of its own */
    CHECK(small != a);
    CHECK_EQ(counts.maps, maps + 1);
    bp_free(small);
    through_quarantine(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    unsigned long unmaps = counts.unmaps;
    bp_pool_trim(pool);
    CHECK(counts.unmaps >= unmaps + 2); /* the cached mappings */
    CHECK_EQ(pool->mapped_bytes, 0);
    bp_pool_destroy(pool);
}

static void test_bound_and_limit(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = cache_pool(-1, 40 * mib);
    void *a = bp_alloc(pool, 30 * mib);
    REQUIRE(a != NULL);
    bp_free(a); /* cached: still counted (checked builds: quarantined, uncounted) */
    CHECK(BP_CHECKED || pool->mapped_bytes >= 30 * mib);
    void *b = bp_alloc(pool, 12 * mib); /* too small for it, and the limit needs it back */
    CHECK(b != NULL);
    CHECK(pool->mapped_bytes <= 40 * mib);
    bp_free(b);
    void *big = bp_alloc(pool, 70 * mib); /* over the limit anyway */
    CHECK(big == NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    pool = cache_pool(-1, 0);
    void *blocks[4];
    for (int i = 0; i < 4; i++)
        blocks[i] = bp_alloc(pool, 25 * mib);
    for (int i = 0; i < 4; i++)
        bp_free(blocks[i]);
    CHECK(pool->arenas[0].huge_cached_bytes <= 64 * mib);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

static void test_decay_releases(void)
{
    bp_pool *pool = cache_pool(20, 0);
    void *a = bp_alloc(pool, (size_t)10 << 20);
    REQUIRE(a != NULL);
    bp_free(a);
    through_quarantine(pool);
    CHECK(pool->arenas[0].nhuge_cached >= 1);
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int i = 0; i < 400 && pool->arenas[0].nhuge_cached != 0; i++) { /* at most 2 s */
        nanosleep(&pause, NULL);
        bp_arena_purge_decayed(&pool->arenas[0]);
    }
    CHECK_EQ(pool->arenas[0].nhuge_cached, 0);
    CHECK(pool->mapped_bytes < ((size_t)1 << 20)); /* the descriptor slab stays */
    bp_pool_destroy(pool);
}

int main(void)
{
    RUN(test_reused_without_a_new_mapping);
    RUN(test_bound_and_limit);
    RUN(test_decay_releases);
    return test_report();
}
