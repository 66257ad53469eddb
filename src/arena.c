/* arena.c — an arena: the lock, the subpage pools per small class, the chunk lists, huge
 * blocks and the counters; the slow paths of allocation and free all end here. */
#include "arena.h"
#include "chunk_map.h"
#include "track.h"

#include <string.h>
#include <time.h>

/* Half-used chunks first, so memory concentrates in few chunks and the others empty out;
 * q075 last because its chunks have little left; q100 never. */
static const int alloc_order[] = {BP_Q050, BP_Q025, BP_Q000, BP_QINIT, BP_Q075};
_Static_assert(sizeof alloc_order / sizeof alloc_order[0] == BP_NLISTS - 1, "all lists but q100");

/* Descriptors of huge blocks come from slabs mapped per arena, so a huge allocation costs one
 * mapping (its memory) and its metadata stays out of it. */
#define DESC_SLAB_SIZE ((size_t)64 << 10)

typedef struct desc_slab {
    struct desc_slab *next;
} desc_slab;

/* A huge block's descriptor: the bp_chunk the other files read, then what only the arena
 * needs. desc_take makes every huge bp_chunk, so each is the first member of one. */
typedef struct huge_desc {
    bp_chunk chunk;
    size_t align; /* what the memory's address must stay a multiple of: the alignment the
                   * block was asked with, at least the chunk map's granule */
} huge_desc;

static huge_desc *desc_of(bp_chunk *huge)
{
    return (huge_desc *)huge;
}

/* A huge mapping let go under the lock, waiting in arena->unmap_pending for arena_unlock to
 * unmap it: this node lives in its first bytes. `counted`: what memory_limit still counts. */
typedef struct pending_unmap {
    struct pending_unmap *next;
    size_t size, counted;
} pending_unmap;

/* Checked builds keep this many freed huge blocks per arena mapped (purged, uncounted) before
 * unmapping the oldest: a new huge block cannot take the address of a block freed since, so a
 * second free of that block is reported instead of freeing the new one. */
#define HUGE_QUARANTINE 8

void bp_arena_init(bp_arena *arena, bp_engine *engine, unsigned index)
{
    memset(arena, 0, sizeof *arena);
    arena->lock = (bp_lock)BP_LOCK_INIT;
    arena->engine = engine;
    arena->pool = engine->pool;
    arena->index = index;
    bp_chunk_lists_init(arena->lists, engine->sc.chunk_pages);
    for (unsigned cls = 0; cls < BP_MAX_CLASSES; cls++)
        bp_subpage_pool_init(&arena->small[cls]);
}

/* ---- huge mappings unmapped after the lock ---------------------------------------------
 * Giving a large range back takes the kernel a while (tens of microseconds for tens of MiB),
 * and every thread of the arena would wait for it. So a huge mapping let go under the lock
 * is only taken out of the chunk map there and queued on unmap_pending (the node lives in the
 * range's first bytes); arena_unlock unmaps the queue after the release. memory_limit stays
 * exact: a range's bytes are uncounted after its unmap succeeded, and one the OS refuses
 * joins the OS layer's stuck list, still counted. */

static void desc_give(bp_arena *arena, bp_chunk *desc);

/* Under the lock: the huge block's range queued for unmapping, its descriptor given back;
 * `counted` is what memory_limit still counts for it. */
static void defer_unmap_huge(bp_arena *arena, bp_chunk *huge, size_t counted)
{
    uintptr_t base = huge->base;
    size_t size = huge->map_size;
    bp_chunk_map_unregister(base, BP_MAP_GRANULE); /* before the range can be mapped again */
    bp_os_region_remove(&arena->engine->memory.os, base, size, &huge->region); /* before unmap */
    bp_unpoison((void *)base, size); /* the range may be reused */
    desc_give(arena, huge);
    pending_unmap *r = (pending_unmap *)base;
    r->next = arena->unmap_pending;
    r->size = size;
    r->counted = counted;
    arena->unmap_pending = r;
}

/* Outside the lock: the queued ranges unmapped (refused ones stay counted on the OS layer's
 * stuck list); the bytes unmapped. */
static bp_noinline size_t unmap_queued(bp_arena *arena, pending_unmap *queue)
{
    size_t released = 0;
    while (queue != NULL) {
        pending_unmap *r = queue;
        queue = r->next;
        size_t size = r->size, counted = r->counted; /* the node goes with the range */
        released += bp_os_unmap_counted(&arena->engine->memory, r, size, counted);
    }
    return released;
}

/* Releases the lock, then unmaps what was queued under it; the bytes unmapped. Every release
 * of the lock after work that may let a huge mapping go is this. */
bp_inline size_t arena_unlock(bp_arena *arena)
{
    pending_unmap *queue = arena->unmap_pending;
    if (bp_likely(queue == NULL)) {
        bp_lock_release(&arena->lock);
        return 0;
    }
    arena->unmap_pending = NULL;
    bp_lock_release(&arena->lock);
    return unmap_queued(arena, queue);
}

/* ---- the huge cache ----------------------------------------------------------------------
 * A freed huge mapping stays mapped (registered as HUGE_FREED, counted in mapped_bytes, its
 * pages still backed) so that the next huge block of about its size skips the mapping and
 * the page faults. Best fit, at most 25 % larger than asked; oldest out first when the
 * slots or huge_cache_bytes run out; unmapped after purge_decay_ms unused, by trim and by
 * the reclaim before an allocation fails. */

/* Under the lock: entry i out of the cache (still mapped and counted). */
static bp_chunk *huge_cache_remove(bp_arena *arena, unsigned i)
{
    bp_chunk *huge = arena->huge_cache[i].huge;
    arena->huge_cached_bytes -= huge->map_size;
    arena->nhuge_cached--;
    memmove(&arena->huge_cache[i], &arena->huge_cache[i + 1],
            (arena->nhuge_cached - i) * sizeof arena->huge_cache[0]);
    return huge;
}

/* Under the lock: the smallest cached mapping of map_size..map_size * 5/4 bytes aligned to
 * align, out of the cache, or NULL. */
static bp_chunk *huge_cache_take(bp_arena *arena, size_t map_size, size_t align)
{
    unsigned best = arena->nhuge_cached;
    for (unsigned i = 0; i < arena->nhuge_cached; i++) {
        const bp_chunk *c = arena->huge_cache[i].huge;
        if (c->map_size >= map_size && c->map_size - map_size <= map_size / 4 &&
            (c->base & (align - 1)) == 0 &&
            (best == arena->nhuge_cached || c->map_size < arena->huge_cache[best].huge->map_size))
            best = i;
    }
    if (best == arena->nhuge_cached)
        return NULL;
    bp_chunk *huge = huge_cache_remove(arena, best);
    bp_unpoison((void *)huge->base, huge->map_size);
    return huge;
}

/* At destroy: a huge block (live, cached or quarantined) out of the chunk map and unmapped,
 * or kept on the OS layer's stuck list; returns the bytes unmapped. */
