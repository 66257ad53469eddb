/* chunk_map.c — the process-wide address -> chunk table that lets bp_free(ptr) find the pool,
 * arena and chunk of any block (layout and rules in chunk_map.h). */
#include "chunk_map.h"
#include "lock.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

#define TABLE_BYTES (BP_MAP_ENTRIES * sizeof(struct bp_fast_chunk *))
#define TABLE_PAGE  4096
#define TABLE_PAGES (TABLE_BYTES / TABLE_PAGE)

/* Until the table is reserved: a one-entry table, so that bp_free(NULL) finds no chunk. */
static struct bp_fast_chunk *boot_table[1];
struct bp_fast_chunk **bp_chunk_map = boot_table;

const uint32_t bp_zero_units[BP_MAP_GRANULE >> BP_UNIT_SHIFT];

/* Serialises reservation and registration; entries are written with atomic stores. */
static bp_mutex map_lock = BP_MUTEX_INIT;
static uint64_t writable[TABLE_PAGES / 64]; /* bit set: that page of the table is writable */

void bp_chunk_map_prefork(void)
{
    bp_mutex_lock(&map_lock);
}

void bp_chunk_map_postfork_parent(void)
{
    bp_mutex_unlock(&map_lock);
}

void bp_chunk_map_postfork_child(void)
{
    bp_mutex_unlock(&map_lock); /* the child's one thread is the one that took it */
}

static int reserve_locked(void)
{
    bp_assert(bp_mutex_held(&map_lock));
    if (bp_chunk_map != boot_table)
        return 0;
    void *table =
        mmap(NULL, TABLE_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (table == MAP_FAILED) {
        bp_message("cannot reserve %zu MiB of address space for the chunk map (errno %d)",
                   TABLE_BYTES >> 20, errno);
        return ENOMEM;
    }
    __atomic_store_n(&bp_chunk_map, (struct bp_fast_chunk **)table, __ATOMIC_RELEASE);
    return 0;
}

int bp_chunk_map_init(void)
{
    bp_mutex_lock(&map_lock);
    int err = reserve_locked();
    bp_mutex_unlock(&map_lock);
    return err;
}

/* Reserved when the library loads, so that every later bp_free indexes the real table. */
__attribute__((constructor)) static void chunk_map_at_load(void)
{
    bp_chunk_map_init();
}

static size_t entry_index(uintptr_t addr)
{
    return (addr >> BP_MAP_GRANULE_SHIFT) & (BP_MAP_ENTRIES - 1);
}

static bool make_writable_locked(size_t entry)
{
    bp_assert(bp_mutex_held(&map_lock));
    size_t page = entry * sizeof(bp_chunk *) / TABLE_PAGE;
    if (writable[page / 64] >> (page % 64) & 1)
        return true;
    if (mprotect((char *)bp_chunk_map + page * TABLE_PAGE, TABLE_PAGE, PROT_READ | PROT_WRITE) != 0)
        return false;
    writable[page / 64] |= (uint64_t)1 << (page % 64);
    return true;
}

bool bp_chunk_map_register(uintptr_t base, size_t size, bp_chunk *chunk)
{
    bp_assert((base & (BP_MAP_GRANULE - 1)) == 0);
    if ((uint64_t)base + size > (uint64_t)1 << BP_MAP_ADDRESS_BITS) {
        bp_message("mapping at %p lies above the %d-bit address space the chunk map covers",
                   (void *)base, BP_MAP_ADDRESS_BITS);
        return false;
    }
    size_t granules = (size + BP_MAP_GRANULE - 1) >> BP_MAP_GRANULE_SHIFT;
    bool ok = true;
    bp_mutex_lock(&map_lock);
    if (reserve_locked() != 0)
        ok = false;
    for (size_t i = 0; ok && i < granules; i++)
        ok = make_writable_locked(entry_index(base) + i);
    for (size_t i = 0; ok && i < granules; i++)
        __atomic_store_n(&bp_chunk_map[entry_index(base) + i],
                         (struct bp_fast_chunk *)(void *)chunk, /* its first member */
                         __ATOMIC_RELEASE);
    bp_mutex_unlock(&map_lock);
    return ok;
}

void bp_chunk_map_unregister(uintptr_t base, size_t size)
{
    size_t granules = (size + BP_MAP_GRANULE - 1) >> BP_MAP_GRANULE_SHIFT;
    bp_mutex_lock(&map_lock);
    for (size_t i = 0; i < granules; i++)
        __atomic_store_n(&bp_chunk_map[entry_index(base) + i], NULL, __ATOMIC_RELEASE);
    bp_mutex_unlock(&map_lock);
}
