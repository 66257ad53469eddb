/* track.h — how pool memory is shown to ASan and valgrind: poisoning and
 * block announcements, compiled to nothing in other builds. */
#ifndef BP_TRACK_H
#define BP_TRACK_H

#include "base.h"

/* Tool visibility. ASan builds poison pool memory a program must not touch (not handed out,
 * or freed); valgrind builds (-DBP_VALGRIND=1) announce blocks with memcheck's client
 * requests. Either way a use after free or an overflow inside a chunk is reported. Both
 * compile to nothing otherwise. BP_TRACK: one of them is on (see alloc.c's entry points).
 *   bp_poison/bp_unpoison     memory the engine itself must (not) touch
 *   bp_track_pool             a pool made / destroyed
 *   bp_track_alloc/free       a block handed out / given back through the public API
 *   bp_track_resize           a block reused in place for a new size
 * ASan and valgrind track the usable size. */
#if defined(__SANITIZE_ADDRESS__)
#define BP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BP_ASAN 1
#endif
#endif
#ifndef BP_ASAN
#define BP_ASAN 0
#endif
#ifndef BP_VALGRIND
#define BP_VALGRIND 0
#endif
#define BP_TRACK (BP_ASAN || BP_VALGRIND)
#if BP_ASAN
#include <sanitizer/asan_interface.h>
#define bp_poison(p, n)                   ASAN_POISON_MEMORY_REGION((p), (n))
#define bp_unpoison(p, n)                 ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define bp_track_pool(pool, alive)        ((void)(pool), (void)(alive))
#define bp_track_alloc(pool, p, n)        ((void)(pool), bp_unpoison((p), (n)))
#define bp_track_free(pool, p, n, pooled) ((void)(pool), (pooled) ? bp_poison((p), (n)) : (void)0)
#define bp_track_resize(pool, p, n)       ((void)(pool), bp_unpoison((p), (n)))
#elif BP_VALGRIND
/* Each pool is a memcheck mempool: destroying it forgets every block it held. Blocks are
 * announced with their usable size (a resize in place within the class needs no request). */
#include <valgrind/memcheck.h>
#define bp_poison(p, n)   ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define bp_unpoison(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define bp_track_pool(pool, alive)                                                                 \
    do {                                                                                           \
        if (alive)                                                                                 \
            VALGRIND_CREATE_MEMPOOL((pool), 0, 0);                                                 \
        else                                                                                       \
            VALGRIND_DESTROY_MEMPOOL((pool));                                                      \
    } while (0)
#define bp_track_alloc(pool, p, n) VALGRIND_MEMPOOL_ALLOC((pool), (p), bp_usable_size(p))
#define bp_track_free(pool, p, n, pooled)                                                          \
    do {                                                                                           \
        (void)(n), (void)(pooled);                                                                 \
        VALGRIND_MEMPOOL_FREE((pool), (p));                                                        \
    } while (0)
#define bp_track_resize(pool, p, n) ((void)(pool), (void)(p), (void)(n))
#else
#define bp_poison(p, n)                   ((void)(p), (void)(n))
#define bp_unpoison(p, n)                 ((void)(p), (void)(n))
#define bp_track_pool(pool, alive)        ((void)(pool), (void)(alive))
#define bp_track_alloc(pool, p, n)        ((void)(pool), (void)(p), (void)(n))
#define bp_track_free(pool, p, n, pooled) ((void)(pool), (void)(p), (void)(n), (void)(pooled))
#define bp_track_resize(pool, p, n)       ((void)(pool), (void)(p), (void)(n))
#endif

#endif /* BP_TRACK_H */
