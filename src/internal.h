/* internal.h — the engine's types and the prototypes shared between its files, grouped by
 * the file that defines them. Nothing here is part of the public API. */
#ifndef BP_INTERNAL_H
#define BP_INTERNAL_H

#include "bufpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * Build variants and helpers
 * ------------------------------------------------------------------------------------------ */
#ifndef BP_CHECKED
#define BP_CHECKED 0
#endif

#define bp_likely(x)   __builtin_expect(!!(x), 1)
#define bp_unlikely(x) __builtin_expect(!!(x), 0)
#define bp_noinline    __attribute__((noinline))
#define bp_inline      static inline __attribute__((always_inline))
#define bp_cold        __attribute__((cold, noinline))
#define bp_hidden      __attribute__((visibility("hidden")))

/* Assertions on internal state. Active in checked builds only; never allocate. */
#if BP_CHECKED
#define bp_assert(cond) ((cond) ? (void)0 : bp_assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define bp_assert(cond) ((void)0)
#endif

/* Tool visibility. ASan builds poison pool memory a program must not touch (not handed out,
 * or freed); valgrind builds (-DBP_VALGRIND=1) announce blocks with memcheck's client
 * requests. Either way a use after free or an overflow inside a chunk is reported. Both
 * compile to nothing otherwise. BP_TRACK: one of them is on (see alloc.c's entry points).
 *   bp_poison/bp_unpoison     memory the engine itself must (not) touch
 *   bp_track_pool             a pool made / destroyed
 *   bp_track_alloc/free       a block handed out / given back through the public API
 *   bp_track_resize           a block reused in place for a new size
 * ASan and valgrind track the usable size. */
#if defined(__SANITIZE_ADDRESS__)
#define BP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BP_ASAN 1
#endif
#endif
#ifndef BP_ASAN
#define BP_ASAN 0
#endif
#ifndef BP_VALGRIND
#define BP_VALGRIND 0
#endif
#define BP_TRACK (BP_ASAN || BP_VALGRIND)
#if BP_ASAN
#include <sanitizer/asan_interface.h>
#define bp_poison(p, n)                   ASAN_POISON_MEMORY_REGION((p), (n))
#define bp_unpoison(p, n)                 ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define bp_track_pool(pool, alive)        ((void)(pool), (void)(alive))
#define bp_track_alloc(pool, p, n)        ((void)(pool), bp_unpoison((p), (n)))
#define bp_track_free(pool, p, n, pooled) ((void)(pool), (pooled) ? bp_poison((p), (n)) : (void)0)
#define bp_track_resize(pool, p, n)       ((void)(pool), bp_unpoison((p), (n)))
#elif BP_VALGRIND
/* Each pool is a memcheck mempool: destroying it forgets every block it held. Blocks are
 * announced with their usable size (a resize in place within the class needs no request). */
#include <valgrind/memcheck.h>
#define bp_poison(p, n)   ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define bp_unpoison(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define bp_track_pool(pool, alive)                                                                 \
    do {                                                                                           \
        if (alive)                                                                                 \
            VALGRIND_CREATE_MEMPOOL((pool), 0, 0);                                                 \
        else                                                                                       \
            VALGRIND_DESTROY_MEMPOOL((pool));                                                      \
    } while (0)
#define bp_track_alloc(pool, p, n) VALGRIND_MEMPOOL_ALLOC((pool), (p), bp_usable_size(p))
#define bp_track_free(pool, p, n, pooled)                                                          \
    do {                                                                                           \
        (void)(n), (void)(pooled);                                                                 \
        VALGRIND_MEMPOOL_FREE((pool), (p));                                                        \
    } while (0)
#define bp_track_resize(pool, p, n) ((void)(pool), (void)(p), (void)(n))
#else
#define bp_poison(p, n)                   ((void)(p), (void)(n))
#define bp_unpoison(p, n)                 ((void)(p), (void)(n))
#define bp_track_pool(pool, alive)        ((void)(pool), (void)(alive))
#define bp_track_alloc(pool, p, n)        ((void)(pool), (void)(p), (void)(n))
#define bp_track_free(pool, p, n, pooled) ((void)(pool), (void)(p), (void)(n), (void)(pooled))
#define bp_track_resize(pool, p, n)       ((void)(pool), (void)(p), (void)(n))
#endif

#define BP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BP_MAX(a, b) ((a) > (b) ? (a) : (b))

bp_inline unsigned bp_log2(size_t x) /* floor(log2(x)), x > 0 */
{
    return (unsigned)(63 - __builtin_clzll((unsigned long long)x));
}
bp_inline bool bp_is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}
bp_inline size_t bp_align_up(size_t x, size_t align) /* align: power of two */
{
    return (x + align - 1) & ~(align - 1);
}
/* Monotonic milliseconds, coarse (a few ms): what the decay and idle rules are measured in. */
bp_inline uint64_t bp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The chunk map's granule (see chunk_map.c below): chunks start on granule boundaries. */
#define BP_MAP_GRANULE_SHIFT 22
#define BP_MAP_GRANULE       ((size_t)1 << BP_MAP_GRANULE_SHIFT)
#define BP_MAP_ADDRESS_BITS  47 /* the user address space of x86-64 and arm64 Linux */
#define BP_MAP_ENTRIES       ((size_t)1 << (BP_MAP_ADDRESS_BITS - BP_MAP_GRANULE_SHIFT))

/* ------------------------------------------------------------------------------------------
 * os.c — bp_lock: the arenas' lock. Uncontended, taking and releasing it is one atomic
 * instruction each (a pthread mutex costs about 110 instructions a pair); contended, it spins
 * briefly and then sleeps on a futex. state: 0 free, 1 held, 2 held with sleepers.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_lock {
    uint32_t state;
} bp_lock;
#define BP_LOCK_INIT                                                                               \
    {                                                                                              \
        0                                                                                          \
    }

void bp_lock_wait(bp_lock *lock);
void bp_lock_wake(bp_lock *lock);

bp_inline void bp_lock_acquire(bp_lock *lock)
{
    uint32_t expected = 0;
    if (bp_likely(__atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                              __ATOMIC_RELAXED)))
        return;
    bp_lock_wait(lock);
}
bp_inline void bp_lock_release(bp_lock *lock)
{
    if (bp_unlikely(__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2))
        bp_lock_wake(lock);
}

typedef struct bp_chunk bp_chunk;
typedef struct bp_arena bp_arena;
typedef struct bp_subpage bp_subpage;

/* ------------------------------------------------------------------------------------------
 * size_classes.c — jemalloc4 size classes as Netty's SizeClasses generates them.
 *
 * Sizes are rounded up to a class. The quantum is 16 B; the first group is 16, 32, 48, 64;
 * every later group doubles the previous group's top and splits the doubling into four steps
 * of delta = group/4 (80, 96, 112, 128, then 160, 192, 224, 256, ...). Classes run up to the
 * chunk size: 68 classes for 8 KiB pages and 4 MiB chunks, 76 for 16 MiB chunks.
 *
 *   small   size < page << 2   a subpage: a run cut into equal elements (39 classes at 8 KiB)
 *   normal  up to the chunk    a run of whole pages; every normal class is a page multiple
 *   huge    above the chunk    a dedicated mapping, not pooled
 *
 * Page classes are the classes whose size is a whole number of pages (8K, 16K, 24K, 32K,
 * 40K, ...); free runs are filed under the page class of their length (rounded down), so a
 * run filed under page class k can serve any request of k or fewer pages.
 *
 * Invariants: size[] strictly increases; size[nclasses-1] == chunk size; for every size s
 * in 0..chunk, size[bp_size_to_class(s)] is the smallest class size >= max(s,1); every
 * small run holds run_elems * size bytes within run_pages pages, at most page/16 elements.
 * ------------------------------------------------------------------------------------------ */