static size_t release_huge_memory(bp_arena *arena, bp_chunk *huge)
{
    size_t counted = huge->kind == BP_CHUNK_HUGE_FREED ? 0 : huge->map_size;
    bp_chunk_map_unregister(huge->base, BP_MAP_GRANULE);
    bp_os_region_remove(&arena->engine->memory.os, huge->base, huge->map_size, &huge->region);
    bp_unpoison((void *)huge->base, huge->map_size); /* quarantined: the range may be reused */
    return bp_os_unmap_counted(&arena->engine->memory, (void *)huge->base, huge->map_size, counted);
}

/* At destroy: cache entry i unmapped (counted bytes uncounted) or kept stuck. */
static void release_cached(bp_arena *arena, unsigned i)
{
    bp_chunk *huge = huge_cache_remove(arena, i);
    huge->kind = BP_CHUNK_HUGE; /* counted, unlike a quarantined block */
    release_huge_memory(arena, huge);
    desc_give(arena, huge);
}

/* Under the lock: cache entry i queued for unmapping (arena_unlock). */
static void defer_cached(bp_arena *arena, unsigned i)
{
    bp_chunk *huge = huge_cache_remove(arena, i);
    defer_unmap_huge(arena, huge, huge->map_size);
}

/* Under the lock: a freed huge block (off the live list, uncounted as active, still counted
 * in mapped_bytes) kept for reuse, older entries released to make room; false when it cannot
 * be kept (no cache, or larger than the bound). */
static bool huge_cache_put(bp_arena *arena, bp_chunk *huge)
{
    const bp_engine *cfg = arena->engine;
    if (cfg->purge_decay_ms == 0 || huge->map_size > cfg->huge_cache_bytes)
        return false;
    while (arena->nhuge_cached == BP_HUGE_CACHE_SLOTS ||
           arena->huge_cached_bytes + huge->map_size > cfg->huge_cache_bytes)
        defer_cached(arena, 0);
    bp_poison((void *)huge->base, huge->map_size); /* ASan builds: a use after free */
    huge->kind = BP_CHUNK_HUGE_FREED;
    arena->huge_cache[arena->nhuge_cached].huge = huge;
    arena->huge_cache[arena->nhuge_cached].freed_ms = bp_now_ms();
    arena->nhuge_cached++;
    arena->huge_cached_bytes += huge->map_size;
    return true;
}

/* Under the lock: the cached mappings unused for the decay time queued for unmapping. */
static void huge_cache_decay(bp_arena *arena, uint64_t now, int decay)
{
    while (arena->nhuge_cached > 0 && arena->huge_cache[0].freed_ms + (uint64_t)decay <= now)
        defer_cached(arena, 0);
}

void bp_arena_destroy(bp_arena *arena)
{
    for (int i = 0; i < BP_NLISTS; i++) {
        while (arena->lists[i].head != NULL) {
            bp_chunk *chunk = arena->lists[i].head;
            bp_chunk_list_remove(&arena->lists[i], chunk);
            bp_chunk_delete(chunk);
        }
    }
    while (arena->retained != NULL) {
        bp_chunk *chunk = arena->retained;
        arena->retained = chunk->next;
        bp_chunk_delete(chunk);
    }
    for (bp_chunk *huge = arena->huge; huge != NULL; huge = huge->next)
        release_huge_memory(arena, huge);
    for (bp_chunk *freed = arena->quarantine; freed != NULL; freed = freed->next)
        release_huge_memory(arena, freed);
    while (arena->nhuge_cached > 0)
        release_cached(arena, 0);
    for (desc_slab *slab = arena->desc_slabs; slab != NULL;) {
        desc_slab *next = slab->next;
        bp_os_unmap_counted(&arena->engine->memory, slab, DESC_SLAB_SIZE, DESC_SLAB_SIZE);
        slab = next;
    }
}

/* ---- runs from the chunk lists ---------------------------------------------------------- */

static void purge_tick(bp_arena *arena);

/* Under the lock: a run for class `cls` from the first chunk that has room, in list order,
 * or from a new chunk filed into qInit. NULL when the OS refuses a new chunk. */
static bp_chunk *alloc_run(bp_arena *arena, unsigned cls, uint32_t align_pages, bool subpage,
                           uint32_t *offset)
{
    uint32_t need = bp_class_run_pages(&arena->engine->sc, cls, subpage);
    unsigned pc = bp_pages_to_page_class_ceil(&arena->engine->sc, need);
    purge_tick(arena);
    for (size_t i = 0; i < sizeof alloc_order / sizeof alloc_order[0]; i++) {
        bp_chunk_list *list = &arena->lists[alloc_order[i]];
        if (need > list->max_run_pages)
            continue;
        for (bp_chunk *chunk = list->head; chunk != NULL; chunk = chunk->next) {
            if (!bp_chunk_may_fit(chunk, pc))
                continue;
            long off = bp_chunk_alloc_run(chunk, cls, align_pages, subpage);
            if (off >= 0) {
                bp_chunk_list_after_alloc(chunk);
                *offset = (uint32_t)off;
                return chunk;
            }
        }
    }
    bp_chunk *chunk = arena->retained;
    if (chunk != NULL) { /* an empty chunk kept for this: no mapping, no churn */
        arena->retained = chunk->next;
        arena->nretained--;
        arena->counters.chunks_reused++;
    } else {
        chunk = bp_chunk_new(arena->engine, arena);
        if (chunk == NULL)
            return NULL;
        arena->counters.chunks_mapped++;
        arena->counters.chunk_bytes += chunk->size;
    }
    long off = bp_chunk_alloc_run(chunk, cls, align_pages, subpage);
    bp_assert(off >= 0);
    bp_chunk_list_add(&arena->lists[BP_QINIT], chunk);
    *offset = (uint32_t)off;
    return chunk;
}

/* Under the lock. A chunk the OS refuses to unmap stays with the arena, empty and purged, as a
 * retained chunk beyond retained_chunks: the next chunk the arena needs costs no mapping (at
 * vm.max_map_count a new one could not be had), and the next trim tries again. */
static void unmap_chunk(bp_arena *arena, bp_chunk *chunk)
{
    size_t size = chunk->size;
    /* a range refused just now is not retried */
    bool stuck_before = bp_os_has_stuck(&arena->engine->memory);
    if (!bp_chunk_try_delete(chunk)) {
        chunk->next = arena->retained;
        arena->retained = chunk;
        arena->nretained++;
        return;
    }
    arena->counters.chunks_unmapped++;
    arena->counters.chunk_bytes -= size;
    if (bp_unlikely(stuck_before))
        bp_os_retry_stuck(&arena->engine->memory);
}

/* Purges every chunk's pages that were already dirty at the previous epoch: a freed page is
 * given back between decay/2 and decay after it was freed. Runs in the slow paths, under the
 * lock, at most once an epoch, and from the background thread when the pool has one. */
