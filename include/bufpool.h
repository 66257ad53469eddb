/* bufpool.h — the one public header of bufpool: configuration, pools and the
 * allocation API. Everything a user of the library calls is declared here. */
#ifndef BUFPOOL_H
#define BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. The shared library's soname carries the major number
 * (libbufpool.so.2): it changes when a release breaks programs built against an older one. */
#define BP_VERSION_MAJOR 2
#define BP_VERSION_MINOR 0
#define BP_VERSION_PATCH 0

#if defined(BP_HIDE_API) /* the malloc library exports the malloc family only */
#define BP_API
#define BP_MALLOCLIKE __attribute__((malloc, warn_unused_result))
#elif defined(__GNUC__)
#define BP_API        __attribute__((visibility("default")))
#define BP_MALLOCLIKE __attribute__((malloc, warn_unused_result))
#else
#define BP_API
#define BP_MALLOCLIKE
#endif

/* bp_alloc, bp_free and bp_free_sized are inline (see "Allocation fast paths" below): static
 * inline in a program, exported out-of-line copies in the library, for callers that take
 * their address or cannot include C headers. */
#ifdef BP_EXPORT_FAST_PATHS
#define BP_INLINE_API BP_API
#else
#define BP_INLINE_API static inline
#endif

/* ------------------------------------------------------------------------------------------
 * The OS layer. Every mapping a pool makes (chunks, huge blocks, metadata) goes through one
 * of these tables. The default one uses mmap/munmap/madvise; tests and embedders replace it
 * (a memfd shared with another process, memory registered for RDMA or io_uring, a counting
 * fake, a table that refuses the Nth mapping). bp_shm_os (see "Regions and shared memory")
 * is one that puts every chunk and huge block in a memfd.
 *
 * Contract: `map` returns `size` bytes of zero-filled, read-write memory whose address is a
 * multiple of `align` (a power of two, at least 4 KiB; `size` is a multiple of 4 KiB), or
 * NULL when it cannot. `unmap` receives exactly an address and size that `map` (or
 * `map_memory`) returned and returns 0, or an errno value when it could not unmap them: the
 * range must then still be mapped as it was. `purge` tells the OS that the contents of
 * [addr, addr+size) are no longer needed (the range stays mapped and reads back as zero or
 * as old contents); it returns 0 or an errno value, and may be NULL.
 *
 * Memory and metadata. `map_memory`, when not NULL, maps what the program's blocks live in
 * (kind BP_MAP_CHUNK: a chunk; BP_MAP_HUGE: a huge block, page multiples), under the same
 * contract as `map`; `map` then maps metadata only (the pool, chunk metadata, huge
 * descriptors), which never leaves the process. NULL: `map` maps both. `unmap` and `purge`
 * get ranges of either kind: a layer that puts memory elsewhere tells them apart by address
 * (bp_shm_os by its reserved range).
 *
 * Regions. `region_add`, when not NULL, is called once for every chunk and huge block right
 * after it is mapped, with its address and size, and fills in *out: the region the memory
 * belongs to (an id of the layer's choosing: an io_uring fixed-buffer index, an RDMA key)
 * and the offset of its first byte there. It returns 0, or an errno value: the mapping is
 * then unmapped and the allocation that needed it fails with ENOMEM, with nothing counted
 * against memory_limit. `region_remove` (may be NULL) is called before that memory is
 * unmapped, with what region_add gave. bp_region_of answers from them. Both run under an
 * arena's lock: they must not call into the same pool. A huge block resized by bp_realloc
 * keeps its region: with region_add set, blocks are never moved with mremap (they are
 * copied into a new block, which gets its own region).
 *
 * A refused unmap never stops the program. bufpool purges the range and keeps it counted
 * against memory_limit: an empty chunk stays with its arena for reuse, any other range is
 * unmapped again at the next bp_pool_trim, before an allocation fails, and at
 * bp_pool_destroy, after which a range still refused stays mapped (purged) for good. The
 * default layer's unmap is refused where munmap is (ENOMEM at vm.max_map_count, when the
 * range lies inside a larger mapping), and its map returns NULL when the OS refuses either
 * the mapping or the trimming of the alignment slack around it.
 * ------------------------------------------------------------------------------------------ */
/* What a mapping of map_memory holds. */
typedef enum bp_map_kind {
    BP_MAP_CHUNK = 1, /* a chunk: chunk_size bytes, carved into the blocks of many callers */
    BP_MAP_HUGE = 2   /* one huge block (above chunk_size) */
} bp_map_kind;

/* Where a chunk or huge block lies, as region_add describes it: the region's id and the
 * offset of the memory's first byte in the region. */
typedef struct bp_region {
    uint64_t offset;
    uint32_t id;
} bp_region;

/* An OS layer: the calls and the context passed to each. Fields after ctx may be NULL (a
 * table written for version 1, with four fields, is a valid table). */
typedef struct bp_os {
    void *(*map)(size_t size, size_t align, void *ctx);
    int (*unmap)(void *addr, size_t size, void *ctx);
    int (*purge)(void *addr, size_t size, void *ctx);
    void *ctx;
    void *(*map_memory)(size_t size, size_t align, bp_map_kind kind, void *ctx);
    int (*region_add)(void *addr, size_t size, bp_map_kind kind, bp_region *out, void *ctx);
    void (*region_remove)(void *addr, size_t size, const bp_region *region, void *ctx);
} bp_os;

/* The table bufpool uses when a config names none. Errors: none. */
BP_API const bp_os *bp_os_default(void);

/* ------------------------------------------------------------------------------------------
 * Configuration. Call bp_config_init() first: it fills in the defaults and then applies the
 * BUFPOOL_CONF environment variable; change fields afterwards as needed.
 * ------------------------------------------------------------------------------------------ */
/* The settings of a pool. Each field's comment gives its range and default; bp_pool_new
 * refuses a value outside the range, or a chunk_size that is not page_size << 1..14, with
 * EINVAL. The keys of BUFPOOL_CONF have the same names. */
typedef struct bp_config {
    size_t page_size;         /* power of two, 4 KiB..64 KiB; default 8 KiB */
    size_t chunk_size;        /* page_size << 1..14; default 4 MiB */
    unsigned arenas;          /* 0..4096; 0 (default) = 2 x online CPUs */
    unsigned small_cache;     /* thread-cache entries per small class, 0..32768; default 256 */
    unsigned normal_cache;    /* entries per cached normal class, 0..32768; default 64 */
    size_t max_cached;        /* largest size a thread cache keeps, 0..1 GiB (small classes
                               * are cached whatever it says); default 256 KiB */
    size_t cache_bytes;       /* what a thread cache may hold of the cached classes above the
                               * small ones, shared equally among them: each holds
                               * max(1, share / size) blocks, at most normal_cache; 0..1 GiB,
                               * 0 = those classes uncached; default 4 MiB */
    unsigned trim_interval;   /* allocations between thread-cache trims, 1..2^30; default 8192 */
    size_t memory_limit;      /* ceiling on mapped bytes: chunks and huge blocks with their
                               * metadata (chunk metadata, huge descriptors); 0 = none */
    unsigned retained_chunks; /* empty chunks an arena keeps mapped for reuse, 0..1024;
                               * default 2 */
    int purge_decay_ms;       /* free pages go back to the OS (purge) after staying free about
                               * this long, -1..3600000; 0 = at once (and freed runs above
                               * max_cached are not kept for reuse), -1 = only on
                               * bp_pool_trim; default 10000 */
    size_t huge_cache_bytes;  /* freed huge blocks (above chunk_size) each arena keeps mapped
                               * for reuse by a block of the same size up to 25 % smaller (with
                               * the default OS layer, by any huge block: a mapping is cut down
                               * or grown with mremap, its pages kept),
                               * released after purge_decay_ms unused (none kept when it is 0),
                               * by bp_pool_trim and before memory_limit fails an allocation;
                               * at most 16 blocks, 0..1 TiB, 0 = none; default 64 MiB */
    unsigned cache_idle_ms;   /* a thread cache its thread has not refilled or trimmed for this
                               * long gives its blocks back (emptied by another thread's trim or
                               * the background thread), 0..3600000; 0 = never; default 10000 */
    int background_thread;    /* 1: a thread of bufpool's own purges free pages and empties
                               * idle thread caches on time, so an idle program gives memory back
                               * without any call (one thread per process); default 0 */
    int leak_level;           /* bp_buf leak detection level, 0..3; default 0 (off) */
    int stats_print;          /* 1: print the statistics to stderr at exit, if the pool is
                               * still alive then; default 0 */
    const bp_os *os;          /* NULL = bp_os_default() */
} bp_config;

/* A pool: its size classes, arenas, chunks and the thread caches that serve from it. Opaque;
 * made by bp_pool_new, used from any thread, gone with bp_pool_destroy. */
typedef struct bp_pool bp_pool;

/* Defaults, then the keys of BUFPOOL_CONF ("key:value,key:value", K/M/G suffixes). An unknown
 * key, a value outside its field's range, and a chunk_size that does not fit page_size (both
 * keep their defaults then, whatever the order of the keys) are reported on stderr and
 * skipped, so the result always makes a pool: bp_pool_new fails on it with ENOMEM only. Each
 * problem is reported once per process (bp_config_init may run many times: the default pool
 * runs it too); every bufpool message starts "bufpool: PROGRAM[PID]: ".
 * Errors: none (what BUFPOOL_CONF gets wrong is reported and skipped, as above). */
BP_API void bp_config_init(bp_config *cfg);

/* A new pool. A NULL config means the defaults of bp_config_init().
 * Errors: NULL with errno EINVAL (a field outside its range, or a chunk_size that does not
 * fit page_size; a message on stderr names the field) or ENOMEM (the OS layer refused the
 * pool's own mapping or the chunk map's). */
BP_API bp_pool *bp_pool_new(const bp_config *cfg);

/* Releases every mapping of the pool at once: every block allocated from it becomes invalid.
 * No thread may use the pool during or after the call. NULL is ignored.
 * Errors: none returned; a pointer to memory that holds no live pool is reported on stderr
 * and the process aborts (a pool destroyed already is unmapped: destroying it twice is
 * undefined). */
BP_API void bp_pool_destroy(bp_pool *pool);

/* The process-wide pool, created at first use with bp_config_init()'s settings. Never
 * destroyed, never NULL. Whatever BUFPOOL_CONF holds, it is made: a bad key or value is
 * reported and its default kept. Errors: none returned; only when the memory for the pool
 * itself cannot be mapped at that first use does the process abort, after the message
 * "cannot create the default pool (errno N)", there being nothing sensible to return. */
BP_API bp_pool *bp_pool_default(void);

/* Reads back the configuration the pool runs with (defaults resolved). Errors: none. */
BP_API void bp_pool_config(const bp_pool *pool, bp_config *out);

/* ------------------------------------------------------------------------------------------
 * Allocation. Every block is at least 16-byte aligned. Failure returns NULL with errno set:
 * ENOMEM when the size cannot be served (too large, the OS refused, memory_limit reached),
 * EINVAL for a bad alignment. size 0 returns a unique minimal block.
 * ------------------------------------------------------------------------------------------ */
/* At least `size` bytes from the pool, rounded up to a size class (bp_usable_size says how
 * many). Errors: NULL with errno ENOMEM (the size cannot be served: above PTRDIFF_MAX,
 * memory_limit reached, or the OS refused). */
BP_INLINE_API BP_MALLOCLIKE void *bp_alloc(bp_pool *pool, size_t size);
/* n * size bytes, zeroed. Errors: NULL with errno ENOMEM, also when n * size overflows. */
BP_API BP_MALLOCLIKE void *bp_calloc(bp_pool *pool, size_t n, size_t size);
/* A block whose address is a multiple of align: any power of two up to the pool's chunk
 * size. Freed with bp_free like any other.
 * Errors: NULL with errno EINVAL (align 0, not a power of two, or above the chunk size) or
 * ENOMEM (as bp_alloc). */
BP_API BP_MALLOCLIKE void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size);
/* In place when the new size has the same size class; otherwise allocate, copy, free. A
 * huge block (above chunk_size) is resized without copying where the pool uses the default OS
 * layer: in place, or its pages moved with mremap, keeping its alignment; with a custom bp_os
 * (which has no remap) it is copied unless the new size fits its current mapping.
 * p == NULL allocates; size 0 counts as the smallest size (a minimal block, never NULL on
 * success). Errors: NULL with errno ENOMEM, p untouched and still valid; a p that is no
 * block of any pool is reported and the process aborts, as in bp_free. */
