/* test_region.c — regions in the OS layer: chunk and huge memory mapped apart from metadata
 * (map_memory), region_add once per chunk and huge block, region_remove before each unmap,
 * bp_region_of for plain pointers and bp_bufs, and a region_add that fails: a clean ENOMEM,
 * nothing leaked, memory_limit's count exact, the pool usable after. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* The default layer plus a region table: every chunk and huge block gets the region id
 * next_id++ and offset 1 GiB * id (any value works: the test checks it comes back). */
typedef struct region_os {
    /* region_add refuses its calls from number fail_add_at on (0: never) */
    unsigned long meta_maps, memory_maps, adds, removes, fail_add_at, refused_adds;
    unsigned long unmaps_in_region; /* unmaps of memory whose region was not removed first */
    unsigned long chunk_adds, huge_adds;
    size_t live_bytes; /* mapped through this layer, metadata and memory */
    struct {
        void *addr;
        size_t size;
        bp_region region;
        bool live;
    } r[256];
    unsigned n;
} region_os;

static void *meta_map(size_t size, size_t align, void *ctx)
{
    region_os *t = ctx;
    t->meta_maps++;
    void *p = bp_os_default()->map(size, align, NULL);
    t->live_bytes += p != NULL ? size : 0;
    return p;
}

static void *memory_map(size_t size, size_t align, bp_map_kind kind, void *ctx)
{
    region_os *t = ctx;
    (void)kind;
    t->memory_maps++;
    void *p = bp_os_default()->map(size, align, NULL);
    t->live_bytes += p != NULL ? size : 0;
    return p;
}

static int tracked_unmap(void *addr, size_t size, void *ctx)
{
    region_os *t = ctx;
    for (unsigned i = 0; i < t->n; i++)
        if (t->r[i].live && t->r[i].addr == addr)
            t->unmaps_in_region++;
    int err = bp_os_default()->unmap(addr, size, NULL);
    t->live_bytes -= err == 0 ? size : 0;
    return err;
}

static int tracked_purge(void *addr, size_t size, void *ctx)
{
    (void)ctx;
    return bp_os_default()->purge(addr, size, NULL);
}

static int add(void *addr, size_t size, bp_map_kind kind, bp_region *out, void *ctx)
{
    region_os *t = ctx;
    if (++t->adds >= t->fail_add_at && t->fail_add_at != 0) {
        t->refused_adds++;
        return EBUSY;
    }
    if (t->n == sizeof t->r / sizeof t->r[0])
        return ENOSPC;
    t->chunk_adds += kind == BP_MAP_CHUNK;
    t->huge_adds += kind == BP_MAP_HUGE;
    out->id = 7 + t->n;
    out->offset = (uint64_t)(t->n + 1) << 30;
    t->r[t->n].addr = addr;
    t->r[t->n].size = size;
    t->r[t->n].region = *out;
    t->r[t->n++].live = true;
    return 0;
}

static void remove_region(void *addr, size_t size, const bp_region *region, void *ctx)
{
    region_os *t = ctx;
    t->removes++;
    for (unsigned i = 0; i < t->n; i++)
        if (t->r[i].live && t->r[i].addr == addr && t->r[i].size == size &&
            t->r[i].region.id == region->id)
            t->r[i].live = false;
}

static unsigned live_regions(const region_os *t)
{
    unsigned live = 0;
    for (unsigned i = 0; i < t->n; i++)
        live += t->r[i].live;
    return live;
}

/* The region the table gave the memory that holds p, or NULL. */
static const bp_region *table_region(const region_os *t, const void *p, uintptr_t *base)
{
    for (unsigned i = 0; i < t->n; i++) {
        uintptr_t a = (uintptr_t)t->r[i].addr;
        if (t->r[i].live && (uintptr_t)p >= a && (uintptr_t)p < a + t->r[i].size) {
            *base = a;
            return &t->r[i].region;
        }
    }
    return NULL;
}

/* What memory_limit counts, plus the pool's own mapping (which it does not). */
static size_t counted(const bp_pool *pool)
{
    return __atomic_load_n(&pool->engine.memory.counted, __ATOMIC_RELAXED) + pool->map_size;
}

static bp_os os_of(region_os *t)
{
    return (bp_os){.map = meta_map,
                   .unmap = tracked_unmap,
                   .purge = tracked_purge,
                   .ctx = t,
                   .map_memory = memory_map,
                   .region_add = add,
                   .region_remove = remove_region};
}

