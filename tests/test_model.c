/* test_model.c — a randomised model test: over a million allocations, frees and reallocs of
 * every kind, each block filled with a pattern derived from its address and checked before it
 * goes, no two live blocks overlapping, and the invariant walker run every 10,000 operations.
 * The seed is printed; BP_TEST_SEED replays a run. */
#include "internal.h"
#include "test.h"

#include <errno.h>
#include <string.h>

#define SLOTS 2000

typedef struct slot {
    unsigned char *p;
    size_t size;
    uint32_t tag;
} slot;

static slot slots[SLOTS];
static uint64_t seed_used;
static long op_index;
static const char *phase_name;

static unsigned char pattern(const unsigned char *p, size_t i, uint32_t tag)
{
    return (unsigned char)((((uintptr_t)p >> 4) ^ tag ^ (i * 0x9d)) + (i >> 8));
}

/* Which bytes a block's pattern covers: all of a small block; the ends and a few points
 * inside a big one. */
#define EACH_CHECKED_BYTE(size, i, body)                                                           \
    do {                                                                                           \
        size_t n_ = (size);                                                                        \
        if (n_ <= 4096) {                                                                          \
            for (size_t i = 0; i < n_; i++)                                                        \
                body;                                                                              \
        } else {                                                                                   \
            for (size_t i = 0; i < 256; i++)                                                       \
                body;                                                                              \
            for (size_t i = n_ - 256; i < n_; i++)                                                 \
                body;                                                                              \
            for (size_t k_ = 1; k_ < 8; k_++) {                                                    \
                size_t i = n_ / 8 * k_;                                                            \
                body;                                                                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void fill(slot *s)
{
    EACH_CHECKED_BYTE(s->size, i, s->p[i] = pattern(s->p, i, s->tag));
}

static bool intact_prefix(const unsigned char *p, size_t size, size_t prefix, uint32_t tag,
                          const unsigned char *orig)
{
    /* after realloc the bytes moved: the pattern was computed from the old address */
    bool ok = true;
    EACH_CHECKED_BYTE(size, i, if (i < prefix && p[i] != pattern(orig, i, tag)) ok = false);
    return ok;
}

static void fail_here(const char *what, const void *p)
{
    fprintf(stderr, "%s: op %ld: %s (block %p); replay with BP_TEST_SEED=%#llx\n", phase_name,
            op_index, what, p, (unsigned long long)seed_used);
    test_failures++;
}

static void check_block(const slot *s)
{
    if (!intact_prefix(s->p, s->size, s->size, s->tag, s->p))
        fail_here("pattern damaged", s->p);
    if (bp_usable_size(s->p) < s->size)
        fail_here("usable size below the request", s->p);
}

static int by_address(const void *a, const void *b)
{
    const slot *x = *(const slot *const *)a, *y = *(const slot *const *)b;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* Every live block, sorted by address: each ends before the next begins. */
static void check_no_overlap(void)
{
    static slot *live[SLOTS];
    unsigned n = 0;
    for (unsigned i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL)
            live[n++] = &slots[i];
    qsort(live, n, sizeof live[0], by_address);
    for (unsigned i = 1; i < n; i++)
        if (live[i - 1]->p + BP_MAX(live[i - 1]->size, 1) > live[i]->p)
            fail_here("two live blocks overlap", live[i]->p);
}

static size_t random_size(test_rng *r, size_t chunk)
{
    uint64_t kind = test_below(r, 100);
    if (kind < 70) /* small, most of them tiny */
        return test_below(r, (size_t)1 << test_below(r, 13));
    if (kind < 88)
        return test_below(r, 28 << 10);
    if (kind < 99)
        return test_below(r, chunk) + 1;
    return chunk + 1 + test_below(r, chunk); /* huge */
}

static void run_phase(const char *name, size_t page, size_t chunk, long ops, uint64_t seed)
{
    phase_name = name;
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.page_size = page;
    cfg.chunk_size = chunk;
    cfg.arenas = 2;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    test_rng r = {seed};
    memset(slots, 0, sizeof slots);
    uint32_t next_tag = 1;
    int before = test_failures;
    for (op_index = 0; op_index < ops && test_failures - before < 10; op_index++) {
        slot *s = &slots[test_below(&r, SLOTS)];
        uint64_t what = test_below(&r, 100);
        if (s->p == NULL) {
            size_t size = random_size(&r, chunk);
            unsigned char *p;
            if (what < 70) {
                p = bp_alloc(pool, size);
            } else if (what < 85) {
                p = bp_calloc(pool, 1, size);
                if (p != NULL) {
                    size_t nonzero = 0;
                    EACH_CHECKED_BYTE(size, i, nonzero += p[i] != 0);
                    if (nonzero)
                        fail_here("calloc returned non-zero bytes", p);
                }
            } else {
                size_t align = (size_t)1 << test_below(&r, __builtin_ctzll(chunk) + 1);
                p = bp_aligned_alloc(pool, align, size);
                if (p != NULL && (uintptr_t)p % align != 0)
                    fail_here("aligned_alloc broke its alignment", p);
            }
            if (p == NULL) {
                fail_here("allocation failed", NULL);
                continue;
            }
            if ((uintptr_t)p % 16 != 0)
                fail_here("block not 16-byte aligned", p);
            *s = (slot){p, size, next_tag++};
            fill(s);
        } else if (what < 30) { /* realloc, growing or shrinking */
            check_block(s);
            size_t size = random_size(&r, chunk);
            unsigned char *old = s->p;
            unsigned char *p = bp_realloc(pool, old, size);
            if (p == NULL) {
                fail_here("realloc failed", old);
                continue;
            }
            size_t kept = BP_MIN(size, s->size);
            if (!intact_prefix(p, s->size, kept, s->tag, old))
                fail_here("realloc lost contents", p);
            *s = (slot){p, size, next_tag++};
            fill(s);
        } else {
            check_block(s);
            if (what < 80)
                bp_free(s->p);
            else
                bp_free_sized(s->p, s->size);
            s->p = NULL;
        }
        if (op_index % 1000 == 999)
            check_no_overlap();
        if (op_index % 10000 == 9999 && bp_pool_check(pool) != 0)
            fail_here("the invariant walker found problems", NULL);
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (slots[i].p != NULL) {
            check_block(&slots[i]);
            bp_free(slots[i].p);
            slots[i].p = NULL;
        }
    }
    CHECK_EQ(bp_pool_check(pool), 0);
    bp_pool_trim(pool); /* this thread's cache, transfer and run caches, empty chunks */
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.huge_bytes, 0);
    CHECK_EQ(c.chunk_bytes, 0);
    CHECK_EQ(c.chunks_mapped, c.chunks_unmapped);
    CHECK_EQ(bp_pool_check(pool), 0);
    printf("  %-28s %ld operations, %llu chunks mapped and unmapped\n", name, op_index,
           (unsigned long long)c.chunks_mapped);
    bp_pool_destroy(pool);
}

static void test_model(void)
{
    const char *san = getenv("BP_SANITIZER");
    long scale = san != NULL && *san != '\0' ? 4 : 1; /* sanitizers run a quarter */
    seed_used = test_seed(0xb0f5eed);
    run_phase("8K pages, 256K chunks", 8192, (size_t)256 << 10, 700000 / scale, seed_used);
    run_phase("8K pages, 4M chunks", 8192, (size_t)4 << 20, 200000 / scale, seed_used + 1);
    run_phase("4K pages, 64K chunks", 4096, (size_t)64 << 10, 200000 / scale, seed_used + 2);
    run_phase("64K pages, 1M chunks", 65536, (size_t)1 << 20, 100000 / scale, seed_used + 3);
}

int main(void)
{
    RUN(test_model);
    return test_report();
}