BP_API void *bp_realloc(bp_pool *pool, void *p, size_t size);

/* The pool is found from the pointer. NULL is ignored.
 * Errors: none returned. Misuse is reported on stderr with the address, then the process
 * aborts: a pointer no pool owns, at the call in every build; a pointer into the middle of a
 * block or a block freed twice, at the call in checked builds (libbufpool-checked.so,
 * libbufpool-malloc-checked.so, -DBP_CHECKED=ON), but in release builds only when the block
 * reaches its arena (a thread-cache overflow, trim or flush): later than the call, or not
 * at all when the cache hands the block out again first, so that a double free gives the
 * same block to two callers. Link the checked library while developing. */
BP_INLINE_API void bp_free(void *p);
/* As bp_free, with the size the block was requested with (or its usable size). Errors: as
 * bp_free; checked builds also abort when size is larger than the block. */
BP_INLINE_API void bp_free_sized(void *p, size_t size);
/* Bytes usable at p (at least the requested size); 0 for NULL. Errors: none returned; a p
 * that is no block of any pool is reported and the process aborts, as in bp_free. */
BP_API size_t bp_usable_size(const void *p);

/* Gives memory the pool does not need back to the OS (after flushing the calling thread's
 * cache for the pool); returns the number of bytes. Errors: none. */
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

/* Returns every block this thread's cache holds for the pool to the pool's arenas.
 * Errors: none. */
BP_API void bp_thread_flush(bp_pool *pool);

/* ------------------------------------------------------------------------------------------
 * Regions and shared memory. A pool whose OS layer has region_add (see "The OS layer") knows,
 * for every block, the region its memory lies in and where: an io_uring fixed-buffer index,
 * an RDMA key, the offset in a memfd another process maps. bp_region_of answers in O(1)
 * from the chunk map, with no lock.
 *
 * bp_shm is such a layer: one memfd of a fixed size that every chunk and huge block of its
 * pools is carved from (at offsets aligned to 4 KiB, at least), while the metadata stays in
 * private memory, so a process that maps the memfd sees the blocks' bytes and nothing else.
 * Purging gives the memfd's pages back (fallocate PUNCH_HOLE), so freed memory leaves the
 * other processes too. The region of every block is (the id given to bp_shm_new, the block's
 * offset in the memfd). To share: hand bp_shm_fd to the other process (SCM_RIGHTS over a
 * unix socket, or fork), which maps it with mmap(NULL, bp_shm_size(shm), PROT_READ (or
 * PROT_READ | PROT_WRITE), MAP_SHARED, fd, 0); a block at offset o is at that address + o.
 * A block freed by its owner may be handed out again at once: the other side must be done
 * with the bytes before the owner frees them.
 *
 *     bp_shm *shm = bp_shm_new(256 << 20, 0);
 *     bp_config cfg;
 *     bp_config_init(&cfg);
 *     cfg.os = bp_shm_os(shm);
 *     cfg.memory_limit = 256 << 20; (optional: the memfd's size bounds the memory anyway)
 *     bp_pool *pool = bp_pool_new(&cfg);
 *     ... bp_buf_new(pool, ...), bp_buf_region_of(b, &id, &offset, &len), send them ...
 *     bp_pool_destroy(pool);
 *     bp_shm_destroy(shm);
 *
 * A memfd that has no room left for a chunk or huge block fails that allocation with ENOMEM
 * like a refused mmap (the pool stays usable). Needs Linux 3.17 (memfd_create) and a
 * file system with hole punching (tmpfs, hugetlbfs: every memfd has it).
 * ------------------------------------------------------------------------------------------ */
/* The region of the byte at p: *id and *offset (where p lies in the region). p may point
 * anywhere inside a live block of a pooled chunk, or into the first 4 MiB of a huge block
 * (pass the block's address, or a bp_buf, for bytes after that: the region is contiguous
 * over the block). The block must be live: the answer for freed memory is whatever memory
 * is there now.
 * Errors: EINVAL (p is NULL or in no pool's memory: nothing written), ENOENT (its pool's OS
 * layer has no region_add). */
BP_API int bp_region_of(const void *p, uint32_t *id, uint64_t *offset);
struct bp_buf; /* see "Buffers" */
/* The region of b's readable bytes: the first byte's region (*id, *offset) and *len, how
 * many readable bytes lie contiguously from there (all of them for a contiguous buffer; the
 * rest of the first part for a composite, whose parts may lie in different regions).
 * Errors: EINVAL (b NULL, or no readable bytes), and those of bp_region_of. */
BP_API int bp_buf_region_of(const struct bp_buf *b, uint32_t *id, uint64_t *offset, size_t *len);

/* A memfd-backed OS layer, its memfd and its own reserved address range. */
typedef struct bp_shm bp_shm;
/* A memfd of `size` bytes (a multiple of 4 MiB, at least 4 MiB) whose blocks' region id is
 * region_id, and address space for all of it (reserved, not backed).
 * Errors: NULL with errno EINVAL (size), or the errno of memfd_create, ftruncate or mmap
 * (EMFILE, ENOMEM, ENOSYS on kernels without memfd). */
BP_API bp_shm *bp_shm_new(size_t size, uint32_t region_id);
/* The OS layer to put in bp_config.os; valid until bp_shm_destroy. Several pools may share
 * one bp_shm (they share its memfd). Errors: none. */
BP_API const bp_os *bp_shm_os(bp_shm *shm);
/* The memfd (close-on-exec; bp_shm_destroy closes it), its size, and the bytes of it chunks
 * and huge blocks hold now. Errors: none. */
BP_API int bp_shm_fd(const bp_shm *shm);
BP_API size_t bp_shm_size(const bp_shm *shm);
BP_API size_t bp_shm_used(const bp_shm *shm);
/* Closes the memfd and gives the address range back (other processes' mappings of the memfd
 * stay valid until they unmap it). Call it after bp_pool_destroy of every pool on it; NULL
 * is ignored. Errors: none returned; a bp_shm with memory still in use is reported on
 * stderr and the process aborts. */
BP_API void bp_shm_destroy(bp_shm *shm);

/* ------------------------------------------------------------------------------------------
 * io_uring. A bp_uring is an OS layer that registers every chunk and huge block of its pools
 * as an io_uring fixed buffer as it is mapped (io_uring_register_buffers_update_tag into a
 * sparse table), and takes it out of the table before it is unmapped. The region of a block
 * (bp_region_of, bp_buf_region_of) is then (the fixed-buffer index, the offset in the chunk
 * or huge block), so any block or bp_buf can be read into and written from with
 * IORING_OP_READ_FIXED / WRITE_FIXED, with no page pinned per I/O:
 *
 *     bp_uring *u = bp_uring_new(NULL, 256, 0, NULL);   (NULL + errno: see bp_uring_new)
 *     bp_config cfg;
 *     bp_config_init(&cfg);
 *     cfg.os = bp_uring_os(u);
 *     bp_pool *pool = bp_pool_new(&cfg);
 *     ... bp_buf_region_of(b, &index, &offset, &len);
 *         io_uring_prep_write_fixed(sqe, fd, address of the bytes, len, 0, index) ...
 *     bp_pool_destroy(pool);
 *     bp_uring_destroy(u);
 *
 * It also keeps a provided-buffer ring filled with bp_bufs of one size from a pool
 * (bp_uring_provide): a receive with IOSQE_BUFFER_SELECT and that buffer group picks its
 * buffer in the kernel, and bp_uring_recv_buf turns the completion into the bp_buf holding
 * the bytes, putting a fresh one in the ring.
 *
 * Registered memory is pinned, resident for its whole life (a chunk is registered whole
 * when it is mapped) and counted against RLIMIT_MEMLOCK for a program without
 * CAP_IPC_LOCK; it is never purged (the layer refuses: giving pages back under a pin would
 * part the process's view of the memory from the kernel's). The kernel refuses a fixed
 * buffer above 1 GiB: on this layer such a huge block fails with ENOMEM, as does any chunk
 * or huge block once the table is full or the kernel refuses to pin it (the pool stays
 * usable). The layer maps through `inner` (the default layer, or bp_shm_os for registered
 * memory another process also maps; the region is then the fixed-buffer index, not the
 * memfd offset). Registrations happen on whichever thread maps a chunk, so a ring made with
 * IORING_SETUP_SINGLE_ISSUER must not be given. Built without liburing (the build says so
 * when it is configured), bp_uring_new fails with ENOSYS and so does everything after it.
 * ------------------------------------------------------------------------------------------ */
/* The table of one io_uring's fixed buffers and its provided-buffer ring. Opaque. */
typedef struct bp_uring bp_uring;
struct io_uring;     /* liburing's ring: this header does not need liburing's */
struct io_uring_cqe; /* a completion, as io_uring_peek_cqe and its kin give them */

/* A fixed-buffer table of fixed_buffers entries (0: 1024; at most 16384) registered on
 * `ring`, the caller's io_uring (it stays the caller's: set up before, torn down after
 * bp_uring_destroy), or, when ring is NULL, on one made here with `entries` entries (0: 256;
 * at most 32768). inner: the layer to map through (NULL: bp_os_default()).
 * Errors: NULL with errno ENOSYS (no io_uring in the kernel, or bufpool built without
 * liburing), EPERM (io_uring disabled: /proc/sys/kernel/io_uring_disabled), EINVAL (a count
 * out of range), EBUSY (the caller's ring has fixed buffers registered already), ENOMEM, or
 * another errno of io_uring_queue_init or io_uring_register_buffers_sparse. */
BP_API bp_uring *bp_uring_new(struct io_uring *ring, unsigned entries, unsigned fixed_buffers,
                              const bp_os *inner);
/* The ring the table is registered on, for the program's own submissions; the OS layer to
 * put in bp_config.os (valid until bp_uring_destroy; several pools may share it, one table
 * then serving all of them); the fixed buffers registered now (chunks and huge blocks).
 * Errors: none. */
BP_API struct io_uring *bp_uring_ring(bp_uring *u);
BP_API const bp_os *bp_uring_os(bp_uring *u);
BP_API unsigned bp_uring_registered(bp_uring *u);
/* Sets up a provided-buffer ring for buffer group `group` on u's ring and fills it with
 * `count` (a power of two, at most 32768) bp_bufs from `pool`, each of capacity and maximum
 * `size` bytes (best a pool on bp_uring_os(u), so that what is received can be written with
 * WRITE_FIXED). One ring per bp_uring; it and bp_uring_recv_buf are for one thread at a
 * time. Returns 0.
 * Errors: EINVAL (NULL u or pool, a ring already set up, count not a power of two or out of
 * range, size 0 or above 4 GiB - 1), ENOMEM (the pool could not supply `count` buffers:
 * nothing is kept), EEXIST (the group has a ring on this io_uring), or another errno of
 * the registration (EINVAL from a kernel before 5.19). */
BP_API int bp_uring_provide(bp_uring *u, bp_pool *pool, uint16_t group, unsigned count,
                            size_t size);
/* The bp_buf a receive completion of the provided group filled (IORING_CQE_F_BUFFER set),
 * its res bytes readable: the caller holds its reference (bp_buf_release when done). A fresh
 * buffer takes its place in the ring; should the pool refuse one, the place stays empty and
 * every later call tries again (receives meanwhile may complete with ENOBUFS).
 * Errors: NULL with errno 0 (res 0: the end of the stream), the completion's own error
 * (-res: ENOBUFS when the ring had no buffer, ECONNRESET, ...; a buffer it took goes back to
 * the ring), or EINVAL (NULL u or cqe, no ring set up, or a completion that names no buffer
 * of the ring: another group's, or one handed in before). */
BP_API struct bp_buf *bp_uring_recv_buf(bp_uring *u, const struct io_uring_cqe *cqe);
/* Takes the provided-buffer ring away from the kernel and releases its buffers into their
 * pool: call it before bp_pool_destroy of that pool. NULL, or no ring, is ignored.
 * Errors: none. */
BP_API void bp_uring_unprovide(bp_uring *u);
/* Unregisters the table (and tears down the ring bp_uring_new made). Call it after
 * bp_uring_unprovide and after bp_pool_destroy of every pool on its layer; NULL is ignored.
 * Errors: none returned; a bp_uring with a provided ring or fixed buffers still registered
 * is reported on stderr and the process aborts. */
BP_API void bp_uring_destroy(bp_uring *u);

