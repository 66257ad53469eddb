/* fast.h — the encodings that deliberately cross layers for bufpool.h's inline fast
 * paths: the chunk map's granule, unit_info (bin offsets, run, subpage bit), the biased index. */
#ifndef BP_FAST_H
#define BP_FAST_H

#include "base.h"

/* The chunk map's granule (chunk_map.h): chunks start on granule boundaries. */
/* bufpool.h's values, defined there once (the inline fast paths compute with them). */
#define BP_MAP_GRANULE_SHIFT BP_FAST_MAP_SHIFT
#define BP_MAP_GRANULE       ((size_t)1 << BP_MAP_GRANULE_SHIFT)
#define BP_MAP_ADDRESS_BITS  47 /* the user address space of x86-64 and arm64 Linux */
#define BP_MAP_ENTRIES       ((size_t)BP_FAST_MAP_ENTRIES)

/* unit_info layout, chosen so that bp_free reaches the thread-cache bin with one add:
 *   bits 0-15   (class + 1) * BP_BIN_SIZE: the byte offset of the class's bin in a cache's
 *               bin array (0: no block starts here; bin 0 always looks full)
 *   bits 16-30  first page of the run
 *   bit  31     the run is a subpage */
#define BP_UNIT_SHIFT       BP_FAST_UNIT_SHIFT
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
/* unit_info biased by the chunk's base: indexing it with addr >> 12 lands in unit_info.
 * An integer: the biased address itself lies outside the array. */
bp_inline uintptr_t bp_units_biased(const uint32_t *units, uintptr_t base)
{
    return (uintptr_t)units - (base >> BP_UNIT_SHIFT) * sizeof(uint32_t);
}
_Static_assert(BP_MAP_ENTRIES == (size_t)1 << (BP_MAP_ADDRESS_BITS - BP_MAP_GRANULE_SHIFT),
               "the chunk map covers the user address space (BP_FAST_ABI_VERSION 1)");
_Static_assert(BP_UNIT_SHIFT <= 12, "a unit is at most the smallest page");

#endif /* BP_FAST_H */
