/* arena.c — an arena: the lock, the subpage pools per small class, the chunk lists, huge
 * blocks and the counters; the slow paths of allocation and free all end here. */
#include "internal.h"

#include <string.h>
#include <time.h>

/* Half-used chunks first, so memory concentrates in few chunks and the others empty out;
 * q075 last because its chunks have little left; q100 never. */
static const int alloc_order[] = {BP_Q050, BP_Q025, BP_Q000, BP_QINIT, BP_Q075};

/* Descriptors of huge blocks come from slabs mapped per arena, so a huge allocation costs one
 * mapping (its memory) and its metadata stays out of it. */
#define DESC_SLAB_SIZE ((size_t)64 << 10)

typedef struct desc_slab {
    struct desc_slab *next;
} desc_slab;

/* A range the OS layer refused to unmap (at vm.max_map_count, say). It is still mapped and
 * purged; this node lives in its first bytes, so keeping it needs no memory and nothing that
 * could fail at the OS's limits. `counted`: the bytes memory_limit still counts for it,
 * uncounted when a later try unmaps it. Linked from arena->stuck, under the arena lock. */
typedef struct stuck_range {
    struct stuck_range *next;
    size_t size, counted;
} stuck_range;

/* Checked builds keep this many freed huge blocks per arena mapped (purged, uncounted) before
 * unmapping the oldest: a new huge block cannot take the address of a block freed since, so a
 * second free of that block is reported instead of freeing the new one. */
#define HUGE_QUARANTINE 8

void bp_arena_init(bp_arena *arena, bp_pool *pool, unsigned index)
{
    memset(arena, 0, sizeof *arena);
    arena->lock = (bp_lock)BP_LOCK_INIT;
    arena->pool = pool;
    arena->index = index;
    bp_chunk_lists_init(arena->lists, pool->sc.chunk_pages);
    for (unsigned cls = 0; cls < BP_MAX_CLASSES; cls++)
        bp_subpage_pool_init(&arena->small[cls]);
}

/* ---- unmapping, and ranges the OS refused to unmap -------------------------------------- */

/* Under the lock: a range the OS refused to unmap joins the stuck list. */
static void keep_stuck(bp_arena *arena, void *addr, size_t size, size_t counted)
{
    stuck_range *r = addr;
    r->next = arena->stuck;
    r->size = size;
    r->counted = counted;
    arena->stuck = r;
}

/* Under the lock: unmaps [addr, addr+size) and uncounts `counted` bytes, or keeps the range
 * stuck. Returns the bytes unmapped. */
static size_t unmap_range(bp_arena *arena, void *addr, size_t size, size_t counted)
{
    if (bp_os_unmap(&arena->pool->os, addr, size) != 0) {
        keep_stuck(arena, addr, size, counted);
        return 0;
    }
    bp_pool_unreserve(arena->pool, counted);
    return size;
}

void bp_arena_unmap(bp_arena *arena, void *addr, size_t size)
{
    unmap_range(arena, addr, size, size);
}