/* ------------------------------------------------------------------------------------------
 * Allocation fast paths (ABI). bp_alloc, bp_free and bp_free_sized run inline in the program:
 * a pop from, or a push onto, this thread's cache bin for the pool, with no call, no lock and
 * no atomic read-modify-write; anything else is one call to bp_alloc_slow or bp_free_slow.
 * What they read of the library is below, and is part of its ABI: a change to any of it
 * changes BP_FAST_ABI_VERSION and the soname's major number.
 *
 *   bp_alloc(pool, size):  offset = pool->bin_of[index(size)]           (0: not cached here)
 *                          bin = bp_fast_tls.bins[pool->slot] + offset  (bytes)
 *                          head != bin->empty ?  pop *head  :  bp_alloc_slow
 *   bp_free(p):            chunk = bp_fast_chunk_map[p >> 22 mod 2^25] (NULL: not ours)
 *                          offset = low 16 bits of chunk->unit_info[p >> 12]
 *                          bin = bp_fast_tls.bins[chunk->slot] + offset
 *                          head != bin->full ?  push p  :  bp_free_slow
 *
 * Every miss is built into the data, so the fast paths test nothing else: bin 0 of every
 * cache is empty and full, so a size the pool does not cache here, a pointer without a block
 * start (unit 0) and a thread without a cache (its slots name a static empty cache) all miss.
 * Checked and sanitizer builds of the library set every pool's and chunk's slot to the
 * last one (always the empty cache), so all of their work happens out of line, with checks.
 * ------------------------------------------------------------------------------------------ */
#define BP_FAST_ABI_VERSION 1            /* the layout below; the soname changes with it */
#define BP_FAST_SLOTS       64           /* pools with thread caches at once */
#define BP_FAST_MAX         (256u << 10) /* the largest size bin_of covers */
#define BP_FAST_ENTRIES     509          /* index(BP_FAST_MAX) + 1 */
#define BP_FAST_MAP_SHIFT   22           /* the chunk map's granule: 4 MiB */
#define BP_FAST_MAP_ENTRIES (1ul << 25)  /* granules of the 47-bit address space */
#define BP_FAST_UNIT_SHIFT  12           /* unit_info's unit: 4 KiB */

/* One size class's stack of free blocks in one thread's cache: it grows down inside
 * [full, empty); head <= empty and head >= full, and head[0 .. empty - head) are blocks of
 * the bin's class. hits counts pops since the cache last trimmed. capacity and fill are
 * the library's (bin capacity, refill size). 32 bytes: unit_info holds bins' byte offsets. */
struct bp_fast_bin {
    void **head, **empty, **full;
    uint32_t hits;
    uint16_t capacity, fill;
};

/* Per thread: the bins of this thread's cache for the pool in each slot (the static empty
 * cache's bins when it has none, and always in the last slot), and `busy`, set around every
 * use of them so that another thread can empty the cache safely (bp_pool_trim). */
struct bp_fast_thread {
    struct bp_fast_bin *bins[BP_FAST_SLOTS + 1];
    uint32_t busy;
};

/* The first bytes of every pool: its slot in bins[] and, per size index, the byte offset of
 * the size's bin (0 where the size is not thread-cached, or in checked builds). */
struct bp_fast_pool {
    uint32_t slot;
    uint16_t abi_version; /* BP_FAST_ABI_VERSION of the library that made the pool */
    uint16_t buf_slow;    /* nonzero: bp_buf_new must take the out-of-line path (leak tracking) */
    uint16_t bin_of[BP_FAST_ENTRIES];
};

/* The first bytes of every chunk (and huge block) the chunk map names: unit_info's address
 * minus (base >> 12) units, so that indexing it with an address >> 12 lands in unit_info;
 * and the slot of the chunk's pool. unit_info's low 16 bits are a bin byte offset. */
struct bp_fast_chunk {
    uintptr_t unit_info_biased;
    uint32_t slot;
};

/* This thread's bins (initial-exec TLS: the library is loaded at start, not by dlopen), and
 * the chunk map (a NULL entry: the granule holds no chunk). Errors: none. */
extern BP_API __thread struct bp_fast_thread bp_fast_tls __attribute__((tls_model("initial-exec")));
extern BP_API struct bp_fast_chunk **bp_fast_chunk_map;

/* The out-of-line halves of bp_alloc and bp_free (and what a miss costs): everything the
 * bins do not serve. Call bp_alloc and bp_free instead. bp_free_slow's size is 0 when
 * unknown; `what` names the call in misuse reports. Errors: as bp_alloc and bp_free. */
BP_API BP_MALLOCLIKE void *bp_alloc_slow(bp_pool *pool, size_t size);
BP_API void bp_free_slow(void *p, size_t size, const char *what);

/* Sizes to bin_of indexes: 16-byte steps up to 4 KiB, 1 KiB steps above (every class above
 * 4 KiB is a multiple of 1 KiB). Both halves are computed and one is selected with a mask
 * (compilers turn a plain ?: into a branch here), so a random mix of sizes costs no
 * mispredicted branch. size <= BP_FAST_MAX. */
static inline __attribute__((always_inline)) size_t bp_fast_index(size_t size)
{
    size_t fine = (size + 15) >> 4;
    size_t coarse = 253 + ((size - 1) >> 10);
    size_t use_fine = (size_t)((ptrdiff_t)(size - 4097) >> (sizeof(size_t) * 8 - 1));
    return coarse ^ ((coarse ^ fine) & use_fine);
}

/* This thread's bp_fast_tls. On x86-64 its address is formed once, in two instructions, and
 * every access goes through it; compilers otherwise redo the %fs-relative arithmetic per
 * access. */
static inline __attribute__((always_inline)) struct bp_fast_thread *bp_fast_thread_self(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    struct bp_fast_thread *t;
    __asm__("movq bp_fast_tls@gottpoff(%%rip), %0\n\taddq %%fs:0, %0" : "=r"(t));
    return t;
#else
    return &bp_fast_tls;
#endif
}

/* The bins of this thread for a slot, with busy set first (the handshake bp_pool_trim
 * relies on: the store of busy stays before the load of the bins). */
static inline __attribute__((always_inline)) struct bp_fast_bin *
bp_fast_bins_enter(struct bp_fast_thread *t, uint32_t slot)
{
    __atomic_store_n(&t->busy, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&t->bins[slot], __ATOMIC_ACQUIRE);
}

static inline __attribute__((always_inline)) void bp_fast_bins_leave(struct bp_fast_thread *t)
{
    __atomic_store_n(&t->busy, 0, __ATOMIC_RELEASE);
}

static inline __attribute__((always_inline)) struct bp_fast_bin *
bp_fast_bin_at(struct bp_fast_bin *bins, uint32_t offset)
{
    return (struct bp_fast_bin *)(void *)((char *)bins + offset);
}

static inline __attribute__((always_inline)) void *bp_fast_alloc(bp_pool *pool, size_t size)
{
    const struct bp_fast_pool *fp = (const struct bp_fast_pool *)(const void *)pool;
    if (__builtin_expect(size > BP_FAST_MAX, 0))
        return bp_alloc_slow(pool, size);
    uint32_t offset = fp->bin_of[bp_fast_index(size)];
    struct bp_fast_thread *t = bp_fast_thread_self();
    struct bp_fast_bin *bin = bp_fast_bin_at(bp_fast_bins_enter(t, fp->slot), offset);
    void **head = bin->head;
    if (__builtin_expect(head != bin->empty, 1)) {
        void *p = *head;
        bin->head = head + 1;
        bin->hits++;
        bp_fast_bins_leave(t);
        return p;
    }
    bp_fast_bins_leave(t);
    return bp_alloc_slow(pool, size);
}

static inline __attribute__((always_inline)) void bp_fast_free(void *p, size_t size,
                                                               const char *what)
{
    uintptr_t a = (uintptr_t)p;
    const struct bp_fast_chunk *chunk = __atomic_load_n(
        &bp_fast_chunk_map[(a >> BP_FAST_MAP_SHIFT) & (BP_FAST_MAP_ENTRIES - 1)], __ATOMIC_ACQUIRE);
    if (__builtin_expect(chunk != NULL, 1)) {
        const uint32_t *info =
            (const uint32_t *)(chunk->unit_info_biased + (a >> BP_FAST_UNIT_SHIFT) * 4);
        uint32_t offset = (uint16_t)*info;
        struct bp_fast_thread *t = bp_fast_thread_self();
        struct bp_fast_bin *bin = bp_fast_bin_at(bp_fast_bins_enter(t, chunk->slot), offset);
        void **head = bin->head;
        if (__builtin_expect(head != bin->full, 1)) {
            *--head = p;
            bin->head = head;
            bp_fast_bins_leave(t);
            return;
        }
        bp_fast_bins_leave(t);
    }
    bp_free_slow(p, size, what);
}

#ifndef BP_EXPORT_FAST_PATHS
static inline void *bp_alloc(bp_pool *pool, size_t size)
{
    return bp_fast_alloc(pool, size);
}
static inline void bp_free(void *p)
{
    bp_fast_free(p, 0, "bp_free");
}
static inline void bp_free_sized(void *p, size_t size)
{
    bp_fast_free(p, size, "bp_free_sized");
}
#endif

/* ------------------------------------------------------------------------------------------
 * Statistics. A snapshot of a pool in the spirit of Netty's PooledByteBufAllocatorMetric
 * family and jemalloc's stats: set struct_size to sizeof(bp_stats) before the call. The
 * struct only grows at its end, so a program built against an older header keeps working:
 * it gets the fields its layout has, and version says which layout was filled.
 *
 * Two kinds of counts. What the program did: program_allocations, every block bp_alloc and
 * its family returned (thread-cache hits plus blocks an arena served directly), and
 * program_frees, every block the program gave back, in total and per class. What the arenas did:
 * alloc_* and free_* count blocks leaving and entering the arenas' bitmaps and runs, where thread
 * caches refill and give back in batches, so they may exceed the program's calls; lock_allocs and
 * lock_frees count the lock acquisitions those batches took. Thread-cache hits are counted per
 * thread and class by the fast path and added to the pool at each trim and flush (so another
 * thread's are as of its last trim, the calling thread's are exact). Frees into a thread cache are
 * derived, not counted (the fast path's push has no counter): each cache keeps a ledger of what its
 * refills and give-backs moved, and at each trim, flush and overflow the difference is the
 * program's frees; another thread's are as of then, the calling thread's exact.
 * ------------------------------------------------------------------------------------------ */
/* The bp_stats layout this header describes; the size of the class and arena tables.
 * Version 1 ended at arena_stats; version 2 appended program_allocations, program_frees,
 * lock_allocs, lock_frees and class_ops. */
#define BP_STATS_VERSION 2
#define BP_STATS_CLASSES 128
#define BP_STATS_ARENAS  64 /* per-arena rows kept for the first arenas */

/* One chunk list (Netty's PoolChunkList): the chunks whose usage, in percent, lies within
 * [min_usage, max_usage], summed over every arena. */
typedef struct bp_stats_list {
    const char *name; /* qInit, q000, q025, q050, q075, q100 */
    int min_usage, max_usage;
    uint32_t chunks;
    uint64_t used_bytes, free_bytes;
} bp_stats_list;

/* One size class: how much of it the arenas' subpages hold (small classes) and how many
 * blocks of it wait in the calling thread's cache. */
typedef struct bp_stats_class {
    size_t size;
    bool small;        /* served by subpages */
    uint32_t subpages; /* subpages of the class in all arenas */
    uint64_t elements; /* their capacity in elements */
    uint64_t free_elements;
    uint64_t cached; /* blocks of the class in the calling thread's cache */
} bp_stats_class;

/* One size class as the program and the arenas used it (jemalloc's per-bin nrequests, nmalloc
 * and ndalloc; Netty's allocation and deallocation counts, per class). */
typedef struct bp_stats_class_ops {
    uint64_t program_allocations; /* blocks of the class the program got (cache hits included) */
    uint64_t arena_allocations;   /* blocks the arenas handed out: to the program or a cache */
    uint64_t arena_frees;         /* blocks they took back: from the program or a cache */
    uint64_t cache_fills;         /* of arena_allocations: blocks handed to thread caches */
    uint64_t program_frees;       /* blocks of the class the program freed */
} bp_stats_class_ops;

