/* test_chunk.c — handles, runs (split, aligned placement, coalescing), subpage transitions
 * and chunk-list moves, checked against the invariant walker and hand-worked figures. */
#include "front.h"
#include "test.h"

#include <string.h>

static bp_pool *new_pool(size_t page, size_t chunk)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = page;
    cfg.chunk_size = chunk;
    cfg.arenas = 1;
    cfg.small_cache = cfg.normal_cache = 0; /* these tests watch the arena itself */
    cfg.retained_chunks = 0;                /* an empty chunk goes as Netty lets it go */
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    memset(pool->engine.run_cache_limit, 0,
           sizeof pool->engine.run_cache_limit); /* every run goes back */
    return pool;
}

static void test_handle(void)
{
    CHECK_EQ(bp_handle_make(1, 2, true, true),
             (1ull << 49) | (2ull << 34) | (1ull << 33) | (1ull << 32));
    test_rng rng = {test_seed(0x4a4d1e)};
    for (int i = 0; i < 100000; i++) {
        uint32_t off = (uint32_t)test_below(&rng, 1u << 15);
        uint32_t pages = (uint32_t)test_below(&rng, 1u << 15);
        bool used = test_rand(&rng) & 1, sub = test_rand(&rng) & 1;
        uint64_t h = bp_handle_make(off, pages, used, sub);
        CHECK_EQ(bp_handle_offset(h), off);
        CHECK_EQ(bp_handle_pages(h), pages);
        CHECK_EQ(bp_handle_used(h), used);
        CHECK_EQ(bp_handle_subpage(h), sub);
        CHECK_EQ((uint32_t)h, 0); /* Netty's element index: unused, always 0 */
    }
}

/* Fill one chunk with runs of random normal classes, free them in random order, and end
 * with a single free run covering the whole chunk. */
static void test_split_and_coalesce(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    const bp_size_classes *sc = &pool->engine.sc;
    bp_chunk *chunk = bp_chunk_new(&pool->engine, &pool->arenas[0]);
    REQUIRE(chunk != NULL);
    test_rng rng = {test_seed(0xc0a1e5ce)};
    for (int round = 0; round < 20; round++) {
        uint32_t offsets[512], pages[512];
        unsigned n = 0;
        for (int misses = 0; misses < 8;) {
            unsigned cls = sc->nsmall + (unsigned)test_below(&rng, 12); /* 32 KiB .. 256 KiB */
            long off = bp_chunk_alloc_run(chunk, cls, 1, false);
            if (off < 0) {
                misses++;
                continue;
            }
            offsets[n] = (uint32_t)off;
            pages[n++] = sc->run_pages[cls];
        }
        CHECK(n > 0);
        CHECK_EQ(bp_chunk_check(chunk), 0);
        uint32_t used = 0;
        for (unsigned i = 0; i < n; i++)
            used += pages[i];
        CHECK_EQ(chunk->free_pages, chunk->npages - used);
        for (unsigned i = n; i > 0; i--) {
            unsigned j = (unsigned)test_below(&rng, i);
            bp_chunk_free_run(chunk, offsets[j], pages[j]);
            offsets[j] = offsets[i - 1];
            pages[j] = pages[i - 1];
            if (i % 7 == 0)
                CHECK_EQ(bp_chunk_check(chunk), 0);
        }
        CHECK_EQ(bp_chunk_check(chunk), 0);
        CHECK_EQ(chunk->free_pages, chunk->npages);
        CHECK_EQ(bp_handle_pages(chunk->run_map[0]), chunk->npages);
        CHECK_EQ(__builtin_popcountll(chunk->avail_mask), 1);
    }
    bp_chunk_delete(chunk);
    bp_pool_destroy(pool);
}

/* Lowest offset first: after freeing runs at 0 and at 8, the next run of that size lands
 * at 0; aligned runs start on their alignment and give the pages around them back. */
static void test_run_placement(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    const bp_size_classes *sc = &pool->engine.sc;
    bp_chunk *chunk = bp_chunk_new(&pool->engine, &pool->arenas[0]);
    REQUIRE(chunk != NULL);
    unsigned c4 = bp_size_to_class(sc, 4 * 8192); /* a normal class of 4 pages */
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 0);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 4);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 8);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 12);
    bp_chunk_free_run(chunk, 8, 4);
    bp_chunk_free_run(chunk, 0, 4);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 0);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 8);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 16, false), 16);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 32, false), 32);
    long off = bp_chunk_alloc_run(chunk, c4, 64, false);
    CHECK_EQ(off, 64);
    CHECK_EQ(bp_chunk_alloc_run(chunk, c4, 1, false), 20); /* the gap before 32 */
    CHECK_EQ(bp_chunk_check(chunk), 0);
    /* A run the size of the chunk fits only when the chunk is empty. */
    unsigned whole = sc->nclasses - 1;
    CHECK_EQ(bp_chunk_alloc_run(chunk, whole, 1, false), -1);
    uint32_t offs[] = {0, 4, 8, 12, 16, 20, 32, 64};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        bp_chunk_free_run(chunk, offs[i], 4);
    CHECK_EQ(bp_chunk_alloc_run(chunk, whole, 1, false), 0);
    CHECK_EQ(chunk->free_pages, 0);
    CHECK_EQ(bp_chunk_check(chunk), 0);
    bp_chunk_free_run(chunk, 0, chunk->npages);
    bp_chunk_delete(chunk);
    bp_pool_destroy(pool);
}

