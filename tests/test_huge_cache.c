/* test_huge_cache.c — freed huge blocks kept mapped for reuse (huge_cache_bytes): reuse by a
 * block of about the same size without a new mapping, none for a much smaller one, release by
 * trim, by decay and before memory_limit fails an allocation, and bp_calloc clearing a reused
 * block; the cache's mappings unmapped outside the arena lock; huge blocks resized by the
 * arena (bp_arena_realloc_huge: in place, moved with mremap, kept aligned, within memory_limit,
 * left to the caller's copy where the OS layer cannot remap). */
#define _GNU_SOURCE /* MAP_FIXED_NOREPLACE */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
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
static bp_os os = {.map = count_map, .unmap = count_unmap, .purge = pass_purge, .ctx = &counts};

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
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

static void test_bound_and_limit(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = cache_pool(-1, 40 * mib);
    void *a = bp_alloc(pool, 30 * mib);
    REQUIRE(a != NULL);
    bp_free(a); /* cached: still counted (checked builds: quarantined, uncounted) */
    CHECK(BP_CHECKED || pool->engine.memory.counted >= 30 * mib);
    void *b = bp_alloc(pool, 12 * mib); /* too small for it, and the limit needs it back */
    CHECK(b != NULL);
    CHECK(pool->engine.memory.counted <= 40 * mib);
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
    CHECK(pool->engine.memory.counted < ((size_t)1 << 20)); /* the descriptor slab stays */
    bp_pool_destroy(pool);
}

/* ---- unmapped outside the arena lock ---------------------------------------------------- */

/* An OS layer that notes every huge range (above the 4 MiB chunks) unmapped while the arena
 * lock of lock_pool's only arena is held by this thread. */
static bp_pool *lock_pool;
static unsigned long huge_unmaps, huge_unmaps_locked;

static int lock_checking_unmap(void *addr, size_t size, void *ctx)
{
    if (size > ((size_t)4 << 20)) {
        huge_unmaps++;
        huge_unmaps_locked +=
            __atomic_load_n(&lock_pool->arenas[0].lock.state, __ATOMIC_RELAXED) != 0;
    }
    return count_unmap(addr, size, ctx);
}

static bp_os lock_checking_os = {
    .map = count_map, .unmap = lock_checking_unmap, .purge = pass_purge, .ctx = &counts};

static bp_pool *lock_checking_pool(int decay_ms, size_t cache_bytes)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.huge_cache_bytes = cache_bytes;
    cfg.purge_decay_ms = decay_ms;
    cfg.os = &lock_checking_os;
    memset(&counts, 0, sizeof counts);
    huge_unmaps = huge_unmaps_locked = 0;
    lock_pool = bp_pool_new(&cfg);
    REQUIRE(lock_pool != NULL);
    return lock_pool;
}