/* Under the lock: every stuck range tried once more; returns the bytes unmapped. */
static size_t retry_stuck(bp_arena *arena)
{
    size_t released = 0;
    stuck_range *list = arena->stuck;
    arena->stuck = NULL;
    while (list != NULL) {
        stuck_range *r = list;
        list = r->next;
        released += unmap_range(arena, r, r->size, r->counted);
    }
    return released;
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

/* A huge block out of the chunk map and unmapped; false when the OS refused (the caller keeps
 * the range stuck, under the lock). Counted bytes are the caller's too. */
static bool unmap_huge(bp_arena *arena, const bp_chunk *huge)
{
    bp_chunk_map_unregister(huge->base, BP_MAP_GRANULE);
    bp_unpoison((void *)huge->base, huge->map_size); /* quarantined: the range may be reused */
    return bp_os_unmap(&arena->pool->os, (void *)huge->base, huge->map_size) == 0;
}

/* Under the lock or at destroy: a huge block (live or quarantined) unmapped or kept stuck;
 * returns the bytes unmapped. */
static size_t release_huge_memory(bp_arena *arena, bp_chunk *huge)
{
    size_t counted = huge->kind == BP_CHUNK_HUGE_FREED ? 0 : huge->map_size;
    if (!unmap_huge(arena, huge)) {
        keep_stuck(arena, (void *)huge->base, huge->map_size, counted);
        return 0;
    }
    bp_pool_unreserve(arena->pool, counted);
    return huge->map_size;
}

static void desc_give(bp_arena *arena, bp_chunk *desc);

/* Under the lock or at destroy: cache entry i unmapped (counted bytes uncounted) or kept
 * stuck; the bytes unmapped. */
static size_t release_cached(bp_arena *arena, unsigned i)
{
    bp_chunk *huge = huge_cache_remove(arena, i);
    huge->kind = BP_CHUNK_HUGE; /* counted, unlike a quarantined block */
    size_t released = release_huge_memory(arena, huge);
    desc_give(arena, huge);
    return released;
}

/* Under the lock: a freed huge block (off the live list, uncounted as active, still counted
 * in mapped_bytes) kept for reuse, older entries released to make room; false when it cannot
 * be kept (no cache, or larger than the bound). */
static bool huge_cache_put(bp_arena *arena, bp_chunk *huge)
{
    const bp_config *cfg = &arena->pool->config;
    if (cfg->purge_decay_ms == 0 || huge->map_size > cfg->huge_cache_bytes)
        return false;
    while (arena->nhuge_cached == BP_HUGE_CACHE_SLOTS ||
           arena->huge_cached_bytes + huge->map_size > cfg->huge_cache_bytes)
        release_cached(arena, 0);
    bp_poison((void *)huge->base, huge->map_size); /* ASan builds: a use after free */
    huge->kind = BP_CHUNK_HUGE_FREED;
    arena->huge_cache[arena->nhuge_cached].huge = huge;
    arena->huge_cache[arena->nhuge_cached].freed_ms = bp_now_ms();
    arena->nhuge_cached++;
    arena->huge_cached_bytes += huge->map_size;
    return true;
}

/* Under the lock: the cached mappings unused for the decay time unmapped. */
static void huge_cache_decay(bp_arena *arena, uint64_t now, int decay)
{
    while (arena->nhuge_cached > 0 && arena->huge_cache[0].freed_ms + (uint64_t)decay <= now)
        release_cached(arena, 0);
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
        bp_arena_unmap(arena, slab, DESC_SLAB_SIZE);
        slab = next;
    }
    retry_stuck(arena); /* what is refused now stays mapped, purged, for good */
}

/* ---- runs from the chunk lists ---------------------------------------------------------- */

static void purge_tick(bp_arena *arena);

/* Under the lock: a run for class `cls` from the first chunk that has room, in list order,
 * or from a new chunk filed into qInit. NULL when the OS refuses a new chunk. */
static bp_chunk *alloc_run(bp_arena *arena, unsigned cls, uint32_t align_pages, bool subpage,
                           uint32_t *offset)
{
    uint32_t need = bp_class_run_pages(&arena->pool->sc, cls, subpage);
    unsigned pc = bp_pages_to_page_class_ceil(&arena->pool->sc, need);
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
        chunk = bp_chunk_new(arena);
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
    bool stuck_before = arena->stuck != NULL; /* a range refused just now is not retried */
    if (!bp_chunk_try_delete(chunk)) {
        chunk->next = arena->retained;
        arena->retained = chunk;
        arena->nretained++;
        return;
    }
    arena->counters.chunks_unmapped++;
    arena->counters.chunk_bytes -= size;
    if (bp_unlikely(stuck_before))
        retry_stuck(arena);
}

/* Purges every chunk's pages that were already dirty at the previous epoch: a freed page is
 * given back between decay/2 and decay after it was freed. Runs in the slow paths, under the
 * lock, at most once an epoch, and from the background thread when the pool has one. */
