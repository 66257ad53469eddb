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
 * (libbufpool.so.1): it changes when a release breaks programs built against an older one. */
#define BP_VERSION_MAJOR 1
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

/* ------------------------------------------------------------------------------------------
 * The OS layer. Every mapping a pool makes (chunks, huge blocks, metadata) goes through one
 * of these tables. The default one uses mmap/munmap/madvise; tests and embedders replace it
 * (a memfd shared with another process, memory registered for RDMA, a counting fake, a
 * table that refuses the Nth mapping).
 *
 * Contract: `map` returns `size` bytes of zero-filled, read-write memory whose address is a
 * multiple of `align` (a power of two, at least 4 KiB; `size` is a multiple of 4 KiB), or
 * NULL when it cannot. `unmap` receives exactly an address and size that `map` returned and
 * returns 0, or an errno value when it could not unmap them: the range must then still be
 * mapped as it was. `purge` tells the OS that the contents of [addr, addr+size) are no
 * longer needed (the range stays mapped and reads back as zero or as old contents); it
 * returns 0 or an errno value, and may be NULL.
 *
 * A refused unmap never stops the program. bufpool purges the range and keeps it counted
 * against memory_limit: an empty chunk stays with its arena for reuse, any other range is
 * unmapped again at the next bp_pool_trim, before an allocation fails, and at
 * bp_pool_destroy, after which a range still refused stays mapped (purged) for good. The
 * default layer's unmap is refused where munmap is (ENOMEM at vm.max_map_count, when the
 * range lies inside a larger mapping), and its map returns NULL when the OS refuses either
 * the mapping or the trimming of the alignment slack around it.
 * ------------------------------------------------------------------------------------------ */
/* An OS layer: the three calls and the context passed to each. */
typedef struct bp_os {
    void *(*map)(size_t size, size_t align, void *ctx);
    int (*unmap)(void *addr, size_t size, void *ctx);
    int (*purge)(void *addr, size_t size, void *ctx);
    void *ctx;
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
                               * this long, -1..3600000; 0 = at once, -1 = only on
                               * bp_pool_trim; default 10000 */
    size_t huge_cache_bytes;  /* freed huge blocks (above chunk_size) each arena keeps mapped
                               * for reuse by a block of the same size up to 25 % smaller,
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
BP_API BP_MALLOCLIKE void *bp_alloc(bp_pool *pool, size_t size);
/* n * size bytes, zeroed. Errors: NULL with errno ENOMEM, also when n * size overflows. */
BP_API BP_MALLOCLIKE void *bp_calloc(bp_pool *pool, size_t n, size_t size);
/* A block whose address is a multiple of align: any power of two up to the pool's chunk
 * size. Freed with bp_free like any other.
 * Errors: NULL with errno EINVAL (align 0, not a power of two, or above the chunk size) or
 * ENOMEM (as bp_alloc). */
BP_API BP_MALLOCLIKE void *bp_aligned_alloc(bp_pool *pool, size_t align, size_t size);
/* In place when the new size has the same size class; otherwise allocate, copy, free.
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
BP_API void bp_free(void *p);
/* As bp_free, with the size the block was requested with (or its usable size). Errors: as
 * bp_free; checked builds also abort when size is larger than the block. */
BP_API void bp_free_sized(void *p, size_t size);
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
/* A byte buffer (or a view of one, or a composite of several): opaque, made by bp_buf_new,
 * bp_buf_wrap, the view calls and bp_buf_composite, gone with its last bp_buf_release. */
typedef struct bp_buf bp_buf;

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
    BP_NOTFOUND = 1  /* search: no match (not an error) */
};
/* A constant English description of a BP_E* code (or BP_OK, BP_NOTFOUND); "unknown bufpool
 * error" for any other number. Errors: none. */
BP_API const char *bp_strerror(int code);

#define BP_RDONLY 1u /* flag: a read-only buffer or view */

/* A buffer of `initial` bytes' capacity that grows up to max; max 0 means "no limit"
 * (SIZE_MAX / 2). Errors: NULL with errno EINVAL (initial > max) or ENOMEM. */
BP_API bp_buf *bp_buf_new(bp_pool *pool, size_t initial, size_t max);
/* A buffer over caller memory [mem, mem + cap) holding `len` readable bytes; free_fn(mem, ud)
 * runs when the last reference to the memory goes (NULL: nothing to do). Its capacity is
 * fixed at cap. mem may be NULL when cap is 0 (an empty buffer, never dereferenced).
 * Errors: NULL with errno EINVAL (len > cap, or mem NULL with cap > 0) or ENOMEM (the
 * header; free_fn is not called then, the memory stays the caller's). */
BP_API bp_buf *bp_buf_wrap(bp_pool *pool, void *mem, size_t cap, size_t len,
                           void (*free_fn)(void *mem, void *ud), void *ud, unsigned flags);
