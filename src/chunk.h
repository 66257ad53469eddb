/* chunk.h — a chunk: runs of pages, the run handle, the metadata beside the memory
 * and its invariants (chunk.c). */
#ifndef BP_CHUNK_H
#define BP_CHUNK_H

#include "engine.h"
#include "fast.h"
#include "subpage.h"

typedef struct bp_arena bp_arena;

/* ------------------------------------------------------------------------------------------
 * chunk.c — runs of pages inside one chunk.
 *
 * The handle: one 64-bit word that names a run (Netty's layout, kept bit for bit):
 *
 *   oooooooo ooooooos ssssssss ssssssue bbbbbbbb bbbbbbbb bbbbbbbb bbbbbbbb
 *   o: run offset in pages (15)  s: run length in pages (15)  u: in use  e: subpage
 *   b: Netty's element index inside a subpage (32): always 0 here, subpages keep their own
 *      bitmaps (subpage.h)
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
_Static_assert(BP_MAX_CHUNK_PAGES <= BP_HANDLE_FIELD_MASK,
               "a run's offset and length fit the handle's 15-bit fields");
_Static_assert(BP_MAX_CHUNK_PAGES <= 0x7fff + 1, "a run's first page fits unit_info's 15 bits");
_Static_assert(BP_MAX_PAGE_CLASSES <= 64, "avail_mask has one bit per page class");
_Static_assert(BP_MAX_CLASSES <= 256 && BP_NO_PAGE_CLASS >= BP_MAX_PAGE_CLASSES,
               "classes and page classes fit the tables' bytes");

bp_inline uint64_t bp_handle_make(uint32_t offset, uint32_t pages, bool used, bool subpage)
{
    return (uint64_t)offset << BP_HANDLE_OFFSET_SHIFT | (uint64_t)pages << BP_HANDLE_PAGES_SHIFT |
           (uint64_t)used << BP_HANDLE_USED_SHIFT | (uint64_t)subpage << BP_HANDLE_SUBPAGE_SHIFT;
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
    bp_engine *engine;   /* the pool's classes, memory and tuning */
    bp_pool *pool;       /* the owner pool, for the front (opaque here) */
    size_t size;         /* bytes of user memory (chunk size, or the huge block's mapping) */
    size_t map_size;     /* bytes actually mapped for the memory (huge: may exceed size) */

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

    /* pooled and huge: where the memory lies, as the OS layer's region_add said */
    bp_os_region region;
};

_Static_assert(offsetof(bp_chunk, fast) == 0 && offsetof(struct bp_fast_chunk, slot) == 8,
               "the fast paths' chunk layout (BP_FAST_ABI_VERSION 1)");

/* A new chunk of `arena` (its owner): memory_limit counts its memory and its metadata
 * (bp_chunk_meta_size); NULL when the limit, the OS layer or a region refuses. */
bp_chunk *bp_chunk_new(bp_engine *engine, bp_arena *arena);
size_t bp_chunk_meta_size(const bp_engine *engine);
/* Unmaps the chunk's memory and metadata and uncounts them; true when done. When the OS layer
 * refuses the memory the chunk stays whole (registered, counted, its free pages purged) and
 * false is returned: the caller keeps it for reuse. Refused metadata stays counted on the OS
 * layer's stuck list (bp_os_unmap_counted). */
bool bp_chunk_try_delete(bp_chunk *chunk);
/* The same for a pool being destroyed: refused memory stays mapped, purged, out of the chunk
 * map. */
void bp_chunk_delete(bp_chunk *chunk);
/* Offset of a fresh used run for class `cls` (run_pages[cls] pages) whose offset is a
 * multiple of `align_pages` (a power of two; 1 for none), or -1 when the chunk has no room.
 * Sets the run's unit_info; a subpage run still needs bp_subpage_init. */
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

/* One run of a chunk, as bp_chunk_next_run walks them from page 0: what stats and the
 * checks read of a run without decoding handles themselves. */
typedef struct bp_chunk_run {
    uint32_t offset, pages; /* first page and length (pages never past the chunk's end) */
    bool used;
    const bp_subpage *subpage; /* a used subpage run's, else NULL */
} bp_chunk_run;

/* The run at *next (0 to start) into *run, *next moved past it: false after the last run, or
 * at a corrupt run map (a zero length, which bp_chunk_check reports). */
bp_inline bool bp_chunk_next_run(const bp_chunk *chunk, uint32_t *next, bp_chunk_run *run)
{
    uint32_t off = *next;
    if (off >= chunk->npages)
        return false;
    uint64_t h = chunk->run_map[off];
    uint32_t pages = BP_MIN(bp_handle_pages(h), chunk->npages - off);
    if (pages == 0)
        return false;
    run->offset = off;
    run->pages = pages;
    run->used = bp_handle_used(h);
    run->subpage = run->used && bp_handle_subpage(h)
                       ? (const bp_subpage *)(chunk->subpages + (size_t)off * chunk->subpage_stride)
                       : NULL;
    *next = off + pages;
    return true;
}

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

#endif /* BP_CHUNK_H */
