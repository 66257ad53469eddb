/* test_model.c — a randomised model test of the allocation API.
 *
 * Over a million operations (bp_alloc, bp_calloc, bp_aligned_alloc, bp_realloc, bp_free,
 * bp_free_sized) on up to 2000 live blocks of small, normal and huge sizes, in four pool
 * configurations. The model keeps every live block in a slot and, sorted by address, in an
 * interval array; each block's bytes carry a pattern derived from its address and a per-block
 * tag. Checked on every operation: alignment, bp_usable_size >= the request, no overlap with
 * any live block (usable extents), calloc zeroes, realloc keeps min(old, new) bytes and stays
 * in place exactly when the size class does not change, the pattern is intact before a block
 * is freed or reallocated. Every 10,000 operations: bp_pool_check and the counters against
 * the model (active bytes = live blocks + this thread's cache + transfer caches; mapped bytes
 * = chunks + huge blocks). At the end of each phase everything is freed: no active bytes
 * once the thread cache is flushed, and bp_pool_trim unmaps every chunk.
 *
 * The seed is printed; BP_TEST_SEED replays a run; a failure names the phase, the operation
 * index and the seed. BP_SANITIZER=thread or valgrind runs a quarter of the operations. */
#include "front.h"
#include "test.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#define SLOTS      2000
#define FULL_BYTES 4096 /* blocks up to this size carry the pattern in every byte */
#define EDGE_BYTES 256  /* larger blocks: the first and last 256 bytes ... */
#define PROBES     7    /* ... and 64 bytes at 1/8, 2/8, .. 7/8 of the block */
#define PROBE_LEN  64
#define MAX_FAILS  10 /* a phase stops after this many failures */

typedef struct slot {
    unsigned char *p;
    size_t size;   /* requested */
    size_t usable; /* bp_usable_size when allocated */
    uint64_t tag;
} slot;

/* Live blocks sorted by address, for the overlap check: [start, end) is the usable extent. */
typedef struct interval {
    uintptr_t start, end;
} interval;

enum {
    OP_ALLOC,
    OP_CALLOC,
    OP_ALIGNED,
    OP_ALIGNED_BAD,
    OP_REALLOC_NULL,
    OP_REALLOC,
    OP_FREE,
    OP_FREE_SIZED,
    OP_NULL,
    OP_KINDS
};
static const char *const op_names[OP_KINDS] = {"alloc",     "calloc",        "aligned",
                                               "bad align", "realloc(NULL)", "realloc",
                                               "free",      "free_sized",    "NULL"};

typedef struct model {
    const char *phase;
    bp_pool *pool;
    size_t page, chunk;
    test_rng rng;
    uint64_t seed;
    long op;
    int fails;
    uint64_t next_tag;
    slot slots[SLOTS];
    interval live[SLOTS];
    unsigned nlive;
    size_t live_usable;          /* sum of usable sizes of live blocks */
    size_t live_huge;            /* of those, huge blocks */
    unsigned long ops[OP_KINDS]; /* per kind, for the summary */
} model;

static model M; /* large: static */

/* ---- failures ---------------------------------------------------------------------------- */

static void failf(model *m, const void *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void failf(model *m, const void *p, const char *fmt, ...)
{
    test_failures++;
    m->fails++;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char block[48] = "";
    if (p != NULL)
        snprintf(block, sizeof block, "block %p: ", p);
    fprintf(stderr, "%s: op %ld: %s%s (replay with BP_TEST_SEED=%#" PRIx64 ")\n", m->phase, m->op,
            block, msg, m->seed);
}

#define MCHECK(m, cond, p, ...)                                                                    \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond))                                                                               \
            failf((m), (p), __VA_ARGS__);                                                          \
    } while (0)