#define BP_LOG2_QUANTUM     4
#define BP_QUANTUM          ((size_t)1 << BP_LOG2_QUANTUM)
#define BP_LOG2_GROUP       2 /* four classes per doubling */
#define BP_LOG2_MAX_LOOKUP  12
#define BP_MAX_LOOKUP       ((size_t)1 << BP_LOG2_MAX_LOOKUP) /* table lookup up to 4 KiB */
#define BP_MAX_CLASSES      128                               /* 1 GiB chunks need 100 */
#define BP_MAX_PAGE_CLASSES 64                                /* page << 14 chunks need 52 */
#define BP_NO_PAGE_CLASS    0xff
#define BP_MAX_CHUNK_PAGES  (1u << 14)

typedef struct bp_size_classes {
    unsigned page_shift;                /* log2 of the page size */
    unsigned chunk_shift;               /* log2 of the chunk size */
    unsigned chunk_pages;               /* pages per chunk */
    unsigned nclasses;                  /* classes up to and including the chunk size */
    unsigned nsmall;                    /* classes 0..nsmall-1 are small (served by subpages) */
    unsigned npage_classes;             /* classes whose size is a page multiple */
    uint32_t size[BP_MAX_CLASSES];      /* class -> size in bytes */
    uint32_t run_pages[BP_MAX_CLASSES]; /* small: pages of one subpage run; normal: size/page */
    uint32_t run_elems[BP_MAX_CLASSES]; /* small: elements per run; normal: 1 */
    uint32_t div_magic[BP_MAX_CLASSES]; /* ceil(2^32 / size): offset / size as a multiply */
    uint8_t page_class[BP_MAX_CLASSES]; /* class -> page class, or BP_NO_PAGE_CLASS */
    uint32_t page_class_pages[BP_MAX_PAGE_CLASSES]; /* page class -> pages */
    uint8_t page_class_to_class[BP_MAX_PAGE_CLASSES];
    uint8_t lookup[(BP_MAX_LOOKUP >> BP_LOG2_QUANTUM) + 1]; /* (size+15)>>4 -> class */
    uint8_t pages_ceil[BP_MAX_CHUNK_PAGES + 1];  /* pages -> smallest page class >= pages */
    uint8_t pages_floor[BP_MAX_CHUNK_PAGES + 1]; /* pages -> largest page class <= pages */
} bp_size_classes;

/* 0, or EINVAL when page/chunk are outside what the tables can describe. */
int bp_size_classes_init(bp_size_classes *sc, size_t page_size, size_t chunk_size);
/* bufpool.h's bin_of table for a pool whose classes below `cached` are thread-cached: entry
 * bp_fast_index(s) holds bp_bin_offset(class of s), or 0 when that class is not cached (or
 * above the chunk size). Every class above 4 KiB being a multiple of 1 KiB (the group's step
 * there), one entry per KiB gives every size of an entry the same class. */
void bp_size_classes_fast_table(const bp_size_classes *sc, unsigned cached,
                                uint16_t bin_of[BP_FAST_ENTRIES]);
_Static_assert(BP_FAST_ENTRIES == 253 + ((BP_FAST_MAX - 1) >> 10) + 1, "bin_of covers BP_FAST_MAX");
/* Class of a size by the log2 formula (any size <= the chunk size). */
bp_inline unsigned bp_size_to_class_compute(const bp_size_classes *sc, size_t size)
{
    (void)sc;
    if (size <= BP_QUANTUM)
        return 0;
    /* Netty's size2SizeIdx: the doubling that holds size - 1 gives the group, the top bits
     * below it the step inside the group. */
    unsigned x = bp_log2((size << 1) - 1);
    unsigned shift =
        x < BP_LOG2_GROUP + BP_LOG2_QUANTUM + 1 ? 0 : x - (BP_LOG2_GROUP + BP_LOG2_QUANTUM);
    unsigned log2_delta =
        x < BP_LOG2_GROUP + BP_LOG2_QUANTUM + 1 ? BP_LOG2_QUANTUM : x - BP_LOG2_GROUP - 1;
    unsigned mod = (unsigned)((size - 1) >> log2_delta) & ((1u << BP_LOG2_GROUP) - 1);
    return (shift << BP_LOG2_GROUP) + mod;
}
/* Page class of a run of `pages` pages, rounded up / down. 1 <= pages <= chunk_pages. */
bp_inline unsigned bp_pages_to_page_class_ceil(const bp_size_classes *sc, size_t pages)
{
    return sc->pages_ceil[pages];
}
bp_inline unsigned bp_pages_to_page_class_floor(const bp_size_classes *sc, size_t pages)
{
    return sc->pages_floor[pages];
}

/* size must be <= the chunk size. */
bp_inline unsigned bp_size_to_class(const bp_size_classes *sc, size_t size)
{
    if (bp_likely(size <= BP_MAX_LOOKUP))
        return sc->lookup[(size + BP_QUANTUM - 1) >> BP_LOG2_QUANTUM];
    return bp_size_to_class_compute(sc, size);
}
bp_inline bool bp_class_is_small(const bp_size_classes *sc, unsigned cls)
{
    return cls < sc->nsmall;
}
/* Pages of the run for a block of class cls: a subpage run, or (normal runs, and page-multiple
 * small classes placed as whole runs for alignment) the class size in pages. */
bp_inline uint32_t bp_class_run_pages(const bp_size_classes *sc, unsigned cls, bool subpage)
{
    return subpage ? sc->run_pages[cls] : sc->size[cls] >> sc->page_shift;
}

/* ------------------------------------------------------------------------------------------
 * chunk.c — runs of pages inside one chunk.
 *
 * The handle: one 64-bit word that names a run (Netty's layout, kept bit for bit):
 *
 *   oooooooo ooooooos ssssssss ssssssue bbbbbbbb bbbbbbbb bbbbbbbb bbbbbbbb
 *   o: run offset in pages (15)  s: run length in pages (15)  u: in use  e: subpage
 *   b: element index inside a subpage (32), zero for runs
 *
 * The chunk's memory holds user data only. Its metadata lives in a separate mapping:
 *
 *   run_map[page]    the handle of the run that starts or ends at `page`, 0 elsewhere. Both
 *                    the first and the last page of every run (free or used) carry the
 *                    run's handle, so a run being freed finds its free neighbours in O(1)
 *                    by looking at page-1 (a last page) and page+len (a first page).
 *   unit_info[unit]  what bp_free needs from a pointer, per 4 KiB unit of the chunk (the
 *                    smallest page size, so the fast path indexes with address >> 12 whatever
 *                    the pool's page size): the class (+1, 0 = no block starts here), the
 *                    run's first page, and whether the run is a subpage. Set on every unit of
 *                    a subpage run and on the first unit of a normal run; 0 everywhere else,
 *                    so a pointer into the middle of a run or into a free run is caught. The
 *                    array covers a whole map granule even when the chunk is smaller, so an
 *                    address past the chunk's end but inside its granule reads 0.
 *   avail[pc]        free-run sets, one per page class: bit `page` is set when a free run
 *                    filed under page class pc starts at `page`. Taking the lowest set bit
 *                    of the lowest non-empty class >= the request is Netty's "lowest offset
 *                    first" best fit; insertion and removal by offset are O(1), which
 *                    coalescing needs. avail_mask has bit pc set when avail[pc] is non-empty.
 *   subpages         one slot per page, used at the first page of each subpage run.
 *
 *   dirty            pages that are free and still backed by memory: freed since they were
 *                    last purged. Purging (madvise) returns them to the OS after a decay time.
 *
 * Invariants (checked by bp_chunk_check): runs tile [0, npages); no two free runs are
 * adjacent; a free run of n pages is in avail[floor page class of n] and nowhere else;
 * free_pages == the sum of free run lengths; avail_count[pc] == bits set in avail[pc];
 * dirty pages are free pages; dirty_pages == bits set in dirty.
 * ------------------------------------------------------------------------------------------ */
