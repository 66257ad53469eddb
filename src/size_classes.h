/* size_classes.h — the size classes: jemalloc4 classes as Netty generates them, size ->
 * class by table and formula, pages -> page class (size_classes.c). */
#ifndef BP_SIZE_CLASSES_H
#define BP_SIZE_CLASSES_H

#include "base.h"

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

#endif /* BP_SIZE_CLASSES_H */