static void purge_tick(bp_arena *arena)
{
    int decay = arena->engine->purge_decay_ms;
    if (decay <= 0)
        return;
    uint64_t now = bp_now_ms();
    if (now < arena->next_purge_ms)
        return;
    arena->next_purge_ms = now + (uint64_t)BP_MAX(decay / 2, 1);
    huge_cache_decay(arena, now, decay);
    for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);)
        if (w.chunk->dirty_pages != 0)
            arena->counters.purged_bytes += bp_chunk_purge(w.chunk, false);
}

void bp_arena_purge_decayed(bp_arena *arena)
{
    bp_lock_acquire(&arena->lock);
    purge_tick(arena);
    arena_unlock(arena);
}

/* Under the lock, after a run went back to `chunk`: file it by its new usage; a chunk that
 * emptied out of q000 is retained for reuse (up to retained_chunks) or unmapped. With a decay
 * of 0 the freed pages are purged at once. */
static void after_run_free(bp_arena *arena, bp_chunk *chunk)
{
    if (bp_chunk_list_after_free(chunk)) {
        if (arena->nretained < arena->engine->retained_chunks) {
            chunk->next = arena->retained;
            arena->retained = chunk;
            arena->nretained++;
        } else {
            unmap_chunk(arena, chunk);
            chunk = NULL;
        }
    }
    if (chunk != NULL && arena->engine->purge_decay_ms == 0)
        arena->counters.purged_bytes += bp_chunk_purge(chunk, true);
    purge_tick(arena);
}

static void *run_address(const bp_chunk *chunk, uint32_t offset)
{
    return (void *)(chunk->base + ((uintptr_t)offset << chunk->page_shift));
}

/* ---- allocation ------------------------------------------------------------------------- */

static void *alloc_small_locked(bp_arena *arena, unsigned cls)
{
    bp_assert(bp_lock_held(&arena->lock));
    bp_subpage_link *head = &arena->small[cls];
    bp_subpage *sp = head->next;
    if (sp == (bp_subpage *)head) {
        uint32_t off;
        bp_chunk *chunk = alloc_run(arena, cls, 1, true, &off);
        if (chunk == NULL)
            return NULL;
        sp = bp_chunk_subpage(chunk, off);
        bp_subpage_init(sp, chunk, chunk->base + ((uintptr_t)off << chunk->page_shift), off, cls,
                        &arena->engine->sc);
        bp_subpage_pool_push(head, sp);
    }
    uint32_t idx = bp_subpage_take(sp);
    if (sp->free_count == 0)
        bp_subpage_pool_remove(sp);
    arena->counters.alloc_small++;
    arena->counters.classes[cls].allocs++;
    arena->counters.active_bytes += sp->elem_size;
    return (char *)run_address(sp->chunk, sp->run_offset) + (size_t)idx * sp->elem_size;
}

static void *alloc_normal_locked(bp_arena *arena, unsigned cls, uint32_t align_pages)
{
    bp_assert(bp_lock_held(&arena->lock));
    bp_run_cache *rc = &arena->run_cache[cls];
    void *p;
    if (rc->count > 0 && align_pages == 1) {
        p = rc->runs[--rc->count];
    } else {
        uint32_t off;
        bp_chunk *chunk = alloc_run(arena, cls, align_pages, false, &off);
        if (chunk == NULL)
            return NULL;
        p = run_address(chunk, off);
    }
    arena->counters.alloc_normal++;
    arena->counters.classes[cls].allocs++;
    arena->counters.active_bytes += arena->engine->sc.size[cls];
    return p;
}

unsigned bp_arena_alloc_batch(bp_arena *arena, unsigned cls, void **out, unsigned n)
{
    bool small = bp_class_is_small(&arena->engine->sc, cls);
    unsigned got = 0;
    bp_lock_acquire(&arena->lock);
    arena->counters.lock_allocs++;
    for (; got < n; got++) {
        void *p = small ? alloc_small_locked(arena, cls) : alloc_normal_locked(arena, cls, 1);
        if (p == NULL)
            break;
        out[got] = p;
    }
    arena->counters.classes[cls].cache_fills += got; /* only thread caches refill in batches */
    arena_unlock(arena);
    return got;
}

/* ---- the uncached normal classes' pair ---------------------------------------------------
 * A class too large for thread caches allocates and frees through its arena every time; the
 * common case is a run cache hit both ways. bp_arena_alloc and bp_arena_free serve that case
 * with no call and no callee-saved register: the lock taken without a call, the pop or push,
 * the counters, the release; every other case (the lock contended, a small class, an empty
 * or full cache, a misuse to report, a waiter to wake) is one tail call. Nothing on that path
 * can let a huge mapping go, so its release needs no arena_unlock. */

/* bp_lock_release's wake, as a tail call that keeps nothing live. */
static bp_noinline void *wake_returning(bp_lock *lock, void *p)
{
    bp_lock_wake(lock);
    return p;
}

static bp_noinline void *alloc_slow(bp_arena *arena, unsigned cls, bool locked)
{
    if (!locked)
        bp_lock_acquire(&arena->lock);
    arena->counters.lock_allocs++;
    void *p = bp_class_is_small(&arena->engine->sc, cls) ? alloc_small_locked(arena, cls)
                                                         : alloc_normal_locked(arena, cls, 1);
    arena_unlock(arena);
    return p;
}

void *bp_arena_alloc(bp_arena *arena, unsigned cls)
{
    if (bp_unlikely(!bp_lock_try(&arena->lock)))
        return alloc_slow(arena, cls, false);
    bp_run_cache *rc = &arena->run_cache[cls]; /* small classes' caches stay empty */
    if (bp_unlikely(rc->count == 0))
        return alloc_slow(arena, cls, true);
    void *p = rc->runs[--rc->count];
    arena->counters.lock_allocs++;
    arena->counters.alloc_normal++;
    arena->counters.classes[cls].allocs++;
    arena->counters.active_bytes += arena->engine->sc.size[cls];
    if (bp_unlikely(bp_lock_release_wants_wake(&arena->lock)))
        return wake_returning(&arena->lock, p);
    return p;
}

/* Alignments up to a page are met by the class (its size is a multiple of align, and runs
 * start on pages); larger ones by a whole run placed at an aligned page. */
void *bp_arena_alloc_aligned(bp_arena *arena, unsigned cls, size_t align)
{
    size_t page = arena->engine->page_size;
    if (align <= page)
        return bp_arena_alloc(arena, cls);
    bp_lock_acquire(&arena->lock);
    void *p = alloc_normal_locked(arena, cls, (uint32_t)(align / page));
    arena_unlock(arena);
    return p;
}

static bp_chunk *desc_take(bp_arena *arena)
{
    if (arena->desc_free == NULL) {
        /* memory_limit counts descriptors too */
        desc_slab *slab = bp_os_map_counted(&arena->engine->memory, DESC_SLAB_SIZE, 4096);
        if (slab == NULL)
            return NULL;
        slab->next = arena->desc_slabs;
        arena->desc_slabs = slab;
        size_t first = bp_align_up(sizeof(desc_slab), 64);
        size_t stride = bp_align_up(sizeof(huge_desc), 64);
        for (size_t off = first; off + stride <= DESC_SLAB_SIZE; off += stride) {
            bp_chunk *desc = (bp_chunk *)((char *)slab + off);
            desc->next = arena->desc_free;
            arena->desc_free = desc;
        }
    }
    bp_chunk *desc = arena->desc_free;
    arena->desc_free = desc->next;
    memset(desc_of(desc), 0, sizeof(huge_desc));
    return desc;
}