/* One arena (of the first BP_STATS_ARENAS): its threads, counters and memory. */
typedef struct bp_stats_arena {
    unsigned threads; /* thread caches bound to it */
    uint64_t allocations, frees;
    size_t active_bytes, chunk_bytes, huge_bytes;
    uint32_t chunks, retained_chunks;
} bp_stats_arena;

/* The whole snapshot that bp_pool_stats fills: configuration, counters by kind, bytes by where
 * they are, and the tables above (classes[] rows of class_stats, min(arenas,
 * BP_STATS_ARENAS) of arena_stats). */
typedef struct bp_stats {
    size_t struct_size; /* in: sizeof(bp_stats) as the caller knows it */
    unsigned version;   /* out: the layout filled: BP_STATS_VERSION, or 1 for a v1 caller */
    size_t page_size, chunk_size;
    unsigned arenas, threads, classes;
    uint64_t alloc_small, alloc_normal, alloc_huge; /* blocks out of the arenas */
    uint64_t free_small, free_normal, free_huge;    /* blocks back into the arenas */
    uint64_t cache_hits;
    size_t active_bytes; /* in blocks handed out by the arenas (thread caches included) */
    uint64_t active_blocks;
    /* what memory_limit counts (block memory and its metadata), read from the pool's own
     * counter (never above the limit); chunk_bytes and huge_bytes are block memory only,
     * summed arena by arena: the difference is metadata, and under traffic it may move */
    size_t mapped_bytes;
    size_t chunk_bytes, huge_bytes;
    size_t cached_bytes; /* in thread caches (other threads: as of their last trim) */
    size_t transfer_bytes, run_cache_bytes;
    size_t dirty_bytes;    /* free pages still backed, waiting for their purge */
    uint64_t purged_bytes; /* given back with purges so far */
    uint64_t chunks_mapped, chunks_unmapped, chunks_reused;
    uint32_t chunks, retained_chunks;
    bp_stats_list lists[6];
    bp_stats_class class_stats[BP_STATS_CLASSES];
    bp_stats_arena arena_stats[BP_STATS_ARENAS];
    /* version 2 */
    uint64_t program_allocations;     /* every block bp_alloc and its family returned */
    uint64_t program_frees;           /* every block the program freed (huge ones included) */
    uint64_t lock_allocs, lock_frees; /* arena lock acquisitions that handed out / took back */
    size_t cache_bound_bytes; /* the most one thread's cache can hold (capacity x size, summed) */
    bp_stats_class_ops class_ops[BP_STATS_CLASSES];
} bp_stats;

/* What bp_pool_print_stats writes. */
typedef enum bp_format { BP_FORMAT_TEXT, BP_FORMAT_JSON, BP_FORMAT_SVG } bp_format;

/* Fills the first out->struct_size bytes: the whole snapshot (version BP_STATS_VERSION) when
 * struct_size >= sizeof(bp_stats), version 1's fields (version 1) when it covers those, and
 * nothing past struct_size. Safe under any traffic from other threads. Returns 0.
 * Errors: BP_EINVAL when struct_size is smaller than version 1's layout (nothing is written
 * then). */
BP_API int bp_pool_stats(bp_pool *pool, bp_stats *out);
/* Text tables, JSON (schema in docs/stats-json.md), or an SVG picture of every chunk's pages
 * with a key (colours by class, the page a cell stands for, the chunk lists' bands). The
 * figures are taken first, under the arenas' locks, into memory mapped for the purpose; they
 * are written after every lock is released, so `out` may allocate from this very pool (a
 * fopencookie stream into a bp_buf, a stream under the malloc library). Returns 0.
 * Errors: BP_ENOMEM when that memory could not be mapped (nothing is written), BP_EIO when
 * the stream reports an error after the writes (errno as the stream left it). */
BP_API int bp_pool_print_stats(bp_pool *pool, FILE *out, bp_format fmt);

/* ------------------------------------------------------------------------------------------
 * Buffers. A bp_buf is Netty's ByteBuf for C: bytes in pooled memory with a reader and a
 * writer index,
 *
 *     +-------------------+------------------+------------------+
 *     | discardable bytes |  readable bytes  |  writable bytes  |
 *     0      <=        reader      <=      writer     <=     capacity   <=   max
 *
 * a reference count, typed big- and little-endian access, views that share memory, and
 * composites of several buffers for gathering I/O.
 *
 * Error convention: calls that can fail return an int, 0 on success or a negative BP_E*
 * code; a failed call changes nothing (indexes and bytes are as they were). Calls that make
 * a buffer return NULL with errno set (ENOMEM, EINVAL). A buffer is not thread-safe (one
 * thread uses it at a time) but its reference count is: retain and release may happen on
 * any thread. Every view (slice, duplicate) holds a reference to the memory it views.
 * ------------------------------------------------------------------------------------------ */
/* A byte buffer (or a view of one, or a composite of several): made by bp_buf_new,
 * bp_buf_wrap, the view calls and bp_buf_composite, gone with its last bp_buf_release. Its
 * fields (see "Buffer fast paths (ABI)") are for the calls this header defines inline;
 * programs use the calls. */
typedef struct bp_buf bp_buf;

/* Marks the buffer calls this header defines inline (their bodies are in "Buffer fast paths
 * (ABI)"): static inline in a program, exported out-of-line copies in the library for
 * callers that take their address or cannot include C headers. */
#ifdef BP_EXPORT_BUF_FAST_PATHS
#define BP_BUF_INLINE_API BP_API
#else
#define BP_BUF_INLINE_API static inline __attribute__((always_inline))
#endif

/* The results of the bp_buf calls; bp_strerror names each. */
enum {
    BP_OK = 0,
    BP_EBOUNDS = -1, /* an index or length outside what the call may touch */
    BP_ENOMEM = -2,  /* the pool could not supply memory */
    BP_ECAP = -3,    /* the buffer would grow past its maximum capacity (or part count) */
    BP_ERDONLY = -4, /* a write to a read-only buffer or view */
    BP_ESHARED = -5, /* the change would move bytes other views look at */
    BP_EINVAL = -6,  /* a malformed argument or encoding (bad varint) */
    BP_EIO = -7,     /* a system call failed; errno says why */
    BP_EAGAIN = -9,  /* a non-blocking descriptor would block (errno EAGAIN or EWOULDBLOCK) */
    BP_NOTFOUND = 1  /* search: no match (not an error) */
};
/* A constant English description of a BP_E* code (or BP_OK, BP_NOTFOUND); "unknown bufpool
 * error" for any other number. Errors: none. */
BP_API const char *bp_strerror(int code);

#define BP_RDONLY 1u /* flag: a read-only buffer or view */

/* A buffer of `initial` bytes' capacity that grows up to max; max 0 means "no limit"
 * (SIZE_MAX / 2, which a larger max also means). Inline: a buffer of a thread-cached size
 * from a pool without leak tracking is one pop from the thread's bin and the header's
 * stores; anything else is one call to bp_buf_new_slow. Errors: NULL with errno EINVAL
 * (initial > max) or ENOMEM. */
BP_BUF_INLINE_API bp_buf *bp_buf_new(bp_pool *pool, size_t initial, size_t max);
/* As bp_buf_new, with `headroom` bytes in front of the body: capacity headroom + initial,
 * both indexes at headroom, so that bp_buf_prepend_* can write a header in front of what is
 * written later without moving it (see "Headroom and prepend"). max counts the headroom.
 * Errors: NULL with errno EINVAL (headroom + initial > max) or ENOMEM. */
BP_API bp_buf *bp_buf_new_headroom(bp_pool *pool, size_t headroom, size_t initial, size_t max);
/* A buffer over caller memory [mem, mem + cap) holding `len` readable bytes; free_fn(mem, ud)
 * runs when the last reference to the memory goes (NULL: nothing to do). Its capacity is
 * fixed at cap. mem may be NULL when cap is 0 (an empty buffer, never dereferenced).
 * Errors: NULL with errno EINVAL (len > cap, cap > SIZE_MAX / 2, or mem NULL with cap > 0)
 * or ENOMEM (the header; free_fn is not called then, the memory stays the caller's). */
BP_API bp_buf *bp_buf_wrap(bp_pool *pool, void *mem, size_t cap, size_t len,
                           void (*free_fn)(void *mem, void *ud), void *ud, unsigned flags);
/* Adds a reference to b (from any thread); returns b. Errors: none (checked builds abort on
 * a buffer already released). */
BP_API bp_buf *bp_buf_retain(bp_buf *b);
/* Drops a reference; returns true when this was the last one and the buffer is gone.
 * Errors: none (checked builds abort on a second release of the last reference). */
BP_BUF_INLINE_API bool bp_buf_release(bp_buf *b);
/* b's reference count now (a view has its own, and holds one on the memory it views).
 * Errors: none. */
BP_API uint32_t bp_buf_refcnt(const bp_buf *b);

/* ------------------------------------------------------------------------------------------
 * Buffer indexes. Reading advances the reader index, writing the writer index; marks save
 * and restore both.
 * ------------------------------------------------------------------------------------------ */
/* Indexes and sizes: capacity (bytes the buffer holds now), max_capacity (the most it may
 * grow to), the reader and writer indexes, readable (writer - reader) and writable
 * (capacity - writer) bytes. Errors: none. */
BP_API size_t bp_buf_capacity(const bp_buf *b);
BP_API size_t bp_buf_max_capacity(const bp_buf *b);
BP_BUF_INLINE_API size_t bp_buf_reader_index(const bp_buf *b);
BP_BUF_INLINE_API size_t bp_buf_writer_index(const bp_buf *b);
BP_BUF_INLINE_API size_t bp_buf_readable(const bp_buf *b);
BP_BUF_INLINE_API size_t bp_buf_writable(const bp_buf *b); /* capacity - writer */
/* The readable bytes that lie in one piece at the reader index, for a parser that scans
 * them in place: *p points at them and the count is returned (every readable byte of a
 * contiguous buffer; of a composite, those of the part the reader index lies in). When it
 * returns 0, *p is not to be read through. Errors: none. */
BP_BUF_INLINE_API size_t bp_buf_peek(const bp_buf *b, const uint8_t **p);
/* Bytes writable without moving the data: the slack of the size class included.
 * Errors: none. */
BP_API size_t bp_buf_fast_writable(const bp_buf *b);
/* Whether writes are refused (a BP_RDONLY buffer or view). Errors: none. */
BP_API bool bp_buf_is_readonly(const bp_buf *b);
/* Moves both indexes. Errors: BP_EBOUNDS unless reader <= writer <= capacity. */
BP_API int bp_buf_set_index(bp_buf *b, size_t reader, size_t writer);

/* Marks are held by the caller, so any number can exist: bp_buf_mark saves both indexes,
 * bp_buf_reset restores them, bp_buf_clear sets both to 0.
 * Errors: bp_buf_reset gives BP_EBOUNDS when the saved indexes no longer fit (after a
 * bp_buf_discard_read, say); the others none. */
typedef struct bp_mark {
    size_t reader, writer;
} bp_mark;
BP_API void bp_buf_mark(const bp_buf *b, bp_mark *m);
BP_API int bp_buf_reset(bp_buf *b, const bp_mark *m);
BP_API void bp_buf_clear(bp_buf *b); /* reader = writer = 0 */
/* Moves the readable bytes to index 0. On a composite it moves no bytes: it releases the
 * parts read to their end, each with bp_buf_release (a part nobody else holds is freed then;
 * one its owner retained stays the owner's), and moves both indexes down by the bytes they
 * held (a part read halfway stays, so the reader index may stay above 0); a composite
 * slice's maximum capacity moves down with its capacity, so it still cannot grow.
 * Errors: BP_ERDONLY for a read-only buffer; BP_ESHARED for a contiguous buffer while others
 * look at its memory (views, or a composite b is a part of). A composite never fails
 * otherwise. */
BP_API int bp_buf_discard_read(bp_buf *b);
/* Makes room for n more bytes after the writer index: capacity doubles from 64 B up to
 * 4 MiB, then grows by 4 MiB steps, never past max. Every byte of the old capacity is kept,
 * those past the writer index too (bytes set there, or read into bp_buf_reserve_iov extents
 * before bp_buf_commit). A composite grows by a new part at its end (past its consolidation
 * count, bp_buf_set_consolidate_at, by a copy of its parts into one of the new capacity).
 * Errors: BP_ERDONLY for a read-only buffer (even one with room), BP_ECAP (past max, or a
 * composite with all its parts in use), BP_ENOMEM. */
BP_API int bp_buf_ensure_writable(bp_buf *b, size_t n);

