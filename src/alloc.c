/* alloc.c — the public allocation entry points: bp_alloc and friends route a size to its
 * class and arena (or the huge path); bp_free finds the chunk of a pointer and checks it. */
/* bp_alloc and bp_free are defined here as exported functions too */
#define BP_EXPORT_FAST_PATHS 1
#include "front.h"

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
    return cls < pool->engine.cache_classes ? bp_tcache_alloc_slow(pool, cls)
                                            : bp_arena_alloc(bp_thread_arena(pool), cls);
}

/* Everything the fast path does not serve: a first use, an empty bin, uncached classes,
 * huge blocks; in checked and tool builds, every request. The class is computed once. */
static void *alloc_slow(bp_pool *pool, size_t size)
{
    bp_pool_check_live(pool, "bp_alloc");
    if (bp_unlikely(pool->config.background_thread))
        bp_background_ensure();
    if (size <= pool->engine.chunk_size) {
        unsigned cls = bp_size_to_class(&pool->engine.sc, size);
        void *p = alloc_class(pool, cls);
        if (bp_unlikely(p == NULL) && reclaimed(pool))
            p = alloc_class(pool, cls);
        return bp_likely(p != NULL) ? p : fail(ENOMEM);
    }
    return alloc_huge(pool, size, 0);
}

static size_t usable_size(const void *p, const char *what);

/* The default pool before it exists: a pool prefix whose every request misses, so that the
 * malloc library's malloc is the inline fast path on bp_default_pool with no test of its
 * own; the first miss makes the pool. */
static const struct bp_fast_pool default_pool_unset = {.slot = BP_TCACHE_SLOTS};
bp_pool *bp_default_pool = (bp_pool *)(uintptr_t)&default_pool_unset;

void *bp_alloc_slow(bp_pool *pool, size_t size)
{
    if (bp_unlikely(pool == (bp_pool *)(uintptr_t)&default_pool_unset))
        pool = bp_pool_default();
    void *p = alloc_slow(pool, size);
#if BP_TRACK
    /* ASan and valgrind builds (every request misses): announce the usable size, which the
     * API promises; touching past it is reported */
    if (p != NULL)
        bp_track_alloc(pool, p, usable_size(p, "bp_alloc"));
#endif
    return p;
}

/* The fast path (bufpool.h) for the library's own callers: tool builds announce what the
 * public entry points hand out, once, so internal callers that announce themselves go
 * straight to the slow path's work. */
static void *alloc_unannounced(bp_pool *pool, size_t size)
{
#if BP_TRACK
    return alloc_slow(pool, size);
#else
    return bp_fast_alloc(pool, size);
#endif
}

void *bp_alloc(bp_pool *pool, size_t size)
{
    return bp_fast_alloc(pool, size);
}