#define BP_HANDLE_OFFSET_SHIFT  49
#define BP_HANDLE_PAGES_SHIFT   34
#define BP_HANDLE_USED_SHIFT    33
#define BP_HANDLE_SUBPAGE_SHIFT 32
#define BP_HANDLE_FIELD_MASK    0x7fffu

bp_inline uint64_t bp_handle_make(uint32_t offset, uint32_t pages, bool used, bool subpage,
                                  uint32_t bitmap_idx)
{
    return (uint64_t)offset << BP_HANDLE_OFFSET_SHIFT | (uint64_t)pages << BP_HANDLE_PAGES_SHIFT |
           (uint64_t)used << BP_HANDLE_USED_SHIFT | (uint64_t)subpage << BP_HANDLE_SUBPAGE_SHIFT |
           bitmap_idx;
}
bp_inline uint32_t bp_handle_offset(uint64_t h)
{
    return (uint32_t)(h >> BP_HANDLE_OFFSET_SHIFT) & BP_HANDLE_FIELD_MASK;
}
bp_inline uint32_t bp_handle_pages(uint64_t h)
{
    return (uint32_t)(h >> BP_HANDLE_PAGES_SHIFT) & BP_HANDLE_FIELD_MASK;
}
bp_inline bool bp_handle_used(uint64_t h)
{
    return (h >> BP_HANDLE_USED_SHIFT) & 1;
}
bp_inline bool bp_handle_subpage(uint64_t h)
{
    return (h >> BP_HANDLE_SUBPAGE_SHIFT) & 1;
}
bp_inline uint32_t bp_handle_bitmap_idx(uint64_t h)
{
    return (uint32_t)h;
}

/* unit_info layout, chosen so that bp_free reaches the thread-cache bin with one add:
 *   bits 0-15   (class + 1) * BP_BIN_SIZE: the byte offset of the class's bin in a cache's
 *               bin array (0: no block starts here; bin 0 always looks full)
 *   bits 16-30  first page of the run
 *   bit  31     the run is a subpage */
#define BP_UNIT_SHIFT       12
#define BP_BIN_SHIFT        5 /* sizeof(bp_tcache_bin) == 32 */
#define BP_BIN_SIZE         (1u << BP_BIN_SHIFT)
#define BP_INFO_RUN_SHIFT   16
#define BP_INFO_SUBPAGE_BIT (1u << 31)
bp_inline uint32_t bp_bin_offset(unsigned cls)
{
    return (cls + 1) << BP_BIN_SHIFT;
}
bp_inline uint32_t bp_info_make(unsigned cls, uint32_t run_offset, bool subpage)
{
    return bp_bin_offset(cls) | run_offset << BP_INFO_RUN_SHIFT |
           (subpage ? BP_INFO_SUBPAGE_BIT : 0);
}
bp_inline unsigned bp_info_class(uint32_t info) /* only when info != 0 */
{
    return ((info & 0xffff) >> BP_BIN_SHIFT) - 1;
}
bp_inline uint32_t bp_info_run(uint32_t info)
{
    return (info >> BP_INFO_RUN_SHIFT) & 0x7fff;
}

/* HUGE_FREED: checked builds only, a freed huge block kept mapped (purged) and registered
 * for a while, so that its address is not handed out again at once and a second free of it
 * is reported (see arena.c's quarantine). */
enum bp_chunk_kind { BP_CHUNK_POOLED = 1, BP_CHUNK_HUGE = 2, BP_CHUNK_HUGE_FREED = 3 };

typedef struct bp_chunk_list bp_chunk_list;

/* One chunk (kind POOLED) or one huge block (kind HUGE, no pages: npages == 0 and every
 * unit reads 0, so bp_free's fast path sends it to the huge path). The first fields are the
 * ones bp_free reads. */
struct bp_chunk {
    /* what bp_free reads: unit_info - (base >> 12) units, and the pool's slot as its fast
     * paths see it (bufpool.h) */
    struct bp_fast_chunk fast;
    uint32_t npages;     /* pages in the chunk; 0 for a huge block */
    uintptr_t base;      /* first byte of the memory; aligned to BP_MAP_GRANULE or more */
    uint8_t page_shift;  /* log2 of the pool's page size */
    uint8_t kind;        /* enum bp_chunk_kind */
    uint32_t *unit_info; /* see above; NULL for a huge block */
    bp_arena *arena;     /* owner: every change to this chunk happens under arena->lock */
    bp_pool *pool;
    size_t size;     /* bytes of user memory (chunk size, or the huge block's mapping) */
    size_t map_size; /* bytes actually mapped for the memory (huge: may exceed size) */

    /* chunk list membership (pooled) or the arena's huge list (huge) */
    bp_chunk *prev, *next;
    bp_chunk_list *list;

    /* pooled chunks only */
    uint32_t free_pages;
    uint32_t avail_words;    /* 64-bit words per free-run set */
    uint64_t avail_mask;     /* bit pc: avail[pc] non-empty */
    uint64_t *run_map;       /* [npages] */
    uint64_t *avail;         /* [npage_classes][avail_words] */
    uint32_t *avail_count;   /* [npage_classes] */
    uint64_t *dirty;         /* [avail_words] bit page: free and still backed (not purged) */
    uint64_t *dirty_old;     /* [avail_words] the dirty bits at the previous purge epoch */
    uint32_t dirty_pages;    /* bits set in dirty */
    unsigned char *subpages; /* [npages] slots of subpage_stride bytes */
    size_t subpage_stride;
    size_t meta_size; /* bytes of the metadata mapping this struct heads */

    /* pooled and huge: where the memory lies, as the OS layer's region_add said (has_region
     * false when the layer has none); fixed from the mapping to just before its unmap */
    bp_region region;
    bool has_region;
};

_Static_assert(offsetof(bp_chunk, fast) == 0 && offsetof(struct bp_fast_chunk, slot) == 8,
               "the fast paths' chunk layout (BP_FAST_ABI_VERSION 1)");

/* A new chunk: memory_limit counts its memory and its metadata (bp_chunk_meta_size). */
bp_chunk *bp_chunk_new(bp_arena *arena);
size_t bp_chunk_meta_size(const bp_pool *pool);
/* Unmaps the chunk's memory and metadata and uncounts them; true when done. When the OS layer
 * refuses the memory the chunk stays whole (registered, counted, its free pages purged) and
 * false is returned: the caller keeps it for reuse. Refused metadata goes to the arena's
 * stuck ranges (bp_arena_unmap). */
bool bp_chunk_try_delete(bp_chunk *chunk);
/* The same for a pool being destroyed: refused memory stays mapped, purged, out of the chunk
 * map. */
void bp_chunk_delete(bp_chunk *chunk);
/* Offset of a fresh used run for class `cls` (run_pages[cls] pages) whose offset is a
 * multiple of `align_pages` (a power of two; 1 for none), or -1 when the chunk has no room.
 * Sets the run's page_info; a subpage run still needs bp_subpage_init. */
long bp_chunk_alloc_run(bp_chunk *chunk, unsigned cls, uint32_t align_pages, bool subpage);
/* Returns the run at `offset` (used, `pages` long) to the free sets, merged with free
 * neighbours. */