/* ---- patterns ------------------------------------------------------------------------------
 * Byte i of a block is byte i % 8 (in memory order) of the 64-bit word w(i / 8), where
 * w(j) = h + j * golden and h mixes the block's address and tag: every block, and every
 * position in it, gets different bytes, and a whole word is written or compared at once. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t pattern_seed(const void *p, uint64_t tag)
{
    return mix((uint64_t)(uintptr_t)p ^ (tag * GOLDEN));
}

static unsigned char pattern_byte(uint64_t h, size_t i)
{
    uint64_t w = h + (uint64_t)(i / 8) * GOLDEN;
    unsigned char b[8];
    memcpy(b, &w, 8);
    return b[i % 8];
}

static void fill_range(unsigned char *p, uint64_t h, size_t off, size_t len)
{
    size_t i = off, end = off + len;
    for (; i < end && i % 8 != 0; i++)
        p[i] = pattern_byte(h, i);
    for (; i + 8 <= end; i += 8) {
        uint64_t w = h + (uint64_t)(i / 8) * GOLDEN;
        memcpy(p + i, &w, 8);
    }
    for (; i < end; i++)
        p[i] = pattern_byte(h, i);
}

/* Offset of the first byte of [off, off + len) that does not match, or SIZE_MAX. */
static size_t check_range(const unsigned char *p, uint64_t h, size_t off, size_t len)
{
    size_t i = off, end = off + len;
    for (; i < end && i % 8 != 0; i++)
        if (p[i] != pattern_byte(h, i))
            return i;
    for (; i + 8 <= end; i += 8) {
        uint64_t w = h + (uint64_t)(i / 8) * GOLDEN, v;
        memcpy(&v, p + i, 8);
        if (v != w)
            break;
    }
    for (; i < end; i++)
        if (p[i] != pattern_byte(h, i))
            return i;
    return SIZE_MAX;
}

/* The ranges of a block of `size` bytes that carry the pattern. Returns how many. */
static unsigned pattern_ranges(size_t size, size_t off[PROBES + 2], size_t len[PROBES + 2])
{
    if (size <= FULL_BYTES) {
        off[0] = 0;
        len[0] = size;
        return 1;
    }
    unsigned n = 0;
    off[n] = 0, len[n++] = EDGE_BYTES;
    for (unsigned k = 1; k <= PROBES; k++)
        off[n] = size / 8 * k / 8 * 8, len[n++] = PROBE_LEN;
    off[n] = size - EDGE_BYTES, len[n++] = EDGE_BYTES;
    return n;
}

static void fill_block(const slot *s)
{
    size_t off[PROBES + 2], len[PROBES + 2];
    unsigned n = pattern_ranges(s->size, off, len);
    uint64_t h = pattern_seed(s->p, s->tag);
    for (unsigned i = 0; i < n; i++)
        fill_range(s->p, h, off[i], len[i]);
}

/* Checks the pattern a block of `size` bytes at `orig` (tag) was filled with, now at `now`,
 * over its first `prefix` bytes. Returns the first bad offset, or SIZE_MAX. */
static size_t check_pattern(const unsigned char *now, const unsigned char *orig, uint64_t tag,
                            size_t size, size_t prefix)
{
    size_t off[PROBES + 2], len[PROBES + 2];
    unsigned n = pattern_ranges(size, off, len);
    uint64_t h = pattern_seed(orig, tag);
    for (unsigned i = 0; i < n; i++) {
        if (off[i] >= prefix)
            continue;
        size_t bad = check_range(now, h, off[i], BP_MIN(len[i], prefix - off[i]));
        if (bad != SIZE_MAX)
            return bad;
    }
    return SIZE_MAX;
}

static void verify_block(model *m, const slot *s, const char *when)
{
    size_t bad = check_pattern(s->p, s->p, s->tag, s->size, s->size);
    MCHECK(m, bad == SIZE_MAX, s->p, "%s: pattern of a %zu-byte block damaged at offset %zu", when,
           s->size, bad);
    size_t usable = bp_usable_size(s->p);
    MCHECK(m, usable == s->usable, s->p, "%s: usable size changed from %zu to %zu", when, s->usable,
           usable);
}

/* ---- the interval array ------------------------------------------------------------------ */

