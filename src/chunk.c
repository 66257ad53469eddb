/* chunk.c — one chunk: its memory and metadata mappings, runs of pages found in per-page-class
 * free-run sets (lowest offset first), split on allocation and coalesced on release. */
#include "chunk.h"
#include "chunk_map.h"
#include "track.h"

#include <string.h>

static const bp_size_classes *chunk_classes(const bp_chunk *chunk)
{
    return &chunk->engine->sc;
}

/* ---- free-run sets ---------------------------------------------------------------------- */

static uint64_t *avail_set(const bp_chunk *chunk, unsigned pc)
{
    return chunk->avail + (size_t)pc * chunk->avail_words;
}

static void avail_insert(bp_chunk *chunk, uint32_t offset, uint32_t pages)
{
    unsigned pc = bp_pages_to_page_class_floor(chunk_classes(chunk), pages);
    uint64_t *set = avail_set(chunk, pc);
    bp_assert(!(set[offset >> 6] >> (offset & 63) & 1));
    set[offset >> 6] |= (uint64_t)1 << (offset & 63);
    chunk->avail_count[pc]++;
    chunk->avail_mask |= (uint64_t)1 << pc;
    uint64_t handle = bp_handle_make(offset, pages, false, false);
    chunk->run_map[offset] = handle;
    chunk->run_map[offset + pages - 1] = handle;
}

static void avail_remove(bp_chunk *chunk, uint32_t offset, uint32_t pages)
{
    unsigned pc = bp_pages_to_page_class_floor(chunk_classes(chunk), pages);
    uint64_t *set = avail_set(chunk, pc);
    bp_assert(set[offset >> 6] >> (offset & 63) & 1);
    set[offset >> 6] &= ~((uint64_t)1 << (offset & 63));
    if (--chunk->avail_count[pc] == 0)
        chunk->avail_mask &= ~((uint64_t)1 << pc);
    chunk->run_map[offset] = 0;
    chunk->run_map[offset + pages - 1] = 0;
}

/* Lowest-offset free run filed under page class `pc` or above; -1 if none. */
static long avail_first_fit(const bp_chunk *chunk, unsigned pc)
{
    uint64_t classes = pc >= 64 ? 0 : chunk->avail_mask & (~(uint64_t)0 << pc);
    if (classes == 0)
        return -1;
    const uint64_t *set = avail_set(chunk, (unsigned)__builtin_ctzll(classes));
    for (uint32_t w = 0; w < chunk->avail_words; w++)
        if (set[w] != 0)
            return (long)w * 64 + __builtin_ctzll(set[w]);
    bp_fatal("chunk %p: free-run set marked non-empty holds no run", (void *)chunk->base);
}

/* Lowest-offset free run, from page class `pc` up, that holds `pages` pages starting at a
 * multiple of `align_pages`; -1 if none. Only aligned allocations above a page come here. */
static long avail_first_fit_aligned(const bp_chunk *chunk, unsigned pc, uint32_t pages,
                                    uint32_t align_pages)
{
    for (uint64_t classes = chunk->avail_mask & (~(uint64_t)0 << pc); classes != 0;
         classes &= classes - 1) {
        const uint64_t *set = avail_set(chunk, (unsigned)__builtin_ctzll(classes));
        for (uint32_t w = 0; w < chunk->avail_words; w++) {
            for (uint64_t bits = set[w]; bits != 0; bits &= bits - 1) {
                uint32_t off = w * 64 + (uint32_t)__builtin_ctzll(bits);
                uint32_t run_pages = bp_handle_pages(chunk->run_map[off]);
                uint32_t start = (off + align_pages - 1) & ~(align_pages - 1);
                if (start + pages <= off + run_pages)
                    return off;
            }
        }
    }
    return -1;
}

/* ---- dirty pages ------------------------------------------------------------------------ */

/* Sets (dirty = true) or clears the dirty bits of [first, first + n); returns how many bits
 * changed. */
static uint32_t mark_dirty(bp_chunk *chunk, uint32_t first, uint32_t n, bool dirty)
{
    uint32_t changed = 0;
    for (uint32_t page = first; page < first + n;) {
        uint32_t w = page >> 6, bit = page & 63, take = BP_MIN(64 - bit, first + n - page);
        uint64_t mask = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << bit;
        uint64_t before = chunk->dirty[w];
        chunk->dirty[w] = dirty ? before | mask : before & ~mask;
        changed += (uint32_t)__builtin_popcountll((before ^ chunk->dirty[w]) & mask);
        if (!dirty)
            chunk->dirty_old[w] &= ~mask;
        page += take;
    }
    return changed;
}