void bp_chunk_free_run(bp_chunk *chunk, uint32_t offset, uint32_t pages);
/* Gives dirty pages back to the OS (the OS layer's purge): every dirty page when `all`,
 * else those already dirty at the previous call (so a page stays backed for one to two
 * epochs after it was freed). Returns the bytes purged. */
size_t bp_chunk_purge(bp_chunk *chunk, bool all);
/* Number of problems found (each printed to stderr); 0 when every invariant holds. */
int bp_chunk_check(const bp_chunk *chunk);
/* What the chunk's runs add up to, for the arena's cross-checks. */
typedef struct bp_chunk_usage_walk {
    size_t active_bytes;         /* class sizes of live blocks */
    unsigned subpages_with_free; /* subpage runs with at least one free element */
} bp_chunk_usage_walk;
bp_chunk_usage_walk bp_chunk_walk(const bp_chunk *chunk);

/* unit_info biased by the chunk's base: indexing it with addr >> 12 lands in unit_info.
 * An integer: the biased address itself lies outside the array. */
bp_inline uintptr_t bp_units_biased(const uint32_t *units, uintptr_t base)
{
    return (uintptr_t)units - (base >> BP_UNIT_SHIFT) * sizeof(uint32_t);
}

/* unit_info of the first unit of a page. */
bp_inline uint32_t bp_chunk_page_info(const bp_chunk *chunk, uint32_t page)
{
    return chunk->unit_info[(size_t)page << (chunk->page_shift - BP_UNIT_SHIFT)];
}
bp_inline uint32_t bp_chunk_info_at(const bp_chunk *chunk, uintptr_t addr)
{
    return *(const uint32_t *)(chunk->fast.unit_info_biased +
                               (addr >> BP_UNIT_SHIFT) * sizeof(uint32_t));
}
/* Zeros for the units of a huge block's granule. */
extern bp_hidden const uint32_t bp_zero_units[BP_MAP_GRANULE >> BP_UNIT_SHIFT];

/* Whether the chunk has a free run filed under page class pc or above (for aligned runs
 * this is necessary, not sufficient). Lets the arena skip a chunk in a few instructions. */
bp_inline bool bp_chunk_may_fit(const bp_chunk *chunk, unsigned pc)
{
    return (chunk->avail_mask >> pc) != 0;
}

bp_inline bp_subpage *bp_chunk_subpage(const bp_chunk *chunk, uint32_t run_offset)
{
    return (bp_subpage *)(chunk->subpages + (size_t)run_offset * chunk->subpage_stride);
}
bp_inline unsigned bp_chunk_usage(const bp_chunk *chunk) /* percent, as Netty rounds it */
{
    if (chunk->free_pages == 0)
        return 100;
    unsigned free_pct = (unsigned)((uint64_t)chunk->free_pages * 100 / chunk->npages);
    return free_pct == 0 ? 99 : 100 - free_pct;
}

/* ------------------------------------------------------------------------------------------
 * subpage.c — one run cut into equal elements of one small class.
 *
 * free_bits has bit i set when element i is free (so "find a free element" is a count of
 * trailing zeros). A subpage with free elements is linked into its arena's pool for its
 * class; a full one is not. When its last element comes back it is released to the chunk,
 * unless it is the only subpage of its class in the pool (kept so that a class used in
 * bursts does not split and coalesce a run on every allocation).
 *
 * Invariants: free_count == popcount(free_bits); bits at or past elem_count are 0;
 * in_pool <=> free_count > 0; the words below search_word hold no free element.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_subpage_link {
    bp_subpage *prev, *next;
} bp_subpage_link;

struct bp_subpage {
    bp_subpage_link link; /* in the arena's pool for this class (circular, with a head) */
    bp_chunk *chunk;
    uint32_t run_offset; /* first page of the run */
    uint32_t run_pages;
    uint32_t elem_size;
    uint32_t div_magic; /* ceil(2^32 / elem_size) */
    uint16_t elem_count;
    uint16_t free_count;
    uint16_t words;       /* 64-bit words of free_bits in use */
    uint16_t search_word; /* no free element below this word */
    uint8_t class_index;
    bool in_pool;
    uint64_t free_bits[]; /* (page_size / 16 / 64) words, of which `words` are used */
};

/* Bytes of one subpage slot for a pool with this page size. */
size_t bp_subpage_slot_size(size_t page_size);
void bp_subpage_init(bp_subpage *sp, bp_chunk *chunk, uint32_t run_offset, unsigned cls,
                     const bp_size_classes *sc);
/* Element index of a newly taken element; the subpage must have a free one. */
uint32_t bp_subpage_take(bp_subpage *sp);
/* Element index for a pointer, or -1 when p is not the start of an element of sp. */
long bp_subpage_index_of(const bp_subpage *sp, uintptr_t p);
bp_inline bool bp_subpage_is_free(const bp_subpage *sp, uint32_t idx)
{
    return (sp->free_bits[idx >> 6] >> (idx & 63)) & 1;
}
void bp_subpage_give(bp_subpage *sp, uint32_t idx);
void bp_subpage_pool_init(bp_subpage_link *head);
void bp_subpage_pool_push(bp_subpage_link *head, bp_subpage *sp);
void bp_subpage_pool_remove(bp_subpage *sp);
int bp_subpage_check(const bp_subpage *sp);

/* ------------------------------------------------------------------------------------------
 * chunk_list.c — chunks grouped by usage, Netty's PoolChunkList.
 *
 *   list   usage band   on fuller: moves to   on emptier: moves to
 *   qInit  [0, 25)      q000                  stays (the arena's first chunk lives here)
 *   q000   [1, 50)      q025                  released (a chunk that empties out of q000)
 *   q025   [25, 75)     q050                  q000
 *   q050   [50, 100)    q075                  q025
 *   q075   [75, 100)    q100                  q050
 *   q100   [100]        -                     q075
 *
 * The bands overlap on purpose: a chunk near a boundary does not bounce between lists.
 * Allocation tries q050, q025, q000, qInit, q075: half-used chunks first, so that memory
 * concentrates in few chunks and the others can empty out.
 *
 * Invariant: every chunk in a list has min_usage <= usage < max_usage (q100: usage == 100;
 * qInit: usage < 25), and chunk->list points at the list that holds it.
 * ------------------------------------------------------------------------------------------ */
enum { BP_QINIT, BP_Q000, BP_Q025, BP_Q050, BP_Q075, BP_Q100, BP_NLISTS };

struct bp_chunk_list {
    bp_chunk *head;
    bp_chunk_list *next_list; /* fuller */
    bp_chunk_list *prev_list; /* emptier; NULL: release the chunk; self: stay */
    int min_usage, max_usage;
    uint32_t max_run_pages; /* the largest run a chunk in this list can still have free */
    uint32_t nchunks;
    const char *name;
};

void bp_chunk_lists_init(bp_chunk_list lists[BP_NLISTS], uint32_t chunk_pages);
void bp_chunk_list_add(bp_chunk_list *list, bp_chunk *chunk); /* files by usage from list on */
void bp_chunk_list_remove(bp_chunk_list *list, bp_chunk *chunk);
/* After an allocation from `chunk`: moves it to a fuller list if its usage says so. */
void bp_chunk_list_after_alloc(bp_chunk *chunk);
/* After a free into `chunk`: moves it to an emptier list; returns true when the chunk left
 * q000 empty, was unlinked, and should be released by the caller. */
bool bp_chunk_list_after_free(bp_chunk *chunk);
int bp_chunk_list_check(const bp_chunk_list *list);