/* Index of the first interval whose start is >= a. */
static unsigned live_lower(const model *m, uintptr_t a)
{
    unsigned lo = 0, hi = m->nlive;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (m->live[mid].start < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void live_insert(model *m, const void *p, size_t usable)
{
    uintptr_t a = (uintptr_t)p, e = a + usable;
    unsigned i = live_lower(m, a);
    if (i > 0 && m->live[i - 1].end > a)
        failf(m, p, "overlaps the live block [%#jx, %#jx)", (uintmax_t)m->live[i - 1].start,
              (uintmax_t)m->live[i - 1].end);
    if (i < m->nlive && m->live[i].start < e)
        failf(m, p, "(%zu usable bytes) overlaps the live block [%#jx, %#jx)", usable,
              (uintmax_t)m->live[i].start, (uintmax_t)m->live[i].end);
    test_checks++;
    if (m->nlive == SLOTS) {
        failf(m, p, "model error: interval array full");
        return;
    }
    memmove(&m->live[i + 1], &m->live[i], (m->nlive - i) * sizeof m->live[0]);
    m->live[i] = (interval){a, e};
    m->nlive++;
}

static void live_remove(model *m, const void *p)
{
    unsigned i = live_lower(m, (uintptr_t)p);
    if (i == m->nlive || m->live[i].start != (uintptr_t)p) {
        failf(m, p, "model error: block not in the interval array");
        return;
    }
    memmove(&m->live[i], &m->live[i + 1], (m->nlive - i - 1) * sizeof m->live[0]);
    m->nlive--;
}

/* ---- sizes ------------------------------------------------------------------------------- */

static size_t random_size(model *m)
{
    test_rng *r = &m->rng;
    size_t chunk = m->chunk;
    uint64_t kind = test_below(r, 1000);
    if (kind < 550) /* tiny: below 2^k for k in 0..10, so most are a few dozen bytes */
        return test_below(r, (uint64_t)1 << test_below(r, 11));
    if (kind < 780) /* small: anything up to 28 KiB */
        return test_below(r, (28 << 10) + 1);
    if (kind < 880) { /* a class size exactly, or one byte either side */
        const bp_size_classes *sc = &m->pool->engine.sc;
        size_t s = sc->size[test_below(r, sc->nclasses)];
        return s - 1 + test_below(r, 3); /* the top class + 1 is a huge block */
    }
    if (kind < 992) { /* normal: in (hi / 2, hi] for hi a power of two, 32 KiB .. the chunk */
        unsigned top = bp_log2(chunk);
        if (top < 15)
            return 1 + test_below(r, chunk);
        size_t hi = (size_t)1 << (15 + test_below(r, top - 15 + 1));
        if (hi > chunk)
            hi = chunk;
        return hi / 2 + 1 + test_below(r, hi / 2);
    }
    return chunk + 1 + test_below(r, chunk); /* huge: rare, up to twice the chunk */
}

/* bp_usable_size as the size classes predict it. */
static size_t expected_usable(const model *m, size_t size)
{
    if (size > m->chunk)
        return bp_align_up(size, m->page);
    return m->pool->engine.sc.size[bp_size_to_class(&m->pool->engine.sc, size)];
}

/* ---- operations -------------------------------------------------------------------------- */

static void track_new(model *m, slot *s, unsigned char *p, size_t size, size_t align)
{
    MCHECK(m, (uintptr_t)p % 16 == 0, p, "not 16-byte aligned");
    if (align > 16)
        MCHECK(m, (uintptr_t)p % align == 0, p, "not aligned to %zu", align);
    size_t usable = bp_usable_size(p);
    MCHECK(m, usable >= size, p, "usable size %zu below the request %zu", usable, size);
    if (align <= 16)
        MCHECK(m, usable == expected_usable(m, size), p,
               "usable size %zu for a %zu-byte request, expected %zu", usable, size,
               expected_usable(m, size));
    live_insert(m, p, usable);
    *s = (slot){p, size, usable, m->next_tag++};
    m->live_usable += usable;
    if (usable > m->chunk)
        m->live_huge += usable;
    fill_block(s);
}

static void untrack(model *m, slot *s)
{
    live_remove(m, s->p);
    m->live_usable -= s->usable;
    if (s->usable > m->chunk)
        m->live_huge -= s->usable;
    s->p = NULL;
}

static void check_zero(model *m, const unsigned char *p, size_t size)
{
    static const unsigned char zeros[4096];
    /* Pooled memory was cleared by bp_calloc: all of it. A huge block is a fresh mapping:
     * the ranges the pattern would use (reading it all would fault every page in). */
    size_t off[PROBES + 2], len[PROBES + 2];
    unsigned n = 1;
    off[0] = 0, len[0] = size;
    if (size > m->chunk)
        n = pattern_ranges(size, off, len);
    for (unsigned i = 0; i < n; i++)
        for (size_t o = off[i]; o < off[i] + len[i]; o += sizeof zeros)
            if (memcmp(p + o, zeros, BP_MIN(sizeof zeros, off[i] + len[i] - o)) != 0) {
                failf(m, p, "bp_calloc(%zu) returned non-zero bytes near offset %zu", size, o);
                return;
            }
    test_checks++;
}

static void op_allocate(model *m, slot *s)
{
    test_rng *r = &m->rng;
    size_t size = random_size(m);
    uint64_t what = test_below(r, 100);
    unsigned char *p;
    size_t align = 0;
    if (what < 60) {
        m->ops[OP_ALLOC]++;
        p = bp_alloc(m->pool, size);
    } else if (what < 75) {
        m->ops[OP_CALLOC]++;
        size_t n = 1; /* n * each == size */
        if (size % 3 == 0 && test_below(r, 2))
            n = 3;
        else if (size % 16 == 0 && test_below(r, 2))
            n = 16;
        p = bp_calloc(m->pool, n, size / n);
        if (p != NULL)
            check_zero(m, p, size);
    } else if (what < 92) {
        m->ops[OP_ALIGNED]++;
        align = (size_t)1 << test_below(r, bp_log2(m->chunk) + 1); /* 1 .. chunk */
        if (test_below(r, 4) == 0 && size > align * 4)
            size = test_below(r, align * 4); /* alignments above the size too */
        p = bp_aligned_alloc(m->pool, align, size);
    } else if (what < 94) {
        m->ops[OP_ALIGNED_BAD]++;
        static const size_t bad[] = {0, 3, 24, 48 << 10};
        size_t a = test_below(r, 5) == 4 ? m->chunk * 2 : bad[test_below(r, 4)];
        errno = 0;
        void *q = bp_aligned_alloc(m->pool, a, size);
        MCHECK(m, q == NULL && errno == EINVAL, q,
               "bp_aligned_alloc(align %zu) returned %p, errno %d (expected NULL, EINVAL)", a, q,
               errno);
        if (q != NULL)
            bp_free(q);
        return;
    } else if (what < 98) {
        m->ops[OP_REALLOC_NULL]++;
        p = bp_realloc(m->pool, NULL, size);
    } else {
        m->ops[OP_NULL]++;
        bp_free(NULL);
        bp_free_sized(NULL, size);
        MCHECK(m, bp_usable_size(NULL) == 0, NULL, "bp_usable_size(NULL) != 0");
        return;
    }
    if (p == NULL) {
        failf(m, NULL, "allocating %zu bytes (align %zu) failed: errno %d", size, align, errno);
        return;
    }
    track_new(m, s, p, size, align);
}

static void op_realloc(model *m, slot *s)
{
    m->ops[OP_REALLOC]++;
    verify_block(m, s, "before realloc");
    slot old = *s;
    size_t size;
    uint64_t how = test_below(&m->rng, 100);
    if (how < 2)
        size = 0;
    else if (how < 22) /* close below the usable size: mostly in place */
        size = old.usable - test_below(&m->rng, BP_MIN(old.usable, m->page));
    else if (how < 32) /* double or half */
        size = test_below(&m->rng, 2) ? old.size * 2 + 1 : old.size / 2;
    else
        size = random_size(m);
    /* In place exactly when the class does not change (same pool): a pooled block keeps its
     * class (an over-aligned one its larger class), a huge block its page-rounded size. */
    bool in_place = old.usable <= m->chunk
                        ? size <= m->chunk && expected_usable(m, size) == old.usable
                        : size > m->chunk && bp_align_up(size, m->page) == old.usable;
    unsigned char *p = bp_realloc(m->pool, old.p, size);
    if (p == NULL) {
        failf(m, old.p, "bp_realloc to %zu bytes failed: errno %d", size, errno);
        return;
    }
    /* huge to huge: mremap may keep the address or move the pages, and either is right */
    bool remapped = old.usable > m->chunk && size > m->chunk;
    MCHECK(m, (p == old.p) == in_place || (remapped && !in_place), p,
           "bp_realloc(%p, %zu -> %zu bytes, usable %zu) %s", (void *)old.p, old.size, size,
           old.usable, in_place ? "moved the block" : "stayed in place");
    size_t bad = check_pattern(p, old.p, old.tag, old.size, BP_MIN(old.size, size));
    MCHECK(m, bad == SIZE_MAX, p, "bp_realloc(%p, %zu -> %zu bytes) lost the byte at offset %zu",
           (void *)old.p, old.size, size, bad);
    untrack(m, s);
    track_new(m, s, p, size, 0);
}

static void op_free(model *m, slot *s)
{
    verify_block(m, s, "before free");
    unsigned char *p = s->p;
    uint64_t what = test_below(&m->rng, 3);
    if (what == 0) {
        m->ops[OP_FREE_SIZED]++;
        size_t size = test_below(&m->rng, 4) == 0 ? s->usable : s->size;
        untrack(m, s);
        bp_free_sized(p, size);
    } else {
        m->ops[OP_FREE]++;
        untrack(m, s);
        bp_free(p);
    }
}

/* ---- whole-pool checks ------------------------------------------------------------------- */

static size_t transfer_bytes(bp_pool *pool)
{
    size_t bytes = 0;
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        bytes += bp_arena_transfer_bytes(&pool->arenas[i]);
    return bytes;
}

static void check_pool(model *m)
{
    int problems = bp_pool_check(m->pool);
    MCHECK(m, problems == 0, NULL, "bp_pool_check found %d problems", problems);
    bp_arena_counters c;
    bp_pool_counters(m->pool, &c);
    uint64_t hits;
    size_t cached;
    bp_tcache_stats(m->pool, &hits, &cached);
    size_t transfer = transfer_bytes(m->pool);
    MCHECK(m, c.active_bytes == m->live_usable + cached + transfer, NULL,
           "active bytes %zu, but live blocks hold %zu, the thread cache %zu, transfer caches %zu",
           c.active_bytes, m->live_usable, cached, transfer);
    MCHECK(m, c.huge_bytes == m->live_huge, NULL, "huge bytes %zu, live huge blocks hold %zu",
           c.huge_bytes, m->live_huge);
    size_t mapped = __atomic_load_n(&m->pool->engine.memory.counted, __ATOMIC_RELAXED);
    /* metadata memory_limit counts too, and ranges the OS layer refused to unmap */
    size_t overhead = bp_os_stuck_bytes(&m->pool->engine.memory);
    for (unsigned i = 0; i < bp_pool_arenas_ready(m->pool); i++)
        overhead += bp_arena_overhead_bytes(&m->pool->arenas[i]);
    MCHECK(m, mapped == c.chunk_bytes + c.huge_bytes + overhead, NULL,
           "mapped bytes %zu, chunks %zu + huge %zu + metadata %zu", mapped, c.chunk_bytes,
           c.huge_bytes, overhead);
}

static void verify_all(model *m, const char *when)
{
    for (unsigned i = 0; i < SLOTS; i++)
        if (m->slots[i].p != NULL)
            verify_block(m, &m->slots[i], when);
}

/* ---- a phase ----------------------------------------------------------------------------- */

typedef struct phase {
    const char *name;
    size_t page, chunk; /* 0: the default */
    unsigned arenas;
    long ops;
    void (*tune)(bp_config *cfg);
} phase;

/* Phase `index` draws from its own stream of the seed, so each phase replays alone. */
static void run_phase(const phase *ph, unsigned index, uint64_t seed, long scale)
{
    model *m = &M;
    memset(m, 0, sizeof *m);
    m->phase = ph->name;
    m->seed = seed;
    m->rng.s = mix(seed + index * GOLDEN) | 1;
    m->next_tag = 1;

    bp_config cfg;
    bp_config_init(&cfg);
    if (ph->page)
        cfg.page_size = ph->page;
    if (ph->chunk)
        cfg.chunk_size = ph->chunk;
    if (ph->arenas)
        cfg.arenas = ph->arenas;
    if (ph->tune)
        ph->tune(&cfg);
    m->pool = bp_pool_new(&cfg);
    REQUIRE(m->pool != NULL);
    bp_config got;
    bp_pool_config(m->pool, &got);
    m->page = got.page_size;
    m->chunk = got.chunk_size;
    CHECK_EQ(got.page_size, cfg.page_size);
    CHECK_EQ(got.chunk_size, cfg.chunk_size);
    CHECK(got.arenas == cfg.arenas || cfg.arenas == 0);

    long ops = ph->ops / scale;
    printf("  phase %u: %s, %zu classes, %ld operations\n", index + 1, ph->name,
           (size_t)m->pool->engine.sc.nclasses, ops);
    int free_bias = 57; /* percent of operations on a live slot that free it; varies */
    for (m->op = 0; m->op < ops && m->fails < MAX_FAILS; m->op++) {
        if (m->op % 25000 == 0) /* phases of growth and of shrinking */
            free_bias = (int)test_below(&m->rng, 4) == 0 ? 92 : 25 + (int)test_below(&m->rng, 50);
        slot *s = &m->slots[test_below(&m->rng, SLOTS)];
        if (s->p == NULL) {
            op_allocate(m, s);
        } else {
            int what = (int)test_below(&m->rng, 100);
            if (what < free_bias)
                op_free(m, s);
            else if (what < free_bias + 25)
                op_realloc(m, s);
            else
                verify_block(m, s, "spot check");
        }
        if (m->op % 10000 == 9999)
            check_pool(m);
        if (m->op % 100000 == 50000) { /* trims and flushes with blocks live */
            if (test_below(&m->rng, 2))
                bp_pool_trim(m->pool);
            else
                bp_thread_flush(m->pool);
            verify_all(m, "after a trim");
            check_pool(m);
        }
    }
    long done = m->op;
    verify_all(m, "at the end");
    check_pool(m);

    /* Everything freed: active bytes are what the caches hold; none once flushed. */
    for (unsigned i = 0; i < SLOTS; i++)
        if (m->slots[i].p != NULL)
            op_free(m, &m->slots[i]);
    CHECK_EQ(m->nlive, 0);
    check_pool(m);
    bp_thread_flush(m->pool);
    bp_arena_counters c;
    bp_pool_counters(m->pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.huge_bytes, 0);
    CHECK_EQ(c.alloc_small + c.alloc_normal + c.alloc_huge,
             c.free_small + c.free_normal + c.free_huge);
    CHECK_EQ(bp_pool_check(m->pool), 0);

    /* bp_pool_trim gives back every chunk: cached runs, kept empty subpages, the empty
     * chunks qInit keeps and the retained ones. */
    size_t chunk_bytes = c.chunk_bytes;
    size_t released = bp_pool_trim(m->pool);
    bp_pool_counters(m->pool, &c);
    CHECK_EQ(c.chunk_bytes, 0);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.chunks_mapped, c.chunks_unmapped);
    CHECK_EQ(__atomic_load_n(&m->pool->engine.memory.counted, __ATOMIC_RELAXED), 0);
    CHECK(released >= chunk_bytes);
    CHECK_EQ(bp_pool_check(m->pool), 0);

    /* The pool still works after a full trim. */
    m->op = -1;
    for (unsigned i = 0; i < 64; i++)
        op_allocate(m, &m->slots[i]);
    check_pool(m);
    for (unsigned i = 0; i < 64; i++)
        if (m->slots[i].p != NULL)
            op_free(m, &m->slots[i]);
    bp_pool_trim(m->pool);
    bp_pool_counters(m->pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    CHECK_EQ(c.chunk_bytes, 0);

    printf("    %ld done:", done);
    for (int k = 0; k < OP_KINDS; k++)
        printf(" %s %lu%s", op_names[k], m->ops[k], k + 1 < OP_KINDS ? "," : "\n");
    printf("    %" PRIu64 " chunks mapped, %" PRIu64 " reused, %" PRIu64 " huge blocks\n",
           c.chunks_mapped, c.chunks_reused, c.alloc_huge);
    bp_pool_destroy(m->pool);
    m->pool = NULL;
}

static void tune_small_chunks(bp_config *cfg)
{
    cfg->trim_interval = 1000; /* the thread cache trims often */
}

static void tune_4k(bp_config *cfg)
{
    cfg->purge_decay_ms = 0; /* freed pages purged at once: live data must survive it */
    cfg->retained_chunks = 0;
    cfg->small_cache = 16;
    cfg->normal_cache = 4;
    cfg->max_cached = 48 << 10;
}

static void tune_64k(bp_config *cfg)
{
    cfg->small_cache = 0; /* uncached: every block to and from the arena */
    cfg->normal_cache = 0;
    cfg->purge_decay_ms = 1;
}

static void test_model(void)
{
    static const phase phases[] = {
        {"8K pages, 256K chunks, 2 arenas", 8192, 256 << 10, 2, 700000, tune_small_chunks},
        {"defaults (8K pages, 4M chunks)", 0, 0, 0, 150000, NULL},
        {"4K pages, 64K chunks, purge at once", 4096, 64 << 10, 2, 150000, tune_4k},
        {"64K pages, 1M chunks, uncached", 65536, 1 << 20, 2, 50000, tune_64k},
    };
    const char *san = getenv("BP_SANITIZER");
    long scale = 1;
    if (san != NULL && (strcmp(san, "thread") == 0 || strcmp(san, "valgrind") == 0))
        scale = 4;
    uint64_t seed = test_seed(0x6d0de1f00dull);
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
        run_phase(&phases[i], (unsigned)i, seed, scale);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* the seed and phase are out before any crash */
    RUN(test_model);
    return test_report();
}