static bp_pool *pool_on(const bp_os *os, size_t limit)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.chunk_size = 256 * KiB;
    cfg.arenas = 1;
    cfg.memory_limit = limit;
    cfg.huge_cache_bytes = 0; /* freed huge blocks go at once: their regions too */
    cfg.os = os;
    return bp_pool_new(&cfg);
}

/* p's region by bp_region_of agrees with the table's, at p's distance from the memory's
 * start. */
static void check_region_of(const region_os *t, const void *p)
{
    uint32_t id = 0;
    uint64_t offset = 0;
    uintptr_t base = 0;
    const bp_region *r = table_region(t, p, &base);
    REQUIRE(r != NULL);
    CHECK_EQ(bp_region_of(p, &id, &offset), 0);
    CHECK_EQ(id, r->id);
    CHECK_EQ(offset, r->offset + ((uintptr_t)p - base));
}

static void regions_of_chunks_and_huge_blocks(void)
{
    region_os t = {0};
    bp_os os = os_of(&t);
    bp_pool *pool = pool_on(&os, 0);
    REQUIRE(pool != NULL);
    unsigned long meta_before = t.meta_maps;
    char *small = bp_alloc(pool, 100);
    char *normal = bp_alloc(pool, 40 * KiB);
    char *huge = bp_alloc(pool, 3 * MiB);
    REQUIRE(small != NULL && normal != NULL && huge != NULL);
    CHECK_EQ(t.chunk_adds, 1); /* both blocks in the first chunk */
    CHECK_EQ(t.huge_adds, 1);
    CHECK_EQ(t.memory_maps, 2);       /* every block's memory came from map_memory ... */
    CHECK(t.meta_maps > meta_before); /* ... and the chunk's metadata from map */
    check_region_of(&t, small);
    check_region_of(&t, small + 99);
    check_region_of(&t, normal + 40 * KiB - 1);
    check_region_of(&t, huge);
    check_region_of(&t, huge + 3 * MiB - 1); /* inside the block's first granule */

    /* several chunks: one region each */
    void *blocks[8];
    for (unsigned i = 0; i < 8; i++) {
        blocks[i] = bp_alloc(pool, 200 * KiB);
        REQUIRE(blocks[i] != NULL);
        check_region_of(&t, blocks[i]);
    }
    CHECK(t.chunk_adds >= 8);
    CHECK_EQ(t.adds, t.chunk_adds + t.huge_adds);
    for (unsigned i = 0; i < 8; i++)
        bp_free(blocks[i]);
    bp_free(huge);
    bp_free(normal);
    bp_free(small);
    bp_pool_trim(pool);
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_destroy(pool);
    CHECK_EQ(t.removes, t.adds); /* every region removed ... */
    CHECK_EQ(live_regions(&t), 0);
    CHECK_EQ(t.unmaps_in_region, 0); /* ... before its memory was unmapped */
}

/* region_add refused from its 1st, 2nd, ... call on: the allocation that needed it fails
 * with ENOMEM (after the retry a failing allocation makes), the pool counts no more than it
 * had, and it serves the same request once the layer agrees. */
static void failing_region_add(void)
{
    static const size_t sizes[] = {64, 40 * KiB, 200 * KiB, 2 * MiB, 5000, 200 * KiB, 1 * MiB};
    for (unsigned long fail_at = 1; fail_at <= 5; fail_at++) { /* 5 regions in all */
        region_os t = {0};
        t.fail_add_at = fail_at;
        bp_os os = os_of(&t);
        bp_pool *pool = pool_on(&os, 64 * MiB);
        REQUIRE(pool != NULL);
        void *live[16];
        unsigned n = 0, refused = 0;
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t before = __atomic_load_n(&pool->engine.memory.counted, __ATOMIC_RELAXED);
            errno = 0;
            void *p = bp_alloc(pool, sizes[i]);
            if (p == NULL) {
                refused++;
                CHECK_EQ(errno, ENOMEM);
                CHECK_EQ(bp_pool_check(pool), 0);
                /* what the failed attempt mapped is unmapped and uncounted: memory_limit
                 * counts exactly what is mapped (the pool's own mapping aside) */
                CHECK_EQ(counted(pool), t.live_bytes);
                (void)before;
                CHECK_EQ(live_regions(&t), t.n);
                t.fail_add_at = 0;
                p = bp_alloc(pool, sizes[i]); /* the layer agrees now */
            }
            REQUIRE(p != NULL);
            memset(p, (int)i, sizes[i]);
            check_region_of(&t, p);
            live[n++] = p;
        }
        CHECK_EQ(refused, 1);
        CHECK(t.refused_adds >= 1);
        for (unsigned i = 0; i < n; i++)
            bp_free(live[i]);
        bp_pool_trim(pool);
        CHECK_EQ(bp_pool_check(pool), 0);
        bp_pool_destroy(pool);
        CHECK_EQ(live_regions(&t), 0);
        CHECK_EQ(t.unmaps_in_region, 0);
    }
}