static bool ripe(const bp_chunk *chunk, uint32_t page, bool all)
{
    uint64_t bits = chunk->dirty[page >> 6];
    if (!all)
        bits &= chunk->dirty_old[page >> 6];
    return (bits >> (page & 63)) & 1;
}

size_t bp_chunk_purge(bp_chunk *chunk, bool all)
{
    const bp_os *os = &chunk->engine->memory.os;
    size_t purged = 0;
    for (uint32_t page = 0; page < chunk->npages;) {
        if (!ripe(chunk, page, all)) {
            page++;
            continue;
        }
        uint32_t end = page + 1; /* the run of ripe pages from here */
        while (end < chunk->npages && ripe(chunk, end, all))
            end++;
        void *addr = (void *)(chunk->base + ((uintptr_t)page << chunk->page_shift));
        size_t len = (size_t)(end - page) << chunk->page_shift;
        if (os->purge == NULL || os->purge(addr, len, os->ctx) != 0)
            break; /* the OS layer cannot purge: the pages stay as they are */
        chunk->dirty_pages -= mark_dirty(chunk, page, end - page, false);
        purged += len;
        page = end;
    }
    memcpy(chunk->dirty_old, chunk->dirty, chunk->avail_words * sizeof(uint64_t));
    return purged;
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* Where each array lies in a chunk's metadata mapping, which the chunk struct heads. */
typedef struct meta_layout {
    size_t info, run_map, avail, count, dirty, subpages, size;
} meta_layout;

static meta_layout layout_for(const bp_engine *engine)
{
    const bp_size_classes *sc = &engine->sc;
    uint32_t npages = sc->chunk_pages;
    size_t words = (npages + 63) / 64;
    size_t units = BP_MAX(engine->chunk_size, BP_MAP_GRANULE) >> BP_UNIT_SHIFT;
    meta_layout m;
    m.info = bp_align_up(sizeof(bp_chunk), 64);
    m.run_map = bp_align_up(m.info + units * sizeof(uint32_t), 8);
    m.avail = m.run_map + npages * sizeof(uint64_t);
    m.count = m.avail + (size_t)sc->npage_classes * words * sizeof(uint64_t);
    m.dirty = bp_align_up(m.count + sc->npage_classes * sizeof(uint32_t), 8);
    m.subpages = bp_align_up(m.dirty + 2 * words * sizeof(uint64_t), 64);
    m.size = bp_align_up(m.subpages + npages * bp_subpage_slot_size(engine->page_size), 4096);
    return m;
}

size_t bp_chunk_meta_size(const bp_engine *engine)
{
    return layout_for(engine).size;
}

/* Unmaps a chunk that could not be made whole: its memory and metadata (refused ranges stay
 * counted on the OS layer's stuck list). */
static void unmap_new(bp_engine *engine, void *memory, void *meta, size_t meta_size)
{
    bp_unpoison(memory, engine->chunk_size);
    bp_os_unmap_counted(&engine->memory, memory, engine->chunk_size, engine->chunk_size);
    bp_os_unmap_counted(&engine->memory, meta, meta_size, meta_size);
}

bp_chunk *bp_chunk_new(bp_engine *engine, bp_arena *arena)
{
    const bp_size_classes *sc = &engine->sc;
    uint32_t npages = sc->chunk_pages;
    uint32_t words = (npages + 63) / 64;
    meta_layout m = layout_for(engine);

    /* memory_limit counts what the chunk costs in mappings: its memory and its metadata */
    unsigned char *meta = bp_os_map_counted(&engine->memory, m.size, 4096);
    if (meta == NULL)
        return NULL;
    size_t align = BP_MAX(engine->chunk_size, BP_MAP_GRANULE);
    void *memory =
        bp_os_map_memory_counted(&engine->memory, engine->chunk_size, align, BP_MAP_CHUNK);
    if (memory == NULL) {
        bp_os_unmap_counted(&engine->memory, meta, m.size, m.size);
        return NULL;
    }
    bp_poison(memory, engine->chunk_size); /* ASan builds: nothing handed out yet */
    /* The OS layer hands out zeroed memory: every set, map and count starts at 0. */
    bp_chunk *chunk = (bp_chunk *)meta;
    chunk->base = (uintptr_t)memory;
    chunk->npages = npages;
    chunk->page_shift = (uint8_t)sc->page_shift;
    chunk->kind = BP_CHUNK_POOLED;
    chunk->unit_info = (uint32_t *)(meta + m.info);
    chunk->fast.unit_info_biased = bp_units_biased(chunk->unit_info, chunk->base);
    chunk->fast.slot = engine->fast_slot;
    chunk->arena = arena;
    chunk->engine = engine;
    chunk->pool = engine->pool;
    chunk->size = engine->chunk_size;
    chunk->map_size = engine->chunk_size;
    chunk->avail_words = words;
    chunk->run_map = (uint64_t *)(meta + m.run_map);
    chunk->avail = (uint64_t *)(meta + m.avail);
    chunk->avail_count = (uint32_t *)(meta + m.count);
    chunk->dirty = (uint64_t *)(meta + m.dirty);
    chunk->dirty_old = chunk->dirty + words;
    chunk->subpages = meta + m.subpages;
    chunk->subpage_stride = bp_subpage_slot_size(engine->page_size);
    chunk->meta_size = m.size;
    chunk->free_pages = npages;
    avail_insert(chunk, 0, npages);

    /* A region the layer refuses fails the chunk: a block outside any region would surprise
     * a program that hands every block's region to the kernel or to another process. */
    const bp_os *os = &engine->memory.os;
    if (bp_os_region_add(os, chunk->base, chunk->map_size, BP_MAP_CHUNK, &chunk->region) != 0) {
        unmap_new(engine, memory, meta, m.size);
        return NULL;
    }
    if (!bp_chunk_map_register(chunk->base, chunk->size, chunk)) {
        bp_os_region_remove(os, chunk->base, chunk->map_size, &chunk->region);
        unmap_new(engine, memory, meta, m.size);
        return NULL;
    }
    return chunk;
}

static bool chunk_delete(bp_chunk *chunk, bool keep)
{
    bp_os_memory *mem = &chunk->engine->memory;
    void *memory = (void *)chunk->base;
    /* Out of the map before the range can be mapped again (by any pool, any thread). */
    bp_chunk_map_unregister(chunk->base, chunk->size);
    bp_os_region_remove(&mem->os, chunk->base, chunk->map_size, &chunk->region);
    bp_unpoison(memory, chunk->map_size);
    if (bp_os_unmap(&mem->os, memory, chunk->map_size) != 0) {
        if (keep) {
            /* Still mapped, so back in its region; where the layer refuses that, the chunk
             * is kept without one (bp_region_of then answers ENOENT for its blocks). */
            if (bp_os_region_add(&mem->os, chunk->base, chunk->map_size, BP_MAP_CHUNK,
                                 &chunk->region) != 0)
                bp_message("chunk %p: its region could not be added again", memory);
            /* The entries go back into table pages that are writable already. */
            if (!bp_chunk_map_register(chunk->base, chunk->size, chunk))
                bp_fatal("chunk %p: cannot register it again", memory);
            bp_poison(memory, chunk->map_size);
            bp_chunk_purge(chunk, true); /* the dirty bits of what the OS layer purged */
            return false;
        }
        /* a pool being destroyed: the memory stays mapped, purged, unreachable */
    }
    bp_os_uncount(mem, chunk->map_size);
    bp_os_unmap_counted(mem, chunk, chunk->meta_size, chunk->meta_size);
    return true;
}

bool bp_chunk_try_delete(bp_chunk *chunk)
{
    return chunk_delete(chunk, true);
}

void bp_chunk_delete(bp_chunk *chunk)
{
    chunk_delete(chunk, false);
}

/* ---- runs ------------------------------------------------------------------------------- */

static void mark_used(bp_chunk *chunk, uint32_t offset, uint32_t pages, unsigned cls, bool subpage)
{
    uint64_t handle = bp_handle_make(offset, pages, true, subpage);
    chunk->run_map[offset] = handle;
    chunk->run_map[offset + pages - 1] = handle;
    uint32_t info = bp_info_make(cls, offset, subpage);
    unsigned unit_shift = chunk->page_shift - BP_UNIT_SHIFT;
    uint32_t *first = &chunk->unit_info[(size_t)offset << unit_shift];
    if (subpage) {
        for (size_t i = 0; i < (size_t)pages << unit_shift; i++)
            first[i] = info;
    } else {
        first[0] = info;
    }
}

long bp_chunk_alloc_run(bp_chunk *chunk, unsigned cls, uint32_t align_pages, bool subpage)
{
    const bp_size_classes *sc = chunk_classes(chunk);
    uint32_t pages = bp_class_run_pages(sc, cls, subpage);
    if (pages > chunk->free_pages)
        return -1;
    unsigned pc = bp_pages_to_page_class_ceil(sc, pages);
    long found = align_pages == 1 ? avail_first_fit(chunk, pc)
                                  : avail_first_fit_aligned(chunk, pc, pages, align_pages);
    if (found < 0)
        return -1;
    uint32_t run = (uint32_t)found;
    uint32_t run_pages = bp_handle_pages(chunk->run_map[run]);
    avail_remove(chunk, run, run_pages);

    uint32_t start = (run + align_pages - 1) & ~(align_pages - 1);
    if (start > run)
        avail_insert(chunk, run, start - run);
    uint32_t end = start + pages;
    if (run + run_pages > end)
        avail_insert(chunk, end, run + run_pages - end);
    mark_used(chunk, start, pages, cls, subpage);
    chunk->free_pages -= pages;
    chunk->dirty_pages -= mark_dirty(chunk, start, pages, false);
    return start;
}

void bp_chunk_free_run(bp_chunk *chunk, uint32_t offset, uint32_t pages)
{
    uint64_t handle = chunk->run_map[offset];
    bp_assert(bp_handle_used(handle) && bp_handle_offset(handle) == offset &&
              bp_handle_pages(handle) == pages);
    unsigned unit_shift = chunk->page_shift - BP_UNIT_SHIFT;
    uint32_t *first = &chunk->unit_info[(size_t)offset << unit_shift];
    if (bp_handle_subpage(handle))
        memset(first, 0, ((size_t)pages << unit_shift) * sizeof(uint32_t));
    else
        first[0] = 0;
    chunk->run_map[offset] = 0;
    chunk->run_map[offset + pages - 1] = 0;
    chunk->free_pages += pages;
    chunk->dirty_pages += mark_dirty(chunk, offset, pages, true);

    /* Coalesce with the free run ending just before and the one starting just after. */
    if (offset > 0) {
        uint64_t before = chunk->run_map[offset - 1];
        if (before != 0 && !bp_handle_used(before)) {
            uint32_t before_offset = bp_handle_offset(before);
            uint32_t before_pages = bp_handle_pages(before);
            avail_remove(chunk, before_offset, before_pages);
            offset = before_offset;
            pages += before_pages;
        }
    }
    if (offset + pages < chunk->npages) {
        uint64_t after = chunk->run_map[offset + pages];
        if (after != 0 && !bp_handle_used(after)) {
            uint32_t after_pages = bp_handle_pages(after);
            avail_remove(chunk, offset + pages, after_pages);
            pages += after_pages;
        }
    }
    avail_insert(chunk, offset, pages);
}

/* ---- invariant walker ------------------------------------------------------------------- */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            bp_message("check: chunk %p: " __VA_ARGS__);                                           \
            problems++;                                                                            \
        }                                                                                          \
    } while (0)

