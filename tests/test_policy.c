/* test_policy.c — the placement policy itself, where a wrong rule would still leave every
 * invariant intact: the order in which an arena tries its chunk lists, the list a chunk sits
 * in when its usage is exactly on a band boundary, and the size-to-bin table the allocation
 * fast path reads. Chunk usages are built page by page, so each case knows its usage exactly
 * instead of relying on the policy under test to put chunks where they are. */
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
    cfg.small_cache = cfg.normal_cache = 0; /* every allocation reaches the arena */
    cfg.retained_chunks = 0;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    memset(pool->engine.run_cache_limit, 0,
           sizeof pool->engine.run_cache_limit); /* runs come from chunks */
    return pool;
}

/* The class of exactly one page, taken as a whole run (subpage false): one-page steps of
 * usage. */
static unsigned page_class(const bp_pool *pool)
{
    unsigned cls = bp_size_to_class(&pool->engine.sc, pool->engine.page_size);
    REQUIRE(pool->engine.sc.size[cls] == pool->engine.page_size);
    return cls;
}

static uint32_t used_pages(const bp_chunk *chunk)
{
    return chunk->npages - chunk->free_pages;
}

/* One more page in use. Pages are taken lowest offset first, so a chunk filled only by this
 * holds its used pages at [0, used_pages) and the top one can be given back. */
static void take_page(bp_chunk *chunk, unsigned cls)
{
    REQUIRE(bp_chunk_alloc_run(chunk, cls, 1, false) >= 0);
}
static void give_page(bp_chunk *chunk)
{
    REQUIRE(used_pages(chunk) > 0);
    bp_chunk_free_run(chunk, used_pages(chunk) - 1, 1);
}

/* Takes or gives pages until the chunk's usage is exactly `usage` (no list is told). */
static void set_usage(bp_chunk *chunk, unsigned cls, unsigned usage)
{
    while (bp_chunk_usage(chunk) < usage)
        take_page(chunk, cls);
    while (bp_chunk_usage(chunk) > usage)
        give_page(chunk);
    REQUIRE(bp_chunk_usage(chunk) == usage); /* every percentage is reachable at 512 pages */
}

static const char *list_name(const bp_chunk *chunk)
{
    return chunk->list != NULL ? chunk->list->name : "(released)";
}

#define CHECK_LIST(chunk, expected, what)                                                          \
    do {                                                                                           \
        CHECK(strcmp(list_name(chunk), (expected)) == 0);                                          \
        if (strcmp(list_name(chunk), (expected)) != 0)                                             \
            fprintf(stderr, "  %s: usage %u in %s, expected %s\n", (what), bp_chunk_usage(chunk),  \
                    list_name(chunk), (expected));                                                 \
    } while (0)

/* ---- (a) the order an arena tries its lists --------------------------------------------- */

/* Five chunks, one per list the arena allocates from, each at a usage well inside its band;
 * every allocation must come from the first list in Netty's order (q050, q025, q000, qInit,
 * q075) that still has room. Each chunk is filled once it has served, so the next list's
 * turn comes; with all five full a new chunk is mapped. */