/* memory_limit is exact across a refused region: the count before and after a failed
 * first chunk is the same, to the byte. */
static void failed_region_counts_nothing(void)
{
    region_os t = {0};
    bp_os os = os_of(&t);
    bp_pool *pool = pool_on(&os, 64 * MiB);
    REQUIRE(pool != NULL);
    char *small = bp_alloc(pool, 64); /* one chunk mapped and counted */
    REQUIRE(small != NULL);
    size_t before = counted(pool);
    CHECK(before > 0);
    CHECK_EQ(before, t.live_bytes);
    t.fail_add_at = t.adds + 1; /* every region from here on */
    errno = 0;
    CHECK(bp_alloc(pool, 256 * KiB) == NULL); /* a whole chunk: a new one */
    CHECK_EQ(errno, ENOMEM);
    CHECK(t.refused_adds >= 1);
    CHECK_EQ(counted(pool), before);
    errno = 0;
    CHECK(bp_alloc(pool, 3 * MiB) == NULL); /* a huge block, refused the same way */
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(counted(pool), t.live_bytes); /* the descriptors' slab stays: it is counted */
    CHECK_EQ(t.huge_adds, 0);
    CHECK_EQ(bp_pool_check(pool), 0);
    char *more = bp_alloc(pool, 64); /* the chunk it has still serves */
    CHECK(more != NULL);
    bp_free(more);
    t.fail_add_at = 0;
    void *p = bp_alloc(pool, 3 * MiB);
    CHECK(p != NULL);
    bp_free(p);
    bp_free(small);
    bp_pool_destroy(pool);
    CHECK_EQ(live_regions(&t), 0);
    CHECK_EQ(t.live_bytes, 0);
    CHECK_EQ(t.unmaps_in_region, 0);
}

static void region_of_errors(void)
{
    uint32_t id = 99;
    uint64_t offset = 99;
    int on_stack = 0;
    CHECK_EQ(bp_region_of(NULL, &id, &offset), EINVAL);
    CHECK_EQ(bp_region_of(&on_stack, &id, &offset), EINVAL);
    CHECK_EQ(id, 99); /* nothing written */
    void *plain = bp_alloc(bp_pool_default(), 64);
    CHECK_EQ(bp_region_of(plain, &id, &offset), ENOENT); /* the default layer has no regions */
    bp_free(plain);
    bp_buf *empty = bp_buf_new(bp_pool_default(), 16, 64);
    size_t len = 0;
    CHECK_EQ(bp_buf_region_of(empty, &id, &offset, &len), EINVAL); /* no readable bytes */
    CHECK_EQ(bp_buf_region_of(NULL, &id, &offset, &len), EINVAL);
    bp_buf_release(empty);
}