static unsigned pool_length(bp_arena *arena, unsigned cls)
{
    unsigned n = 0;
    for (bp_subpage *sp = arena->small[cls].next; sp != (bp_subpage *)&arena->small[cls];
         sp = sp->link.next)
        n++;
    return n;
}

/* A 1 KiB class has 8 elements per one-page run. */
static void test_subpage_transitions(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    bp_arena *arena = &pool->arenas[0];
    unsigned cls = bp_size_to_class(&pool->engine.sc, 1024);
    REQUIRE(pool->engine.sc.run_elems[cls] == 8);
    void *a[8], *b;
    for (int i = 0; i < 8; i++)
        a[i] = bp_alloc(pool, 1024);
    CHECK_EQ(pool_length(arena, cls), 0); /* full: off the pool */
    for (int i = 1; i < 8; i++)
        CHECK_EQ((char *)a[i] - (char *)a[i - 1], 1024);
    b = bp_alloc(pool, 1024); /* a second subpage */
    CHECK_EQ(pool_length(arena, cls), 1);
    bp_free(a[3]); /* the first is back in the pool, at the front */
    CHECK_EQ(pool_length(arena, cls), 2);
    CHECK_EQ(arena->small[cls].next->free_count, 1);
    a[3] = bp_alloc(pool, 1024); /* served from the front subpage: the hole just made */
    CHECK_EQ(pool_length(arena, cls), 1);
    bp_chunk *chunk = bp_chunk_map_lookup((uintptr_t)b);
    uint32_t free_before = chunk->free_pages;
    bp_free(b); /* empty, and the first is full: it is the only one, so it stays */
    CHECK_EQ(pool_length(arena, cls), 1);
    CHECK_EQ(chunk->free_pages, free_before);
    bp_free(a[0]); /* the first joins the empty one in the pool */
    CHECK_EQ(pool_length(arena, cls), 2);
    for (int i = 1; i < 8; i++)
        bp_free(a[i]);
    /* the first emptied while not alone: its run went back to the chunk */
    CHECK_EQ(pool_length(arena, cls), 1);
    CHECK_EQ(chunk->free_pages, free_before + 1);
    CHECK_EQ(bp_pool_check(pool), 0);
    CHECK(bp_pool_trim(pool) > 0); /* the kept subpage, then the empty chunk */
    CHECK_EQ(pool_length(arena, cls), 0);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.chunk_bytes, 0);
    CHECK_EQ(c.active_bytes, 0);
    bp_pool_destroy(pool);
}

/* 32-page runs are 6.25 % of a 512-page chunk; the list follows Netty's bands. */
static void test_chunk_list_moves(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    void *runs[16];
    struct {
        int count;
        const char *list;
    } up[] = {{1, "qInit"}, {3, "qInit"}, {4, "q000"},  {7, "q000"}, {8, "q025"},
              {11, "q025"}, {12, "q050"}, {15, "q050"}, {16, "q100"}};
    int live = 0;
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        while (live < up[i].count)
            runs[live++] = bp_alloc(pool, 32 * 8192);
        bp_chunk *chunk = bp_chunk_map_lookup((uintptr_t)runs[0]);
        CHECK(strcmp(chunk->list->name, up[i].list) == 0);
        if (strcmp(chunk->list->name, up[i].list) != 0)
            fprintf(stderr, "  %d runs: in %s, expected %s\n", live, chunk->list->name, up[i].list);
    }
    for (int i = 1; i < 16; i++)
        CHECK(bp_chunk_map_lookup((uintptr_t)runs[i]) == bp_chunk_map_lookup((uintptr_t)runs[0]));
    struct {
        int count;
        const char *list;
    } down[] = {{15, "q075"}, {12, "q075"}, {11, "q050"}, {8, "q050"},
                {7, "q025"},  {4, "q025"},  {3, "q000"},  {1, "q000"}};
    for (size_t i = 0; i < sizeof down / sizeof down[0]; i++) {
        while (live > down[i].count)
            bp_free(runs[--live]);
        bp_chunk *chunk = bp_chunk_map_lookup((uintptr_t)runs[0]);
        CHECK(strcmp(chunk->list->name, down[i].list) == 0);
        if (strcmp(chunk->list->name, down[i].list) != 0)
            fprintf(stderr, "  %d runs: in %s, expected %s\n", live, chunk->list->name,
                    down[i].list);
        CHECK_EQ(bp_pool_check(pool), 0);
    }
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.chunks_unmapped, 0);
    bp_free(runs[0]); /* empties out of q000: released */
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.chunks_mapped, 1);
    CHECK_EQ(c.chunks_unmapped, 1);
    CHECK_EQ(c.chunk_bytes, 0);
    CHECK(bp_chunk_map_lookup((uintptr_t)runs[0]) == NULL);
    bp_pool_destroy(pool);
}

int main(void)
{
    RUN(test_handle);
    RUN(test_split_and_coalesce);
    RUN(test_run_placement);
    RUN(test_subpage_transitions);
    RUN(test_chunk_list_moves);
    return test_report();
}