void *bp_calloc(bp_pool *pool, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return fail(ENOMEM);
    if (total > pool->engine.chunk_size) {
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
    void *p = bp_fast_alloc(pool, total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

static void *aligned_unannounced(bp_pool *pool, size_t align, size_t size)
{
    bp_pool_check_live(pool, "bp_aligned_alloc");
    if (!bp_is_pow2(align) || align > pool->engine.chunk_size)
        return fail(EINVAL);
    if (align <= BP_QUANTUM)
        return alloc_unannounced(pool, size);
    size_t want = BP_MAX(size, align);
    if (want > pool->engine.chunk_size)
        return alloc_huge(pool, size, align);
    /* The smallest class that is a multiple of align: its elements (or its run) land on
     * multiples of align. */
    const bp_size_classes *sc = &pool->engine.sc;
    unsigned cls = bp_size_to_class(sc, want);
    while (cls < sc->nclasses && sc->size[cls] % align != 0)
        cls++;
    if (cls == sc->nclasses)
        return alloc_huge(pool, size, align);
    if (align <= pool->engine.page_size &&
        cls < pool->engine.cache_classes) /* any block of it is aligned */
        return alloc_unannounced(pool, pool->engine.sc.size[cls]);
    bp_arena *arena = bp_thread_arena(pool);
    void *p = bp_arena_alloc_aligned(arena, cls, align);
    if (p == NULL && reclaimed(pool))
        p = bp_arena_alloc_aligned(arena, cls, align);
    return p != NULL ? p : fail(ENOMEM);
}

void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size)
{
    void *p = aligned_unannounced(pool, align, size);
#if BP_TRACK
    if (p != NULL)
        bp_track_alloc(pool, p, usable_size(p, "bp_aligned_alloc"));
#endif
    return p;
}

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
    bp_arena_check_free(chunk->arena, chunk, p, b.info, what);
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

/* Everything the fast path does not serve: NULL, a full bin, huge blocks, classes without a
 * thread cache (straight to their arena), a thread without a cache; in checked and tool
 * builds, every free, checked (and announced) before it can enter a cache. */
void bp_free_slow(void *p, size_t size, const char *what)
{
    if (p == NULL)
        return;
    block b = find_block(what, p);
    bp_chunk *chunk = b.chunk;
#if BP_TRACK
    bp_track_free(chunk->pool, p, usable_size(p, what), chunk->kind == BP_CHUNK_POOLED);
#endif
#if BP_CHECKED
    check_free(what, p);
    size_t usable = b.info != 0 ? chunk->engine->sc.size[bp_info_class(b.info)] : chunk->size;
    if (size > usable)
        bp_fatal("%s(%p, %zu): the block holds only %zu bytes", what, p, size, usable);
#else
    (void)size;
#endif
    if (b.info == 0) {
        bp_arena_free_huge(chunk->arena, chunk);
        return;
    }
    unsigned cls = bp_info_class(b.info);
    if (cls >= chunk->engine->cache_classes) {
        __atomic_add_fetch(&chunk->arena->counters.classes[cls].program_frees, 1, __ATOMIC_RELAXED);
        bp_arena_free(chunk->arena, chunk, (uintptr_t)p, b.info);
        return;
    }
    bp_tcache_free_slow(chunk, p, b.info);
}

void bp_free(void *p)
{
    bp_fast_free(p, 0, "bp_free");
}

void bp_free_as(void *p, const char *what)
{
    bp_fast_free(p, 0, what);
}

void bp_free_sized(void *p, size_t size)
{
    bp_fast_free(p, size, "bp_free_sized");
}

static size_t usable_size(const void *p, const char *what)
{
    if (p == NULL)
        return 0;
    block b = find_block(what, p);
    if (b.info == 0)
        return b.chunk->size;
    return b.chunk->engine->sc.size[bp_info_class(b.info)];
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
        return bp_fast_alloc(pool, size);
    block b = find_block(what, p);
    size_t usable;
    if (b.info != 0) {
        unsigned cls = bp_info_class(b.info);
        usable = b.chunk->engine->sc.size[cls];
        /* Same pool, same class: nothing to do. A block aligned beyond its size keeps its
         * larger class only while the new size still needs it. */
        if (b.chunk->pool == pool && size <= pool->engine.chunk_size &&
            bp_size_to_class(&pool->engine.sc, size) == cls) {
            bp_track_resize(pool, p, usable); /* tool builds: the whole block, as before */
            return p;
        }
    } else {
        usable = b.chunk->size;
        if (b.chunk->pool == pool && size > pool->engine.chunk_size) {
            if (bp_align_up(size, pool->engine.page_size) == usable)
                return p;
            /* in place or moved by the OS (mremap), without a copy; NULL: copy below */
            void *q = bp_arena_realloc_huge(b.chunk->arena, b.chunk, size);
            if (q != NULL) {
#if BP_VALGRIND
                VALGRIND_MEMPOOL_CHANGE(pool, p, q, usable_size(q, what));
#else
                bp_track_resize(pool, q, usable_size(q, what));
#endif
                return q;
            }
        }
    }
    void *q = bp_fast_alloc(pool, size);
    if (q == NULL)
        return NULL;
    bp_unpoison(p, usable); /* tool builds: the old block's unrequested tail is copied too */
    memcpy(q, p, BP_MIN(size, usable));
    bp_fast_free(p, 0, what);
    return q;
}
