/* test_os_failure.c — the OS layer refuses the Nth mapping, for every N a short workload
 * reaches: each refusal is a clean NULL/ENOMEM, the pool stays consistent, serves again
 * once the OS does, and gives every mapping back when destroyed. The OS layer refuses to
 * unmap (as munmap does at vm.max_map_count): nothing aborts, the memory stays counted, an
 * empty chunk is reused, and the rest is unmapped once the OS agrees. memory_limit bounds
 * every mapping a pool makes for its blocks, metadata included. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* A counting OS layer over the default one: map number `fail_at` (1-based) is refused; while
 * `refuse_unmaps`, unmaps (of `refuse_size` bytes only, when set) are refused with ENOMEM and
 * the ranges remembered, so that the test can unmap what a destroyed pool had to leave. */
typedef struct fake_os {
    unsigned long maps, unmaps, fail_at, refused;
    size_t live_bytes;
    bool refuse_unmaps;
    size_t refuse_size;
    unsigned long refused_unmaps, purges;
    size_t purged_bytes;
    struct {
        void *addr;
        size_t size;
    } left[64];
    unsigned nleft;
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

static int fake_unmap(void *addr, size_t size, void *ctx)
{
    fake_os *f = ctx;
    if (f->refuse_unmaps && (f->refuse_size == 0 || f->refuse_size == size)) {
        f->refused_unmaps++;
        bool known = false;
        for (unsigned i = 0; i < f->nleft; i++)
            known |= f->left[i].addr == addr;
        if (!known && f->nleft < sizeof f->left / sizeof f->left[0]) {
            f->left[f->nleft].addr = addr;
            f->left[f->nleft++].size = size;
        }
        return ENOMEM;
    }
    for (unsigned i = 0; i < f->nleft; i++) { /* refused before, unmapped now */
        if (f->left[i].addr == addr) {
            f->left[i] = f->left[--f->nleft];
            break;
        }
    }
    f->unmaps++;
    f->live_bytes -= size;
    return bp_os_default()->unmap(addr, size, NULL);
}

static int fake_purge(void *addr, size_t size, void *ctx)
{
    fake_os *f = ctx;
    f->purges++;
    f->purged_bytes += size;
    return bp_os_default()->purge(addr, size, NULL);
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
    /* Checked builds keep freed huge blocks mapped a while: an allocation whose mapping is
     * refused unmaps them in its reclaim and tries again, and the one-time refusal is over. */
    CHECK(failed_allocs >= (BP_CHECKED ? 1 : total / 2));
    printf("%lu refusals: %lu at pool creation, %lu surfaced as NULL/ENOMEM\n", total, failed_pools,
           failed_allocs);
}

/* One arena, no thread cache, no retained chunks, 256 KiB chunks, over the fake with purge. */
static bp_pool *refusing_pool(fake_os *f, bp_os *os, size_t limit)
{
    *os = (bp_os){.map = fake_map, .unmap = fake_unmap, .purge = fake_purge, .ctx = f};
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.chunk_size = 256 * KiB;
    cfg.arenas = 1;
    cfg.small_cache = cfg.normal_cache = 0;
    cfg.retained_chunks = 0;
    cfg.memory_limit = limit;
    cfg.os = os;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

/* An empty chunk the OS refuses to unmap stays with its arena: still counted, purged, and the
 * next chunk the arena needs is that one, with no new mapping; unmapped once the OS agrees. */
static void test_refused_chunk_unmap(void)
{
    fake_os f = {0};
    bp_os os;
    bp_pool *pool = refusing_pool(&f, &os, 0);
    size_t pool_mapping = f.live_bytes;
    void *p = bp_alloc(pool, 256 * KiB); /* the whole chunk */
    REQUIRE(p != NULL);
    size_t mapped = pool->engine.memory.counted;
    CHECK_EQ(mapped, 256 * KiB + bp_chunk_meta_size(&pool->engine));
    bp_free(p);
    f.refuse_unmaps = true;
    bp_pool_trim(pool); /* would unmap the empty chunk */
    CHECK(f.refused_unmaps >= 1);
    CHECK_EQ(pool->engine.memory.counted, mapped);
    CHECK_EQ(f.live_bytes, pool_mapping + mapped);
    CHECK(f.purged_bytes >= 256 * KiB);
    CHECK_EQ(bp_pool_check(pool), 0);
    unsigned long maps = f.maps;
    void *q = bp_alloc(pool, 256 * KiB);
    CHECK(q == p); /* the same chunk again */
    CHECK_EQ(f.maps, maps);
    bp_free(q);
    bp_pool_trim(pool); /* refused again: still nothing lost */
    CHECK_EQ(pool->engine.memory.counted, mapped);
    f.refuse_unmaps = false;
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    CHECK_EQ(f.live_bytes, pool_mapping);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(f.live_bytes, 0);
}

/* A huge block the OS refuses to unmap: bp_free returns, the range stays counted (release
 * builds; checked builds count a freed huge block out at once, see arena.c's quarantine) and
 * purged, and the next trim unmaps it. */
static void test_refused_huge_unmap(void)
{
    fake_os f = {0};
    bp_os os;
    bp_pool *pool = refusing_pool(&f, &os, 0);
    size_t pool_mapping = f.live_bytes;
    void *p = bp_alloc(pool, 1 * MiB);
    REQUIRE(p != NULL);
    memset(p, 1, 1 * MiB);
    size_t mapped = pool->engine.memory.counted;
    f.refuse_unmaps = true;
    bp_free(p);
    bp_pool_trim(pool);
    CHECK(f.refused_unmaps >= 1);
    if (!BP_CHECKED)
        CHECK_EQ(pool->engine.memory.counted, mapped);
    CHECK(f.purged_bytes >= 1 * MiB);
    CHECK_EQ(f.live_bytes, pool_mapping + mapped);
    CHECK_EQ(bp_pool_check(pool), 0);
    void *q = bp_alloc(pool, 1 * MiB); /* the pool still serves */
    CHECK(q != NULL && q != p);
    f.refuse_unmaps = false;
    bp_free(q);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    CHECK_EQ(f.live_bytes, pool_mapping);
    bp_pool_destroy(pool);
    CHECK_EQ(f.live_bytes, 0);
}

/* Only the chunk's metadata mapping is refused: the memory goes, the metadata stays counted
 * until a later trim unmaps it. */
static void test_refused_metadata_unmap(void)
{
    fake_os f = {0};
    bp_os os;
    bp_pool *pool = refusing_pool(&f, &os, 0);
    size_t pool_mapping = f.live_bytes;
    size_t meta = bp_chunk_meta_size(&pool->engine);
    REQUIRE(meta != 256 * KiB);
    void *p = bp_alloc(pool, 100);
    REQUIRE(p != NULL);
    bp_free(p);
    f.refuse_unmaps = true;
    f.refuse_size = meta;
    bp_pool_trim(pool);
    CHECK(f.refused_unmaps >= 1);
    CHECK_EQ(pool->engine.memory.counted, meta);
    CHECK_EQ(bp_os_stuck_bytes(&pool->engine.memory), meta); /* counted as a stuck range */
    CHECK_EQ(f.live_bytes, pool_mapping + meta);
    CHECK_EQ(bp_pool_check(pool), 0);
    f.refuse_unmaps = false;
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    CHECK_EQ(f.live_bytes, pool_mapping);
    bp_pool_destroy(pool);
    CHECK_EQ(f.live_bytes, 0);
}

/* Every unmap refused while the pool is destroyed: the call returns, and what had to stay is
 * exactly what was refused (purged); the test unmaps it afterwards. */
static void test_destroy_with_refused_unmaps(void)
{
    fake_os f = {0};
    bp_os os;
    bp_pool *pool = refusing_pool(&f, &os, 0);
    void *blocks[] = {bp_alloc(pool, 16), bp_alloc(pool, 40 * KiB), bp_alloc(pool, 1 * MiB)};
    for (size_t i = 0; i < 3; i++) {
        REQUIRE(blocks[i] != NULL);
        memset(blocks[i], 7, bp_usable_size(blocks[i]));
    }
    bp_free(blocks[0]);
    f.refuse_unmaps = true;
    bp_pool_destroy(pool);
    CHECK(f.refused_unmaps >= 4); /* chunk, its metadata, the huge block, the pool */
    size_t left = 0;
    for (unsigned i = 0; i < f.nleft; i++)
        left += f.left[i].size;
    CHECK_EQ(left, f.live_bytes);
    CHECK(f.purged_bytes >= left - 64 * KiB); /* all but what holds the stuck records */
    for (unsigned i = 0; i < f.nleft; i++)
        munmap(f.left[i].addr, f.left[i].size);
}

/* With 8 KiB chunks, a chunk's metadata mapping is as large as its memory: memory_limit
 * counts both (and the huge blocks' descriptors), so what the pool maps for blocks never
 * passes the limit, whatever mix of sizes runs into it. */
static void test_limit_counts_metadata(void)
{
    fake_os f = {0};
    bp_os os = {.map = fake_map, .unmap = fake_unmap, .purge = fake_purge, .ctx = &f};
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = 4 * KiB;
    cfg.chunk_size = 8 * KiB;
    cfg.arenas = 1;
    cfg.memory_limit = 512 * KiB;
    cfg.os = &os;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    size_t pool_mapping = f.live_bytes; /* the pool's own mapping: not a block's */
    CHECK(bp_chunk_meta_size(&pool->engine) >= 8 * KiB);
    static const size_t sizes[] = {8 * KiB, 16, 4 * KiB, 20 * KiB, 1000};
    void *blocks[1024];
    unsigned n = 0;
    size_t peak = 0;
    errno = 0;
    for (unsigned i = 0; n < 1024; i++) {
        void *p = bp_alloc(pool, sizes[i % 5]);
        size_t now = f.live_bytes - pool_mapping;
        peak = BP_MAX(peak, now);
        if (p == NULL)
            break;
        blocks[n++] = p;
    }
    CHECK(n < 1024);
    CHECK_EQ(errno, ENOMEM);
    CHECK(peak <= cfg.memory_limit);
    CHECK_EQ(pool->engine.memory.counted, f.live_bytes - pool_mapping);
    CHECK(pool->engine.memory.counted >
          cfg.memory_limit / 2); /* the limit, not something else, ended it */
    printf("  %u blocks under a %zu KiB limit; %zu KiB mapped for them at most\n", n,
           cfg.memory_limit >> 10, peak >> 10);
    for (unsigned i = 0; i < n; i++)
        bp_free(blocks[i]);
    bp_pool_trim(pool);
    CHECK_EQ(pool->engine.memory.counted, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(f.live_bytes, 0);
}

int main(void)
{
    RUN(test_every_mapping_fails_once);
    RUN(test_refused_chunk_unmap);
    RUN(test_refused_huge_unmap);
    RUN(test_refused_metadata_unmap);
    RUN(test_destroy_with_refused_unmaps);
    RUN(test_limit_counts_metadata);
    return test_report();
}
