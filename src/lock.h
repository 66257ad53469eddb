/* lock.h — bp_lock, the arenas' lock: one atomic instruction to take and to
 * release uncontended, a futex when contended (os.c). */
#ifndef BP_LOCK_H
#define BP_LOCK_H

#include "base.h"

/* ------------------------------------------------------------------------------------------
 * os.c — bp_lock: the arenas' lock. Uncontended, taking and releasing it is one atomic
 * instruction each (a pthread mutex costs about 110 instructions a pair); contended, it spins
 * briefly and then sleeps on a futex. state: 0 free, 1 held, 2 held with sleepers.
 * ------------------------------------------------------------------------------------------ */
typedef struct bp_lock {
    uint32_t state;
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
    if (bp_likely(__atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                              __ATOMIC_RELAXED)))
        return;
    bp_lock_wait(lock);
}
bp_inline void bp_lock_release(bp_lock *lock)
{
    if (bp_unlikely(__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2))
        bp_lock_wake(lock);
}

#endif /* BP_LOCK_H */
