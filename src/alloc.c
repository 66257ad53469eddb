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

static void *alloc_huge(bp_pool *pool, size_t size, size_t align)
{
    if (size > PTRDIFF_MAX)
        return fail(ENOMEM);
    void *p = bp_arena_alloc_huge(bp_pool_thread_arena(pool), size, align);
    return p != NULL ? p : fail(ENOMEM);
}

void *bp_alloc(bp_pool *pool, size_t size)
{
    if (bp_likely(size <= pool->chunk_size)) {
        void *p = bp_arena_alloc(bp_pool_thread_arena(pool), bp_size_to_class(&pool->sc, size));
        return bp_likely(p != NULL) ? p : fail(ENOMEM);
    }
    return alloc_huge(pool, size, 0);
}

void *bp_calloc(bp_pool *pool, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return fail(ENOMEM);
    void *p = bp_alloc(pool, total);
    if (p != NULL && total > pool->chunk_size)
        return p; /* a huge block is a fresh mapping: already zero */
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size)
{
    if (!bp_is_pow2(align) || align > pool->chunk_size)
        return fail(EINVAL);
    if (align <= BP_QUANTUM)
        return bp_alloc(pool, size);
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
    void *p = bp_arena_alloc_aligned(bp_pool_thread_arena(pool), cls, align);
    return p != NULL ? p : fail(ENOMEM);
}

/* ---- from a pointer to its block -------------------------------------------------------- */

typedef struct block {
    bp_chunk *chunk;
    uint32_t info; /* page_info of the block's page; 0 for a huge block */
} block;

bp_cold static void report_bad_pointer(const char *what, const void *p, const bp_chunk *chunk)
{
    if (chunk == NULL)
        bp_fatal("%s(%p): pointer not allocated by bufpool", what, p);
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

/* The chunk and page_info of p, or a fatal report when p is no block of any pool. */
static block find_block(const char *what, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    bp_chunk *chunk = bp_chunk_map_lookup(a);
    if (bp_unlikely(chunk == NULL))
        report_bad_pointer(what, p, NULL);
    uintptr_t page = (a - chunk->base) >> chunk->page_shift;
    if (bp_likely(page < chunk->npages)) {
        uint32_t info = chunk->page_info[page];
        if (bp_unlikely(info == 0))
            report_bad_pointer(what, p, chunk);
        return (block){chunk, info};
    }
    if (chunk->kind != BP_CHUNK_HUGE || a != chunk->base)
        report_bad_pointer(what, p, chunk);
    return (block){chunk, 0};
}

void bp_free(void *p)
{
    if (p == NULL)
        return;
    block b = find_block("bp_free", p);
    if (b.info != 0)
        bp_arena_free(b.chunk->arena, b.chunk, (uintptr_t)p, b.info);
    else
        bp_arena_free_huge(b.chunk->arena, b.chunk);
}

void bp_free_sized(void *p, size_t size)
{
    if (p == NULL)
        return;
    if (BP_CHECKED) {
        block b = find_block("bp_free_sized", p);
        size_t usable = b.info != 0 ? b.chunk->pool->sc.size[bp_info_class(b.info)]
                                    : b.chunk->size;
        if (size > usable)
            bp_fatal("bp_free_sized(%p, %zu): the block holds only %zu bytes", p, size, usable);
    }
    bp_free(p);
}

size_t bp_usable_size(const void *p)
{
    if (p == NULL)
        return 0;
    block b = find_block("bp_usable_size", p);
    if (b.info == 0)
        return b.chunk->size;
    return b.chunk->pool->sc.size[bp_info_class(b.info)];
}

void *bp_realloc(bp_pool *pool, void *p, size_t size)
{
    if (p == NULL)
        return bp_alloc(pool, size);
    block b = find_block("bp_realloc", p);
    size_t usable;
    if (b.info != 0) {
        unsigned cls = bp_info_class(b.info);
        usable = b.chunk->pool->sc.size[cls];
        /* Same pool, same class: nothing to do. A block aligned beyond its size keeps its
         * larger class only while the new size still needs it. */
        if (b.chunk->pool == pool && size <= pool->chunk_size &&
            bp_size_to_class(&pool->sc, size) == cls)
            return p;
    } else {
        usable = b.chunk->size;
        if (b.chunk->pool == pool && size > pool->chunk_size &&
            bp_align_up(size, pool->page_size) == usable)
            return p;
    }
    void *q = bp_alloc(pool, size);
    if (q == NULL)
        return NULL;
    memcpy(q, p, BP_MIN(size, usable));
    bp_free(p);
    return q;
}
