/* malloc_shim.c — libbufpool-malloc.so: the malloc family on bufpool's default pool, with
 * glibc's semantics, for LD_PRELOAD or linking. Only these symbols are exported. */
#include "front.h"

#include <errno.h>
#include <string.h>

#define SHIM    __attribute__((visibility("default")))
#define OS_PAGE ((size_t)4096)

/* The default pool: bp_default_pool, which names a pool prefix that misses every request
 * until the first one makes the pool (bp_pool_default creates it without calling malloc: its
 * memory comes from mmap, so nothing recurses). */
static bp_pool *pool(void)
{
    return bp_pool_default();
}

/* malloc and free are the inline fast paths themselves: no wrapper, no test of their own. */
SHIM void *malloc(size_t size)
{
    return bp_fast_alloc(__atomic_load_n(&bp_default_pool, __ATOMIC_ACQUIRE), size);
}

/* The _as calls name the function the program called in a misuse report. */
SHIM void free(void *p)
{
    bp_fast_free(p, 0, "free");
}

SHIM void *calloc(size_t n, size_t size)
{
    return bp_calloc(pool(), n, size);
}

/* glibc: realloc(p, 0) frees p and returns NULL; realloc(NULL, n) is malloc(n). */
SHIM void *realloc(void *p, size_t size)
{
    if (p != NULL && size == 0) {
        bp_free_as(p, "realloc");
        return NULL;
    }
    return bp_realloc_as(pool(), p, size, "realloc");
}

SHIM void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

/* Any power of two: up to the chunk size through the pool, beyond it as a huge block (a
 * size-0 request too: it gets a page of its own). */
static void *aligned(size_t align, size_t size)
{
    bp_pool *p = pool();
    if (align > p->engine.chunk_size)
        return bp_alloc_aligned_huge(p, align, size);
    return bp_aligned_alloc(p, align, size);
}

SHIM int posix_memalign(void **out, size_t align, size_t size)
{
    if (!bp_is_pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno; /* POSIX: the error is the return value; errno stays as it was */
    void *p = aligned(align, size);
    int err = errno;
    errno = saved;
    if (p == NULL)
        return err == EINVAL ? EINVAL : ENOMEM;
    *out = p;
    return 0;
}

/* glibc: an alignment that is not a power of two is rounded up to one (0 and 1 ask for
 * none); one above SIZE_MAX / 2 + 1 has no power of two to round to: EINVAL. */
SHIM void *memalign(size_t align, size_t size)
{
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!bp_is_pow2(align))
        align = align <= 1 ? 1 : (size_t)1 << (bp_log2(align - 1) + 1);
    return aligned(align, size);
}

/* glibc up to 2.37 (the semantics the README promises, from 2.36): aligned_alloc is memalign,
 * so aligned_alloc(0, n) and aligned_alloc(24, n) succeed. */
SHIM void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

SHIM void *valloc(size_t size)
{
    return aligned(OS_PAGE, size);
}

SHIM void *pvalloc(size_t size)
{
    if (size > SIZE_MAX - OS_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned(OS_PAGE, size == 0 ? OS_PAGE : bp_align_up(size, OS_PAGE));
}

SHIM size_t malloc_usable_size(void *p)
{
    return bp_usable_size_as(p, "malloc_usable_size");
}

SHIM void free_sized(void *p, size_t size)
{
    (void)size;
    bp_fast_free(p, 0, "free_sized");
}

SHIM void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align;
    (void)size;
    bp_fast_free(p, 0, "free_aligned_sized");
}

/* glibc's extension: gives free memory back to the OS. Returns 1 when some went back. */
SHIM int malloc_trim(size_t pad)
{
    (void)pad;
    return bp_pool_trim(pool()) > 0;
}