static void desc_give(bp_arena *arena, bp_chunk *desc)
{
    desc->kind = 0;
    desc->next = arena->desc_free;
    arena->desc_free = desc;
}

void *bp_arena_alloc_huge(bp_arena *arena, size_t size, size_t align)
{
    return bp_arena_alloc_huge_cleared(arena, size, align, false);
}

/* Under the lock: a cached mapping taken out of the cache (still registered and counted)
 * made a live block of map_size bytes (its usable size; the slack stays mapped). */
static void huge_reuse_locked(bp_arena *arena, bp_chunk *huge, size_t map_size, size_t align)
{
    bp_assert(bp_lock_held(&arena->lock));
    huge->kind = BP_CHUNK_HUGE;
    desc_of(huge)->align = BP_MAX(align, BP_MAP_GRANULE);
    huge->size = map_size;
    arena->huge_slack_bytes += huge->map_size - map_size;
    bp_list_push(&arena->huge, huge, prev, next);
    arena->counters.alloc_huge++;
    arena->counters.active_bytes += map_size;
    arena->counters.huge_bytes += map_size;
}

/* Under the lock, when no cached mapping fits as it is (huge_cache_take) and the OS layer
 * resizes mappings (the default one, with mremap): the cached mapping whose pages serve a
 * block of map_size bytes best once resized, out of the cache, or NULL. The smallest larger
 * one first (cut down: no page faults at all), else the largest smaller one (grown: faults
 * for the growth only), so a program whose huge blocks vary in size still reuses pages. */
static bp_chunk *huge_cache_take_resizable(bp_arena *arena, size_t map_size, size_t align)
{
    bp_assert(bp_lock_held(&arena->lock));
    unsigned n = arena->nhuge_cached, above = n, below = n;
    if (n == 0 || !bp_os_can_remap(&arena->engine->memory.os))
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        size_t have = arena->huge_cache[i].huge->map_size;
        if ((arena->huge_cache[i].huge->base & (align - 1)) != 0)
            continue;
        if (have >= map_size && (above == n || have < arena->huge_cache[above].huge->map_size))
            above = i;
        if (have < map_size && (below == n || have > arena->huge_cache[below].huge->map_size))
            below = i;
    }
    unsigned pick = above != n ? above : below;
    if (pick == n)
        return NULL;
    bp_chunk *huge = huge_cache_remove(arena, pick);
    bp_unpoison((void *)huge->base, huge->map_size);
    return huge;
}

static uintptr_t move_huge(bp_chunk *huge, size_t map_size);

/* Outside the lock: a mapping out of the cache resized to map_size bytes at `align`, its pages
 * kept (cut where it lies; grown in place or moved); false, the mapping as it was, when the
 * OS or memory_limit refused. */
static bool resize_cached(bp_arena *arena, bp_chunk *huge, size_t map_size, size_t align)
{
    bp_os_memory *mem = &arena->engine->memory;
    size_t have = huge->map_size;
    if (map_size < have) {
        if (!bp_os_remap_in_place((void *)huge->base, have, map_size))
            return false;
        bp_os_uncount(mem, have - map_size);
    } else if (map_size > have) {
        if (!bp_os_count(mem, map_size - have))
            return false;
        uintptr_t moved = huge->base;
        desc_of(huge)->align = BP_MAX(align, BP_MAP_GRANULE);
        if (!bp_os_remap_in_place((void *)huge->base, have, map_size)) {
            moved = move_huge(huge, map_size);
            if (moved == 0) {
                bp_os_uncount(mem, map_size - have);
                return false;
            }
        }
        huge->base = moved;
        huge->fast.unit_info_biased = bp_units_biased(bp_zero_units, moved);
    }
    huge->map_size = map_size;
    bp_unpoison((void *)huge->base, map_size);
    return true;
}

void *bp_arena_alloc_huge_cleared(bp_arena *arena, size_t size, size_t align, bool zero)
{
    bp_engine *engine = arena->engine;
    if (size > SIZE_MAX / 2)
        return NULL;
    /* size 0 (an alignment above the chunk size asked for nothing) still takes a page: every
     * block has its own address and can be freed */
    size_t map_size = bp_align_up(BP_MAX(size, 1), engine->page_size);
    align = BP_MAX(align, BP_MAP_GRANULE);
    bp_lock_acquire(&arena->lock);
    purge_tick(arena);
    bp_chunk *reused = huge_cache_take(arena, map_size, align);
    bp_chunk *resized = reused == NULL ? huge_cache_take_resizable(arena, map_size, align) : NULL;
    if (reused != NULL)
        huge_reuse_locked(arena, reused, map_size, align);
    arena_unlock(arena);
    if (resized != NULL) {
        bool done = resize_cached(arena, resized, map_size, align);
        bp_lock_acquire(&arena->lock);
        if (done) {
            huge_reuse_locked(arena, resized, map_size, align);
            reused = resized;
        } else {
            defer_unmap_huge(arena, resized, resized->map_size); /* still counted */
        }
        arena_unlock(arena);
    }
    if (reused != NULL) {
        if (zero)
            memset((void *)reused->base, 0, size); /* its last user's bytes */
        return (void *)reused->base;
    }
    void *memory = bp_os_map_memory_counted(&engine->memory, map_size,
                                            BP_MAX(align, BP_MAP_GRANULE), BP_MAP_HUGE);
    if (memory == NULL)
        return NULL; /* memory_limit, or the OS refused */

    bp_lock_acquire(&arena->lock);
    bp_chunk *huge = desc_take(arena);
    if (huge != NULL) {
        huge->base = (uintptr_t)memory;
        huge->fast.unit_info_biased = bp_units_biased(bp_zero_units, huge->base);
        huge->fast.slot = engine->fast_slot;
        huge->kind = BP_CHUNK_HUGE;
        huge->page_shift = (uint8_t)engine->sc.page_shift;
        huge->arena = arena;
        huge->engine = engine;
        huge->pool = engine->pool;
        huge->size = map_size;
        huge->map_size = map_size;
        desc_of(huge)->align = BP_MAX(align, BP_MAP_GRANULE);
        /* a region the layer refuses fails the block, as it fails a chunk (chunk.c) */
        if (bp_os_region_add(&engine->memory.os, huge->base, map_size, BP_MAP_HUGE,
                             &huge->region) != 0) {
            desc_give(arena, huge);
            huge = NULL;
        } else if (bp_chunk_map_register(huge->base, BP_MAP_GRANULE, huge)) {
            bp_list_push(&arena->huge, huge, prev, next);
            arena->counters.alloc_huge++;
            arena->counters.active_bytes += map_size;
            arena->counters.huge_bytes += map_size;
        } else {
            bp_os_region_remove(&engine->memory.os, huge->base, map_size, &huge->region);
            desc_give(arena, huge);
            huge = NULL;
        }
    }
    if (huge == NULL)
        bp_os_unmap_counted(&engine->memory, memory, map_size, map_size);
    bp_lock_release(&arena->lock);
    return huge == NULL ? NULL : memory;
}