/* ------------------------------------------------------------------------------------------
 * arena.c — one lock and everything it protects: the subpage pools, the chunk lists, the
 * huge blocks and the counters.
 *
 * Invariants: under lock, small[c] holds exactly the subpages of class c with free
 * elements, plus at most one fully free subpage per class; every chunk of the arena is in
 * exactly one of lists[]; active_bytes == the sum of the class sizes of blocks the bitmaps
 * and runs show in use (huge: mapping sizes), which includes blocks waiting in thread caches
 * and transfer caches.
 * ------------------------------------------------------------------------------------------ */
/* One class's share of an arena's counters. allocs and frees count blocks leaving and
 * entering the bitmaps and runs (under the lock), cache_fills those of allocs that refilled a
 * thread cache; cache_hits is added to atomically, by a thread cache bound to this arena at
 * each of its trims and flushes. So the program's allocations of the class are cache_hits +
 * allocs - cache_fills (the rest went to it directly). program_frees counts the program's
 * frees of the class: those a cache took (derived from its ledger, added at its trims,
 * flushes and overflows) and those that went to an arena directly. */
typedef struct bp_class_counters {
    uint64_t allocs, frees;
    uint64_t cache_fills;
    uint64_t cache_hits;    /* atomic */
    uint64_t program_frees; /* atomic */
} bp_class_counters;

typedef struct bp_arena_counters {
    uint64_t alloc_small, alloc_normal, alloc_huge;
    uint64_t free_small, free_normal, free_huge;
    uint64_t chunks_mapped, chunks_unmapped;
    uint64_t lock_allocs, lock_frees; /* lock acquisitions that allocated / freed blocks */
    uint64_t chunks_reused;           /* new-chunk needs met by a retained chunk */
    uint64_t purged_bytes;            /* bytes of free pages given back with the OS layer's purge */
    size_t active_bytes;              /* bytes in live blocks, at class size */
    size_t chunk_bytes;               /* bytes of chunk memory mapped */
    size_t huge_bytes;                /* bytes of huge blocks mapped */
    bp_class_counters classes[BP_MAX_CLASSES];
} bp_arena_counters;

/* A transfer cache: blocks of one class that a thread cache overflowed with, linked through
 * their first word, waiting for a thread of this arena to refill from them. count is raised
 * before a push links its blocks and lowered after a take unlinked them, so it never reads
 * below the blocks in the stack, and equals them whenever no push or take is under way: it
 * limits growth, and stats read it instead of walking blocks other threads may be writing. */
typedef struct bp_transfer {
    void *head;
    uint32_t count;
} __attribute__((aligned(16))) bp_transfer;

/* Recently freed runs of one normal class too large for thread caches, kept whole (neither
 * coalesced nor split) so that the next allocation of the class skips the run search and
 * the chunk-list moves. Under the arena lock; bounded by the pool's run_cache_limit. The
 * runs count as used pages of their chunks but not as active bytes. */
#define BP_RUN_CACHE_SLOTS  8
#define BP_HUGE_CACHE_SLOTS 16 /* freed huge mappings an arena keeps at most */
typedef struct bp_run_cache {
    uint32_t count;
    void *runs[BP_RUN_CACHE_SLOTS];
} bp_run_cache;

struct bp_arena {
    bp_lock lock;
    bp_pool *pool;
    unsigned index;
    bp_chunk_list lists[BP_NLISTS];
    bp_chunk *huge;            /* doubly linked through prev/next */
    bp_chunk *retained;        /* empty chunks kept mapped for reuse, linked through next */
    unsigned nretained;        /* <= the pool's retained_chunks, plus chunks whose unmap the
                                * OS refused */
    struct stuck_range *stuck; /* other ranges whose unmap the OS refused: see arena.c */
    bp_chunk *quarantine;      /* checked builds: freed huge blocks, oldest first, through
                                * next (kind HUGE_FREED) */
    unsigned nquarantined;
    /* huge mappings let go under the lock (out of the huge cache or the quarantine), already
     * out of the chunk map and still counted: unmapped by whoever releases the lock, after it
     * (arena.c's arena_unlock); empty whenever the lock is free */
    struct stuck_range *unmap_pending;
    /* Freed huge mappings kept for reuse (see arena.c's huge cache): entries 0..nhuge_cached-1,
     * oldest first, each still mapped, registered as HUGE_FREED and counted in mapped_bytes;
     * huge_cached_bytes is the sum of their map_size, <= the pool's huge_cache_bytes. */
    struct bp_huge_cached {
        bp_chunk *huge;
        uint64_t freed_ms; /* monotonic time it was cached: decay releases it from there */
    } huge_cache[BP_HUGE_CACHE_SLOTS];
    unsigned nhuge_cached;
    size_t huge_cached_bytes;
    size_t huge_slack_bytes;      /* of the live huge blocks: map_size - size summed (a reused
                                   * mapping larger than its block; counted as overhead) */
    uint64_t next_purge_ms;       /* monotonic time of the next purge epoch */
    bp_chunk *desc_free;          /* unused huge descriptors, linked through next */
    struct desc_slab *desc_slabs; /* mappings the descriptors are carved from */
    bp_arena_counters counters;
    unsigned bound_threads;                 /* thread caches bound here (registry lock) */
    bp_subpage_link small[BP_MAX_CLASSES];  /* pools of subpages with free elements */
    bp_transfer transfer[BP_MAX_CLASSES];   /* outside the lock: see bp_transfer */
    bp_run_cache run_cache[BP_MAX_CLASSES]; /* classes >= the pool's cache_classes */
} __attribute__((aligned(64)));

void bp_arena_init(bp_arena *arena, bp_pool *pool, unsigned index);
void bp_arena_destroy(bp_arena *arena);
void *bp_arena_alloc(bp_arena *arena, unsigned cls);
/* Up to n blocks of class cls under one lock, stored to out[]; returns how many. */
unsigned bp_arena_alloc_batch(bp_arena *arena, unsigned cls, void **out, unsigned n);
/* Returns n blocks of one class (from a thread cache; any arenas of one pool): to their
 * arenas' transfer caches when `transfer` and there is room, else to the bitmaps, one lock
 * per arena. Reorders blocks[]. */
void bp_arena_free_batch(void **blocks, unsigned n, bool transfer);
/* Up to max blocks of class cls from the arena's transfer cache (lock-free); returns how
 * many. Blocks beyond max are freed to the bitmaps. */
unsigned bp_arena_transfer_take(bp_arena *arena, unsigned cls, void **out, unsigned max);
/* Every transfer cache of the arena back to the bitmaps. */
void bp_arena_drain_transfers(bp_arena *arena);
/* Bytes waiting in the arena's transfer caches, from their counts (no block is read): safe
 * under any traffic, exact while no thread pushes or takes. */
size_t bp_arena_transfer_bytes(bp_arena *arena);
void *bp_arena_alloc_aligned(bp_arena *arena, unsigned cls, size_t align);
/* A huge block of at least max(size, 1) bytes (a page multiple) aligned to align (0: none):
 * a cached freed mapping that fits, else a new one. `zero`: its first `size` bytes read zero
 * (a new mapping already does; a reused one is cleared). */
void *bp_arena_alloc_huge_cleared(bp_arena *arena, size_t size, size_t align, bool zero);
/* The same, zero = false. */
void *bp_arena_alloc_huge(bp_arena *arena, size_t size, size_t align);
/* Under the lock (or while the pool is destroyed): unmaps a range memory_limit counts and
 * uncounts it. A range the OS layer refuses stays counted on the arena's stuck list, tried
 * again at each trim and at destroy. */
void bp_arena_unmap(bp_arena *arena, void *addr, size_t size);
/* What memory_limit counts for the arena beyond its chunks' and huge blocks' memory: chunk
 * metadata, huge descriptor slabs, stuck ranges, cached huge mappings and the slack of
 * reused ones. So the pool's mapped_bytes is the sum over
 * arenas of chunk_bytes + huge_bytes + this. */
