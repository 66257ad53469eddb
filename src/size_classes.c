/* size_classes.c — generates a pool's size-class tables from its page and chunk sizes, and
 * maps sizes to classes and page counts to page classes (see size_classes.h for the rules). */
#include "fast.h"
#include "size_classes.h"

#include <errno.h>
#include <string.h>

/* Netty's calculateRunSize: the smallest page multiple that holds a whole number of
 * elements, stopping at page/16 elements (a 16-byte class would otherwise need 1 page for
 * 512 elements anyway). When that run would not fit in the chunk, the run is the fewest
 * pages that hold one element, and its tail is left unused. */
static void subpage_run_size(bp_size_classes *sc, unsigned cls)
{
    size_t page = (size_t)1 << sc->page_shift;
    size_t elem = sc->size[cls];
    size_t max_elems = page >> BP_LOG2_QUANTUM;
    size_t run = 0, elems;
    do {
        run += page;
        elems = run / elem;
    } while (elems < max_elems && run != elems * elem);
    while (elems > max_elems) {
        run -= page;
        elems = run / elem;
    }
    if ((run >> sc->page_shift) > sc->chunk_pages) {
        run = bp_align_up(elem, page);
        elems = run / elem;
    }
    sc->run_pages[cls] = (uint32_t)(run >> sc->page_shift);
    sc->run_elems[cls] = (uint32_t)elems;
}

static void add_class(bp_size_classes *sc, size_t size)
{
    unsigned cls = sc->nclasses++;
    size_t page = (size_t)1 << sc->page_shift;
    sc->size[cls] = (uint32_t)size;
    sc->div_magic[cls] = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
    if (size < page << BP_LOG2_GROUP)
        sc->nsmall = cls + 1;
    if (size % page == 0) {
        unsigned pc = sc->npage_classes++;
        sc->page_class[cls] = (uint8_t)pc;
        sc->page_class_pages[pc] = (uint32_t)(size / page);
        sc->page_class_to_class[pc] = (uint8_t)cls;
    } else {
        sc->page_class[cls] = BP_NO_PAGE_CLASS;
    }
}

int bp_size_classes_init(bp_size_classes *sc, size_t page_size, size_t chunk_size)
{
    if (!bp_is_pow2(page_size) || page_size < 4096 || page_size > 65536 ||
        !bp_is_pow2(chunk_size) || chunk_size < page_size << 1 || chunk_size > page_size << 14)
        return EINVAL;
    memset(sc, 0, sizeof *sc);
    sc->page_shift = bp_log2(page_size);
    sc->chunk_pages = (unsigned)(chunk_size >> sc->page_shift);

    /* The first group: 16, 32, 48, 64. Then groups of four with delta = group / 4. */
    for (size_t n = 1; n <= 1u << BP_LOG2_GROUP; n++)
        add_class(sc, n << BP_LOG2_QUANTUM);
    for (unsigned log2_group = BP_LOG2_QUANTUM + BP_LOG2_GROUP;; log2_group++) {
        size_t delta = (size_t)1 << (log2_group - BP_LOG2_GROUP);
        for (size_t n = 1; n <= 1u << BP_LOG2_GROUP; n++) {
            size_t size = ((size_t)1 << log2_group) + n * delta;
            if (size > chunk_size)
                goto done;
            add_class(sc, size);
        }
    }
done:
    for (unsigned cls = 0; cls < sc->nsmall; cls++)
        subpage_run_size(sc, cls);
    for (unsigned cls = sc->nsmall; cls < sc->nclasses; cls++) {
        sc->run_pages[cls] = sc->size[cls] >> sc->page_shift;
        sc->run_elems[cls] = 1;
    }
    /* Page counts to page classes: runs are filed under the floor, searched from the ceiling. */
    for (unsigned pages = 1, pc = 0; pages <= sc->chunk_pages; pages++) {
        while (sc->page_class_pages[pc] < pages)
            pc++;
        sc->pages_ceil[pages] = (uint8_t)pc;
        sc->pages_floor[pages] = (uint8_t)(sc->page_class_pages[pc] == pages ? pc : pc - 1);
    }
    /* The lookup table: entry i serves sizes (i-1)*16+1 .. i*16; entry 0 serves size 0. */
    unsigned cls = 0;
    for (size_t i = 0; i < sizeof sc->lookup; i++) {
        size_t size = i << BP_LOG2_QUANTUM;
        while (sc->size[cls] < size)
            cls++;
        sc->lookup[i] = (uint8_t)cls;
    }
#if BP_CHECKED /* the table and the formula agree, and both give the smallest class that fits */
    for (size_t size = 0; size <= chunk_size; size += size < BP_MAX_LOOKUP << 2 ? 1 : 4093) {
        unsigned c = bp_size_to_class(sc, size);
        bp_assert(size > BP_MAX_LOOKUP || c == bp_size_to_class_compute(sc, size));
        bp_assert(sc->size[c] >= BP_MAX(size, 1) && (c == 0 || sc->size[c - 1] < size));
    }
#endif
    return 0;
}

void bp_size_classes_fast_table(const bp_size_classes *sc, unsigned cached,
                                uint16_t bin_of[BP_FAST_ENTRIES])
{
    for (size_t i = 0; i < BP_FAST_ENTRIES; i++) {
        /* the largest size of the entry: every size of its range has that size's class */
        size_t size =
            i <= (BP_MAX_LOOKUP >> BP_LOG2_QUANTUM) ? i << BP_LOG2_QUANTUM : (i - 252) << 10;
        unsigned cls = size <= sc->size[sc->nclasses - 1] ? bp_size_to_class(sc, size) : cached;
        bin_of[i] = (uint16_t)(cls < cached ? bp_bin_offset(cls) : 0);
    }
}
