/* background.c — the opt-in background thread (config background_thread): one per process,
 * started by the first slow-path allocation of a pool that asks for it, it purges decayed
 * pages and empties idle thread caches of those pools, so a quiet program gives memory back. */
#include "front.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

/* NONE -> STARTING -> RUNNING, or FAILED when the thread could not be made (reported once,
 * the pools then give memory back on their slow paths only). A fork child starts at NONE:
 * fork copies no thread. */
enum { BG_NONE, BG_STARTING, BG_RUNNING, BG_FAILED };
static int bg_state;       /* atomic */
static uint64_t bg_passes; /* atomic: passes over the pools made so far */

/* The sleep between passes: half the shortest decay or idle interval among the pools it
 * serves (so a page is purged within the decay rule's bound), within 1 ms .. 1 s. */
static uint64_t pass_interval_ms;

static void lower_interval(unsigned ms)
{
    if (ms / 2 < pass_interval_ms)
        pass_interval_ms = BP_MAX(ms / 2, 1u);
}

static void serve(bp_pool *pool)
{
    if (!pool->config.background_thread)
        return;
    if (pool->config.purge_decay_ms > 0)
        lower_interval((unsigned)pool->config.purge_decay_ms);
    if (pool->config.cache_idle_ms > 0)
        lower_interval(pool->config.cache_idle_ms);
    bp_tcache_reclaim_idle(pool);
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        bp_arena_purge_decayed(&pool->arenas[i]);
}

static void *background_main(void *arg)
{
    (void)arg;
    for (;;) {
        pass_interval_ms = 1000;
        bp_pool_for_each(serve);
        __atomic_add_fetch(&bg_passes, 1, __ATOMIC_RELEASE);
        struct timespec ts = {(time_t)(pass_interval_ms / 1000),
                              (long)(pass_interval_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) /* EINTR: sleep the rest */
            ;
    }
    return NULL;
}

void bp_background_ensure(void)
{
    int state = __atomic_load_n(&bg_state, __ATOMIC_ACQUIRE);
    if (bp_likely(state != BG_NONE))
        return;
    if (!__atomic_compare_exchange_n(&bg_state, &state, BG_STARTING, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return;
    /* The thread takes no signal of the program's, and is detached: it runs until exit.
     * pthread_create may allocate; that allocation finds STARTING and goes on. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_t thread;
    int err = pthread_attr_init(&attr);
    if (err == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&thread, &attr, background_main, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    __atomic_store_n(&bg_state, err == 0 ? BG_RUNNING : BG_FAILED, __ATOMIC_RELEASE);
    if (err != 0)
        bp_message("background_thread: cannot start the thread (error %d); memory goes back "
                   "on allocation and free only",
                   err);
}

uint64_t bp_background_passes(void)
{
    return __atomic_load_n(&bg_passes, __ATOMIC_ACQUIRE);
}

void bp_background_postfork_child(void)
{
    __atomic_store_n(&bg_state, BG_NONE, __ATOMIC_RELAXED);
}