static void purge_tick(bp_arena *arena)
{
    int decay = arena->pool->config.purge_decay_ms;
    if (decay <= 0)
        return;
    uint64_t now = bp_now_ms();
    if (now < arena->next_purge_ms)
        return;
    arena->next_purge_ms = now + (uint64_t)BP_MAX(decay / 2, 1);
    huge_cache_decay(arena, now, decay);
    for (int i = 0; i < BP_NLISTS; i++)
        for (bp_chunk *chunk = arena->lists[i].head; chunk != NULL; chunk = chunk->next)
            if (chunk->dirty_pages != 0)
                arena->counters.purged_bytes += bp_chunk_purge(chunk, false);
    for (bp_chunk *chunk = arena->retained; chunk != NULL; chunk = chunk->next)
        if (chunk->dirty_pages != 0)
            arena->counters.purged_bytes += bp_chunk_purge(chunk, false);
}

void bp_arena_purge_decayed(bp_arena *arena)
{
    bp_lock_acquire(&arena->lock);
    purge_tick(arena);
    bp_lock_release(&arena->lock);
}

/* Under the lock, after a run went back to `chunk`: file it by its new usage; a chunk that
 * emptied out of q000 is retained for reuse (up to retained_chunks) or unmapped. With a decay
 * of 0 the freed pages are purged at once. */