/* ------------------------------------------------------------------------------------------
 * Typed access and bytes. Integers and floats in big (_be) and little (_le) endian, LEB128
 * varints, and byte ranges; each call checks its bounds first and fails whole.
 * ------------------------------------------------------------------------------------------ */
/* Typed access. get/set are absolute (get inside [0, writer), set inside [0, capacity));
 * read/write are relative to the reader/writer index and move it; write grows the buffer.
 * Errors: get and read BP_EBOUNDS; set BP_EBOUNDS, BP_ERDONLY (a read-only buffer, or a
 * read-only part of a composite); write the codes of bp_buf_ensure_writable. */
#define BP_BUF_TYPED(name, type)                                                                   \
    BP_BUF_INLINE_API int bp_buf_get_##name(const bp_buf *b, size_t idx, type *out);               \
    BP_BUF_INLINE_API int bp_buf_set_##name(bp_buf *b, size_t idx, type v);                        \
    BP_BUF_INLINE_API int bp_buf_read_##name(bp_buf *b, type *out);                                \
    BP_BUF_INLINE_API int bp_buf_write_##name(bp_buf *b, type v);
BP_BUF_TYPED(u8, uint8_t)
BP_BUF_TYPED(i8, int8_t)
BP_BUF_TYPED(u16_be, uint16_t)
BP_BUF_TYPED(u16_le, uint16_t)
BP_BUF_TYPED(u24_be, uint32_t)
BP_BUF_TYPED(u24_le, uint32_t)
BP_BUF_TYPED(u32_be, uint32_t)
BP_BUF_TYPED(u32_le, uint32_t)
BP_BUF_TYPED(u64_be, uint64_t)
BP_BUF_TYPED(u64_le, uint64_t)
BP_BUF_TYPED(f32_be, float)
BP_BUF_TYPED(f32_le, float)
BP_BUF_TYPED(f64_be, double)
BP_BUF_TYPED(f64_le, double)
#undef BP_BUF_TYPED
/* Unsigned LEB128 varints (1..10 bytes). get and read: BP_EINVAL for an overlong encoding
 * (a last byte of 0 after the first, as in 80 80 00, which a shorter one says) or one past
 * 64 bits, BP_EBOUNDS when the bytes end first; *len (may be NULL) gets the bytes used.
 * Errors: get and read BP_EBOUNDS, BP_EINVAL as just said; write the codes of
 * bp_buf_ensure_writable. */
BP_API int bp_buf_get_uvarint(const bp_buf *b, size_t idx, uint64_t *out, size_t *len);
BP_API int bp_buf_read_uvarint(bp_buf *b, uint64_t *out);
BP_API int bp_buf_write_uvarint(bp_buf *b, uint64_t v);

/* Bytes out and in: get (inside [0, writer)) and set (inside [0, capacity)) are absolute;
 * read and write move the reader / writer index, write grows the buffer; skip moves the
 * reader index over n readable bytes. src and dst may be NULL when n is 0, and may lie
 * inside b itself: a bp_buf_write_bytes of b's own bytes that makes b grow copies them from
 * where they moved, and in a contiguous buffer the two ranges may overlap.
 * Errors: get, read and skip BP_EBOUNDS; set BP_EBOUNDS, BP_ERDONLY
 * (a read-only buffer or composite part); write the codes of bp_buf_ensure_writable. */
BP_API int bp_buf_get_bytes(const bp_buf *b, size_t idx, void *dst, size_t n);
BP_API int bp_buf_set_bytes(bp_buf *b, size_t idx, const void *src, size_t n);
BP_BUF_INLINE_API int bp_buf_read_bytes(bp_buf *b, void *dst, size_t n);
BP_BUF_INLINE_API int bp_buf_write_bytes(bp_buf *b, const void *src, size_t n);
BP_BUF_INLINE_API int bp_buf_skip(bp_buf *b, size_t n);

/* ------------------------------------------------------------------------------------------
 * Headroom and prepend. A header whose value depends on the body (a length, a checksum, a
 * record header) is written after the body, in front of it: bp_buf_prepend_* write the
 * bytes just below the reader index and move it down over them, so the body does not move.
 * The room they use is the buffer's reader index (its discardable bytes); a buffer made by
 * bp_buf_new_headroom starts with its indexes at the headroom asked for.
 * ------------------------------------------------------------------------------------------ */
/* Writes [src, src + n) in front of the reader index: bytes [reader - n, reader) become
 * them, the reader index moves down by n, the writer index stays. With n > reader the
 * buffer grows at the front first: one copy of all its bytes (those past the writer index
 * too) to room growth adds in front, as much as bp_buf_ensure_writable would add (at least
 * n - reader, never past max), and both indexes move up by what was added; bytes a view or a
 * composite shares stay where they were for them. src may lie inside b. A composite takes
 * prepends within its reader index only (into its parts' bytes).
 * Errors: BP_ERDONLY (a read-only buffer or composite part), BP_ECAP (growth past max: a
 * view, wrapped memory, or a composite past its reader index), BP_ENOMEM; b is as it was. */
BP_API int bp_buf_prepend_bytes(bp_buf *b, const void *src, size_t n);
/* Typed prepends: the value in big (_be) or little (_le) endian in front of the reader
 * index, as bp_buf_prepend_bytes. Errors: those of bp_buf_prepend_bytes. */
