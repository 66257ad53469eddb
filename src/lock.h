/* lock.h — bp_lock, the arenas' lock: one atomic instruction to take and to
 * release uncontended, a futex when contended (os.c). */
#ifndef BP_LOCK_H
#define BP_LOCK_H

#include "base.h"

#include <pthread.h>

/* ------------------------------------------------------------------------------------------
 * os.c — bp_lock: the arenas' lock. Uncontended, taking and releasing it is one atomic
 * instruction each (a pthread mutex costs about 110 instructions a pair); contended, it spins
 * briefly and then sleeps on a futex. state: 0 free, 1 held, 2 held with sleepers.
 *
 * Checked builds also record the holder, so that every function named *_locked can assert
 * its lock is held by the calling thread (bp_lock_held), as Netty asserts
 * lock.isHeldByCurrentThread(). Invariant there: owner != 0 <=> state != 0, set by the holder.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_lock {
    uint32_t state;
#if BP_CHECKED
    uintptr_t owner; /* the holder's pthread_self(), 0 when free (atomic, relaxed) */
#endif
} bp_lock;
#define BP_LOCK_INIT                                                                               \
    {                                                                                              \
        0                                                                                          \
    }

void bp_lock_wait(bp_lock *lock);
void bp_lock_wake(bp_lock *lock);

bp_inline void bp_lock_acquire(bp_lock *lock)
{
    uint32_t expected = 0;
    if (bp_unlikely(!__atomic_compare_exchange_n(&lock->state, &expected, 1, false,
                                                 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        bp_lock_wait(lock);
#if BP_CHECKED
    __atomic_store_n(&lock->owner, (uintptr_t)pthread_self(), __ATOMIC_RELAXED);
#endif
}
/* The lock when it is free now: true and held, else false at once. */
bp_inline bool bp_lock_try(bp_lock *lock)
{
    uint32_t expected = 0;
    if (!__atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return false;
#if BP_CHECKED
    __atomic_store_n(&lock->owner, (uintptr_t)pthread_self(), __ATOMIC_RELAXED);
#endif
    return true;
}
/* Whether the calling thread holds the lock (checked builds; true in others). */
bp_inline bool bp_lock_held(bp_lock *lock)
{
#if BP_CHECKED
    return __atomic_load_n(&lock->owner, __ATOMIC_RELAXED) == (uintptr_t)pthread_self();
#else
    (void)lock;
    return true;
#endif
}
/* Releases the lock and says whether a sleeper must be woken (bp_lock_wake): for a caller
 * that wakes in a tail call of its own, keeping nothing live across it. */
bp_inline bool bp_lock_release_wants_wake(bp_lock *lock)
{
    bp_assert(bp_lock_held(lock));
#if BP_CHECKED
    __atomic_store_n(&lock->owner, 0, __ATOMIC_RELAXED);
#endif
    return __atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2;
}
bp_inline void bp_lock_release(bp_lock *lock)
{
    if (bp_unlikely(bp_lock_release_wants_wake(lock)))
        bp_lock_wake(lock);
}

/* ------------------------------------------------------------------------------------------
 * bp_mutex: a pthread mutex for the process-wide registries (thread caches, the chunk map)
 * that may sleep for long, with the same holder bookkeeping as bp_lock in checked builds.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_mutex {
    pthread_mutex_t mutex;
#if BP_CHECKED
    uintptr_t owner; /* the holder's pthread_self(), 0 when free (atomic, relaxed) */
#endif
} bp_mutex;
#if BP_CHECKED
#define BP_MUTEX_INIT                                                                              \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, 0                                                               \
    }
#else
#define BP_MUTEX_INIT                                                                              \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER                                                                  \
    }
#endif

bp_inline void bp_mutex_lock(bp_mutex *m)
{
    pthread_mutex_lock(&m->mutex);
#if BP_CHECKED
    __atomic_store_n(&m->owner, (uintptr_t)pthread_self(), __ATOMIC_RELAXED);
#endif
}
bp_inline bool bp_mutex_held(bp_mutex *m)
{
#if BP_CHECKED
    return __atomic_load_n(&m->owner, __ATOMIC_RELAXED) == (uintptr_t)pthread_self();
#else
    (void)m;
    return true;
#endif
}
bp_inline void bp_mutex_unlock(bp_mutex *m)
{
    bp_assert(bp_mutex_held(m));
#if BP_CHECKED
    __atomic_store_n(&m->owner, 0, __ATOMIC_RELAXED);
#endif
    pthread_mutex_unlock(&m->mutex);
}

#endif /* BP_LOCK_H */