static void test_eviction_unmaps_outside_the_lock(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = lock_checking_pool(-1, 32 * mib);
    void *a = bp_alloc(pool, 25 * mib), *b = bp_alloc(pool, 25 * mib);
    REQUIRE(a != NULL && b != NULL);
    size_t limit_before = pool->engine.memory.counted;
    bp_free(a);
    bp_free(b); /* the cache holds one of them: the other is evicted */
    through_quarantine(pool);
    CHECK(huge_unmaps >= 1);
    CHECK_EQ(huge_unmaps_locked, 0);
    CHECK(pool->engine.memory.counted <= limit_before - 25 * mib); /* uncounted once unmapped */
    CHECK_EQ(pool->arenas[0].unmap_pending, NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_trim(pool); /* the rest of the cache (and the quarantine) */
    CHECK_EQ(huge_unmaps_locked, 0);
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

static void test_decay_unmaps_outside_the_lock(void)
{
    bp_pool *pool = lock_checking_pool(20, (size_t)64 << 20);
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
    CHECK(huge_unmaps >= 1);
    CHECK_EQ(huge_unmaps_locked, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
}

/* ---- huge blocks resized by their arena ------------------------------------------------- */

static void *realloc_huge(void *p, size_t size)
{
    bp_chunk *huge = bp_chunk_map_lookup((uintptr_t)p);
    REQUIRE(huge != NULL && huge->kind == BP_CHUNK_HUGE);
    return bp_arena_realloc_huge(huge->arena, huge, size);
}

/* A pattern that differs on every page, so a page moved to the wrong place shows. */
static void fill(void *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        memset((char *)p + i, (int)((i >> 12) * 37 + 1), BP_TEST_MIN(4096, n - i));
}

static size_t mismatches(const void *p, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 512)
        bad += ((const unsigned char *)p)[i] != (unsigned char)((i >> 12) * 37 + 1);
    return bad;
}

static bp_pool *default_os_pool(size_t limit)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.huge_cache_bytes = (size_t)64 << 20;
    cfg.purge_decay_ms = -1;
    cfg.memory_limit = limit;
    cfg.os = NULL; /* the default layer: it can remap */
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

static size_t huge_bytes(bp_pool *pool)
{
    bp_stats st;
    st.struct_size = sizeof st;
    REQUIRE(bp_pool_stats(pool, &st) == BP_OK);
    return st.huge_bytes;
}

/* A page mapped right after [p, p + size), so the block cannot grow in place; NULL when
 * something is there already (which blocks it as well). */
static void *block_after(void *p, size_t size)
{
    void *want = (char *)p + size;
    void *got =
        mmap(want, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (got == MAP_FAILED)
        return NULL;
    if (got != want) { /* a kernel that took the flag for a hint */
        munmap(got, 4096);
        return NULL;
    }
    return got;
}

/* With the default layer a cached mapping serves a block of another size too: cut down for
 * a smaller one, grown (in place or moved) for a larger one, its pages kept either way (no
 * page faults for them), and memory_limit's count follows exactly. */
static void test_reused_resized(void)
{
    bp_pool *pool = default_os_pool(0);
    size_t mib = (size_t)1 << 20;
    char *a = bp_alloc(pool, 20 * mib);
    REQUIRE(a != NULL);
    a[0] = 0x5a;
    bp_free(a);
    through_quarantine(pool);
    size_t counted = pool->engine.memory.counted;
    char *b = bp_alloc(pool, 8 * mib); /* far smaller: the mapping cut down */
    CHECK(b == a);
    /* the page the program wrote, not a new one (checked builds purge a quarantined block) */
    CHECK(BP_CHECKED || b[0] == 0x5a);
    CHECK_EQ(pool->engine.memory.counted, counted - 12 * mib);
    CHECK_EQ(bp_usable_size(b), 8 * mib);
    bp_free(b);
    through_quarantine(pool);
    counted = pool->engine.memory.counted;
    char *c = bp_alloc(pool, 16 * mib); /* larger than anything cached: one grown */
    REQUIRE(c != NULL);
    CHECK(BP_CHECKED || c[0] == 0x5a);
    CHECK_EQ(pool->engine.memory.counted, counted + 8 * mib);
    CHECK_EQ(bp_usable_size(c), 16 * mib);
    memset(c, 1, 16 * mib); /* all of it is there */
    bp_free(c);
    through_quarantine(pool);
    char *z = bp_calloc(pool, 1, 6 * mib);
    REQUIRE(z != NULL);
    size_t nonzero = 0;
    for (size_t i = 0; i < 6 * mib; i++)
        nonzero += z[i] != 0;
    CHECK_EQ(nonzero, 0);
    bp_free(z);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

/* A cached mapping that memory_limit will not let grow is unmapped rather than kept, and the
 * allocation fails cleanly when a new mapping does not fit either: the count stays exact
 * and a block that fits afterwards is served. */
static void test_resize_refused_by_limit(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = default_os_pool(24 * mib);
    char *live = bp_alloc(pool, 8 * mib);
    char *cached = bp_alloc(pool, 8 * mib);
    REQUIRE(live != NULL && cached != NULL);
    bp_free(cached);
    through_quarantine(pool);
    errno = 0;
    CHECK(bp_alloc(pool, 17 * mib) == NULL); /* 8 live + 17 is past 24 either way */
    CHECK_EQ(errno, ENOMEM);
    CHECK(pool->engine.memory.counted <= 24 * mib);
    CHECK_EQ(pool->engine.memory.counted, 8 * mib + bp_arena_overhead_bytes(&pool->arenas[0]));
    CHECK_EQ(bp_pool_check(pool), 0);
    char *fits = bp_alloc(pool, 12 * mib);
    CHECK(fits != NULL);
    bp_free(fits);
    bp_free(live);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

static void test_realloc_grows_and_shrinks(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = default_os_pool(0);
    char *p = bp_alloc(pool, 8 * mib);
    REQUIRE(p != NULL);
    size_t overhead = pool->engine.memory.counted - 8 * mib; /* the descriptor slab */
    fill(p, 8 * mib);
    size_t kept = 8 * mib;
    for (size_t size = 16 * mib; size <= 64 * mib; size *= 2) {
        char *q = realloc_huge(p, size);
        REQUIRE(q != NULL);
        CHECK_EQ((uintptr_t)q % BP_MAP_GRANULE, 0);
        CHECK_EQ(mismatches(q, kept), 0);
        CHECK_EQ(bp_usable_size(q), size);
        CHECK_EQ(huge_bytes(pool), size);
        CHECK_EQ(pool->engine.memory.counted, overhead + size);
        CHECK(bp_chunk_map_lookup((uintptr_t)q) != NULL);
        fill(q, size);
        kept = size;
        p = q;
    }
    char *q = realloc_huge(p, 5 * mib + 1); /* a shrink gives the tail back */
    REQUIRE(q == p);
    CHECK_EQ(mismatches(q, 5 * mib), 0);
    CHECK_EQ(bp_usable_size(q), 5 * mib + pool->engine.page_size);
    CHECK_EQ(pool->engine.memory.counted, overhead + 5 * mib + pool->engine.page_size);
    CHECK_EQ(huge_bytes(pool), 5 * mib + pool->engine.page_size);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(q);
    through_quarantine(pool);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

/* With the pages after it taken, growth moves the block: to an address on its alignment,
 * registered there and no longer at the old one. */
static void moved_keeps_alignment(bp_pool *pool, size_t align)
{
    size_t mib = (size_t)1 << 20;
    char *p = align != 0 ? bp_alloc_aligned_huge(pool, align, 8 * mib) : bp_alloc(pool, 8 * mib);
    REQUIRE(p != NULL);
    fill(p, 8 * mib);
    void *blocker = block_after(p, 8 * mib);
    char *q = realloc_huge(p, 24 * mib);
    REQUIRE(q != NULL);
    CHECK(q != p);
    CHECK_EQ((uintptr_t)q % BP_MAX(align, BP_MAP_GRANULE), 0);
    CHECK_EQ(mismatches(q, 8 * mib), 0);
    CHECK_EQ(bp_usable_size(q), 24 * mib);
    CHECK(bp_chunk_map_lookup((uintptr_t)q) != NULL);
    CHECK(bp_chunk_map_lookup((uintptr_t)p) == NULL);
    CHECK_EQ(bp_pool_check(pool), 0);
    memset(q + 8 * mib, 0x11, 16 * mib); /* the new pages are the block's */
    bp_free(q);
    if (blocker != NULL)
        munmap(blocker, 4096);
}

static void test_realloc_moves_keeping_alignment(void)
{
    bp_pool *pool = default_os_pool(0);
    moved_keeps_alignment(pool, 0);
    moved_keeps_alignment(pool, (size_t)32 << 20);
    through_quarantine(pool);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    bp_pool_destroy(pool);
}

static void test_realloc_within_memory_limit(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = default_os_pool(24 * mib);
    char *p = bp_alloc(pool, 16 * mib);
    REQUIRE(p != NULL);
    fill(p, 16 * mib);
    size_t mapped = pool->engine.memory.counted;
    CHECK(realloc_huge(p, 32 * mib) == NULL); /* past the limit: the block as it was */
    CHECK_EQ(pool->engine.memory.counted, mapped);
    CHECK_EQ(bp_usable_size(p), 16 * mib);
    CHECK_EQ(mismatches(p, 16 * mib), 0);
    char *q = realloc_huge(p, 20 * mib);
    REQUIRE(q != NULL);
    CHECK_EQ(pool->engine.memory.counted, mapped + 4 * mib);
    CHECK(pool->engine.memory.counted <= 24 * mib);
    CHECK_EQ(mismatches(q, 16 * mib), 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(q);
    bp_pool_destroy(pool);
}

/* A block reused from the huge cache maps more than its size: growth into that slack needs no
 * OS call at all (so works with any layer); past it a custom layer cannot remap, and the
 * caller is told to copy, the block untouched. */
static void test_realloc_reused_block(void)
{
    size_t mib = (size_t)1 << 20;
    bp_pool *pool = cache_pool(-1, 0); /* the counting layer: no remap */
    char *a = bp_alloc(pool, 20 * mib);
    REQUIRE(a != NULL);
    bp_free(a);
    through_quarantine(pool);
    char *b = bp_alloc(pool, 17 * mib);
    REQUIRE(b == a); /* the cached 20 MiB mapping */
    fill(b, 17 * mib);
    unsigned long maps = counts.maps, unmaps = counts.unmaps;
    char *c = realloc_huge(b, 19 * mib);
    CHECK(c == b);
    CHECK_EQ(bp_usable_size(b), 19 * mib);
    CHECK_EQ(huge_bytes(pool), 19 * mib);
    CHECK_EQ(pool->arenas[0].huge_slack_bytes, 1 * mib);
    CHECK(realloc_huge(b, 40 * mib) == NULL);
    CHECK_EQ(bp_usable_size(b), 19 * mib);
    CHECK_EQ(counts.maps, maps);
    CHECK_EQ(counts.unmaps, unmaps);
    CHECK_EQ(mismatches(b, 17 * mib), 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(b);
    bp_pool_destroy(pool);

    pool = default_os_pool(0); /* the default layer grows it past the slack */
    a = bp_alloc(pool, 20 * mib);
    REQUIRE(a != NULL);
    bp_free(a);
    through_quarantine(pool);
    b = bp_alloc(pool, 17 * mib);
    REQUIRE(b == a);
    fill(b, 17 * mib);
    size_t mapped = pool->engine.memory.counted;
    c = realloc_huge(b, 40 * mib);
    REQUIRE(c != NULL);
    CHECK_EQ(mismatches(c, 17 * mib), 0);
    CHECK_EQ(pool->engine.memory.counted, mapped + 20 * mib);
    CHECK_EQ(pool->arenas[0].huge_slack_bytes, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_free(c);
    bp_pool_destroy(pool);
}

int main(void)
{
    RUN(test_reused_without_a_new_mapping);
    RUN(test_bound_and_limit);
    RUN(test_decay_releases);
    RUN(test_eviction_unmaps_outside_the_lock);
    RUN(test_decay_unmaps_outside_the_lock);
    RUN(test_reused_resized);
    RUN(test_resize_refused_by_limit);
    RUN(test_realloc_grows_and_shrinks);
    RUN(test_realloc_moves_keeping_alignment);
    RUN(test_realloc_within_memory_limit);
    RUN(test_realloc_reused_block);
    return test_report();
}