static void buf_region_of(void)
{
    region_os t = {0};
    bp_os os = os_of(&t);
    bp_pool *pool = pool_on(&os, 0);
    REQUIRE(pool != NULL);
    bp_buf *b = bp_buf_new(pool, 1000, 1000);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "0123456789", 10), 0);
    uint8_t skip[3];
    CHECK_EQ(bp_buf_read_bytes(b, skip, 3), 0);
    uint32_t id = 0;
    uint64_t offset = 0;
    size_t len = 0;
    CHECK_EQ(bp_buf_region_of(b, &id, &offset, &len), 0);
    CHECK_EQ(len, 7);
    struct iovec iov;
    CHECK_EQ(bp_buf_iov(b, 3, 7, &iov, 1, NULL), 1);
    CHECK(memcmp(iov.iov_base, "3456789", 7) == 0);
    uint32_t want_id = 0;
    uint64_t want_offset = 0;
    CHECK_EQ(bp_region_of(iov.iov_base, &want_id, &want_offset), 0);
    CHECK_EQ(id, want_id);
    CHECK_EQ(offset, want_offset);

    /* a huge buffer read past its first 4 MiB: from the buffer's index 0 */
    bp_buf *big = bp_buf_new(pool, 6 * MiB, 6 * MiB);
    REQUIRE(big != NULL);
    uint8_t *chunk = calloc(1, 6 * MiB);
    REQUIRE(chunk != NULL);
    CHECK_EQ(bp_buf_write_bytes(big, chunk, 6 * MiB), 0);
    CHECK_EQ(bp_buf_read_bytes(big, chunk, 5 * MiB), 0);
    free(chunk);
    CHECK_EQ(bp_buf_region_of(big, &id, &offset, &len), 0);
    CHECK_EQ(len, 1 * MiB);
    CHECK_EQ(bp_buf_iov(big, 5 * MiB, 1, &iov, 1, NULL), 1);
    uintptr_t base = 0;
    const bp_region *r = table_region(&t, iov.iov_base, &base);
    REQUIRE(r != NULL);
    CHECK_EQ(id, r->id);
    CHECK_EQ(offset, r->offset + ((uintptr_t)iov.iov_base - base));

    /* a composite: its first part's region and length */
    bp_buf *c = bp_buf_composite(pool, 4);
    REQUIRE(c != NULL);
    bp_buf *part = bp_buf_new(pool, 100, 100);
    REQUIRE(part != NULL);
    CHECK_EQ(bp_buf_write_bytes(part, "abcdef", 6), 0);
    CHECK_EQ(bp_buf_append(c, part), 0);
    CHECK_EQ(bp_buf_append(c, b), 0);
    CHECK_EQ(bp_buf_region_of(c, &id, &offset, &len), 0);
    CHECK_EQ(len, 6);
    check_region_of(&t, bp_buf_iov(c, 0, 1, &iov, 1, NULL) == 1 ? iov.iov_base : NULL);
    bp_buf_release(c);
    bp_buf_release(big);
    bp_pool_destroy(pool);
    CHECK_EQ(live_regions(&t), 0);
    CHECK_EQ(t.live_bytes, 0);
}

/* A huge block of a pool with regions is never moved under its region: bp_realloc copies it
 * into a new block (a new region) and the old region goes with the old block. */
static void realloc_on(region_os *t, const bp_os *os)
{
    bp_pool *pool = pool_on(os, 0);
    REQUIRE(pool != NULL);
    char *p = bp_alloc(pool, 1 * MiB);
    REQUIRE(p != NULL);
    memset(p, 0x5a, 1 * MiB);
    char *q = bp_realloc(pool, p, 3 * MiB);
    REQUIRE(q != NULL);
    CHECK(q[0] == 0x5a && q[1 * MiB - 1] == 0x5a);
    check_region_of(t, q);
    check_region_of(t, q + 3 * MiB - 1);
    char *r = bp_realloc(pool, q, 12 * MiB);
    REQUIRE(r != NULL);
    CHECK(r[0] == 0x5a && r[1 * MiB - 1] == 0x5a);
    check_region_of(t, r);
    char *s = bp_realloc(pool, r, 5 * MiB); /* a shrink below the slack a block may keep */
    REQUIRE(s != NULL);
    check_region_of(t, s);
    bp_free(s);
    bp_pool_destroy(pool);
    CHECK_EQ(live_regions(t), 0);
    CHECK_EQ(t->unmaps_in_region, 0);
}

/* A huge block of a pool with regions is never moved or resized under its region (mremap):
 * bp_realloc copies it into a new block (a new region) and the old region goes with the
 * old block. Also for the default layer's own calls with region callbacks added. */
static void realloc_keeps_regions_true(void)
{
    region_os t = {0};
    bp_os os = os_of(&t);
    realloc_on(&t, &os);
    CHECK_EQ(t.live_bytes, 0);
    region_os d = {0};
    bp_os with_default = *bp_os_default();
    with_default.ctx = &d; /* the default calls ignore it */
    with_default.region_add = add;
    with_default.region_remove = remove_region;
    realloc_on(&d, &with_default);
}

int main(void)
{
    RUN(regions_of_chunks_and_huge_blocks);
    RUN(failing_region_add);
    RUN(failed_region_counts_nothing);
    RUN(region_of_errors);
    RUN(buf_region_of);
    RUN(realloc_keeps_regions_true);
    return test_report();
}