size_t bp_arena_overhead_bytes(bp_arena *arena);
/* Frees the block at p in `chunk` (a pooled chunk, p inside it, info = its page_info). */
void bp_arena_free(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info);
void bp_arena_free_huge(bp_arena *arena, bp_chunk *huge);
/* bp_realloc of the live huge block `huge` (of this arena) to new_size bytes, above the chunk
 * size: resized where it lies (a shrink, or growth into free pages after it or into the slack
 * of a reused mapping), or its pages moved to a larger range by the default OS layer's
 * mremap; its bytes up to the smaller size, its alignment, registration and descriptor are
 * kept. Returns the block's address, or NULL with the block untouched: a custom OS layer (no
 * remap), memory_limit, or the OS refusing; the caller then allocates and copies. */
void *bp_arena_realloc_huge(bp_arena *arena, bp_chunk *huge, size_t new_size);
/* Whether p, the start of a normal run of the arena (its unit_info non-zero), waits in the
 * run cache of its class (checked builds' double-free test): a few compares, O(1). */
bool bp_arena_run_cached(bp_arena *arena, const void *p);
/* Releases the cached runs, empty subpages and empty chunks the arena keeps, and purges
 * every free page when `purge`; returns the bytes unmapped (and purged). */
size_t bp_arena_trim(bp_arena *arena, bool purge);
/* Takes the lock and purges the pages the decay rule says are due (purge_decay_ms); what the
 * slow paths do once an epoch, for the background thread. */
void bp_arena_purge_decayed(bp_arena *arena);
int bp_arena_check(bp_arena *arena);

/* ------------------------------------------------------------------------------------------
 * thread_cache.c — per thread and per pool: bounded stacks of blocks, served back without a
 * lock or an atomic operation.
 *
 * One bin per class, a stack that grows down inside [full, empty):
 *
 *     full ............ head ............ empty        (addresses grow to the right)
 *     |  room to push  |  cached blocks   |
 *
 * bp_free stores at head[-1] unless head == full; bp_alloc loads head[0] unless
 * head == empty. The oldest entries sit next to `empty`; trim and overflow give those back.
 *
 * A thread reaches its cache for a pool through bp_fast_tls.bins[pool->fast.slot] (the
 * struct is bufpool.h's: the fast paths are inline there). Every slot
 * starts at the static empty cache, whose bins have head == empty == full == NULL: alloc
 * misses, free overflows, both land in the slow path, which sets the thread up. So the fast paths
 * never ask "initialised?", and nothing ever writes to the shared static objects. Bin 0 stays in
 * that state in every cache: bp_free indexes bins by class + 1 straight from unit_info, so a unit
 * without a block (0) lands in bin 0 and goes to the slow path with no extra test.
 *
 * Invariants: full <= head <= empty and empty - full == capacity in every bin; an entry is
 * a live block of the cache's pool whose class is the bin's (bin - 1); hits counts the
 * allocations the bin served since the last trim (the one counter a hit updates: trims are
 * decided at refills and overflows, once the bins' hits reach trim_interval); 1 <= fill <=
 * max(capacity / 2, 1) for a bin with capacity.
 * ------------------------------------------------------------------------------------------ */
/* pools with thread caches at once (others go uncached); bins every cache has, whatever its
 * pool's classes, so a cache outlives its pool's class count */
#define BP_TCACHE_SLOTS     64
#define BP_TRIM_CHECK_EVERY 8
#define BP_TCACHE_BINS      (BP_MAX_CLASSES + 1)

/* bufpool.h's struct bp_fast_bin: the inline fast paths pop and push there. hits: allocations
 * served since the last trim; capacity: entries the bin holds at most (<= 32768); fill:
 * blocks the next refill takes (grows while the bin runs dry within an interval, halves when
 * a trim finds entries it did not need). */
typedef struct bp_fast_bin bp_tcache_bin;

typedef struct bp_tcache bp_tcache;

struct bp_tcache {
    uint32_t nbins;                   /* classes + 1 */
    uint32_t slow_events;             /* refills and overflows: a trim is looked for every
                                       * BP_TRIM_CHECK_EVERY of them */
    bp_pool *pool;                    /* NULL once orphaned: its pool was destroyed (atomic) */
    bp_arena *arena;                  /* the arena this thread is bound to in the pool */
    bp_tcache *pool_prev, *pool_next; /* the pool's caches (registry lock) */
    size_t map_size;
    bp_tcache_bin **owner_slot; /* the owner thread's bp_fast_tls.bins[slot], for a reclaimer */
    uint32_t *owner_busy;       /* the owner thread's bp_fast_tls.busy */
    uint64_t last_active_ms;    /* monotonic time of the owner's last refill or trim (atomic) */
    uint64_t hits_total;        /* hits summed at each trim and flush; read by stats (atomic) */
    size_t cached_bytes;        /* bytes in the bins at the last trim or flush (atomic) */
    /* Per bin, what it would hold plus its hits had the program freed nothing into it since
     * the frees were last counted: ledger[b] == count + hits - uncounted frees (mod 2^32).
     * Refills add, flushes and hit resets subtract; counting the frees sets it to count +
     * hits. So the fast path's push needs no counter. */
    uint32_t ledger[BP_TCACHE_BINS];
    bp_tcache_bin bins[]; /* [BP_TCACHE_BINS]; bin c + 1 caches class c; bin 0 and bins from
                           * nbins on always look empty and full */
};
_Static_assert(sizeof(bp_tcache_bin) == BP_BIN_SIZE, "unit_info encodes bin offsets");
_Static_assert(offsetof(struct bp_fast_bin, head) == 0 &&
                   offsetof(struct bp_fast_bin, empty) == 8 &&
                   offsetof(struct bp_fast_bin, full) == 16 &&
                   offsetof(struct bp_fast_bin, hits) == 24,
               "the fast paths' bin layout (BP_FAST_ABI_VERSION 1)");
_Static_assert(BP_FAST_SLOTS == BP_TCACHE_SLOTS, "bufpool.h's slot count");
_Static_assert(BP_BIN_SIZE *BP_TCACHE_BINS <= UINT16_MAX, "bin offsets fit unit_info's 16 bits");

/* What the fast paths read of the thread: the handshake's busy flag (below) and the bins
 * per pool slot (a cache's `bins`; the last slot never holds a real cache; the fast paths add
 * a byte offset, bp_bin_offset, to reach a bin). One object, so one thread-pointer address
 * serves the flag and the bins load (and one GOT entry in the shared library). */
typedef struct bp_fast_thread bp_tls_state; /* bufpool.h: bins[], and busy (1 while in use) */
_Static_assert(offsetof(struct bp_fast_thread, busy) == (BP_FAST_SLOTS + 1) * sizeof(void *),
               "the fast paths' thread layout (BP_FAST_ABI_VERSION 1)");

/* Reclaiming another thread's cache (bp_pool_trim, idle caches) without an atomic on the
 * owner's side: an asymmetric handshake.
 *
 *   owner, around every use of its bins       reclaimer (holding the registry lock)
 *     busy = 1                                  swap the owner's bp_fast_tls.bins[slot] to the
 *     (compiler barrier)                        static empty cache
 *     bins = bp_fast_tls.bins[slot]   (acquire)      membarrier(): every thread of the process
 *     ... pop or push ...                         passes a full barrier
 *     busy = 0                   (release)      wait until the owner's busy == 0
 *                                               flush the bins; put the pointer back
 *
 * The barrier splits the owner's instruction stream: an operation that loaded the bins
 * pointer before it also stored busy = 1 before it, so the reclaimer sees busy and waits;
 * one that loads after it finds the empty cache and goes to the slow path, which waits for
 * the registry lock before it uses its cache again. The owner pays two plain stores per
 * operation. busy is never held while taking the registry lock (the reclaimer holds it while
 * it waits), and operations do not nest. Without membarrier (old kernels, seccomp) threads
 * reclaim only their own caches. */
