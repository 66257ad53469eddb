/* alloc.c — the public allocation entry points: bp_alloc and friends route a size to its
 * class and arena (or the huge path); bp_free finds the chunk of a pointer and checks it. */
#include "internal.h"

#include <errno.h>
#include <string.h>

static void *fail(int err)
{
    errno = err;
    return NULL;
}

/* Before an allocation fails (memory_limit reached, or the OS refused), the pool gives back
 * what it keeps for reuse, in every arena, and the allocation is tried once more. */
static bool reclaimed(bp_pool *pool)
{
    return bp_pool_reclaim(pool) != 0;
}

static void *alloc_huge_zeroed(bp_pool *pool, size_t size, size_t align, bool zero)
{
    if (size > PTRDIFF_MAX)
        return fail(ENOMEM);
    bp_arena *arena = bp_thread_arena(pool);
    void *p = bp_arena_alloc_huge_cleared(arena, size, align, zero);
    if (p == NULL && reclaimed(pool))
        p = bp_arena_alloc_huge_cleared(arena, size, align, zero);
    return p != NULL ? p : fail(ENOMEM);
}

static void *alloc_huge(bp_pool *pool, size_t size, size_t align)
{
    return alloc_huge_zeroed(pool, size, align, false);
}

/* glibc's answers: EINVAL for an alignment that is no power of two, ENOMEM for one it cannot
 * serve (past 2^40 the mapping could not be had anyway). */
void *bp_alloc_aligned_huge(bp_pool *pool, size_t align, size_t size)
{
    if (!bp_is_pow2(align))
        return fail(EINVAL);
    if (align > ((size_t)1 << 40))
        return fail(ENOMEM);
    return alloc_huge(pool, size, align);
}

static void *alloc_class(bp_pool *pool, unsigned cls)
{
    return cls < pool->cache_classes ? bp_tcache_alloc_slow(pool, cls)
                                     : bp_arena_alloc(bp_thread_arena(pool), cls);
}

/* Everything the fast path does not serve: a first use, an empty bin, sizes above the lookup
 * table, uncached classes, huge blocks. */
static bp_noinline void *alloc_slow(bp_pool *pool, size_t size)
{
    bp_pool_check_live(pool, "bp_alloc");
    if (bp_unlikely(pool->config.background_thread))
        bp_background_ensure();
    if (size <= pool->chunk_size) {
        unsigned cls = bp_size_to_class(&pool->sc, size);
        void *p = alloc_class(pool, cls);
        if (bp_unlikely(p == NULL) && reclaimed(pool))
            p = alloc_class(pool, cls);
        return bp_likely(p != NULL) ? p : fail(ENOMEM);
    }
    return alloc_huge(pool, size, 0);
}

static size_t usable_size(const void *p, const char *what);

#if BP_TRACK
/* ASan and valgrind builds: the public entry points announce what they hand out (the usable
 * size, which the API promises: touching past it is reported) and what comes back; the
 * implementations below are the ordinary ones under other names. */
static void *alloc_impl(bp_pool *pool, size_t size);
static void *aligned_impl(bp_pool *pool, size_t align, size_t size);

void *bp_alloc(bp_pool *pool, size_t size)
{
    void *p = alloc_impl(pool, size);
    if (p != NULL)
        bp_track_alloc(pool, p, usable_size(p, "bp_alloc"));
    return p;
}

void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size)
{
    void *p = aligned_impl(pool, align, size);
    if (p != NULL)
        bp_track_alloc(pool, p, usable_size(p, "bp_aligned_alloc"));
    return p;
}
#define bp_alloc         alloc_impl
#define bp_aligned_alloc aligned_impl
#endif

/* The fast path: the class's bin offset (a table lookup up to 4 KiB, the size formula up to
 * max_cached) and a pop from this thread's bin, no lock, no atomic, between the two stores of
 * the reclaim handshake (internal.h); every trim_interval allocations the cache trims itself. */