static void test_allocation_order(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    bp_arena *arena = &pool->arenas[0];
    unsigned one_page = page_class(pool);
    unsigned four_pages = bp_size_to_class(&pool->engine.sc, 4 * 8192);
    REQUIRE(!bp_class_is_small(&pool->engine.sc, four_pages));
    for (int i = 0; i < BP_NLISTS; i++)
        REQUIRE(arena->lists[i].head == NULL);

    static const struct {
        int list;
        unsigned usage;
    } order[] = {{BP_Q050, 60}, {BP_Q025, 40}, {BP_Q000, 10}, {BP_QINIT, 10}, {BP_Q075, 80}};
    enum { NORDER = sizeof order / sizeof order[0] };
    bp_chunk *chunks[NORDER];
    for (int i = NORDER - 1; i >= 0; i--) { /* filed in reverse: head order proves nothing */
        bp_chunk *chunk = bp_chunk_new(arena->engine, arena);
        REQUIRE(chunk != NULL);
        set_usage(chunk, one_page, order[i].usage);
        bp_chunk_list_add(&arena->lists[order[i].list], chunk);
        REQUIRE(chunk->list == &arena->lists[order[i].list]);
        chunks[i] = chunk;
    }
    for (int i = 0; i < NORDER; i++) {
        void *p = bp_arena_alloc(arena, four_pages);
        REQUIRE(p != NULL);
        bp_chunk *from = bp_chunk_map_lookup((uintptr_t)p);
        CHECK(from == chunks[i]);
        if (from != chunks[i])
            fprintf(stderr, "  allocation %d: from a chunk in %s, expected the one in %s\n", i,
                    from != NULL ? list_name(from) : "(none)", arena->lists[order[i].list].name);
        CHECK_LIST(chunks[i], arena->lists[order[i].list].name, "after serving");
        while (bp_chunk_alloc_run(chunks[i], one_page, 1, false) >= 0)
            ;
        bp_chunk_list_after_alloc(chunks[i]);
        CHECK_LIST(chunks[i], "q100", "filled");
    }
    void *p = bp_arena_alloc(arena, four_pages);
    REQUIRE(p != NULL);
    bp_chunk *fresh = bp_chunk_map_lookup((uintptr_t)p);
    for (int i = 0; i < NORDER; i++)
        CHECK(fresh != chunks[i]);
    CHECK_LIST(fresh, "qInit", "new chunk");
    bp_pool_destroy(pool); /* unmaps every chunk in the arena's lists */
}

/* ---- (b) usages exactly on band boundaries ---------------------------------------------- */

/* Where a chunk filled from empty stands: it moves up when its usage reaches its list's
 * maximum (qInit [0,25) q000 [1,50) q025 [25,75) q050 [50,100) q075 [75,100) q100 [100]). */
static const char *rising_list(unsigned usage)
{
    return usage < 25    ? "qInit"
           : usage < 50  ? "q000"
           : usage < 75  ? "q025"
           : usage < 100 ? "q050"
                         : "q100";
}
/* Where a full chunk stands as it empties: it moves down when its usage falls below its
 * list's minimum, and out of q000 below 1 %. */
static const char *falling_list(unsigned usage)
{
    return usage == 100  ? "q100"
           : usage >= 75 ? "q075"
           : usage >= 50 ? "q050"
           : usage >= 25 ? "q025"
           : usage >= 1  ? "q000"
                         : "(released)";
}

/* Page by page from empty to full and back, the list checked after every page: each
 * boundary is crossed one page at a time, so each usage a chunk can have is seen. */
static void sweep(size_t page, size_t chunk_size)
{
    bp_pool *pool = new_pool(page, chunk_size);
    unsigned one_page = page_class(pool);
    bp_chunk *chunk = bp_chunk_new(&pool->engine, &pool->arenas[0]);
    REQUIRE(chunk != NULL);
    bp_chunk_list lists[BP_NLISTS];
    bp_chunk_lists_init(lists, chunk->npages);
    bp_chunk_list_add(&lists[BP_QINIT], chunk);
    char what[64];
    while (chunk->free_pages > 0) {
        take_page(chunk, one_page);
        bp_chunk_list_after_alloc(chunk);
        snprintf(what, sizeof what, "%zu-page chunk filling", (size_t)chunk->npages);
        CHECK_LIST(chunk, rising_list(bp_chunk_usage(chunk)), what);
    }
    bool released = false;
    while (!released) {
        give_page(chunk);
        released = bp_chunk_list_after_free(chunk);
        snprintf(what, sizeof what, "%zu-page chunk emptying", (size_t)chunk->npages);
        CHECK_LIST(chunk, falling_list(bp_chunk_usage(chunk)), what);
        CHECK_EQ(released, bp_chunk_usage(chunk) == 0);
        if (!released && used_pages(chunk) == 0)
            break; /* left q000 and was not released: already reported */
    }
    if (chunk->list != NULL)
        bp_chunk_list_remove(chunk->list, chunk);
    bp_chunk_delete(chunk);
    bp_pool_destroy(pool);
}