/* Adds a reference to b (from any thread); returns b. Errors: none (checked builds abort on
 * a buffer already released). */
BP_API bp_buf *bp_buf_retain(bp_buf *b);
/* Drops a reference; returns true when this was the last one and the buffer is gone.
 * Errors: none (checked builds abort on a second release of the last reference). */
BP_API bool bp_buf_release(bp_buf *b);
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
BP_API size_t bp_buf_reader_index(const bp_buf *b);
BP_API size_t bp_buf_writer_index(const bp_buf *b);
BP_API size_t bp_buf_readable(const bp_buf *b);
BP_API size_t bp_buf_writable(const bp_buf *b); /* capacity - writer */
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
 * before bp_buf_commit). A composite grows by a new part at its end.
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
    BP_API int bp_buf_get_##name(const bp_buf *b, size_t idx, type *out);                          \
    BP_API int bp_buf_set_##name(bp_buf *b, size_t idx, type v);                                   \
    BP_API int bp_buf_read_##name(bp_buf *b, type *out);                                           \
    BP_API int bp_buf_write_##name(bp_buf *b, type v);
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
BP_API int bp_buf_read_bytes(bp_buf *b, void *dst, size_t n);
BP_API int bp_buf_write_bytes(bp_buf *b, const void *src, size_t n);
BP_API int bp_buf_skip(bp_buf *b, size_t n);

/* ------------------------------------------------------------------------------------------
 * Views and composites. A view shares the memory of the buffer it views and holds a
 * reference to it; a composite presents the readable bytes of several buffers as one.
 * ------------------------------------------------------------------------------------------ */
/* Views: their own indexes over [idx, idx + len) of b's memory, holding a reference to it;
 * they never grow (BP_ECAP). BP_RDONLY makes a read-only view. A slice of a composite is a
 * composite of views of its parts.
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

/* Composites: the readable bytes of several buffers, in order, without copying; max_parts
 * 1..2^20. Errors: NULL with errno EINVAL (max_parts outside that range) or ENOMEM. */
BP_API bp_buf *bp_buf_composite(bp_pool *pool, unsigned max_parts);
/* Takes over the caller's reference to part; its readable bytes are appended (the writer
 * index moves). The composite also holds the memory those bytes lie in, as a view would: a
 * part still written by another owner (one who retained it) keeps them where they are for
 * the composite (its growth copies them to new memory, its bp_buf_discard_read gives
 * BP_ESHARED), while writes into the bytes they share are seen by both.
 * Errors: BP_ECAP when max_parts are in use or the composite would pass its maximum capacity
 * (a slice's is its capacity); BP_EINVAL when `composite` is no composite, when part is a
 * composite or the composite itself, or while the composite has writable bytes (from growth
 * or bp_buf_reserve_iov) that the part's would come after. On failure the caller keeps its
 * reference to part. */
BP_API int bp_buf_append(bp_buf *composite, bp_buf *part);
/* The parts of a composite; 1 for any other buffer. Errors: none. */
BP_API unsigned bp_buf_part_count(const bp_buf *b);
/* Copies every part into one: afterwards the composite has a single part.
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
 * extents (a composite of more parts takes several calls). A socket is written with sendmsg
 * and MSG_NOSIGNAL: a peer that has gone gives BP_EIO with errno EPIPE, never SIGPIPE. Any
 * other descriptor (a pipe, a file) is written with writev, which raises SIGPIPE for a pipe
 * whose reader has gone: a program writing to pipes ignores or blocks SIGPIPE, then gets
 * BP_EIO with EPIPE. (Each thread remembers the last descriptor found to be no socket and
 * writes it with writev from then on, sparing a failed sendmsg per call; should that number
 * be closed and reopened as a socket, that socket is written with writev too, which a
 * program that ignores SIGPIPE, as one writing to pipes does, never notices.) Both return
 * the bytes moved (the reader or writer index moves over them), 0 at end of file (read), or
 * a BP_E* code. After BP_EIO from readv the buffer may have grown; its bytes and indexes
 * are as they were.
 * Errors: readv: BP_ERDONLY, BP_ECAP (full at its maximum), BP_ENOMEM, or BP_EIO with the
 * errno of readv (EAGAIN on a non-blocking descriptor with nothing to read, EINTR, EBADF, ...).
 * writev: BP_EIO with the errno of sendmsg or writev (EAGAIN when a non-blocking descriptor
 * takes nothing now, EPIPE when the peer or reader has gone, ECONNRESET, EBADF, ...). */
BP_API ssize_t bp_buf_readv_fd(bp_buf *b, int fd, size_t max);
BP_API ssize_t bp_buf_writev_fd(bp_buf *b, int fd, size_t max);

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

#ifdef __cplusplus
}
#endif
#endif /* BUFPOOL_H */