static void after_run_free(bp_arena *arena, bp_chunk *chunk)
{
    if (bp_chunk_list_after_free(chunk)) {
        if (arena->nretained < arena->pool->config.retained_chunks) {
            chunk->next = arena->retained;
            arena->retained = chunk;
            arena->nretained++;
        } else {
            unmap_chunk(arena, chunk);
            chunk = NULL;
        }
    }
    if (chunk != NULL && arena->pool->config.purge_decay_ms == 0)
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
    bp_subpage_link *head = &arena->small[cls];
    bp_subpage *sp = head->next;
    if (sp == (bp_subpage *)head) {
        uint32_t off;
        bp_chunk *chunk = alloc_run(arena, cls, 1, true, &off);
        if (chunk == NULL)
            return NULL;
        sp = bp_chunk_subpage(chunk, off);
        bp_subpage_init(sp, chunk, off, cls, &arena->pool->sc);
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
    arena->counters.active_bytes += arena->pool->sc.size[cls];
    return p;
}

unsigned bp_arena_alloc_batch(bp_arena *arena, unsigned cls, void **out, unsigned n)
{
    bool small = bp_class_is_small(&arena->pool->sc, cls);
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
    bp_lock_release(&arena->lock);
    return got;
}

void *bp_arena_alloc(bp_arena *arena, unsigned cls)
{
    bp_lock_acquire(&arena->lock);
    arena->counters.lock_allocs++;
    void *p = bp_class_is_small(&arena->pool->sc, cls) ? alloc_small_locked(arena, cls)
                                                       : alloc_normal_locked(arena, cls, 1);
    bp_lock_release(&arena->lock);
    return p;
}

/* Alignments up to a page are met by the class (its size is a multiple of align, and runs
 * start on pages); larger ones by a whole run placed at an aligned page. */
void *bp_arena_alloc_aligned(bp_arena *arena, unsigned cls, size_t align)
{
    size_t page = arena->pool->page_size;
    if (align <= page)
        return bp_arena_alloc(arena, cls);
    bp_lock_acquire(&arena->lock);
    void *p = alloc_normal_locked(arena, cls, (uint32_t)(align / page));
    bp_lock_release(&arena->lock);
    return p;
}

static bp_chunk *desc_take(bp_arena *arena)
{
    if (arena->desc_free == NULL) {
        if (!bp_pool_reserve(arena->pool, DESC_SLAB_SIZE))
            return NULL; /* memory_limit counts descriptors too */
        desc_slab *slab = bp_os_map(&arena->pool->os, DESC_SLAB_SIZE, 4096);
        if (slab == NULL) {
            bp_pool_unreserve(arena->pool, DESC_SLAB_SIZE);
            return NULL;
        }
        slab->next = arena->desc_slabs;
        arena->desc_slabs = slab;
        size_t first = bp_align_up(sizeof(desc_slab), 64);
        size_t stride = bp_align_up(sizeof(bp_chunk), 64);
        for (size_t off = first; off + stride <= DESC_SLAB_SIZE; off += stride) {
            bp_chunk *desc = (bp_chunk *)((char *)slab + off);
            desc->next = arena->desc_free;
            arena->desc_free = desc;
        }
    }
    bp_chunk *desc = arena->desc_free;
    arena->desc_free = desc->next;
    memset(desc, 0, sizeof *desc);
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

void *bp_arena_alloc_huge_cleared(bp_arena *arena, size_t size, size_t align, bool zero)
{
    bp_pool *pool = arena->pool;
    if (size > SIZE_MAX / 2)
        return NULL;
    /* size 0 (an alignment above the chunk size asked for nothing) still takes a page: every
     * block has its own address and can be freed */
    size_t map_size = bp_align_up(BP_MAX(size, 1), pool->page_size);
    bp_lock_acquire(&arena->lock);
    purge_tick(arena);
    bp_chunk *reused = huge_cache_take(arena, map_size, BP_MAX(align, BP_MAP_GRANULE));
    if (reused != NULL) {
        reused->kind = BP_CHUNK_HUGE;
        reused->size = map_size; /* the usable size asked for; the slack stays mapped */
        arena->huge_slack_bytes += reused->map_size - map_size;
        reused->prev = NULL;
        reused->next = arena->huge;
        if (arena->huge != NULL)
            arena->huge->prev = reused;
        arena->huge = reused;
        arena->counters.alloc_huge++;
        arena->counters.active_bytes += map_size;
        arena->counters.huge_bytes += map_size;
    }
    bp_lock_release(&arena->lock);
    if (reused != NULL) {
        if (zero)
            memset((void *)reused->base, 0, size); /* its last user's bytes */
        return (void *)reused->base;
    }
    if (!bp_pool_reserve(pool, map_size))
        return NULL; /* memory_limit */
    void *memory = bp_os_map(&pool->os, map_size, BP_MAX(align, BP_MAP_GRANULE));
    if (memory == NULL) {
        bp_pool_unreserve(pool, map_size);
        return NULL;
    }

    bp_lock_acquire(&arena->lock);
    bp_chunk *huge = desc_take(arena);
    if (huge != NULL) {
        huge->base = (uintptr_t)memory;
        huge->unit_info_biased = bp_units_biased(bp_zero_units, huge->base);
        huge->tc_slot = pool->tc_slot;
        huge->kind = BP_CHUNK_HUGE;
        huge->page_shift = (uint8_t)pool->sc.page_shift;
        huge->arena = arena;
        huge->pool = pool;
        huge->size = map_size;
        huge->map_size = map_size;
        if (bp_chunk_map_register(huge->base, BP_MAP_GRANULE, huge)) {
            huge->prev = NULL;
            huge->next = arena->huge;
            if (arena->huge != NULL)
                arena->huge->prev = huge;
            arena->huge = huge;
            arena->counters.alloc_huge++;
            arena->counters.active_bytes += map_size;
            arena->counters.huge_bytes += map_size;
        } else {
            desc_give(arena, huge);
            huge = NULL;
        }
    }
    if (huge == NULL)
        bp_arena_unmap(arena, memory, map_size);
    bp_lock_release(&arena->lock);
    return huge == NULL ? NULL : memory;
}

/* ---- free ------------------------------------------------------------------------------- */

static void free_small_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
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

static void free_normal_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    uint32_t off = bp_info_run(info);
    if ((uintptr_t)run_address(chunk, off) != p)
        bp_fatal("bp_free(%p): not the start of a block (inside a run of %u pages)", (void *)p,
                 bp_handle_pages(chunk->run_map[off]));
    unsigned cls = bp_info_class(info);
    arena->counters.free_normal++;
    arena->counters.classes[cls].frees++;
    arena->counters.active_bytes -= arena->pool->sc.size[cls];
    bp_run_cache *rc = &arena->run_cache[cls];
    for (uint32_t i = 0; i < rc->count; i++) /* at most 8 compares */
        if (rc->runs[i] == (void *)p)
            bp_fatal("bp_free(%p): double free (the run is in its arena's run cache)", (void *)p);
    if (rc->count < arena->pool->run_cache_limit[cls]) {
        rc->runs[rc->count++] = (void *)p;
        return;
    }
    bp_chunk_free_run(chunk, off, bp_class_run_pages(&arena->pool->sc, cls, false));
    after_run_free(arena, chunk);
}

/* Under the lock: the cached runs of every class back to their chunks. */
static void drain_run_caches_locked(bp_arena *arena)
{
    const bp_size_classes *sc = &arena->pool->sc;
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

bool bp_arena_run_cached(bp_arena *arena, const void *p)
{
    bool found = false;
    bp_lock_acquire(&arena->lock);
    for (unsigned cls = 0; cls < arena->pool->sc.nclasses && !found; cls++)
        for (uint32_t i = 0; i < arena->run_cache[cls].count; i++)
            found |= arena->run_cache[cls].runs[i] == p;
    bp_lock_release(&arena->lock);
    return found;
}

static void free_locked(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    if (info & BP_INFO_SUBPAGE_BIT)
        free_small_locked(arena, chunk, p, info);
    else
        free_normal_locked(arena, chunk, p, info);
}

void bp_arena_free(bp_arena *arena, bp_chunk *chunk, uintptr_t p, uint32_t info)
{
    bp_lock_acquire(&arena->lock);
    arena->counters.lock_frees++;
    free_locked(arena, chunk, p, info);
    bp_lock_release(&arena->lock);
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
    bp_lock_release(&arena->lock);
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
                                        arena->pool->transfer_limit[cls]))
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
    for (unsigned cls = 0; cls < arena->pool->cache_classes; cls++)
        bytes += (size_t)__atomic_load_n(&arena->transfer[cls].count, __ATOMIC_RELAXED) *
                 arena->pool->sc.size[cls];
    return bytes;
}