static void test_boundaries_one_page_at_a_time(void)
{
    sweep(8192, (size_t)4 << 20);   /* 512 pages: every percentage */
    sweep(4096, (size_t)256 << 10); /* 64 pages: steps of 1.56 % */
}

/* One chunk at an exact usage filed into `list`. */
static bp_chunk *chunk_at(bp_pool *pool, bp_chunk_list *lists, int list, unsigned usage)
{
    bp_chunk *chunk = bp_chunk_new(&pool->engine, &pool->arenas[0]);
    REQUIRE(chunk != NULL);
    set_usage(chunk, page_class(pool), usage);
    bp_chunk_list_add(&lists[list], chunk);
    REQUIRE(chunk->list == &lists[list]);
    return chunk;
}

static void drop_chunk(bp_chunk *chunk)
{
    if (chunk->list != NULL)
        bp_chunk_list_remove(chunk->list, chunk);
    bp_chunk_delete(chunk);
}

/* Filing a chunk (a new or reused chunk into qInit) with its usage exactly at a list's
 * maximum puts it in the next list; one below keeps it. */
static void test_filed_on_a_boundary(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    bp_chunk_list lists[BP_NLISTS];
    bp_chunk_lists_init(lists, pool->engine.sc.chunk_pages);
    static const struct {
        unsigned usage;
        const char *list;
    } cases[] = {{24, "qInit"}, {25, "q000"}, {49, "q000"}, {50, "q025"},
                 {74, "q025"},  {75, "q050"}, {99, "q050"}, {100, "q100"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_chunk *chunk = bp_chunk_new(&pool->engine, &pool->arenas[0]);
        REQUIRE(chunk != NULL);
        set_usage(chunk, page_class(pool), cases[i].usage);
        bp_chunk_list_add(&lists[BP_QINIT], chunk);
        CHECK_LIST(chunk, cases[i].list, "filed from qInit");
        drop_chunk(chunk);
    }
    bp_pool_destroy(pool);
}

/* A free that takes a chunk past a whole band in one step (a large run coming back): the
 * chunk walks down while its usage is below each list's minimum, so a usage exactly at a
 * list's minimum stops there and one below goes on. */
static void test_freed_onto_a_boundary(void)
{
    bp_pool *pool = new_pool(8192, (size_t)4 << 20);
    bp_chunk_list lists[BP_NLISTS];
    bp_chunk_lists_init(lists, pool->engine.sc.chunk_pages);
    static const struct {
        int from;
        unsigned from_usage, to_usage;
        const char *list;
    } cases[] = {
        {BP_Q100, 100, 99, "q075"}, {BP_Q100, 100, 75, "q075"},
        {BP_Q100, 100, 74, "q050"}, {BP_Q075, 75, 75, "q075"},
        {BP_Q075, 75, 50, "q050"},  {BP_Q075, 75, 49, "q025"},
        {BP_Q050, 50, 50, "q050"},  {BP_Q050, 50, 25, "q025"},
        {BP_Q050, 50, 24, "q000"},  {BP_Q025, 25, 25, "q025"},
        {BP_Q025, 25, 1, "q000"},   {BP_Q025, 25, 0, "(released)"},
        {BP_Q000, 1, 1, "q000"},    {BP_Q000, 1, 0, "(released)"},
        {BP_QINIT, 24, 0, "qInit"}, /* the arena's first chunk stays, even empty */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_chunk *chunk = chunk_at(pool, lists, cases[i].from, cases[i].from_usage);
        set_usage(chunk, page_class(pool), cases[i].to_usage);
        bool released = bp_chunk_list_after_free(chunk);
        char what[64];
        snprintf(what, sizeof what, "%s at %u freed to %u", lists[cases[i].from].name,
                 cases[i].from_usage, cases[i].to_usage);
        CHECK_LIST(chunk, cases[i].list, what);
        CHECK_EQ(released, chunk->list == NULL);
        drop_chunk(chunk);
    }
    bp_pool_destroy(pool);
}

/* ---- (c) the size-to-bin table of the fast path ----------------------------------------- */

/* The smallest class >= size, by a walk of the class table (not by the formula, nor by the
 * lookup table being checked). */
static unsigned smallest_class_at_least(const bp_size_classes *sc, size_t size)
{
    unsigned cls = 0;
    while (sc->size[cls] < size)
        cls++;
    return cls;
}

/* Every entry of both tables, for every page and chunk size bp_pool_new accepts: lookup
 * entry i serves the sizes (i-1)*16+1 .. i*16 (entry 0 serves size 0, as class 0), and
 * bufpool.h's bin_of, at bp_fast_index(size), must give the bin of the smallest class >= size
 * for every size up to BP_FAST_MAX while that class is cached, 0 above. */
static void test_bin_lookup_every_entry(void)
{
    static bp_size_classes sc;
    static uint16_t bin_of[BP_FAST_ENTRIES];
    CHECK_EQ(bp_fast_index(BP_FAST_MAX), BP_FAST_ENTRIES - 1);
    unsigned bad = 0;
    for (size_t page = 4096; page <= 65536; page <<= 1) {
        for (size_t chunk = page << 1; chunk <= page << 14; chunk <<= 1) {
            REQUIRE(bp_size_classes_init(&sc, page, chunk) == 0);
            unsigned cached = smallest_class_at_least(&sc, BP_MIN(chunk, 64 << 10));
            bp_size_classes_fast_table(&sc, cached, bin_of);
            unsigned want = 0;
            for (size_t size = 0; size <= BP_FAST_MAX; size++) {
                while (want < sc.nclasses && sc.size[want] < size)
                    want++;
                size_t entry = bp_fast_index(size);
                unsigned bin = want < cached ? bp_bin_offset(want) : 0;
                bool lookup_ok = size > BP_MAX_LOOKUP ||
                                 sc.lookup[(size + BP_QUANTUM - 1) >> BP_LOG2_QUANTUM] == want;
                if ((bin_of[entry] != bin || !lookup_ok) && bad++ < 5)
                    fprintf(stderr,
                            "  page %zu chunk %zu: size %zu (entry %zu): bin_of %u, expected "
                            "%u (class %u); lookup %s\n",
                            page, chunk, size, entry, (unsigned)bin_of[entry], bin, want,
                            lookup_ok ? "right" : "wrong");
            }
        }
    }
    CHECK_EQ(bad, 0);
}

/* The same through the fast path itself, with every cached bin of the table's range
 * holding blocks: a wrong entry pops a block of another class. */
static void test_bin_lookup_through_alloc(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    REQUIRE(pool->max_cached_size >= BP_FAST_MAX);
    enum { PER_CLASS = 2 };
    void *warm[BP_MAX_CLASSES][PER_CLASS];
    unsigned top = smallest_class_at_least(&pool->engine.sc, BP_FAST_MAX);
    for (unsigned cls = 0; cls <= top; cls++)
        for (int i = 0; i < PER_CLASS; i++)
            REQUIRE((warm[cls][i] = bp_alloc(pool, pool->engine.sc.size[cls])) != NULL);
    for (unsigned cls = 0; cls <= top; cls++)
        for (int i = 0; i < PER_CLASS; i++)
            bp_free(warm[cls][i]);
    unsigned bad = 0;
    for (size_t size = 1; size <= BP_FAST_MAX; size++) {
        void *p = bp_alloc(pool, size);
        REQUIRE(p != NULL);
        size_t want = pool->engine.sc.size[smallest_class_at_least(&pool->engine.sc, size)];
        if (bp_usable_size(p) != want && bad++ < 5)
            fprintf(stderr, "  bp_alloc(%zu): a block of %zu bytes, expected %zu\n", size,
                    bp_usable_size(p), want);
        bp_free(p);
    }
    CHECK_EQ(bad, 0);
    bp_pool_destroy(pool);
}

int main(void)
{
    RUN(test_allocation_order);
    RUN(test_boundaries_one_page_at_a_time);
    RUN(test_filed_on_a_boundary);
    RUN(test_freed_onto_a_boundary);
    RUN(test_bin_lookup_every_entry);
    RUN(test_bin_lookup_through_alloc);
    return test_report();
}