/* ---- free ------------------------------------------------------------------------------- */

static void free_small_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    bp_assert(bp_lock_held(&arena->lock));
    bp_subpage *sp = bp_chunk_subpage(chunk, bp_info_run(info));
    long idx = bp_subpage_index_of(sp, p);
    if (idx < 0)
        bp_fatal("bp_free(%p): not the start of a block (inside a %u-byte element)", (void *)p,
                 sp->elem_size);
    if (bp_subpage_is_free(sp, (uint32_t)idx))
        bp_fatal("bp_free(%p): double free (a %u-byte block)", (void *)p, sp->elem_size);
    bp_subpage_give(sp, (uint32_t)idx);
    arena->counters.free_small++;
    arena->counters.classes[sp->class_index].frees++;
    arena->counters.active_bytes -= sp->elem_size;

    bp_subpage_link *head = &arena->small[sp->class_index];
    if (!sp->in_pool)
        bp_subpage_pool_push(head, sp);
    if (sp->free_count == sp->elem_count) {
        bool alone = head->next == sp && sp->link.next == (bp_subpage *)head;
        if (!alone) {
            bp_subpage_pool_remove(sp);
            bp_chunk_free_run(chunk, sp->run_offset, sp->run_pages);
            after_run_free(arena, chunk);
        }
    }
}

/* Under the lock: whether run p waits in its class's run cache. A class's cache holds at most
 * BP_RUN_CACHE_SLOTS runs, so this is a few compares whatever the pool's classes. */
static bool run_cache_holds(const bp_run_cache *rc, const void *p)
{
    for (uint32_t i = 0; i < rc->count; i++)
        if (rc->runs[i] == p)
            return true;
    return false;
}

static void free_normal_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    bp_assert(bp_lock_held(&arena->lock));
    uint32_t off = bp_info_run(info);
    if ((uintptr_t)run_address(chunk, off) != p)
        bp_fatal("bp_free(%p): not the start of a block (inside a run of %u pages)", (void *)p,
                 bp_handle_pages(chunk->run_map[off]));
    unsigned cls = bp_info_class(info);
    arena->counters.free_normal++;
    arena->counters.classes[cls].frees++;
    arena->counters.active_bytes -= arena->engine->sc.size[cls];
    bp_run_cache *rc = &arena->run_cache[cls];
    if (run_cache_holds(rc, (void *)p))
        bp_fatal("bp_free(%p): double free (the run is in its arena's run cache)", (void *)p);
    if (rc->count < arena->engine->run_cache_limit[cls]) {
        rc->runs[rc->count++] = (void *)p;
        return;
    }
    bp_chunk_free_run(chunk, off, bp_class_run_pages(&arena->engine->sc, cls, false));
    after_run_free(arena, chunk);
}

/* Under the lock: the cached runs of every class back to their chunks. */
static void drain_run_caches_locked(bp_arena *arena)
{
    bp_assert(bp_lock_held(&arena->lock));
    const bp_size_classes *sc = &arena->engine->sc;
    for (unsigned cls = 0; cls < sc->nclasses; cls++) {
        bp_run_cache *rc = &arena->run_cache[cls];
        while (rc->count > 0) {
            uintptr_t p = (uintptr_t)rc->runs[--rc->count];
            bp_chunk *chunk = bp_chunk_map_lookup(p);
            bp_chunk_free_run(chunk, bp_info_run(bp_chunk_info_at(chunk, p)),
                              bp_class_run_pages(sc, cls, false));
            after_run_free(arena, chunk);
        }
    }
}

void bp_arena_check_free(bp_arena *arena, bp_chunk *chunk, const void *p, uint32_t info,
                         const char *what)
{
    uint32_t run = bp_info_run(info);
    bp_lock_acquire(&arena->lock);
    if (info & BP_INFO_SUBPAGE_BIT) {
        bp_subpage *sp = bp_chunk_subpage(chunk, run);
        long idx = bp_subpage_index_of(sp, (uintptr_t)p);
        if (idx < 0)
            bp_fatal("%s(%p): not the start of a block (inside a %u-byte element)", what, p,
                     sp->elem_size);
        if (bp_subpage_is_free(sp, (uint32_t)idx))
            bp_fatal("%s(%p): double free (a %u-byte block)", what, p, sp->elem_size);
    } else if (run_address(chunk, run) != p) {
        bp_fatal("%s(%p): not the start of a block (inside a run)", what, p);
    } else if (run_cache_holds(&arena->run_cache[bp_info_class(info)], p)) {
        /* a run waits only in the cache of its own class, which its unit_info names */
        bp_fatal("%s(%p): double free (the run is in its arena's run cache)", what, p);
    }
    bp_lock_release(&arena->lock);
}

static void free_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    bp_assert(bp_lock_held(&arena->lock));
    if (info & BP_INFO_SUBPAGE_BIT)
        free_small_locked(arena, chunk, p, info);
    else
        free_normal_locked(arena, chunk, p, info);
}

static bp_noinline void free_slow(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info,
                                  bool locked)
{
    if (!locked)
        bp_lock_acquire(&arena->lock);
    arena->counters.lock_frees++;
    free_locked(arena, chunk, p, info);
    arena_unlock(arena);
}

void bp_arena_free(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    if (bp_unlikely(!bp_lock_try(&arena->lock)))
        return free_slow(arena, chunk, p, info, false);
    unsigned cls = bp_info_class(info);
    bp_run_cache *rc = &arena->run_cache[cls];
    /* a subpage, a pointer inside the run, a full cache and a double free take free_locked,
     * which tells them apart */
    if (bp_unlikely(
            (info & BP_INFO_SUBPAGE_BIT) || (uintptr_t)run_address(chunk, bp_info_run(info)) != p ||
            rc->count >= arena->engine->run_cache_limit[cls] || run_cache_holds(rc, (void *)p)))
        return free_slow(arena, chunk, p, info, true);
    rc->runs[rc->count++] = (void *)p;
    arena->counters.lock_frees++;
    arena->counters.free_normal++;
    arena->counters.classes[cls].frees++;
    arena->counters.active_bytes -= arena->engine->sc.size[cls];
    if (bp_unlikely(bp_lock_release_wants_wake(&arena->lock)))
        bp_lock_wake(&arena->lock);
}

/* ---- transfer caches -------------------------------------------------------------------- */

/* Blocks a thread cache overflowed with wait in their arena's transfer cache for the class
 * (a lock-free stack linked through the blocks' first word) until a thread bound to that
 * arena refills its bin from it: the common server pattern (one thread allocates, another
 * frees) then moves blocks between threads with two atomic operations per batch and no
 * bitmap work. The stack is bounded by `limit`; past it, blocks go to the bitmaps. */