/* Under no lock: every transfer cache of the arena back to the bitmaps. */
void bp_arena_drain_transfers(bp_arena *arena)
{
    void *blocks[256];
    for (unsigned cls = 0; cls < arena->pool->cache_classes; cls++) {
        unsigned n;
        while ((n = bp_arena_transfer_take(arena, cls, blocks, 256)) > 0)
            free_to_bitmaps(arena, blocks, n);
    }
}

/* Under the lock: the oldest quarantined block to the huge cache (when `reuse` and the
 * limit lets it be counted again) or unmapped for good; the bytes unmapped. */
static size_t evict_quarantined(bp_arena *arena, bool reuse)
{
    bp_chunk *oldest = arena->quarantine;
    arena->quarantine = oldest->next;
    arena->nquarantined--;
    if (reuse && bp_pool_reserve(arena->pool, oldest->map_size)) {
        if (huge_cache_put(arena, oldest))
            return 0;
        bp_pool_unreserve(arena->pool, oldest->map_size);
    }
    size_t released = release_huge_memory(arena, oldest);
    desc_give(arena, oldest);
    return released;
}

/* Under the lock (checked builds): a freed huge block stays mapped and registered as
 * HUGE_FREED, purged and uncounted, until HUGE_QUARANTINE newer ones push it out. */