/* Every unit of pages [off, off+pages), but the first `skip`, holds `info`. */
static bool units_equal_from(const bp_chunk *chunk, uint32_t off, uint32_t pages, size_t skip,
                             uint32_t info)
{
    unsigned unit_shift = chunk->page_shift - BP_UNIT_SHIFT;
    const uint32_t *first = &chunk->unit_info[(size_t)off << unit_shift];
    for (size_t i = skip; i < (size_t)pages << unit_shift; i++)
        if (first[i] != info)
            return false;
    return true;
}

static bool any_dirty(const bp_chunk *chunk, uint32_t off, uint32_t pages)
{
    for (uint32_t p = off; p < off + pages; p++)
        if ((chunk->dirty[p >> 6] >> (p & 63)) & 1)
            return true;
    return false;
}

static bool units_equal(const bp_chunk *chunk, uint32_t off, uint32_t pages, uint32_t info)
{
    return units_equal_from(chunk, off, pages, 0, info);
}

int bp_chunk_check(const bp_chunk *chunk)
{
    const bp_size_classes *sc = chunk_classes(chunk);
    void *at = (void *)chunk->base;
    int problems = 0;
    uint32_t free_pages = 0, free_runs = 0;
    bool previous_free = false;

    for (uint32_t off = 0; off < chunk->npages && problems < 16;) {
        uint64_t h = chunk->run_map[off];
        uint32_t pages = bp_handle_pages(h);
        if (h == 0 || bp_handle_offset(h) != off || pages == 0 || off + pages > chunk->npages) {
            CHECK(0, "page %u starts no run (run_map %#llx)", at, off, (unsigned long long)h);
            break;
        }
        CHECK(chunk->run_map[off + pages - 1] == h, "run %u+%u: last page disagrees", at, off,
              pages);
        for (uint32_t i = off + 1; i + 1 < off + pages; i++)
            CHECK(chunk->run_map[i] == 0, "run %u+%u: interior page %u in run_map", at, off, pages,
                  i);
        if (!bp_handle_used(h)) {
            unsigned pc = bp_pages_to_page_class_floor(sc, pages);
            CHECK(!previous_free, "free run %u+%u follows a free run", at, off, pages);
            CHECK(avail_set(chunk, pc)[off >> 6] >> (off & 63) & 1,
                  "free run %u+%u missing from its set %u", at, off, pages, pc);
            CHECK(units_equal(chunk, off, pages, 0), "free run %u+%u has unit_info", at, off,
                  pages);
            free_pages += pages;
            free_runs++;
            previous_free = true;
        } else if (bp_handle_subpage(h)) {
            const bp_subpage *sp = bp_chunk_subpage(chunk, off);
            CHECK(sp->chunk == chunk && sp->run_offset == off && sp->run_pages == pages,
                  "subpage at %u does not describe its run", at, off);
            CHECK(sc->run_pages[sp->class_index] == pages, "subpage at %u has %u pages", at, off,
                  pages);
            CHECK(units_equal(chunk, off, pages, bp_info_make(sp->class_index, off, true)),
                  "subpage at %u: unit_info disagrees", at, off);
            problems += bp_subpage_check(sp);
            CHECK(!any_dirty(chunk, off, pages), "used run %u+%u has dirty pages", at, off, pages);
            previous_free = false;
        } else {
            uint32_t info = bp_chunk_page_info(chunk, off);
            CHECK(info != 0 && !(info & BP_INFO_SUBPAGE_BIT) && bp_info_run(info) == off &&
                      bp_class_run_pages(sc, bp_info_class(info), false) == pages,
                  "run %u+%u has unit_info %#x", at, off, pages, info);
            CHECK(units_equal_from(chunk, off, pages, 1, 0),
                  "run %u+%u: interior units have unit_info", at, off, pages);
            CHECK(!any_dirty(chunk, off, pages), "used run %u+%u has dirty pages", at, off, pages);
            previous_free = false;
        }
        off += pages;
    }
    for (size_t g = 0; g < chunk->size; g += BP_MAP_GRANULE)
        CHECK(bp_chunk_map_lookup(chunk->base + g) == chunk, "granule +%zu not mapped to it", at,
              g);
    size_t units = BP_MAX(chunk->size, BP_MAP_GRANULE) >> BP_UNIT_SHIFT;
    for (size_t u = chunk->size >> BP_UNIT_SHIFT; u < units; u++)
        CHECK(chunk->unit_info[u] == 0, "unit %zu past the chunk's end has unit_info", at, u);
    uint32_t dirty = 0;
    for (uint32_t w = 0; w < chunk->avail_words; w++)
        dirty += (uint32_t)__builtin_popcountll(chunk->dirty[w]);
    CHECK(dirty == chunk->dirty_pages, "%u dirty bits, dirty_pages %u", at, dirty,
          chunk->dirty_pages);
    CHECK(free_pages == chunk->free_pages, "free pages %u, counted %u", at, chunk->free_pages,
          free_pages);
    uint32_t in_sets = 0;
    for (unsigned pc = 0; pc < sc->npage_classes; pc++) {
        uint32_t n = 0;
        for (uint32_t w = 0; w < chunk->avail_words; w++)
            n += (uint32_t)__builtin_popcountll(avail_set(chunk, pc)[w]);
        CHECK(n == chunk->avail_count[pc], "set %u holds %u runs, count says %u", at, pc, n,
              chunk->avail_count[pc]);
        CHECK(((chunk->avail_mask >> pc) & 1) == (n != 0), "set %u: mask bit wrong", at, pc);
        in_sets += n;
    }
    CHECK(in_sets == free_runs, "%u runs in sets, %u free runs", at, in_sets, free_runs);
    return problems;
}

bp_chunk_usage_walk bp_chunk_walk(const bp_chunk *chunk)
{
    const bp_size_classes *sc = chunk_classes(chunk);
    bp_chunk_usage_walk walk = {0, 0};
    bp_chunk_run run;
    for (uint32_t next = 0; bp_chunk_next_run(chunk, &next, &run);) {
        if (run.subpage != NULL) {
            const bp_subpage *sp = run.subpage;
            walk.active_bytes += (size_t)(sp->elem_count - sp->free_count) * sp->elem_size;
            walk.subpages_with_free += sp->free_count > 0;
        } else if (run.used) {
            walk.active_bytes += sc->size[bp_info_class(bp_chunk_page_info(chunk, run.offset))];
        }
    }
    return walk;
}