/* The slow paths' side of the handshake (the fast paths use bufpool.h's helpers). */
bp_inline void bp_tcache_enter(void)
{
    bp_tls_state *t = bp_fast_thread_self();
    __atomic_store_n(&t->busy, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the store stays before the bins load */
}
bp_inline bp_tcache_bin *bp_tcache_bins(uint32_t slot)
{
    bp_tls_state *t = bp_fast_thread_self();
    return __atomic_load_n(&t->bins[slot], __ATOMIC_ACQUIRE);
}
bp_inline void bp_tcache_leave(void)
{
    bp_fast_bins_leave(bp_fast_thread_self());
}

bp_inline bp_tcache *bp_tcache_of(bp_tcache_bin *bins)
{
    return (bp_tcache *)((char *)bins - offsetof(bp_tcache, bins));
}
bp_inline bp_tcache_bin *bp_bin_at(bp_tcache_bin *bins, uint32_t offset)
{
    return (bp_tcache_bin *)((char *)bins + offset);
}

void *bp_tcache_alloc_slow(bp_pool *pool, unsigned cls);
void bp_tcache_free_slow(bp_chunk *chunk, void *p, uint32_t info);
/* The arena the calling thread is bound to in `pool` (binding it if needed). */
bp_arena *bp_thread_arena(bp_pool *pool);
/* Arena i of pool, initialised first (with every arena before it) if no thread has bound
 * there yet. i < pool->narenas. */
bp_arena *bp_tcache_arena_at(bp_pool *pool, unsigned i);
/* Called by bp_pool_new / bp_pool_destroy: a slot for the pool / orphan every cache. */
void bp_tcache_pool_created(bp_pool *pool);
void bp_tcache_pool_destroying(bp_pool *pool);
/* fork(): the registry lock is taken before and released (parent) or reset (child) after. */
void bp_tcache_prefork(void);
void bp_tcache_postfork_parent(void);
void bp_tcache_postfork_child(void);
/* Empties every thread's cache of the pool into the arenas: the calling thread's own, and
 * (where membarrier allows) every other thread's through the handshake above. */
void bp_tcache_reclaim_all(bp_pool *pool);
/* Empties the caches of the pool unused for at least cache_idle_ms; at most twice an
 * interval per pool, whoever calls it (an owner's trim, the background thread). */
void bp_tcache_reclaim_idle(bp_pool *pool);
/* Thread-cache hits and cached bytes for stats: every cache's as of its last trim or flush,
 * the calling thread's exact, plus what exited threads counted. */
void bp_tcache_stats(bp_pool *pool, uint64_t *hits, size_t *cached_bytes);
/* Adds to class_hits[cls] and class_frees[cls] (one per class of the pool) the calling
 * thread's cache hits and program frees not yet added to its arena's per-class counters. */
void bp_tcache_class_counts(bp_pool *pool, uint64_t *class_hits, uint64_t *class_frees);
/* Blocks this thread's cache for `pool` holds (for tests and stats). */
size_t bp_tcache_cached_blocks(bp_pool *pool);
size_t bp_tcache_cached_class(bp_pool *pool, unsigned cls);

/* alloc.c: the default pool once bp_pool_default made it; until then a pool prefix on which
 * every request misses, whose first bp_alloc_slow makes it (the malloc library's malloc). */
extern bp_hidden bp_pool *bp_default_pool;
/* alloc.c: a huge block with any power-of-two alignment (the malloc library's memalign
 * beyond the chunk size). */
void *bp_alloc_aligned_huge(bp_pool *pool, size_t align, size_t size);
/* bp_free, bp_realloc and bp_usable_size for the malloc library: `what` is the call the
 * program made (free, realloc, ...), named by misuse reports. */
void bp_free_as(void *p, const char *what);
void *bp_realloc_as(bp_pool *pool, void *p, size_t size, const char *what);
size_t bp_usable_size_as(const void *p, const char *what);

/* ------------------------------------------------------------------------------------------
 * pool.c — a pool: its configuration, size classes, arenas and OS layer.
 * ------------------------------------------------------------------------------------------ */
struct bp_pool {
    /* first: what the inline bp_alloc reads (bufpool.h). fast.slot is tc_slot in release
     * builds, BP_TCACHE_SLOTS (every request misses) in checked and tool builds and for an
     * uncached pool; fast.bin_of has 0 for the classes not thread-cached. */
    struct bp_fast_pool fast;
    bp_size_classes sc;
    uint32_t tc_slot; /* slot in bp_fast_tls.bins; BP_TCACHE_SLOTS = uncached */
    bp_config config; /* as resolved at bp_pool_new (defaults filled in) */
    bp_os os;         /* copied from config.os */
    size_t page_size, chunk_size;
    unsigned cache_classes;                /* classes 0..cache_classes-1 are thread-cached */
    uint16_t bin_capacity[BP_MAX_CLASSES]; /* thread-cache entries per class (0 past those) */
    size_t cache_bound_bytes; /* the most one thread's cache holds: sum of capacity x size */
    size_t max_cached_size;   /* size of the largest cached class (bp_alloc's fast path) */
    uint32_t transfer_limit[BP_MAX_CLASSES];  /* blocks an arena's transfer cache may hold */
    uint32_t run_cache_limit[BP_MAX_CLASSES]; /* runs an arena's run cache may hold */
    unsigned narenas;
    bp_arena *arenas; /* [narenas], inside this pool's mapping */
    /* arenas [0, arenas_ready) are initialised, the rest untouched (no memory behind them
     * until a thread binds there: arenas:4096 costs nothing up front). Grows one at a time,
     * under the registry lock; read with acquire; 1 <= arenas_ready <= narenas. */
    unsigned arenas_ready;
    size_t map_size;    /* bytes of the mapping that holds the pool and arenas */
    bp_tcache *tcaches; /* every thread's cache for this pool (registry lock) */
    /* leak.c's: tracked buffers (under leak_lock), the sampling counter, the pools that
     * report at exit, and a hook bp_pool_destroy calls first (the leak report), so that this
     * file needs no bp_buf. */
    pthread_mutex_t leak_lock;
    struct bp_leak *leaks;
    uint32_t leak_sample;
    bp_pool *leak_next;
    void (*on_destroy)(bp_pool *pool);
    bp_pool *next_pool;    /* every live pool, for fork() (pool.c's pools_lock) */
    size_t mapped_bytes;   /* atomic: chunk and huge memory and their metadata, <= memory_limit */
    uint64_t retired_hits; /* atomic: thread-cache hits of caches already gone */
    uint64_t next_idle_scan_ms; /* atomic: when idle thread caches are looked for next */
    uint64_t magic;
};
#define BP_POOL_MAGIC 0x627566706f6f6c31ull /* "bufpool1" */
_Static_assert(offsetof(bp_pool, fast) == 0 && offsetof(struct bp_fast_pool, slot) == 0 &&
                   offsetof(struct bp_fast_pool, buf_slow) == 6 &&
                   offsetof(struct bp_fast_pool, bin_of) == 8,
               "the fast paths' pool layout (BP_FAST_ABI_VERSION 1)");

/* Counts `bytes` of chunk or huge memory (or their metadata) against memory_limit before it
 * is mapped: false (nothing counted) when the limit would be passed. bp_pool_unreserve when
 * unmapped. */
bool bp_pool_reserve(bp_pool *pool, size_t bytes);
void bp_pool_unreserve(bp_pool *pool, size_t bytes);
/* Checked builds: reports `what`(pool) and aborts unless pool is live (a destroyed pool's
 * mapping stays there, purged, in those builds). Release builds: nothing. */
#if BP_CHECKED
void bp_pool_check_live(const bp_pool *pool, const char *what);
#else
bp_inline void bp_pool_check_live(const bp_pool *pool, const char *what)
{
    (void)pool;
    (void)what;
}
#endif
/* Walks every arena, chunk, run and subpage; returns the number of problems found. */
int bp_pool_check(bp_pool *pool);
/* bp_pool_trim without the purge: what an allocation about to fail calls before it tries
 * again. Returns the bytes unmapped. */
size_t bp_pool_reclaim(bp_pool *pool);
/* How many of pool's arenas are initialised: loops over arenas stop there. */
bp_inline unsigned bp_pool_arenas_ready(const bp_pool *pool)
{
    return __atomic_load_n(&pool->arenas_ready, __ATOMIC_ACQUIRE);
}
/* background.c: starts the background thread unless it runs (or could not start); called
 * by the slow path of an allocation in a pool with background_thread set. */
void bp_background_ensure(void);
/* Passes the background thread made over the pools (for tests). */
uint64_t bp_background_passes(void);
/* fork(): the child has no background thread; the next slow path starts one. */
void bp_background_postfork_child(void);
/* Calls fn for every live pool (under the pool list's lock). */
void bp_pool_for_each(void (*fn)(bp_pool *pool));
/* Counters of all arenas added up. */
void bp_pool_counters(bp_pool *pool, bp_arena_counters *out);

/* ------------------------------------------------------------------------------------------
 * chunk_map.c — address -> chunk, for bp_free(ptr) without a pool argument.
 *
 * One flat table with an entry per 4 MiB granule of the 47-bit user address space (2^25
 * entries, 256 MiB of address space). It is reserved read-only, so it costs neither memory
 * nor commit charge: untouched pages read as zeros (no chunk), and a page is made writable
 * the first time a chunk registers in it (each page covers 2 GiB of addresses). Lookups are
 * one shift, one mask and one load, with no branch on the way.
 *
 * Every chunk starts on a granule boundary and no granule holds two chunks (smaller chunks
 * are mapped with granule alignment), so the granule of an address names at most one chunk;
 * the slow paths check that the address lies inside it. A chunk registers every granule it
 * covers; a huge block registers its first granule only (it is freed by its base address).
 * Readers take no lock. Before the table is reserved (at load, or at the first pool), the
 * pointer names a one-entry table that answers "no chunk" for NULL.
 * ------------------------------------------------------------------------------------------ */
/* bufpool.h's bp_fast_chunk_map: entries point at the chunks' first member (fast). */
#define bp_chunk_map bp_fast_chunk_map

/* 0, or ENOMEM when the table cannot be reserved or a page of it made writable. */
int bp_chunk_map_init(void);
/* false when the table cannot take the entries (see bp_chunk_map_init). */
bool bp_chunk_map_register(uintptr_t base, size_t size, bp_chunk *chunk);
void bp_chunk_map_unregister(uintptr_t base, size_t size);
void bp_chunk_map_prefork(void);
void bp_chunk_map_postfork_parent(void);
void bp_chunk_map_postfork_child(void);

bp_inline bp_chunk *bp_chunk_map_lookup(uintptr_t addr)
{
    return (bp_chunk *)__atomic_load_n(
        &bp_chunk_map[(addr >> BP_MAP_GRANULE_SHIFT) & (BP_MAP_ENTRIES - 1)], __ATOMIC_ACQUIRE);
}
_Static_assert(BP_FAST_MAP_SHIFT == BP_MAP_GRANULE_SHIFT && BP_FAST_MAP_ENTRIES == BP_MAP_ENTRIES &&
                   BP_FAST_UNIT_SHIFT == BP_UNIT_SHIFT,
               "the fast paths' chunk map (BP_FAST_ABI_VERSION 1)");

/* ------------------------------------------------------------------------------------------
 * leak.c — what a pool needs of the bp_buf leak detector (bp_buf's own internals: see
 * buf_internal.h).
 * ------------------------------------------------------------------------------------------ */
/* The pool's leak list, and its reports at bp_pool_destroy and exit when leak_level is on. */
void bp_leak_pool_init(bp_pool *pool);

/* ------------------------------------------------------------------------------------------
 * options.c — configuration defaults and BUFPOOL_CONF parsing.
 * ------------------------------------------------------------------------------------------ */
void bp_config_defaults(bp_config *cfg);
/* Applies "key:value,..." to cfg; bad items are reported (naming `source`) and skipped, and
 * when the resulting chunk_size does not fit page_size both keep the values cfg had, so a
 * cfg that met bp_options_check still does. Returns the number of problems (bad items, and
 * one for a chunk that did not fit). Reports every time (bp_config_init once per value). */
int bp_options_apply(bp_config *cfg, const char *conf, const char *source);
/* 0, or EINVAL after a message naming the first field outside the range BUFPOOL_CONF accepts
 * (a power of two for page_size and chunk_size), or a chunk_size that is not
 * page_size << 1..14. What bp_pool_new checks. */
int bp_options_check(const bp_config *cfg);

/* ------------------------------------------------------------------------------------------
 * os.c — mappings through a pool's bp_os table, and messages that never allocate.
 * ------------------------------------------------------------------------------------------ */
/* Metadata (and, for a layer without map_memory, everything). */
void *bp_os_map(const bp_os *os, size_t size, size_t align);
/* Chunk or huge-block memory: the layer's map_memory, else its map. */
void *bp_os_map_memory(const bp_os *os, size_t size, size_t align, bp_map_kind kind);
/* The layer's region_add for memory just mapped: 0 with chunk->region and has_region set
 * (has_region false and 0 when the layer has no region_add), or the layer's errno value. */
int bp_os_region_add(const bp_os *os, bp_chunk *chunk, bp_map_kind kind);
/* The layer's region_remove, before the chunk's memory is unmapped (has_region cleared). */
void bp_os_region_remove(const bp_os *os, bp_chunk *chunk);
/* 0, or the OS layer's error: the range is then still mapped, and purged where the layer can
 * purge. Callers that keep nothing may ignore the result (the range stays reserved). */
int bp_os_unmap(const bp_os *os, void *addr, size_t size);
/* Resizing a mapping of the default layer (mremap); a custom layer (bp_os_can_remap false)
 * has no such call. in_place: grows into free pages after it or shrinks, else false and
 * nothing changed. A move takes two steps, so the caller can register the new address before
 * the old one is gone: remap_reserve gives an inaccessible range of `size` bytes aligned to
 * `align` (or NULL), remap_move moves the mapping's pages there (true), or releases the range
 * and leaves the mapping as it was (false); remap_release gives back a range not moved to. */
bool bp_os_can_remap(const bp_os *os);
bool bp_os_remap_in_place(void *addr, size_t old_size, size_t new_size);
void *bp_os_remap_reserve(size_t size, size_t align);
bool bp_os_remap_move(void *addr, size_t old_size, size_t new_size, void *reserved);
void bp_os_remap_release(void *reserved, size_t size);
/* printf-style message on stderr, one line prefixed "bufpool: PROGRAM[PID]: ", formatted on
 * the stack (no allocation, no stdio: it may run inside malloc). */
void bp_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* That prefix, NUL-terminated in buf (len > 0), for reports written elsewhere; its length. */
int bp_message_prefix(char *buf, size_t len);
_Noreturn void bp_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void bp_assert_fail(const char *cond, const char *file, int line, const char *func);

#endif /* BP_INTERNAL_H */