static void quarantine_huge(bp_arena *arena, bp_chunk *huge)
{
    const bp_os *os = &arena->pool->os;
    if (os->purge != NULL)
        os->purge((void *)huge->base, huge->map_size, os->ctx);
    bp_poison((void *)huge->base, huge->map_size); /* ASan builds: a use after free */
    bp_pool_unreserve(arena->pool, huge->map_size);
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
    if (huge->prev != NULL)
        huge->prev->next = huge->next;
    else
        arena->huge = huge->next;
    if (huge->next != NULL)
        huge->next->prev = huge->prev;
    arena->counters.free_huge++;
    arena->counters.active_bytes -= huge->size;
    arena->counters.huge_bytes -= huge->size;
    arena->huge_slack_bytes -= huge->map_size - huge->size;
    huge->size = huge->map_size;
    if (BP_CHECKED) {
        quarantine_huge(arena, huge);
        bp_lock_release(&arena->lock);
        return;
    }
    if (huge_cache_put(arena, huge)) {
        purge_tick(arena);
        bp_lock_release(&arena->lock);
        return;
    }
    bp_chunk copy = *huge;
    desc_give(arena, huge);
    bp_lock_release(&arena->lock);
    /* Unmapped outside the lock: giving a large range back takes the kernel a while. */
    if (unmap_huge(arena, &copy)) {
        bp_pool_unreserve(arena->pool, copy.map_size);
        return;
    }
    bp_lock_acquire(&arena->lock);
    keep_stuck(arena, (void *)copy.base, copy.map_size, copy.map_size);
    bp_lock_release(&arena->lock);
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
    for (unsigned cls = 0; cls < arena->pool->sc.nsmall; cls++) {
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
        released += evict_quarantined(arena, false);
    while (arena->nhuge_cached > 0)
        released += release_cached(arena, 0);
    if (arena->huge == NULL) {
        for (desc_slab *slab = arena->desc_slabs; slab != NULL;) {
            desc_slab *next = slab->next;
            released += unmap_range(arena, slab, DESC_SLAB_SIZE, DESC_SLAB_SIZE);
            slab = next;
        }
        arena->desc_slabs = NULL;
        arena->desc_free = NULL;
    }
    released += retry_stuck(arena);
    /* ... and every free page of the chunks still in use is purged. */
    for (int i = 0; purge && i < BP_NLISTS; i++) {
        for (bp_chunk *chunk = arena->lists[i].head; chunk != NULL; chunk = chunk->next) {
            size_t purged = bp_chunk_purge(chunk, true);
            arena->counters.purged_bytes += purged;
            released += purged;
        }
    }
    bp_lock_release(&arena->lock);
    return released;
}

size_t bp_arena_overhead_bytes(bp_arena *arena)
{
    bp_lock_acquire(&arena->lock);
    size_t chunks = arena->counters.chunk_bytes / arena->pool->chunk_size;
    size_t bytes = chunks * bp_chunk_meta_size(arena->pool);
    for (const desc_slab *slab = arena->desc_slabs; slab != NULL; slab = slab->next)
        bytes += DESC_SLAB_SIZE;
    for (const stuck_range *r = arena->stuck; r != NULL; r = r->next)
        bytes += r->counted;
    bytes += arena->huge_cached_bytes + arena->huge_slack_bytes;
    bp_lock_release(&arena->lock);
    return bytes;
}

/* ---- invariant walker ------------------------------------------------------------------- */

int bp_arena_check(bp_arena *arena)
{
    int problems = 0;
    bp_lock_acquire(&arena->lock);
    const bp_size_classes *sc = &arena->pool->sc;
    size_t active = 0;
    unsigned subpages_in_chunks = 0, subpages_in_pools = 0;
    for (int i = 0; i < BP_NLISTS; i++) {
        problems += bp_chunk_list_check(&arena->lists[i]);
        for (const bp_chunk *chunk = arena->lists[i].head; chunk; chunk = chunk->next) {
            if (chunk->arena != arena) {
                bp_message("check: arena %u: chunk %p belongs to another arena", arena->index,
                           (void *)chunk->base);
                problems++;
            }
            bp_chunk_usage_walk walk = bp_chunk_walk(chunk);
            active += walk.active_bytes;
            subpages_in_chunks += walk.subpages_with_free;
        }
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
        if (rc->count > 0 &&
            (cls < arena->pool->cache_classes || rc->count > arena->pool->run_cache_limit[cls])) {
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
        cached_bytes > arena->pool->config.huge_cache_bytes) {
        bp_message("check: arena %u: huge cache holds %zu (counted %zu, bound %zu)", arena->index,
                   cached_bytes, arena->huge_cached_bytes, arena->pool->config.huge_cache_bytes);
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