BP_BUF_INLINE_API int bp_buf_prepend_u8(bp_buf *b, uint8_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u16_be(bp_buf *b, uint16_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u16_le(bp_buf *b, uint16_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u24_be(bp_buf *b, uint32_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u24_le(bp_buf *b, uint32_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u32_be(bp_buf *b, uint32_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u32_le(bp_buf *b, uint32_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u64_be(bp_buf *b, uint64_t v);
BP_BUF_INLINE_API int bp_buf_prepend_u64_le(bp_buf *b, uint64_t v);

/* ------------------------------------------------------------------------------------------
 * Views and composites. A view shares the memory of the buffer it views and holds a
 * reference to it; a composite presents the readable bytes of several buffers as one.
 * ------------------------------------------------------------------------------------------ */
/* Views: their own indexes over [idx, idx + len) of b's memory, holding a reference to it;
 * they never grow (BP_ECAP). BP_RDONLY makes a read-only view. A slice of a composite is a
 * composite of views of its parts, or, when the range lies inside one part, a plain view of
 * that part's bytes (read-only when the composite or the part is).
 * Errors: NULL with errno EINVAL (the range is not inside b's capacity) or ENOMEM. */
BP_API bp_buf *bp_buf_slice(bp_buf *b, size_t idx, size_t len, unsigned flags);
/* A slice of the next len readable bytes; advances b's reader index.
 * Errors: NULL with errno EINVAL (len > readable) or ENOMEM; the reader index stays then. */
BP_API bp_buf *bp_buf_read_slice(bp_buf *b, size_t len);
/* A view of all of b's capacity with b's indexes. Errors: NULL with errno ENOMEM. */
BP_API bp_buf *bp_buf_duplicate(bp_buf *b, unsigned flags);
/* A new buffer holding a copy of [idx, idx + len) (inside b's capacity), with no maximum.
 * Errors: NULL with errno EINVAL (the range is not inside b's capacity) or ENOMEM. */
BP_API bp_buf *bp_buf_copy(const bp_buf *b, size_t idx, size_t len);

/* Composites: the readable bytes of several buffers, in order, without copying. max_parts
 * limits the part count (BP_ECAP past it), 1..2^20, or 0 for no limit; the parts array grows
 * as parts come (it doubles from 4). Past a part count of BP_CONSOLIDATE_DEFAULT (Netty's
 * maxNumComponents, 16; see bp_buf_set_consolidate_at) a call that adds a part copies all
 * the parts, the new one included, into one instead, so that a long queue of small parts
 * costs one copy now and then rather than a long walk on every access; a max_parts at or
 * below that count reaches BP_ECAP first.
 * Errors: NULL with errno EINVAL (max_parts above 2^20) or ENOMEM. */
BP_API bp_buf *bp_buf_composite(bp_pool *pool, unsigned max_parts);
#define BP_CONSOLIDATE_DEFAULT 16
/* The part count past which calls that add a part (append, prepend, growth) copy the parts
 * into one: 1..65535, or 0 for never. A composite with more parts already is copied at its
 * next addition. Errors: BP_EINVAL (not a composite, a composite slice, or parts above
 * 65535). */
BP_API int bp_buf_set_consolidate_at(bp_buf *composite, unsigned parts);
/* Takes over the caller's reference to part; its readable bytes are appended (the writer
 * index moves). The composite also holds the memory those bytes lie in, as a view would: a
 * part still written by another owner (one who retained it) keeps them where they are for
 * the composite (its growth copies them to new memory, its bp_buf_discard_read gives
 * BP_ESHARED), while writes into the bytes they share are seen by both. Past the
 * consolidation count the bytes are copied instead and part is released.
 * Errors: BP_ECAP when max_parts are in use or the composite would pass its maximum capacity
 * (a slice's is its capacity); BP_EINVAL when `composite` is no composite, when part is a
 * composite or the composite itself, or while the composite has writable bytes (from growth
 * or bp_buf_reserve_iov) that the part's would come after; BP_ENOMEM when the bookkeeping
 * of part's memory (made at its first view or composite) or of the parts could not be
 * allocated. On failure the caller keeps its reference to part. */
BP_API int bp_buf_append(bp_buf *composite, bp_buf *part);
/* As bp_buf_append, with part's readable bytes in front of the composite's readable ones:
 * the bytes below the reader index are dropped first without copying (the parts read to
 * their end are released, the one the reader index lies in is cut at it), so afterwards the
 * reader index is 0 and part's bytes come first; the writer index moves up by them.
 * Errors: BP_ECAP (max_parts in use, the maximum capacity, or a composite slice, which never
 * grows), BP_EINVAL (composite is no composite, part a composite or the composite itself),
 * BP_ENOMEM; the composite is then as it was and the caller keeps its reference. */
BP_API int bp_buf_prepend_part(bp_buf *composite, bp_buf *part);
/* Moves n readable bytes of src to the end of the composite by reference (Netty's
 * addComponent(readRetainedSlice(n))): the composite takes views of them (one per part of
 * a composite src; read-only bytes stay read-only) and src's reader index moves over them.
 * src sees its memory shared from then on, as with bp_buf_append. Past the consolidation
 * count they are copied instead.
 * Errors: BP_EINVAL (composite is no composite, src is the composite, or the composite has
 * writable bytes at its end), BP_EBOUNDS (n > src's readable bytes), BP_ECAP (the part count
 * or maximum capacity), BP_ENOMEM; both buffers are then as they were. */
BP_API int bp_buf_append_slice(bp_buf *composite, bp_buf *src, size_t n);
/* Copies n readable bytes of src to dst's writer index, growing dst as a write would; both
 * indexes move (Netty's writeBytes(ByteBuf, int)). Either may be a composite or a view of
 * the other's memory.
 * Errors: BP_EINVAL (dst == src), BP_EBOUNDS (n > src's readable bytes), BP_ERDONLY (dst, or
 * a composite part the bytes would land in, is read-only), the codes of
 * bp_buf_ensure_writable; both are then as they were (dst may have grown). */
BP_API int bp_buf_write_buf(bp_buf *dst, bp_buf *src, size_t n);
/* The parts of a composite; 1 for any other buffer. Errors: none. */
BP_API unsigned bp_buf_part_count(const bp_buf *b);
/* Copies every part into one: afterwards the composite has a single part (a writable copy,
 * read-only parts included).
 * Errors: BP_EINVAL (not a composite), BP_ENOMEM (the composite is as it was). */
BP_API int bp_buf_consolidate(bp_buf *composite);

/* ------------------------------------------------------------------------------------------
 * I/O. Scatter and gather with iovecs: a buffer's bytes as iovecs for writev, writable
 * extents for readv, and both calls made on a file descriptor.
 * ------------------------------------------------------------------------------------------ */
/* Up to max (<= IOV_MAX) iovecs for [off, off + len) of b (inside its capacity); *covered
 * (may be NULL) gets the bytes they cover (less than len when max is too small). Returns the
 * count. Errors: BP_EINVAL unless 1 <= max <= IOV_MAX, BP_EBOUNDS when the range is not
 * inside the capacity. */
BP_API int bp_buf_iov(const bp_buf *b, size_t off, size_t len, struct iovec *iov, int max,
                      size_t *covered);
/* Makes n bytes writable and describes the writable extents (up to max iovecs) for readv;
 * then bp_buf_commit. Returns the count. Errors: BP_EINVAL unless 1 <= max <= IOV_MAX
 * (checked before anything grows), the codes of bp_buf_ensure_writable. */
BP_API int bp_buf_reserve_iov(bp_buf *b, size_t n, struct iovec *iov, int max);
/* Moves the writer index over n bytes written in place.
 * Errors: BP_EBOUNDS (n > writable), BP_ERDONLY. */
BP_API int bp_buf_commit(bp_buf *b, size_t n);
/* bp_buf_readv_fd: one readv of up to max bytes (0: no limit) into the writable bytes b has
 * (at most 64 extents); only a buffer with none grows first, as bp_buf_ensure_writable(b, 1)
 * grows it (doubling, never past its maximum capacity: BP_ECAP when it is full there).
 * bp_buf_writev_fd: one gathering write of up to max readable bytes (0: all) from at most 64
 * extents (a composite of more parts takes several calls); on a composite that is not
 * read-only, the parts written to their end are released at once, as bp_buf_discard_read
 * does (both indexes move down by their bytes), so that a composite used as a write queue
 * holds only what is still to be written. A socket is written with sendmsg and
 * MSG_NOSIGNAL; any other descriptor (a pipe, a file) with writev, with SIGPIPE blocked in
 * the calling thread for the call and a SIGPIPE it raised taken back before the mask is
 * restored: a peer or pipe reader that has gone gives BP_EIO with errno EPIPE, never
 * SIGPIPE. (Each thread remembers the last descriptor found to be no socket and writes it
 * with writev from then on, sparing a failed sendmsg per call.) A call interrupted by a
 * signal (EINTR) is made again. Both return the bytes moved (the reader or writer index
 * moves over them), 0 at end of file (read), or a BP_E* code. After an error from readv the
 * buffer may have grown; its bytes and indexes are as they were.
 * Errors: readv: BP_ERDONLY, BP_ECAP (full at its maximum), BP_ENOMEM, BP_EAGAIN (a
 * non-blocking descriptor with nothing to read; errno EAGAIN or EWOULDBLOCK), or BP_EIO with
 * the errno of readv (EBADF, ECONNRESET, ...). writev: BP_EAGAIN (a non-blocking descriptor
 * takes nothing now; errno kept), BP_EIO with the errno of sendmsg or writev (EPIPE when the
 * peer or reader has gone, ECONNRESET, EBADF, ...). */
BP_API ssize_t bp_buf_readv_fd(bp_buf *b, int fd, size_t max);
BP_API ssize_t bp_buf_writev_fd(bp_buf *b, int fd, size_t max);

/* ------------------------------------------------------------------------------------------
 * Adaptive receive. A connection's receive sizer guesses how much its next read brings, as
 * Netty's AdaptiveRecvByteBufAllocator: the guess is a size of a table (16-byte steps from
 * 16 to 496, then doubling from 512 to 1 GiB) kept within [min, max]; a read that fills the
 * guess moves it four sizes up at once, two reads in a row at or under the size one below
 * move it one size down. With bp_buf_shrink after each drain, an idle connection holds its
 * buffer's header and its sizer, and no buffer memory:
 *
 *     bp_recv_sizer sizer;  bp_recv_sizer_init(&sizer, 0, 0, 0);  (per connection)
 *     in = bp_buf_new(pool, 0, limit);
 *     on readable: while ((r = bp_buf_recv_fd(in, fd, &sizer)) > 0) decode frames;
 *                  r == BP_EAGAIN: wait for the next event;  r == 0: end of stream
 *                  bp_buf_shrink(in) once nothing readable is left
 * ------------------------------------------------------------------------------------------ */
/* A connection's receive sizer: the caller's, one per connection (8 bytes), with no memory
 * of its own. Invariant: min_index <= index <= max_index, and guess is the table's size at
 * index; shrink_next says the last read came in under the size one below. */
typedef struct bp_recv_sizer {
    uint32_t guess;
    uint8_t index, min_index, max_index;
    bool shrink_next;
} bp_recv_sizer;
/* Starts a sizer with bounds min and max and a first guess of initial, each rounded to the
 * table (up, but max down); 0 picks Netty's default (min 64, initial 2048, max 65536).
 * Errors: BP_EINVAL unless min <= initial <= max <= 1 GiB after the defaults (*s is then
 * untouched). */
BP_API int bp_recv_sizer_init(bp_recv_sizer *s, size_t min, size_t initial, size_t max);
/* The bytes the next read is expected to bring. Errors: none. */
BP_API size_t bp_recv_sizer_guess(const bp_recv_sizer *s);
/* Tells the sizer a read brought bytes_read bytes (bp_buf_recv_fd does). Errors: none. */
BP_API void bp_recv_sizer_record(bp_recv_sizer *s, size_t bytes_read);
/* One readv into b as bp_buf_readv_fd, sized by s: into all the writable bytes b has, unless
 * they are fewer than the sizer's minimum (none, say): then b grows first to make the guess
 * writable (by bp_buf_ensure_writable's rule, never past its maximum: the room left there
 * when less). So a read that finds nothing (BP_EAGAIN) grows nothing that had room. The
 * read is then recorded in s. s may be NULL: the room there is, growing only when none.
 * Errors: those of bp_buf_readv_fd (BP_EAGAIN, BP_EIO with errno, BP_ERDONLY, BP_ECAP when
 * full at the maximum, BP_ENOMEM). */
BP_API ssize_t bp_buf_recv_fd(bp_buf *b, int fd, bp_recv_sizer *s);
/* Gives back the memory of a drained buffer (no readable bytes): a buffer whose bytes grew
 * out of its header's block goes back to that block with capacity 0 (the next write or read
 * grows it again), the memory it grew into released (freed, or kept by the views and
 * composites that still look at it); a composite releases all its parts and their array.
 * Both indexes go to 0 and the bytes below them are gone. A view, wrapped memory, a buffer
 * whose header's block a view looks at, or one that never grew has nothing to give back:
 * only its indexes go to 0.
 * Errors: BP_EINVAL while readable bytes remain (nothing changes). */
BP_API int bp_buf_shrink(bp_buf *b);

/* ------------------------------------------------------------------------------------------
 * Search. Over the bytes below the writer index, across the parts of a composite.
 * ------------------------------------------------------------------------------------------ */
/* Search [from, to) (absolute indexes; to is cut at the writer index, from is not raised to
 * the reader index) for a byte, or from `from` on for n bytes. 0 and *pos, or BP_NOTFOUND.
 * Works across the parts of a composite. Errors: none (BP_NOTFOUND is an answer). */
BP_API int bp_buf_index_of(const bp_buf *b, size_t from, size_t to, uint8_t byte, size_t *pos);
BP_API int bp_buf_find(const bp_buf *b, size_t from, const void *needle, size_t n, size_t *pos);

/* ------------------------------------------------------------------------------------------
 * Leak detection. A buffer nobody released is reported with where it was allocated and
 * where it was last touched.
 * ------------------------------------------------------------------------------------------ */
/* Leak detection (config leak_level: 0 off, 1 sampled, 2 sampled with touch records,
 * 3 every buffer with touch records). A leak is a buffer still alive when bp_leak_report is
 * called, when its pool is destroyed, or at exit; each is reported once, by the first of
 * these that finds it. The report gives where it was allocated, one frame a line as module +
 * offset (with the function where the dynamic symbol table names it), where it was last
 * touched, and the addr2line command that turns the frames into function, file and line.
 * It is written from a snapshot with no lock held, so `out` may allocate from the pool.
 * Returns the number of leaked buffers this call reported: 0 when there were none, or when
 * the snapshot's memory was refused (a message says so; those leaks stay for the next
 * report). Errors: none returned. */
BP_API size_t bp_leak_report(bp_pool *pool, FILE *out);
/* Records where b is now (with a hint such as "decoded"): at leak_level 2 and 3 the report
 * of a leaked buffer lists its last touches. Costs nothing for an untracked buffer.
 * Errors: none. */
BP_API void bp_buf_touch_at(bp_buf *b, const char *hint, const char *file, int line);
#define bp_buf_touch(b, hint) bp_buf_touch_at((b), (hint), __FILE__, __LINE__)

/* ------------------------------------------------------------------------------------------
 * Buffer fast paths (ABI). The typed get/set/read/write calls, bp_buf_read_bytes,
 * bp_buf_write_bytes, bp_buf_readable, bp_buf_writable and bp_buf_release run inline in the
 * program: one bounds test on the header below, the bytes moved, an index stored. Anything
 * else (growth, composites, read-only buffers, errors, the last reference of a buffer with
 * an extension) is one call to the out-of-line half, which does the whole work and returns
 * what the call returns. The header is part of the library's ABI: a change to its layout or
 * to the meaning of a field changes BP_BUF_ABI_VERSION and the soname's major number.
 *
 *     offset  0  data    index 0 of the bytes (NULL for a composite)
 *             8  reader  the reader index
 *            16  writer  the writer index
 *            24  limit   the write limit: the capacity of a writable contiguous buffer,
 *                        0 for a read-only or composite one
 *            32  state   the reference count (low 32 bits) and the library's flags (high 32)
 *            40  more    the extension (views, wrapped memory, composites, leak records) when
 *                        the flags say there is one; else the maximum capacity
 *
 * Invariants: reader <= writer <= capacity <= maximum capacity <= SIZE_MAX / 2; limit is
 * the capacity or 0; a buffer with limit != 0 is contiguous and writable, and its bytes
 * [0, limit) lie at data; state == 1 exactly when the buffer is plain (one reference, no
 * flags: a buffer from bp_buf_new whose bytes are still in its header's block and whose
 * memory no view or composite holds), whose last release is a bp_free of the header.
 *
 * The tests fail by construction for the buffers the inline code cannot serve: a write
 * needs writer + n <= limit, which no read-only or composite buffer meets (limit 0); a read
 * needs reader + n <= writer and data != NULL, which no composite meets; release frees
 * inline only at state == 1. Reads and writes of zero bytes go out of line (they may name
 * NULL, and a read-only buffer refuses even those).
 * ------------------------------------------------------------------------------------------ */
#define BP_BUF_ABI_VERSION 1 /* the layout of struct bp_buf below */

struct bp_buf_ext;
struct bp_buf {
    uint8_t *data;
    size_t reader, writer;
    size_t limit;
    uint64_t state; /* atomic */
    union {
        struct bp_buf_ext *ext;
        size_t max_capacity;
    } more;
};
#ifndef __cplusplus
_Static_assert(__builtin_offsetof(struct bp_buf, data) == 0 &&
                   __builtin_offsetof(struct bp_buf, reader) == 8 &&
                   __builtin_offsetof(struct bp_buf, writer) == 16 &&
                   __builtin_offsetof(struct bp_buf, limit) == 24 &&
                   __builtin_offsetof(struct bp_buf, state) == 32 &&
                   __builtin_offsetof(struct bp_buf, more) == 40 && sizeof(struct bp_buf) == 48,
               "the bp_buf header of BP_BUF_ABI_VERSION 1");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "bp_buf's typed access: a LE host");
#endif

/* The out-of-line halves: bp_buf_read_bytes, bp_buf_write_bytes and bp_buf_release with
 * every case the inline test leaves out (the typed calls use them, and bp_buf_get_bytes,
 * bp_buf_set_bytes and bp_buf_capacity, with their bytes). Call the inline calls instead.
 * Errors: as bp_buf_read_bytes, bp_buf_write_bytes and bp_buf_release. */
BP_API int bp_buf_read_slow(bp_buf *b, void *dst, size_t n);
BP_API int bp_buf_write_slow(bp_buf *b, const void *src, size_t n);
BP_API bool bp_buf_release_slow(bp_buf *b);
/* The out-of-line halves of bp_buf_new (every case: leak tracking, checked builds, a max to
 * check) and of bp_buf_peek (composites). Call bp_buf_new and bp_buf_peek instead.
 * Errors: as bp_buf_new and bp_buf_peek. */
BP_API bp_buf *bp_buf_new_slow(bp_pool *pool, size_t initial, size_t max);
BP_API size_t bp_buf_peek_slow(const bp_buf *b, const uint8_t **p);

/* memmove (the ranges may overlap: either may lie in the buffer itself), done inline through
 * registers when the size is a small constant, where compilers call memmove otherwise. */
static inline __attribute__((always_inline)) void bp_buf_move_(void *dst, const void *src, size_t n)
{
    /* Every byte is loaded before any is stored. From 16 bytes on, into vector registers
     * named one by one (with a last, overlapping one for the tail): through an array gcc
     * copies the bytes twice, via the stack. */
    typedef uint8_t bp_buf_v16_ __attribute__((vector_size(16)));
    if (__builtin_constant_p(n) && n >= 16 && n <= 64) {
        const uint8_t *from = (const uint8_t *)src;
        uint8_t *to = (uint8_t *)dst;
        bp_buf_v16_ v0, v1, v2, tail;
        __builtin_memcpy(&v0, from, 16);
        if (n > 32)
            __builtin_memcpy(&v1, from + 16, 16);
        if (n > 48)
            __builtin_memcpy(&v2, from + 32, 16);
        __builtin_memcpy(&tail, from + n - 16, 16);
        __builtin_memcpy(to, &v0, 16);
        if (n > 32)
            __builtin_memcpy(to + 16, &v1, 16);
        if (n > 48)
            __builtin_memcpy(to + 32, &v2, 16);
        __builtin_memcpy(to + n - 16, &tail, 16);
    } else if (__builtin_constant_p(n) && n < 16) {
        uint8_t tmp[16];
        __builtin_memcpy(tmp, src, n);
        __builtin_memcpy(dst, tmp, n);
    } else {
        __builtin_memmove(dst, src, n);
    }
}

/* bp_buf_new's common case inline: a max of 0 (or one bp_buf_new accepts as it is) and a
 * pool that needs no out-of-line work per buffer (buf_slow: leak tracking, checked builds).
 * Sizes the thread does not cache miss inside bp_fast_alloc. The header is stored field by
 * field, only what a plain buffer has. */
static inline __attribute__((always_inline)) bp_buf *bp_buf_fastpath_new(bp_pool *pool,
                                                                         size_t initial, size_t max)
{
    const struct bp_fast_pool *fp = (const struct bp_fast_pool *)(const void *)pool;
    size_t most = max - 1 < SIZE_MAX / 2 ? max : SIZE_MAX / 2; /* 0 and past it: no limit */
    if (__builtin_expect(fp->buf_slow == 0 && initial <= most, 1)) {
        bp_buf *b = (bp_buf *)bp_fast_alloc(pool, sizeof(struct bp_buf) + initial);
        if (__builtin_expect(b != NULL, 1)) {
            b->data = (uint8_t *)b + sizeof(struct bp_buf);
            b->reader = 0;
            b->writer = 0;
            b->limit = initial;
            b->state = 1;
            b->more.max_capacity = most;
        }
        return b;
    }
    return bp_buf_new_slow(pool, initial, max);
}

static inline __attribute__((always_inline)) size_t bp_buf_fastpath_peek(const bp_buf *b,
                                                                         const uint8_t **p)
{
    if (__builtin_expect(b->data != NULL, 1)) {
        *p = b->data + b->reader;
        return b->writer - b->reader;
    }
    return bp_buf_peek_slow(b, p);
}

static inline __attribute__((always_inline)) int bp_buf_fastpath_skip(bp_buf *b, size_t n)
{
    size_t reader = b->reader;
    if (__builtin_expect(n <= b->writer - reader, 1)) {
        b->reader = reader + n;
        return BP_OK;
    }
    return BP_EBOUNDS;
}

static inline __attribute__((always_inline)) size_t bp_buf_fastpath_readable(const bp_buf *b)
{
    return b->writer - b->reader;
}

static inline __attribute__((always_inline)) size_t bp_buf_fastpath_writable(const bp_buf *b)
{
    if (__builtin_expect(b->limit != 0, 1))
        return b->limit - b->writer;
    return bp_buf_capacity(b) - b->writer;
}

static inline __attribute__((always_inline)) int bp_buf_fastpath_read_bytes(bp_buf *b, void *dst,
                                                                            size_t n)
{
    size_t reader = b->reader;
    if (__builtin_constant_p(n) && n > SIZE_MAX / 2) /* no buffer holds that: say so */
        return bp_buf_read_slow(b, dst, n);
    if (__builtin_expect(n - 1 < b->writer - reader && b->data != NULL, 1)) {
        bp_buf_move_(dst, b->data + reader, n);
        b->reader = reader + n;
        return BP_OK;
    }
    return bp_buf_read_slow(b, dst, n);
}

static inline __attribute__((always_inline)) int
bp_buf_fastpath_write_bytes(bp_buf *b, const void *src, size_t n)
{
    size_t writer = b->writer, limit = b->limit;
    if (__builtin_constant_p(n) && n > SIZE_MAX / 2)
        return bp_buf_write_slow(b, src, n);
    if (__builtin_expect(writer < limit && n - 1 < limit - writer, 1)) {
        bp_buf_move_(b->data + writer, src, n);
        b->writer = writer + n;
        return BP_OK;
    }
    return bp_buf_write_slow(b, src, n);
}

static inline __attribute__((always_inline)) bool bp_buf_fastpath_release(bp_buf *b)
{
    if (__builtin_expect(__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == 1, 1)) {
        __atomic_store_n(&b->state, 0, __ATOMIC_RELAXED); /* a second release finds 0 */
        bp_free(b);
        return true;
    }
    return bp_buf_release_slow(b);
}

/* The calls themselves: these bodies in a program, the library's exported copies (buf.c)
 * for a caller that takes an address. */
#ifndef BP_EXPORT_BUF_FAST_PATHS
static inline __attribute__((always_inline)) size_t bp_buf_readable(const bp_buf *b)
{
    return bp_buf_fastpath_readable(b);
}
static inline __attribute__((always_inline)) size_t bp_buf_writable(const bp_buf *b)
{
    return bp_buf_fastpath_writable(b);
}
static inline __attribute__((always_inline)) int bp_buf_read_bytes(bp_buf *b, void *dst, size_t n)
{
    return bp_buf_fastpath_read_bytes(b, dst, n);
}
static inline __attribute__((always_inline)) int bp_buf_write_bytes(bp_buf *b, const void *src,
                                                                    size_t n)
{
    return bp_buf_fastpath_write_bytes(b, src, n);
}
static inline __attribute__((always_inline)) bool bp_buf_release(bp_buf *b)
{
    return bp_buf_fastpath_release(b);
}
static inline __attribute__((always_inline)) bp_buf *bp_buf_new(bp_pool *pool, size_t initial,
                                                                size_t max)
{
    return bp_buf_fastpath_new(pool, initial, max);
}
static inline __attribute__((always_inline)) size_t bp_buf_peek(const bp_buf *b, const uint8_t **p)
{
    return bp_buf_fastpath_peek(b, p);
}
static inline __attribute__((always_inline)) size_t bp_buf_reader_index(const bp_buf *b)
{
    return b->reader;
}
static inline __attribute__((always_inline)) size_t bp_buf_writer_index(const bp_buf *b)
{
    return b->writer;
}
static inline __attribute__((always_inline)) int bp_buf_skip(bp_buf *b, size_t n)
{
    return bp_buf_fastpath_skip(b, n);
}
#endif

/* The integer image of `width` bytes at p in big (big != 0) or little endian, and back. */
static inline __attribute__((always_inline)) uint64_t bp_buf_load_(const uint8_t *p, unsigned width,
                                                                   int big)
{
    uint64_t v = 0;
    __builtin_memcpy(&v, p, width);
    return big ? __builtin_bswap64(v) >> (64 - 8 * width) : v;
}

static inline __attribute__((always_inline)) void bp_buf_store_(uint8_t *p, uint64_t v,
                                                                unsigned width, int big)
{
    if (big)
        v = __builtin_bswap64(v) >> (64 - 8 * width);
    __builtin_memcpy(p, &v, width);
}

/* get: idx + width <= writer; set: idx + width <= limit; read: reader + width <= writer;
 * write: writer + width <= limit. Values travel as their bit image (memcpy: floats keep
 * their bits, i8 its sign). */
#undef BP_BUF_TYPED
#define BP_BUF_TYPED(name, type, width, big)                                                       \
    BP_BUF_INLINE_API int bp_buf_get_##name(const bp_buf *b, size_t idx, type *out)                \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        uint64_t bits;                                                                             \
        size_t writer = b->writer;                                                                 \
        if (__builtin_expect(idx < writer && (width) <= writer - idx && b->data != NULL, 1)) {     \
            bits = bp_buf_load_(b->data + idx, (width), (big));                                    \
        } else {                                                                                   \
            int err = bp_buf_get_bytes(b, idx, tmp, (width));                                      \
            if (err != BP_OK)                                                                      \
                return err;                                                                        \
            bits = bp_buf_load_(tmp, (width), (big));                                              \
        }                                                                                          \
        __builtin_memcpy(out, &bits, sizeof(type));                                                \
        return BP_OK;                                                                              \
    }                                                                                              \
    BP_BUF_INLINE_API int bp_buf_set_##name(bp_buf *b, size_t idx, type v)                         \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        uint64_t bits = 0;                                                                         \
        size_t limit = b->limit;                                                                   \
        __builtin_memcpy(&bits, &v, sizeof(type));                                                 \
        if (__builtin_expect(idx < limit && (width) <= limit - idx, 1)) {                          \
            bp_buf_store_(b->data + idx, bits, (width), (big));                                    \
            return BP_OK;                                                                          \
        }                                                                                          \
        bp_buf_store_(tmp, bits, (width), (big));                                                  \
        return bp_buf_set_bytes(b, idx, tmp, (width));                                             \
    }                                                                                              \
    BP_BUF_INLINE_API int bp_buf_read_##name(bp_buf *b, type *out)                                 \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        uint64_t bits;                                                                             \
        size_t reader = b->reader;                                                                 \
        if (__builtin_expect(reader + (width) <= b->writer && b->data != NULL, 1)) {               \
            bits = bp_buf_load_(b->data + reader, (width), (big));                                 \
            b->reader = reader + (width);                                                          \
        } else {                                                                                   \
            int err = bp_buf_read_slow(b, tmp, (width));                                           \
            if (err != BP_OK)                                                                      \
                return err;                                                                        \
            bits = bp_buf_load_(tmp, (width), (big));                                              \
        }                                                                                          \
        __builtin_memcpy(out, &bits, sizeof(type));                                                \
        return BP_OK;                                                                              \
    }                                                                                              \
    BP_BUF_INLINE_API int bp_buf_write_##name(bp_buf *b, type v)                                   \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        uint64_t bits = 0;                                                                         \
        size_t writer = b->writer;                                                                 \
        __builtin_memcpy(&bits, &v, sizeof(type));                                                 \
        if (__builtin_expect(writer + (width) <= b->limit, 1)) {                                   \
            bp_buf_store_(b->data + writer, bits, (width), (big));                                 \
            b->writer = writer + (width);                                                          \
            return BP_OK;                                                                          \
        }                                                                                          \
        bp_buf_store_(tmp, bits, (width), (big));                                                  \
        return bp_buf_write_slow(b, tmp, (width));                                                 \
    }
BP_BUF_TYPED(u8, uint8_t, 1, 1)
BP_BUF_TYPED(i8, int8_t, 1, 1)
BP_BUF_TYPED(u16_be, uint16_t, 2, 1)
BP_BUF_TYPED(u16_le, uint16_t, 2, 0)
BP_BUF_TYPED(u24_be, uint32_t, 3, 1)
BP_BUF_TYPED(u24_le, uint32_t, 3, 0)
BP_BUF_TYPED(u32_be, uint32_t, 4, 1)
BP_BUF_TYPED(u32_le, uint32_t, 4, 0)
BP_BUF_TYPED(u64_be, uint64_t, 8, 1)
BP_BUF_TYPED(u64_le, uint64_t, 8, 0)
BP_BUF_TYPED(f32_be, float, 4, 1)
BP_BUF_TYPED(f32_le, float, 4, 0)
BP_BUF_TYPED(f64_be, double, 8, 1)
BP_BUF_TYPED(f64_le, double, 8, 0)
#undef BP_BUF_TYPED

/* prepend: width <= reader and a writable contiguous buffer (limit != 0, so [0, limit) lies
 * at data and reader <= limit). The same machinery macro, for the prepend family. */
#define BP_BUF_TYPED(name, type, width, big)                                                       \
    BP_BUF_INLINE_API int bp_buf_prepend_##name(bp_buf *b, type v)                                 \
    {                                                                                              \
        uint8_t tmp[8];                                                                            \
        uint64_t bits = v;                                                                         \
        size_t reader = b->reader;                                                                 \
        if (__builtin_expect(reader >= (width) && b->limit != 0, 1)) {                             \
            bp_buf_store_(b->data + reader - (width), bits, (width), (big));                       \
            b->reader = reader - (width);                                                          \
            return BP_OK;                                                                          \
        }                                                                                          \
        bp_buf_store_(tmp, bits, (width), (big));                                                  \
        return bp_buf_prepend_bytes(b, tmp, (width));                                              \
    }
BP_BUF_TYPED(u8, uint8_t, 1, 1)
BP_BUF_TYPED(u16_be, uint16_t, 2, 1)
BP_BUF_TYPED(u16_le, uint16_t, 2, 0)
BP_BUF_TYPED(u24_be, uint32_t, 3, 1)
BP_BUF_TYPED(u24_le, uint32_t, 3, 0)
BP_BUF_TYPED(u32_be, uint32_t, 4, 1)
BP_BUF_TYPED(u32_le, uint32_t, 4, 0)
BP_BUF_TYPED(u64_be, uint64_t, 8, 1)
BP_BUF_TYPED(u64_le, uint64_t, 8, 0)
#undef BP_BUF_TYPED

/* ------------------------------------------------------------------------------------------
 * Frame decoding and text. Netty's frame decoders for bp_buf: each call hands out the next
 * whole frame of a stream as a view of the input (no copy; a frame that spans parts of a
 * composite is a composite view) and moves the input's reader index past it. Text and
 * debugging: printf into a buffer, zero fill, a hex dump, a byte-scan callback.
 *
 * A decoder is a struct the caller owns (on the stack, in a connection): an init call sets
 * it up, bp_frame_next takes frames out of an input buffer as its bytes arrive. Between
 * calls the caller may append bytes to the input and discard its read bytes, but should not
 * move its reader index; one who does calls bp_frame_reset. Results of bp_frame_next:
 *
 *     BP_OK          *frame is the next frame (the caller releases it)
 *     BP_NEED_MORE   no whole frame yet: read more bytes into the input and call again
 *     BP_SKIPPED     a frame over the maximum was dropped (BP_FRAME_SKIP policy); call again
 *     BP_ETOOLONG    a frame over the maximum (the default policy: the input is as it was,
 *                    the stream cannot go on; close the connection)
 *     BP_EINVAL      a corrupt length field (the input is as it was)
 *     BP_ENOMEM      the view could not be made (the input is as it was: call again later)
 *
 * The frames of a stream do not depend on how its bytes were split into reads.
 * ------------------------------------------------------------------------------------------ */
/* What the frame calls return besides BP_OK and the BP_E* codes (positive: no error). */
enum {
    BP_NEED_MORE = 2, /* no whole frame in the input yet */
    BP_SKIPPED = 3,   /* a frame over the maximum was dropped */
    BP_ETOOLONG = -8  /* a frame over the maximum; nothing consumed */
};

/* Decoder flags. BP_FRAME_KEEP_DELIMITER: line and delimiter frames end with their
 * delimiter (default: stripped). BP_FRAME_SKIP: a frame over the maximum is dropped and
 * decoding goes on after it, reported once as BP_SKIPPED (default: BP_ETOOLONG, nothing
 * dropped), as soon as it is seen to be too long (Netty's failFast) unless
 * BP_FRAME_SKIP_REPORT_LATE says when its last byte has been dropped. BP_FRAME_LITTLE_ENDIAN:
 * a length field in little-endian order (default big-endian). BP_FRAME_LENGTH_INCLUDES_FIELD:
 * for the prepender, the length written counts the field itself (Netty's
 * lengthIncludesLengthFieldLength). */
#define BP_FRAME_KEEP_DELIMITER        0x01u
#define BP_FRAME_SKIP                  0x02u
#define BP_FRAME_SKIP_REPORT_LATE      0x04u
#define BP_FRAME_LITTLE_ENDIAN         0x08u
#define BP_FRAME_LENGTH_INCLUDES_FIELD 0x10u
/* A length field that is an unsigned LEB128 varint (1..10 bytes), as bp_buf_read_uvarint
 * reads it; the other field sizes are 1, 2, 3, 4 and 8 bytes. */
#define BP_FRAME_UVARINT 10u
/* The most delimiters one decoder takes. */
#define BP_FRAME_MAX_DELIMITERS 4

/* One delimiter: len (>= 1) bytes that stay the caller's while the decoder is in use. */
typedef struct bp_frame_delimiter {
    const void *bytes;
    size_t len;
} bp_frame_delimiter;

/* Netty's LengthFieldBasedFrameDecoder parameters. A frame is field_offset bytes, the length
 * field (field_size bytes, or a varint), then the rest; its length is the field's value +
 * adjustment + field_offset + the field's size, and at most max_frame. The frame handed out
 * leaves out its first `strip` bytes (Netty's initialBytesToStrip). */
typedef struct bp_frame_length_config {
    size_t max_frame;    /* 1 .. SIZE_MAX / 2 */
    size_t field_offset; /* field_offset + field_size <= max_frame */
    unsigned field_size; /* 1, 2, 3, 4, 8 or BP_FRAME_UVARINT */
    int64_t adjustment;  /* added to the field's value */
    size_t strip;        /* bytes left out at the front of each frame handed out */
    unsigned flags;      /* BP_FRAME_SKIP, BP_FRAME_SKIP_REPORT_LATE, BP_FRAME_LITTLE_ENDIAN */
} bp_frame_length_config;

/* A frame decoder: its configuration and the state a stream leaves between calls. The fields
 * are the library's (set by an init call, changed by bp_frame_next); read none of them.
 * Invariants: scanned <= the input's readable bytes at the last call, and no delimiter starts
 * in the first scanned - (longest delimiter - 1) of them; discarding only under
 * BP_FRAME_SKIP, and then discard_left is what a length-field frame still owes (0 for line
 * and delimiter frames, which drop bytes up to their next delimiter). */
typedef struct bp_frame_decoder {
    unsigned kind, flags;
    size_t max;
    bp_frame_length_config length;
    bp_frame_delimiter delimiters[BP_FRAME_MAX_DELIMITERS];
    unsigned delimiter_count;
    size_t longest_delimiter;
    size_t scanned;
    bool discarding;
    uint64_t discard_left;
} bp_frame_decoder;

/* Line frames (Netty's LineBasedFrameDecoder): bytes up to "\n" or "\r\n", at most max bytes
 * without the delimiter (1 .. SIZE_MAX / 2); flags BP_FRAME_KEEP_DELIMITER, BP_FRAME_SKIP,
 * BP_FRAME_SKIP_REPORT_LATE. A search goes on where the last one stopped: no byte is looked
 * at twice while a line arrives. Errors: BP_EINVAL (max or flags out of range; *d is
 * unchanged then). */
BP_API int bp_frame_line_init(bp_frame_decoder *d, size_t max, unsigned flags);
/* Delimiter frames (Netty's DelimiterBasedFrameDecoder): bytes up to the first of `count`
 * delimiters (1 .. BP_FRAME_MAX_DELIMITERS); where several could end a frame, the one that
 * gives the shortest frame, and of those that start at the same byte the first listed. At
 * most max bytes without the delimiter; flags as for lines. Errors: BP_EINVAL (max, count,
 * flags, or a delimiter of no bytes; *d is unchanged then). */
BP_API int bp_frame_delimiter_init(bp_frame_decoder *d, size_t max,
                                   const bp_frame_delimiter *delimiters, unsigned count,
                                   unsigned flags);
/* Length-field frames (Netty's LengthFieldBasedFrameDecoder; see bp_frame_length_config).
 * Errors: BP_EINVAL (a field size, maximum, offset or flag out of range; *d is unchanged
 * then). */
BP_API int bp_frame_length_init(bp_frame_decoder *d, const bp_frame_length_config *cfg);
/* Forgets the state of the stream (bytes scanned, a frame being dropped); the configuration
 * stays. Errors: none. */
BP_API void bp_frame_reset(bp_frame_decoder *d);
/* The next frame of `in` as a view (BP_OK; *frame holds a reference, the caller releases it)
 * and in's reader index past it (and past its delimiter, or the bytes stripped), or one of
 * the results listed at the top of this section (*frame is NULL then). A frame of a
 * contiguous buffer is a view of its memory, one of a composite a composite view of the parts
 * it spans (bp_buf_slice); a read-only input gives read-only frames. BP_NEED_MORE and
 * BP_SKIPPED may move the reader index over dropped bytes. Errors: BP_ETOOLONG, BP_EINVAL
 * (corrupt length field), BP_ENOMEM; after each the input and the decoder are as they were
 * (bytes that BP_FRAME_SKIP dropped before the frame in the same call stay dropped). */
BP_API int bp_frame_next(bp_frame_decoder *d, bp_buf *in, bp_buf **frame);
/* As bp_frame_next, without a view: *index (absolute, in `in`) and *len say where the frame
 * lies; the bytes stay there until the caller discards read bytes of `in`. For a parser that
 * reads the frame in place with bp_buf_get_*. Errors: BP_ETOOLONG, BP_EINVAL (corrupt length
 * field); after each the input and the decoder are as they were. */
BP_API int bp_frame_next_range(bp_frame_decoder *d, bp_buf *in, size_t *index, size_t *len);
/* Netty's LengthFieldPrepender: writes into dst a length field of field_size bytes (1, 2, 3,
 * 4, 8 or BP_FRAME_UVARINT) holding body's readable bytes + adjustment (+ the field's own
 * size with BP_FRAME_LENGTH_INCLUDES_FIELD), then a copy of those bytes; body is unchanged.
 * flags: BP_FRAME_LITTLE_ENDIAN, BP_FRAME_LENGTH_INCLUDES_FIELD. A decoder with field_offset
 * 0, the same size, order and -adjustment (minus the field's size too when it is included)
 * reads the frame back. Errors: BP_EINVAL (a bad field size or flag, dst == body, or a length
 * below 0 or too big for the field), the codes of bp_buf_ensure_writable; dst is as it was
 * then. */
BP_API int bp_frame_prepend_length(bp_buf *dst, const bp_buf *body, unsigned field_size,
                                   int64_t adjustment, unsigned flags);

#include <stdarg.h> /* va_list, for bp_buf_vprintf */
/* printf into b at its writer index, growing it as needed. Returns the bytes written (no
 * terminating NUL is written), or a BP_E* code with b as it was. Errors: BP_EINVAL (an
 * encoding error in the format, or more than INT_MAX bytes), BP_ENOMEM, the codes of
 * bp_buf_ensure_writable. */
BP_API int bp_buf_printf(bp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
BP_API int bp_buf_vprintf(bp_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Writes n zero bytes at the writer index. Errors: the codes of bp_buf_ensure_writable. */
BP_API int bp_buf_write_zero(bp_buf *b, size_t n);
/* Netty's pretty hex dump of b's readable bytes (ByteBufUtil.prettyHexDump): a header, then
 * 16 bytes a row as offset | hex | characters (those outside 0x20..0x7e as '.'), each line
 * ending with '\n'; nothing for no bytes.
 *
 *              +-------------------------------------------------+
 *              |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |
 *     +--------+-------------------------------------------------+----------------+
 *     |00000000| 48 45 4c 4c 4f 0a                               |HELLO.          |
 *     +--------+-------------------------------------------------+----------------+
 *
 * bp_buf_hex_dump writes it to a stream; bp_buf_write_hex_dump into dst at its writer index
 * (all of it or, failing, nothing). Errors: bp_buf_hex_dump BP_EIO (the stream's error,
 * errno as it left it); bp_buf_write_hex_dump BP_EINVAL (dst == b), the codes of
 * bp_buf_ensure_writable. */
BP_API int bp_buf_hex_dump(const bp_buf *b, FILE *out);
BP_API int bp_buf_write_hex_dump(bp_buf *dst, const bp_buf *b);
/* Calls visit(ctx, byte) for b's readable bytes in order, across the parts of a composite,
 * until it returns false: 0 with *pos the absolute index of the byte it returned false for,
 * or BP_NOTFOUND when it took them all (Netty's forEachByte). Errors: none (BP_NOTFOUND is an
 * answer). */
BP_API int bp_buf_for_each_byte(const bp_buf *b, bool (*visit)(void *ctx, uint8_t byte), void *ctx,
                                size_t *pos);

#ifdef __cplusplus
}
#endif
#endif /* BUFPOOL_H */