void *bp_alloc(bp_pool *pool, size_t size)
{
    uint32_t offset;
    if (bp_likely(size <= BP_MAX_LOOKUP))
        offset = pool->sc.bin_lookup[(size + BP_QUANTUM - 1) >> BP_LOG2_QUANTUM];
    else if (size <= pool->max_cached_size)
        offset = bp_bin_offset(bp_size_to_class_compute(&pool->sc, size));
    else
        return alloc_slow(pool, size);
    bp_tcache_enter();
    bp_tcache_bin *bins = bp_tcache_bins(pool->tc_slot);
    bp_tcache_bin *bin = bp_bin_at(bins, offset);
    void **head = bin->head;
    if (bp_likely(head != bin->empty)) {
        void *p = *head;
        bin->head = head + 1;
        bin->hits++;
        bp_tcache *tc = bp_tcache_of(bins);
        bool trim = --tc->countdown == 0;
        bp_tcache_leave();
        if (bp_unlikely(trim))
            return bp_tcache_trim_returning(tc, p);
        return p;
    }
    bp_tcache_leave();
    return alloc_slow(pool, size);
}

#if BP_TRACK
#undef bp_alloc
#define untracked_alloc alloc_impl
#else
#define untracked_alloc bp_alloc
#endif

void *bp_calloc(bp_pool *pool, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return fail(ENOMEM);
    if (total > pool->chunk_size) {
        /* a new mapping is zero already; a reused one is cleared by the arena */
        bp_pool_check_live(pool, "bp_alloc");
        if (bp_unlikely(pool->config.background_thread))
            bp_background_ensure();
        void *p = alloc_huge_zeroed(pool, total, 0, true);
#if BP_TRACK
        if (p != NULL) {
            bp_track_alloc(pool, p, usable_size(p, "bp_calloc"));
            bp_unpoison(p, total); /* zero, so defined */
        }
#endif
        return p;
    }
    void *p = bp_alloc(pool, total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size)
{
    bp_pool_check_live(pool, "bp_aligned_alloc");
    if (!bp_is_pow2(align) || align > pool->chunk_size)
        return fail(EINVAL);
    if (align <= BP_QUANTUM)
        return untracked_alloc(pool, size); /* the public entry announces the block once */
    size_t want = BP_MAX(size, align);
    if (want > pool->chunk_size)
        return alloc_huge(pool, size, align);
    /* The smallest class that is a multiple of align: its elements (or its run) land on
     * multiples of align. */
    const bp_size_classes *sc = &pool->sc;
    unsigned cls = bp_size_to_class(sc, want);
    while (cls < sc->nclasses && sc->size[cls] % align != 0)
        cls++;
    if (cls == sc->nclasses)
        return alloc_huge(pool, size, align);
    if (align <= pool->page_size && cls < pool->cache_classes)
        return alloc_slow(pool, pool->sc.size[cls]); /* any block of the class is aligned */
    bp_arena *arena = bp_thread_arena(pool);
    void *p = bp_arena_alloc_aligned(arena, cls, align);
    if (p == NULL && reclaimed(pool))
        p = bp_arena_alloc_aligned(arena, cls, align);
    return p != NULL ? p : fail(ENOMEM);
}

#if BP_TRACK
#undef bp_aligned_alloc
#endif

/* ---- from a pointer to its block -------------------------------------------------------- */

typedef struct block {
    bp_chunk *chunk;
    uint32_t info; /* unit_info at the block; 0 for a huge block */
} block;

bp_cold static void report_bad_pointer(const char *what, const void *p, const bp_chunk *chunk)
{
    if (chunk == NULL)
        bp_fatal("%s(%p): pointer not allocated by bufpool", what, p);
    if (chunk->kind == BP_CHUNK_HUGE_FREED && (uintptr_t)p == chunk->base)
        bp_fatal("%s(%p): double free or use after free (a huge block freed before)", what, p);
    if (chunk->kind == BP_CHUNK_HUGE_FREED)
        bp_fatal("%s(%p): not the start of a block (inside a freed huge block at %p)", what, p,
                 (void *)chunk->base);
    if (chunk->kind == BP_CHUNK_HUGE)
        bp_fatal("%s(%p): not the start of a block (inside a huge block at %p)", what, p,
                 (void *)chunk->base);
    uintptr_t off = (uintptr_t)p - chunk->base;
    if (off >= chunk->size)
        bp_fatal("%s(%p): pointer not allocated by bufpool", what, p);
    uint32_t page = (uint32_t)(off >> chunk->page_shift);
    uint64_t h = chunk->run_map[page];
    if (h != 0 && !bp_handle_used(h) && bp_handle_offset(h) == page &&
        ((uintptr_t)p & ((1u << chunk->page_shift) - 1)) == 0)
        bp_fatal("%s(%p): double free (the run is already free)", what, p);
    bp_fatal("%s(%p): not the start of a live block", what, p);
}

/* The chunk and unit_info of p, or a fatal report when p is no block of any pool. */
static block find_block(const char *what, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    bp_chunk *chunk = bp_chunk_map_lookup(a);
    if (bp_unlikely(chunk == NULL))
        report_bad_pointer(what, p, NULL);
    uint32_t info = bp_chunk_info_at(chunk, a);
    if (bp_likely(info != 0))
        return (block){chunk, info};
    if (chunk->kind != BP_CHUNK_HUGE || a != chunk->base)
        report_bad_pointer(what, p, chunk);
    return (block){chunk, 0};
}

#if BP_CHECKED
/* Checked builds verify every free before it can enter a cache: the pointer starts a live
 * block (not inside one, not already free), and is not in this thread's cache already. */
static void check_free(const char *what, void *p)
{
    block b = find_block(what, p);
    if (b.info == 0)
        return;
    bp_chunk *chunk = b.chunk;
    bp_arena *arena = chunk->arena;
    uint32_t run = bp_info_run(b.info);
    bp_lock_acquire(&arena->lock);
    if (b.info & BP_INFO_SUBPAGE_BIT) {
        bp_subpage *sp = bp_chunk_subpage(chunk, run);
        long idx = bp_subpage_index_of(sp, (uintptr_t)p);
        if (idx < 0)
            bp_fatal("%s(%p): not the start of a block (inside a %u-byte element)", what, p,
                     sp->elem_size);
        if (bp_subpage_is_free(sp, (uint32_t)idx))
            bp_fatal("%s(%p): double free (a %u-byte block)", what, p, sp->elem_size);
    } else if (chunk->base + ((uintptr_t)run << chunk->page_shift) != (uintptr_t)p) {
        bp_fatal("%s(%p): not the start of a block (inside a run)", what, p);
    }
    bp_lock_release(&arena->lock);
    if (!(b.info & BP_INFO_SUBPAGE_BIT) && bp_arena_run_cached(arena, p))
        bp_fatal("%s(%p): double free (the run is in its arena's run cache)", what, p);
    bp_pool *pool = chunk->pool;
    if (pool->tc_slot < BP_TCACHE_SLOTS) {
        bp_tcache_enter();
        const bp_tcache_bin *bin = bp_bin_at(bp_tcache_bins(pool->tc_slot), b.info & 0xffff);
        for (void **e = bin->head; e != bin->empty; e++)
            if (*e == p)
                bp_fatal("%s(%p): double free (the block is in this thread's cache)", what, p);
        bp_tcache_leave();
    }
}
#endif

static bp_noinline void free_slow(void *p, const char *what)
{
    if (p == NULL)
        return;
    block b = find_block(what, p);
    if (b.info == 0)
        bp_arena_free_huge(b.chunk->arena, b.chunk);
    else
        bp_tcache_free_slow(b.chunk, p, b.info);
}

/* The fast path: the chunk map and the chunk's unit_info give the class; a push onto this
 * thread's bin for the block's pool. A pointer without a block start (0) indexes bin 0,
 * which always looks full. `what`, the call the program made, is read by reports only. */
bp_inline void free_block(void *p, const char *what)
{
#if BP_CHECKED
    if (p != NULL)
        check_free(what, p);
#endif
    uintptr_t a = (uintptr_t)p;
    bp_chunk *chunk = bp_chunk_map_lookup(a);
    if (bp_likely(chunk != NULL)) {
        uint32_t offset = (uint16_t)bp_chunk_info_at(chunk, a);
        bp_tcache_enter();
        bp_tcache_bin *bin = bp_bin_at(bp_tcache_bins(chunk->tc_slot), offset);
        void **head = bin->head;
        if (bp_likely(head != bin->full)) {
            *--head = p;
            bin->head = head;
            bp_tcache_leave();
            return;
        }
        bp_tcache_leave();
    }
    free_slow(p, what);
}

#if BP_TRACK
/* Tool builds: the block is announced as given back first (the lookup reports a pointer that
 * is no block, naming the call). */
static void free_tracked(void *p, const char *what)
{
    if (p != NULL) {
        size_t usable = usable_size(p, what);
        bp_chunk *chunk = bp_chunk_map_lookup((uintptr_t)p);
        bp_track_free(chunk->pool, p, usable, chunk->kind == BP_CHUNK_POOLED); /* huge: unmapped */
    }
    free_block(p, what);
}
#define free_entry free_tracked
#else
#define free_entry free_block
#endif

void bp_free(void *p)
{
    free_entry(p, "bp_free");
}

void bp_free_as(void *p, const char *what)
{
    free_entry(p, what);
}

void bp_free_sized(void *p, size_t size)
{
    if (p == NULL)
        return;
    if (BP_CHECKED) {
        block b = find_block("bp_free_sized", p);
        size_t usable = b.info != 0 ? b.chunk->pool->sc.size[bp_info_class(b.info)] : b.chunk->size;
        if (size > usable)
            bp_fatal("bp_free_sized(%p, %zu): the block holds only %zu bytes", p, size, usable);
    }
    free_entry(p, "bp_free_sized");
}

static size_t usable_size(const void *p, const char *what)
{
    if (p == NULL)
        return 0;
    block b = find_block(what, p);
    if (b.info == 0)
        return b.chunk->size;
    return b.chunk->pool->sc.size[bp_info_class(b.info)];
}

size_t bp_usable_size(const void *p)
{
    return usable_size(p, "bp_usable_size");
}

size_t bp_usable_size_as(const void *p, const char *what)
{
    return usable_size(p, what);
}

void *bp_realloc(bp_pool *pool, void *p, size_t size)
{
    return bp_realloc_as(pool, p, size, "bp_realloc");
}

void *bp_realloc_as(bp_pool *pool, void *p, size_t size, const char *what)
{
    if (p == NULL)
        return bp_alloc(pool, size);
    block b = find_block(what, p);
    size_t usable;
    if (b.info != 0) {
        unsigned cls = bp_info_class(b.info);
        usable = b.chunk->pool->sc.size[cls];
        /* Same pool, same class: nothing to do. A block aligned beyond its size keeps its
         * larger class only while the new size still needs it. */
        if (b.chunk->pool == pool && size <= pool->chunk_size &&
            bp_size_to_class(&pool->sc, size) == cls) {
            bp_track_resize(pool, p, usable); /* tool builds: the whole block, as before */
            return p;
        }
    } else {
        usable = b.chunk->size;
        if (b.chunk->pool == pool && size > pool->chunk_size &&
            bp_align_up(size, pool->page_size) == usable)
            return p;
    }
    void *q = bp_alloc(pool, size);
    if (q == NULL)
        return NULL;
    bp_unpoison(p, usable); /* tool builds: the old block's unrequested tail is copied too */
    memcpy(q, p, BP_MIN(size, usable));
    free_entry(p, what);
    return q;
}
