/* bufpool.h — the one public header of bufpool: configuration, pools and the
 * allocation API. Everything a user of the library calls is declared here. */
#ifndef BUFPOOL_H
#define BUFPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BP_VERSION_MAJOR 0
#define BP_VERSION_MINOR 1
#define BP_VERSION_PATCH 0

#if defined(__GNUC__)
#define BP_API        __attribute__((visibility("default")))
#define BP_MALLOCLIKE __attribute__((malloc, warn_unused_result))
#else
#define BP_API
#define BP_MALLOCLIKE
#endif

/* ------------------------------------------------------------------------------------------
 * The OS layer. Every mapping a pool makes (chunks, huge blocks, metadata) goes through one
 * of these tables. The default one uses mmap/munmap/madvise; tests and embedders replace it
 * (a memfd shared with another process, memory registered for RDMA, a counting fake, a
 * table that refuses the Nth mapping).
 *
 * Contract: `map` returns `size` bytes of zero-filled, read-write memory whose address is a
 * multiple of `align` (a power of two, at least 4 KiB; `size` is a multiple of 4 KiB), or
 * NULL when it cannot. `unmap` receives exactly an address and size that `map` returned.
 * `purge` tells the OS that the contents of [addr, addr+size) are no longer needed (the
 * range stays mapped and reads back as zero or as old contents); it may be NULL.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_os {
    void *(*map)(size_t size, size_t align, void *ctx);
    void (*unmap)(void *addr, size_t size, void *ctx);
    int (*purge)(void *addr, size_t size, void *ctx);
    void *ctx;
} bp_os;

/* The table bufpool uses when a config names none. */
BP_API const bp_os *bp_os_default(void);

/* ------------------------------------------------------------------------------------------
 * Configuration. Call bp_config_init() first: it fills in the defaults and then applies the
 * BUFPOOL_CONF environment variable; change fields afterwards as needed.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_config {
    size_t page_size;       /* power of two, 4 KiB..64 KiB; default 8 KiB */
    size_t chunk_size;      /* page_size << 1..14; default 4 MiB */
    unsigned arenas;        /* 0 = 2 x online CPUs */
    unsigned small_cache;   /* thread-cache entries per small class; default 256 */
    unsigned normal_cache;  /* thread-cache entries per cached normal class; default 64 */
    size_t max_cached;      /* largest size a thread cache keeps; default 32 KiB */
    unsigned trim_interval; /* allocations between thread-cache trims; default 8192 */
    size_t memory_limit;    /* ceiling on mapped bytes; 0 = none */
    int leak_level;         /* bp_buf leak detection level; default 0 (off) */
    const bp_os *os;        /* NULL = bp_os_default() */
} bp_config;

typedef struct bp_pool bp_pool;

/* Defaults, then the keys of BUFPOOL_CONF ("key:value,key:value", K/M/G suffixes). */
BP_API void bp_config_init(bp_config *cfg);

/* A new pool, or NULL with errno = EINVAL (a message on stderr names the bad field) or
 * ENOMEM. A NULL config means the defaults of bp_config_init(). */
BP_API bp_pool *bp_pool_new(const bp_config *cfg);

/* Releases every mapping of the pool at once: every block allocated from it becomes invalid.
 * No thread may use the pool during or after the call. */
BP_API void bp_pool_destroy(bp_pool *pool);

/* The process-wide pool, created at first use with bp_config_init()'s settings. Never
 * destroyed. Aborts if it cannot be created (there is nothing sensible to return). */
BP_API bp_pool *bp_pool_default(void);

/* Reads back the configuration the pool runs with (defaults resolved). */
BP_API void bp_pool_config(const bp_pool *pool, bp_config *out);

/* ------------------------------------------------------------------------------------------
 * Allocation. Every block is at least 16-byte aligned. Failure returns NULL with errno set:
 * ENOMEM when the size cannot be served (too large, the OS refused, memory_limit reached),
 * EINVAL for a bad alignment. size 0 returns a unique minimal block.
 * ------------------------------------------------------------------------------------------ */
BP_API BP_MALLOCLIKE void *bp_alloc(bp_pool *pool, size_t size);
BP_API BP_MALLOCLIKE void *bp_calloc(bp_pool *pool, size_t n, size_t size);
/* align: any power of two up to the pool's chunk size. */
BP_API BP_MALLOCLIKE void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size);
/* In place when the new size has the same size class; otherwise allocate, copy, free.
 * p == NULL allocates; size 0 counts as the smallest size (a minimal block, never NULL on
 * success). On failure p is untouched and NULL is returned. */
BP_API void *bp_realloc(bp_pool *pool, void *p, size_t size);

/* The pool is found from the pointer. NULL is ignored. A pointer no pool owns, or a block
 * freed twice, is reported with its address on stderr, then the process aborts. */
BP_API void bp_free(void *p);
/* As bp_free, with the size the block was requested with (or its usable size). */
BP_API void bp_free_sized(void *p, size_t size);
/* Bytes usable at p (at least the requested size); 0 for NULL. */
BP_API size_t bp_usable_size(const void *p);

/* Gives memory the pool does not need back to the OS (after flushing the calling thread's
 * cache for the pool); returns the number of bytes. */
BP_API size_t bp_pool_trim(bp_pool *pool);

/* ------------------------------------------------------------------------------------------
 * Threads. Each thread keeps, per pool, a cache of freed blocks per size class that serves
 * the next allocations without a lock. A thread's caches are flushed into the pools when it
 * exits; blocks freed after that (from other thread-exit destructors) still work.
 *
 * Destroying a pool while other threads still hold caches for it is allowed once those
 * threads have stopped using the pool: their cached entries are dropped with the pool, and
 * each thread releases the cache's own memory the next time it allocates from any pool in
 * the same slot, or at exit. At most 64 pools have thread caches at once; further pools
 * work uncached (every request takes its arena's lock).
 * ------------------------------------------------------------------------------------------ */

/* Returns every block this thread's cache holds for the pool to the pool's arenas. */
BP_API void bp_thread_flush(bp_pool *pool);

#ifdef __cplusplus
}
#endif
#endif /* BUFPOOL_H */
