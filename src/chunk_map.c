/* chunk_map.c — the process-wide address -> chunk map that lets bp_free(ptr) find the pool,
 * arena and chunk of any block (layout and rules in internal.h). */
#include "internal.h"

#define LEAF_ENTRIES ((size_t)1 << BP_MAP_LEAF_BITS)

bp_chunk *bp_chunk_map_empty_leaf[1u << BP_MAP_LEAF_BITS];
bp_chunk **bp_chunk_map_root[1u << BP_MAP_ROOT_BITS] = {
    [0 ...(1u << BP_MAP_ROOT_BITS) - 1] = bp_chunk_map_empty_leaf,
};

const uint32_t bp_zero_units[BP_MAP_GRANULE >> BP_UNIT_SHIFT];

/* Serialises leaf creation; entries themselves are written with atomic stores. */
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t root_index(uintptr_t addr)
{
    return (addr >> (BP_MAP_GRANULE_SHIFT + BP_MAP_LEAF_BITS)) & ((1u << BP_MAP_ROOT_BITS) - 1);
}

static size_t leaf_index(uintptr_t addr)
{
    return (addr >> BP_MAP_GRANULE_SHIFT) & (LEAF_ENTRIES - 1);
}

static bp_chunk **leaf_for(uintptr_t addr, bool create)
{
    bp_chunk ***slot = &bp_chunk_map_root[root_index(addr)];
    bp_chunk **leaf = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (leaf != bp_chunk_map_empty_leaf)
        return leaf;
    if (!create)
        return NULL;
    pthread_mutex_lock(&map_lock);
    leaf = *slot;
    if (leaf == bp_chunk_map_empty_leaf) {
        /* Leaves are never unmapped: a reader may hold one at any time. */
        leaf = bp_os_map(bp_os_default(), LEAF_ENTRIES * sizeof(bp_chunk *), 4096);
        if (leaf != NULL)
            __atomic_store_n(slot, leaf, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&map_lock);
    return leaf;
}

bool bp_chunk_map_register(uintptr_t base, size_t size, bp_chunk *chunk)
{
    bp_assert((base & (BP_MAP_GRANULE - 1)) == 0);
    if ((uint64_t)base >> 48 != 0) {
        bp_message("mapping at %p lies above the 48-bit address space the chunk map covers",
                   (void *)base);
        return false;
    }
    size_t granules = (size + BP_MAP_GRANULE - 1) >> BP_MAP_GRANULE_SHIFT;
    for (size_t i = 0; i < granules; i++) {
        uintptr_t addr = base + (i << BP_MAP_GRANULE_SHIFT);
        bp_chunk **leaf = leaf_for(addr, true);
        if (leaf == NULL) {
            bp_chunk_map_unregister(base, i << BP_MAP_GRANULE_SHIFT);
            return false;
        }
        __atomic_store_n(&leaf[leaf_index(addr)], chunk, __ATOMIC_RELEASE);
    }
    return true;
}

void bp_chunk_map_unregister(uintptr_t base, size_t size)
{
    size_t granules = (size + BP_MAP_GRANULE - 1) >> BP_MAP_GRANULE_SHIFT;
    for (size_t i = 0; i < granules; i++) {
        uintptr_t addr = base + (i << BP_MAP_GRANULE_SHIFT);
        bp_chunk **leaf = leaf_for(addr, false);
        if (leaf != NULL)
            __atomic_store_n(&leaf[leaf_index(addr)], NULL, __ATOMIC_RELEASE);
    }
}
