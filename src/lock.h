/* lock.h — the library's locks: bp_lock, the arenas' (one atomic instruction to take and to
 * release uncontended, a futex when contended; os.c), and bp_mutex for the registries. */
#ifndef BP_LOCK_H
#define BP_LOCK_H

#include "base.h"

#include <pthread.h>

/* Checked builds record each lock's holder, so that every function named *_locked can assert
 * its lock is held by the calling thread (bp_lock_held, bp_mutex_held), as Netty asserts
 * lock.isHeldByCurrentThread(); other builds record nothing. Invariant there: owner != 0
 * exactly while the lock is held, written by the holder (atomic, relaxed). */
#if BP_CHECKED
#define BP_LOCK_OWNER_FIELD uintptr_t owner; /* the holder's pthread_self(), 0 when free */
#define bp_owner_take(l)    __atomic_store_n(&(l)->owner, (uintptr_t)pthread_self(), __ATOMIC_RELAXED)
#define bp_owner_drop(l)    __atomic_store_n(&(l)->owner, 0, __ATOMIC_RELAXED)
#define bp_owner_is_self(l)                                                                        \
    (__atomic_load_n(&(l)->owner, __ATOMIC_RELAXED) == (uintptr_t)pthread_self())
#else
#define BP_LOCK_OWNER_FIELD
#define bp_owner_take(l)    ((void)(l))
#define bp_owner_drop(l)    ((void)(l))
#define bp_owner_is_self(l) ((void)(l), true)
#endif

/* ------------------------------------------------------------------------------------------
 * bp_lock: the arenas' lock. Uncontended, taking and releasing it is one atomic instruction
 * each (a pthread mutex costs about 110 instructions a pair); contended, it spins briefly and
 * then sleeps on a futex. state: 0 free, 1 held, 2 held with sleepers.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_lock {
    uint32_t state;
    BP_LOCK_OWNER_FIELD
} bp_lock;
#define BP_LOCK_INIT                                                                               \
    {                                                                                              \
        .state = 0                                                                                 \
    }

void bp_lock_wait(bp_lock *lock);
void bp_lock_wake(bp_lock *lock);

bp_inline void bp_lock_acquire(bp_lock *lock)
{
    uint32_t expected = 0;
    if (bp_unlikely(!__atomic_compare_exchange_n(&lock->state, &expected, 1, false,
                                                 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        bp_lock_wait(lock);
    bp_owner_take(lock);
}
/* The lock when it is free now: true and held, else false at once. */
bp_inline bool bp_lock_try(bp_lock *lock)
{
    uint32_t expected = 0;
    if (!__atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return false;
    bp_owner_take(lock);
    return true;
}
/* Whether the calling thread holds the lock (checked builds; true in others). */
bp_inline bool bp_lock_held(bp_lock *lock)
{
    return bp_owner_is_self(lock);
}
/* Releases the lock and says whether a sleeper must be woken (bp_lock_wake): for a caller
 * that wakes in a tail call of its own, keeping nothing live across it. */
bp_inline bool bp_lock_release_wants_wake(bp_lock *lock)
{
    bp_assert(bp_lock_held(lock));
    bp_owner_drop(lock);
    return __atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2;
}
bp_inline void bp_lock_release(bp_lock *lock)
{
    if (bp_unlikely(bp_lock_release_wants_wake(lock)))
        bp_lock_wake(lock);
}

/* ------------------------------------------------------------------------------------------
 * bp_mutex: a pthread mutex for the process-wide registries (thread caches, the chunk map),
 * whose holders may sleep for long, with the same holder bookkeeping.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_mutex {
    pthread_mutex_t mutex;
    BP_LOCK_OWNER_FIELD
} bp_mutex;
#define BP_MUTEX_INIT                                                                              \
    {                                                                                              \
        .mutex = PTHREAD_MUTEX_INITIALIZER                                                         \
    }

bp_inline void bp_mutex_lock(bp_mutex *m)
{
    pthread_mutex_lock(&m->mutex);
    bp_owner_take(m);
}
bp_inline bool bp_mutex_held(bp_mutex *m)
{
    return bp_owner_is_self(m);
}
bp_inline void bp_mutex_unlock(bp_mutex *m)
{
    bp_assert(bp_mutex_held(m));
    bp_owner_drop(m);
    pthread_mutex_unlock(&m->mutex);
}

#endif /* BP_LOCK_H */