static bool transfer_push(bp_arena *arena, bp_transfer *t, void **blocks, unsigned n,
                          uint32_t limit)
{
    /* An arena no thread is bound to would hold them until a trim. */
    if (__atomic_load_n(&t->count, __ATOMIC_RELAXED) + n > limit ||
        __atomic_load_n(&arena->bound_threads, __ATOMIC_RELAXED) == 0)
        return false;
    for (unsigned i = 0; i < n; i++) /* ASan builds: the link word of a freed block */
        bp_unpoison(blocks[i], sizeof(void *));
    for (unsigned i = 0; i + 1 < n; i++)
        *(void **)blocks[i] = blocks[i + 1];
    __atomic_add_fetch(&t->count, n, __ATOMIC_RELAXED); /* before: never below the stack */
    void *head = __atomic_load_n(&t->head, __ATOMIC_RELAXED);
    do {
        *(void **)blocks[n - 1] = head;
    } while (!__atomic_compare_exchange_n(&t->head, &head, blocks[0], true, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    for (unsigned i = 0; i < n; i++)
        bp_poison(blocks[i], sizeof(void *));
    return true;
}

unsigned bp_arena_transfer_take(bp_arena *arena, unsigned cls, void **out, unsigned max)
{
    bp_transfer *t = &arena->transfer[cls];
    if (__atomic_load_n(&t->head, __ATOMIC_RELAXED) == NULL)
        return 0;
    void *list = __atomic_exchange_n(&t->head, NULL, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    while (list != NULL && n < max) {
        out[n++] = list;
        bp_unpoison(list, sizeof(void *));
        void *next = *(void **)list;
        bp_poison(list, sizeof(void *));
        list = next;
    }
    if (list != NULL) { /* more than fits: the rest go to the bitmaps */
        void *rest[256];
        unsigned k = 0;
        while (list != NULL) {
            rest[k++] = list;
            bp_unpoison(list, sizeof(void *));
            void *next = *(void **)list;
            bp_poison(list, sizeof(void *));
            list = next;
            if (k == 256 || list == NULL) {
                /* uncounted before they reach the bitmaps: stats read count with active_bytes
                 * under the lock, and must never see transfer bytes no block backs */
                __atomic_sub_fetch(&t->count, k, __ATOMIC_RELAXED);
                bp_arena_free_batch(rest, k, false);
                k = 0;
            }
        }
    }
    __atomic_sub_fetch(&t->count, n, __ATOMIC_RELAXED); /* after: never below the stack */
    return n;
}

/* unit_info of a block coming back from a thread cache. Every block had a class when it
 * entered the cache, so 0 means its run has gone back to the chunk since: the block was
 * cached twice (a double free that release builds let into the cache). */
static uint32_t cached_block_info(bp_chunk *chunk, uintptr_t p)
{
    uint32_t info = bp_chunk_info_at(chunk, p);
    if (bp_unlikely(info == 0))
        bp_fatal("bp_free(%p): double free (the block's run was already back in its chunk)",
                 (void *)p);
    return info;
}

static void free_to_bitmaps(bp_arena *arena, void **blocks, unsigned n)
{
    bp_lock_acquire(&arena->lock);
    arena->counters.lock_frees++;
    for (unsigned i = 0; i < n; i++) {
        uintptr_t p = (uintptr_t)blocks[i];
        bp_chunk *chunk = bp_chunk_map_lookup(p);
        free_locked(arena, chunk, p, cached_block_info(chunk, p));
    }
    arena_unlock(arena);
}

/* One pass per arena met: the blocks of the first remaining block's arena are moved to the
 * front, then go to its transfer cache (when asked and there is room) or to its bitmaps under
 * one lock. Blocks come from a thread cache: live pooled blocks of one class. */
void bp_arena_free_batch(void **blocks, unsigned n, bool transfer)
{
    while (n > 0) {
        bp_chunk *first = bp_chunk_map_lookup((uintptr_t)blocks[0]);
        bp_arena *arena = first->arena;
        unsigned mine = 0;
        for (unsigned i = 0; i < n; i++) {
            if (bp_chunk_map_lookup((uintptr_t)blocks[i])->arena == arena) {
                void *b = blocks[mine];
                blocks[mine++] = blocks[i];
                blocks[i] = b;
            }
        }
        unsigned cls = bp_info_class(cached_block_info(first, (uintptr_t)blocks[0]));
        if (!transfer || !transfer_push(arena, &arena->transfer[cls], blocks, mine,
                                        arena->engine->transfer_limit[cls]))
            free_to_bitmaps(arena, blocks, mine);
        blocks += mine;
        n -= mine;
    }
}

size_t bp_arena_transfer_bytes(bp_arena *arena)
{
    /* the counts, not the blocks: a taker hands blocks to the program, which overwrites the
     * links a walk would follow */
    size_t bytes = 0;
    for (unsigned cls = 0; cls < arena->engine->cache_classes; cls++)
        bytes += (size_t)__atomic_load_n(&arena->transfer[cls].count, __ATOMIC_RELAXED) *
                 arena->engine->sc.size[cls];
    return bytes;
}

/* Under no lock: every transfer cache of the arena back to the bitmaps. */
void bp_arena_drain_transfers(bp_arena *arena)
{
    void *blocks[256];
    for (unsigned cls = 0; cls < arena->engine->cache_classes; cls++) {
        unsigned n;
        while ((n = bp_arena_transfer_take(arena, cls, blocks, 256)) > 0)
            free_to_bitmaps(arena, blocks, n);
    }
}

/* Under the lock: the oldest quarantined block to the huge cache (when `reuse` and the
 * limit lets it be counted again) or queued for unmapping (arena_unlock). */
static void evict_quarantined(bp_arena *arena, bool reuse)
{
    bp_chunk *oldest = arena->quarantine;
    arena->quarantine = oldest->next;
    arena->nquarantined--;
    if (reuse && bp_os_count(&arena->engine->memory, oldest->map_size)) {
        if (huge_cache_put(arena, oldest))
            return;
        bp_os_uncount(&arena->engine->memory, oldest->map_size);
    }
    defer_unmap_huge(arena, oldest, 0); /* quarantined: uncounted already */
}

/* Under the lock (checked builds): a freed huge block stays mapped and registered as
 * HUGE_FREED, purged and uncounted, until HUGE_QUARANTINE newer ones push it out. */
static void quarantine_huge(bp_arena *arena, bp_chunk *huge)
{
    const bp_os *os = &arena->engine->memory.os;
    if (os->purge != NULL)
        os->purge((void *)huge->base, huge->map_size, os->ctx);
    bp_poison((void *)huge->base, huge->map_size); /* ASan builds: a use after free */
    bp_os_uncount(&arena->engine->memory, huge->map_size);
    huge->kind = BP_CHUNK_HUGE_FREED;
    huge->next = NULL;
    bp_chunk **tail = &arena->quarantine;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = huge;
    if (++arena->nquarantined > HUGE_QUARANTINE)
        evict_quarantined(arena, true);
}

void bp_arena_free_huge(bp_arena *arena, bp_chunk *huge)
{
    bp_lock_acquire(&arena->lock);
    bp_list_unlink(&arena->huge, huge, prev, next);
    arena->counters.free_huge++;
    arena->counters.active_bytes -= huge->size;
    arena->counters.huge_bytes -= huge->size;
    arena->huge_slack_bytes -= huge->map_size - huge->size;
    huge->size = huge->map_size;
    if (BP_CHECKED)
        quarantine_huge(arena, huge);
    else if (huge_cache_put(arena, huge))
        purge_tick(arena);
    else
        defer_unmap_huge(arena, huge, huge->map_size);
    arena_unlock(arena);
}

/* ---- huge blocks resized -----------------------------------------------------------------
 * bp_realloc of a huge block keeps the block (its descriptor, its registration, its stats
 * entry) and changes its mapping: within the mapping where the new size fits with no more
 * slack than a reused mapping may carry (25 %); otherwise, with the default OS layer, by
 * mremap: a shrink in place, a growth in place where the pages after it are free, else a
 * move of its pages into a range reserved at its alignment. The growth is counted against
 * memory_limit before anything is mapped; a shrink is uncounted once done. The OS calls run
 * outside the lock: only the program, which owns the block, changes it meanwhile. */

/* Under the lock: the block's usable size and mapping changed, the counters with them. */
static void resize_huge_locked(bp_arena *arena, bp_chunk *huge, size_t size, size_t map_size)
{
    bp_assert(bp_lock_held(&arena->lock));
    arena->counters.active_bytes += size - huge->size; /* modulo 2^64: a shrink subtracts */
    arena->counters.huge_bytes += size - huge->size;
    arena->huge_slack_bytes += (map_size - size) - (huge->map_size - huge->size);
    huge->size = size;
    huge->map_size = map_size;
}

/* Outside the lock: the block's pages moved to a new range of map_size bytes at its
 * alignment; the new base, or 0 with nothing changed. The new granule is registered before
 * the move (a registration that fails stops it), the old one unregistered before the old
 * range can be mapped by anyone else. */
static uintptr_t move_huge(bp_chunk *huge, size_t map_size)
{
    void *target = bp_os_remap_reserve(map_size, desc_of(huge)->align);
    if (target == NULL)
        return 0;
    if (!bp_chunk_map_register((uintptr_t)target, BP_MAP_GRANULE, huge)) {
        bp_os_remap_release(target, map_size);
        return 0;
    }
    bp_chunk_map_unregister(huge->base, BP_MAP_GRANULE);
    if (!bp_os_remap_move((void *)huge->base, huge->map_size, map_size, target)) {
        /* its page of the chunk map is writable already: registering again cannot fail */
        bool back = bp_chunk_map_register(huge->base, BP_MAP_GRANULE, huge);
        bp_assert(back);
        (void)back;
        bp_chunk_map_unregister((uintptr_t)target, BP_MAP_GRANULE);
        return 0;
    }
    return (uintptr_t)target;
}

void *bp_arena_realloc_huge(bp_arena *arena, bp_chunk *huge, size_t new_size)
{
    bp_engine *engine = arena->engine;
    bp_assert(huge->kind == BP_CHUNK_HUGE && huge->arena == arena && new_size > engine->chunk_size);
    if (new_size > SIZE_MAX / 2)
        return NULL;
    size_t size = bp_align_up(BP_MAX(new_size, 1), engine->page_size);
    uintptr_t base = huge->base;
    size_t map_size = huge->map_size;
    if (size <= map_size && map_size - size <= size / 4) {
        bp_lock_acquire(&arena->lock);
        resize_huge_locked(arena, huge, size, map_size);
        bp_lock_release(&arena->lock);
        return (void *)base;
    }
    if (!bp_os_can_remap(&engine->memory.os))
        return NULL; /* a custom layer has no remap: the caller copies */
    if (size < map_size) {
        bp_unpoison((void *)(base + size), map_size - size); /* the range may be reused */
        if (!bp_os_remap_in_place((void *)base, map_size, size))
            return NULL;
        bp_lock_acquire(&arena->lock);
        resize_huge_locked(arena, huge, size, size);
        bp_lock_release(&arena->lock);
        bp_os_uncount(&engine->memory, map_size - size);
        return (void *)base;
    }
    if (!bp_os_count(&engine->memory, size - map_size))
        return NULL; /* memory_limit */
    uintptr_t moved = base;
    if (!bp_os_remap_in_place((void *)base, map_size, size)) {
        moved = move_huge(huge, size);
        if (moved == 0) {
            bp_os_uncount(&engine->memory, size - map_size);
            return NULL;
        }
    }
    bp_unpoison((void *)moved, size); /* what tools knew of the range before is gone */
    bp_lock_acquire(&arena->lock);
    huge->base = moved;
    huge->fast.unit_info_biased = bp_units_biased(bp_zero_units, moved);
    resize_huge_locked(arena, huge, size, size);
    bp_lock_release(&arena->lock);
    return (void *)moved;
}

/* ---- trim ------------------------------------------------------------------------------- */

size_t bp_arena_trim(bp_arena *arena, bool purge)
{
    size_t released = 0;
    bp_lock_acquire(&arena->lock);
    size_t before_runs = arena->counters.chunk_bytes;
    drain_run_caches_locked(arena);
    released += before_runs - arena->counters.chunk_bytes;
    /* The empty subpage each class keeps goes back to its chunk ... */
    for (unsigned cls = 0; cls < arena->engine->sc.nsmall; cls++) {
        bp_subpage_link *head = &arena->small[cls];
        for (bp_subpage *sp = head->next, *next; sp != (bp_subpage *)head; sp = next) {
            next = sp->link.next;
            if (sp->free_count != sp->elem_count)
                continue;
            bp_chunk *chunk = sp->chunk;
            bp_subpage_pool_remove(sp);
            bp_chunk_free_run(chunk, sp->run_offset, sp->run_pages);
            size_t before = arena->counters.chunk_bytes;
            after_run_free(arena, chunk);
            released += before - arena->counters.chunk_bytes;
        }
    }
    /* ... the chunks qInit keeps although they are empty and the retained ones go back to
     * the OS ... */
    bp_chunk_list *qinit = &arena->lists[BP_QINIT];
    for (bp_chunk *chunk = qinit->head, *next; chunk != NULL; chunk = next) {
        next = chunk->next;
        if (chunk->free_pages == chunk->npages) {
            bp_chunk_list_remove(qinit, chunk);
            size_t before = arena->counters.chunk_bytes;
            unmap_chunk(arena, chunk);
            released += before - arena->counters.chunk_bytes;
        }
    }
    bp_chunk *retained = arena->retained; /* a chunk the OS refuses comes back to the list */
    arena->retained = NULL;
    arena->nretained = 0;
    while (retained != NULL) {
        bp_chunk *chunk = retained;
        retained = chunk->next;
        size_t before = arena->counters.chunk_bytes;
        unmap_chunk(arena, chunk);
        released += before - arena->counters.chunk_bytes;
    }
    /* ... so do the quarantined huge blocks, the descriptor slabs once no huge block needs
     * them, and the ranges the OS refused to unmap before ... */
    while (arena->quarantine != NULL)
        evict_quarantined(arena, false);
    while (arena->nhuge_cached > 0)
        defer_cached(arena, 0);
    if (arena->huge == NULL) {
        for (desc_slab *slab = arena->desc_slabs; slab != NULL;) {
            desc_slab *next = slab->next;
            released +=
                bp_os_unmap_counted(&arena->engine->memory, slab, DESC_SLAB_SIZE, DESC_SLAB_SIZE);
            slab = next;
        }
        arena->desc_slabs = NULL;
        arena->desc_free = NULL;
    }
    released += bp_os_retry_stuck(&arena->engine->memory);
    /* ... and every free page of the chunks still in use (and of those the OS refused to
     * unmap, purged already) is purged. */
    for (bp_arena_walk w = bp_arena_walk_start(arena); purge && bp_arena_walk_next(&w);) {
        size_t purged = bp_chunk_purge(w.chunk, true);
        arena->counters.purged_bytes += purged;
        released += purged;
    }
    released += arena_unlock(arena); /* the huge mappings queued above */
    return released;
}

size_t bp_arena_overhead_bytes(bp_arena *arena)
{
    bp_lock_acquire(&arena->lock);
    size_t chunks = arena->counters.chunk_bytes / arena->engine->chunk_size;
    size_t bytes = chunks * bp_chunk_meta_size(arena->engine);
    for (const desc_slab *slab = arena->desc_slabs; slab != NULL; slab = slab->next)
        bytes += DESC_SLAB_SIZE;
    bytes += arena->huge_cached_bytes + arena->huge_slack_bytes;
    bp_lock_release(&arena->lock);
    return bytes;
}

/* ---- invariant walker ------------------------------------------------------------------- */

int bp_arena_check(bp_arena *arena)
{
    int problems = 0;
    bp_lock_acquire(&arena->lock);
    const bp_size_classes *sc = &arena->engine->sc;
    size_t active = 0;
    unsigned subpages_in_chunks = 0, subpages_in_pools = 0;
    for (int i = 0; i < BP_NLISTS; i++)
        problems += bp_chunk_list_check(&arena->lists[i]);
    for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);) {
        if (w.chunk->arena != arena) {
            bp_message("check: arena %u: chunk %p belongs to another arena", arena->index,
                       (void *)w.chunk->base);
            problems++;
        }
        bp_chunk_usage_walk walk = bp_chunk_walk(w.chunk);
        active += walk.active_bytes;
        subpages_in_chunks += walk.subpages_with_free;
    }
    for (unsigned cls = 0; cls < sc->nsmall; cls++) {
        const bp_subpage_link *head = &arena->small[cls];
        unsigned empty = 0;
        for (const bp_subpage *sp = head->next; sp != (const bp_subpage *)head;
             sp = sp->link.next) {
            subpages_in_pools++;
            if (sp->class_index != cls || !sp->in_pool || sp->free_count == 0 ||
                sp->chunk->arena != arena) {
                bp_message("check: arena %u: subpage at page %u misfiled in pool %u", arena->index,
                           sp->run_offset, cls);
                problems++;
            }
            empty += sp->free_count == sp->elem_count;
        }
        if (empty > 1) {
            bp_message("check: arena %u: %u empty subpages kept for class %u", arena->index, empty,
                       cls);
            problems++;
        }
    }
    if (subpages_in_pools != subpages_in_chunks) {
        bp_message("check: arena %u: %u subpages in pools, %u with free elements in chunks",
                   arena->index, subpages_in_pools, subpages_in_chunks);
        problems++;
    }
    for (unsigned cls = 0; cls < sc->nclasses; cls++) {
        const bp_run_cache *rc = &arena->run_cache[cls];
        if (rc->count > 0 && (cls < arena->engine->cache_classes ||
                              rc->count > arena->engine->run_cache_limit[cls])) {
            bp_message("check: arena %u: run cache of class %u holds %u", arena->index, cls,
                       rc->count);
            problems++;
        }
        for (uint32_t i = 0; i < rc->count; i++) {
            const bp_chunk *chunk = bp_chunk_map_lookup((uintptr_t)rc->runs[i]);
            uint32_t info = chunk ? bp_chunk_info_at(chunk, (uintptr_t)rc->runs[i]) : 0;
            if (chunk == NULL || chunk->arena != arena || info == 0 || bp_info_class(info) != cls) {
                bp_message("check: arena %u: cached run %p is not a live run of class %u",
                           arena->index, rc->runs[i], cls);
                problems++;
            }
            active -= sc->size[cls]; /* used pages, not active bytes */
        }
    }
    size_t huge_bytes = 0;
    size_t slack_bytes = 0;
    for (const bp_chunk *huge = arena->huge; huge != NULL; huge = huge->next) {
        huge_bytes += huge->size;
        slack_bytes += huge->map_size - huge->size;
        if (huge->kind != BP_CHUNK_HUGE || bp_chunk_map_lookup(huge->base) != huge) {
            bp_message("check: arena %u: huge block %p not mapped", arena->index,
                       (void *)huge->base);
            problems++;
        }
    }
    active += huge_bytes;
    if (slack_bytes != arena->huge_slack_bytes) {
        bp_message("check: arena %u: reused huge blocks map %zu beyond their size (counted %zu)",
                   arena->index, slack_bytes, arena->huge_slack_bytes);
        problems++;
    }
    size_t cached_bytes = 0;
    for (unsigned i = 0; i < arena->nhuge_cached; i++) {
        const bp_chunk *c = arena->huge_cache[i].huge;
        cached_bytes += c->map_size;
        if (c->kind != BP_CHUNK_HUGE_FREED || bp_chunk_map_lookup(c->base) != c) {
            bp_message("check: arena %u: cached huge mapping %p not registered as freed",
                       arena->index, (void *)c->base);
            problems++;
        }
    }
    if (cached_bytes != arena->huge_cached_bytes ||
        cached_bytes > arena->engine->huge_cache_bytes) {
        bp_message("check: arena %u: huge cache holds %zu (counted %zu, bound %zu)", arena->index,
                   cached_bytes, arena->huge_cached_bytes, arena->engine->huge_cache_bytes);
        problems++;
    }
    if (active != arena->counters.active_bytes || huge_bytes != arena->counters.huge_bytes) {
        bp_message("check: arena %u: active %zu (counted %zu), huge %zu (counted %zu)",
                   arena->index, active, arena->counters.active_bytes, huge_bytes,
                   arena->counters.huge_bytes);
        problems++;
    }
    bp_lock_release(&arena->lock);
    return problems;
}
