/* pool.c — pools: configuration checks, the mapping that holds a pool and its arenas, the
 * arena a thread allocates from, the default pool, destruction and the invariant walk. */
#include "front.h"
#include "pool_hooks.h"
#include "track.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* 0, or EINVAL after a message that names the field and what it accepts: the rules
 * BUFPOOL_CONF's parsing applies too (options.c), so the environment cannot name a config
 * this refuses. */
static int validate(const bp_config *cfg)
{
    return bp_options_check(cfg);
}

static unsigned default_arenas(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 2 : (unsigned)BP_MIN(2 * cpus, 4096);
}

/* ---- every live pool, and fork() ----------------------------------------------------------
 * fork() copies memory, not threads: a lock held by another thread at that moment would stay
 * held in the child forever. So every lock is taken before fork (in the one order used
 * everywhere: pools, registry, arenas, chunk map) and released after it in the
 * parent and in the child, whose one thread is the one that took them (an unlock, not a
 * re-initialisation of a locked mutex, which POSIX leaves undefined), so it can allocate. */
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static bp_pool *all_pools;

/* pool_hooks.h: set with the first buffer-layer state; one buffer layer, so one function for
 * every pool (bp_pool_destroy calls it first). */
static void (*buf_state_destroy)(bp_pool *pool, void *state);

static void prefork(void)
{
    pthread_mutex_lock(&pools_lock);
    bp_tcache_prefork();
    for (bp_pool *p = all_pools; p != NULL; p = p->next_pool) {
        for (unsigned i = 0; i < bp_pool_arenas_ready(p); i++) /* fixed: registry lock held */
            bp_lock_acquire(&p->arenas[i].lock);
    }
    bp_chunk_map_prefork();
}

static void postfork_parent(void)
{
    bp_chunk_map_postfork_parent();
    for (bp_pool *p = all_pools; p != NULL; p = p->next_pool) {
        for (unsigned i = 0; i < bp_pool_arenas_ready(p); i++)
            bp_lock_release(&p->arenas[i].lock);
    }
    bp_tcache_postfork_parent();
    pthread_mutex_unlock(&pools_lock);
}

static void postfork_child(void)
{
    bp_chunk_map_postfork_child();
    for (bp_pool *p = all_pools; p != NULL; p = p->next_pool) {
        for (unsigned i = 0; i < bp_pool_arenas_ready(p); i++)
            p->arenas[i].lock = (bp_lock)BP_LOCK_INIT;
    }
    bp_tcache_postfork_child();
    bp_background_postfork_child();
    pthread_mutex_unlock(&pools_lock);
}

/* Registered when the library loads, not at the first pool: pthread_atfork may allocate,
 * and as the malloc library that allocation would come back into pool creation. */
__attribute__((constructor)) static void register_fork_handlers(void)
{
    pthread_atfork(prefork, postfork_parent, postfork_child);
}

static void link_pool(bp_pool *pool)
{
    pthread_mutex_lock(&pools_lock);
    pool->next_pool = all_pools;
    all_pools = pool;
    pthread_mutex_unlock(&pools_lock);
}

/* Takes pool off the list; false if it was not on it: not a live pool. Reads the list only,
 * never the pool, so a pool destroyed already is told apart without touching its memory. */
static bool unlink_pool(bp_pool *pool)
{
    bool found = false;
    pthread_mutex_lock(&pools_lock);
    for (bp_pool **pp = &all_pools; *pp != NULL; pp = &(*pp)->next_pool) {
        if (*pp == pool) {
            *pp = pool->next_pool;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&pools_lock);
    return found;
}

static bool is_linked(const bp_pool *pool)
{
    bool found = false;
    pthread_mutex_lock(&pools_lock);
    for (const bp_pool *p = all_pools; p != NULL && !found; p = p->next_pool)
        found = p == pool;
    pthread_mutex_unlock(&pools_lock);
    return found;
}

/* Entries per class of a thread cache: small_cache for the small classes; the classes above
 * share cache_bytes equally, each holding what its share buys (at least one block, at most
 * normal_cache). The sum of capacity x size is the most a thread's cache holds. */
static void set_bin_capacities(bp_pool *pool)
{
    const bp_config *cfg = &pool->config;
    const bp_engine *engine = &pool->engine;
    unsigned normal = engine->cache_classes - engine->sc.nsmall;
    size_t share = normal > 0 ? cfg->cache_bytes / normal : 0;
    pool->cache_bound_bytes = 0;
    for (unsigned cls = 0; cls < engine->cache_classes; cls++) {
        size_t size = engine->sc.size[cls];
        size_t cap = cls < engine->sc.nsmall ? cfg->small_cache
                                             : BP_MIN(BP_MAX(share / size, 1), cfg->normal_cache);
        pool->bin_capacity[cls] = (uint16_t)cap;
        pool->cache_bound_bytes += cap * size;
    }
}

bp_pool *bp_pool_new(const bp_config *cfg)
{
    bp_config resolved;
    if (cfg == NULL)
        bp_config_init(&resolved);
    else
        resolved = *cfg;
    int err = validate(&resolved);
    if (err != 0) {
        errno = err;
        return NULL;
    }
    if (resolved.arenas == 0)
        resolved.arenas = default_arenas();
    if (bp_chunk_map_init() != 0) {
        errno = ENOMEM;
        return NULL;
    }
    bp_os os = resolved.os != NULL ? *resolved.os : *bp_os_default();

    size_t arenas_offset = bp_align_up(sizeof(bp_pool), 64);
    size_t map_size = bp_align_up(arenas_offset + resolved.arenas * sizeof(bp_arena), 4096);
    bp_pool *pool = bp_os_map(&os, map_size, 4096);
    if (pool == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    pool->config = resolved;
    pool->narenas = resolved.arenas;
    pool->arenas = (bp_arena *)((char *)pool + arenas_offset);
    pool->map_size = map_size;
    pool->magic = BP_POOL_MAGIC;
    bp_engine *engine = &pool->engine;
    const bp_size_classes *sc = &engine->sc;
    engine->pool = pool;
    engine->memory.os = os;
    engine->memory.limit = resolved.memory_limit;
    pool->config.os = &engine->memory.os;
    engine->page_size = resolved.page_size;
    engine->chunk_size = resolved.chunk_size;
    engine->retained_chunks = resolved.retained_chunks;
    engine->purge_decay_ms = resolved.purge_decay_ms;
    engine->huge_cache_bytes = resolved.huge_cache_bytes;
    if (bp_size_classes_init(&engine->sc, engine->page_size, engine->chunk_size) != 0)
        bp_fatal("size classes rejected a validated config"); /* validate() covers it */
    unsigned cached = 0;
    while (cached < sc->nclasses && sc->size[cached] <= resolved.max_cached)
        cached++;
    if (cached < sc->nsmall || resolved.cache_bytes == 0 || resolved.normal_cache == 0)
        cached = sc->nsmall; /* small classes are always cached */
    engine->cache_classes = cached;
    set_bin_capacities(pool);
    bp_size_classes_fast_table(sc, cached, pool->fast.bin_of);
    pool->fast.abi_version = BP_FAST_ABI_VERSION;
    /* bp_buf's inline paths: leak tracking (and checked builds' checks) need the library */
    pool->fast.buf_slow = resolved.leak_level != 0 || BP_CHECKED || BP_TRACK;
    pool->max_cached_size = sc->size[cached - 1];
    /* a run cache keeps freed runs backed: none when freed pages go back at once */
    for (unsigned cls = cached; resolved.purge_decay_ms != 0 && cls < sc->nclasses; cls++)
        engine->run_cache_limit[cls] =
            (uint32_t)BP_MIN(BP_MAX(((size_t)4 << 20) / sc->size[cls], 1), BP_RUN_CACHE_SLOTS);
    /* A transfer cache holds a bin's worth, or up to 512 KiB of small blocks: a consumer
     * thread frees in bursts as long as the queue feeding it. */
    for (unsigned cls = 0; cls < cached; cls++) {
        size_t bin = cls < sc->nsmall ? resolved.small_cache : resolved.normal_cache;
        size_t by_bytes = BP_MIN(((size_t)512 << 10) / sc->size[cls], 4096);
        engine->transfer_limit[cls] = (uint32_t)BP_MAX(bin, by_bytes);
    }
    bp_tcache_pool_created(pool);
    engine->fast_slot = pool->fast.slot;        /* what its chunks tell bp_free */
    bp_arena_init(&pool->arenas[0], engine, 0); /* the rest when threads bind there */
    pool->arenas_ready = 1;
    bp_track_pool(pool, true);
    link_pool(pool);
    return pool;
}

#if BP_CHECKED
/* Checked builds keep the last DEAD_POOLS destroyed pools mapped (purged, their lookup table
 * and slot cleared, so a fast path can only miss), so a call with one of them finds its magic
 * gone and reports; older ones are unmapped, so making and destroying pools in a loop does
 * not grow. Only pools on the default OS layer: a program's own layer may be gone once its
 * pools are. The ring is under pools_lock. */
#define DEAD_POOLS 8
static struct dead_pool {
    void *addr;
    size_t size;
    bp_os os;
} dead_pools[DEAD_POOLS];
static unsigned dead_next;

static void keep_dead(bp_pool *pool, const bp_os *os)
{
    size_t size = pool->map_size; /* read before the purge zeroes it */
    memset(pool->fast.bin_of, 0, sizeof pool->fast.bin_of);
    pool->fast.slot = BP_TCACHE_SLOTS;
    pool->engine.fast_slot = BP_TCACHE_SLOTS;
    pool->max_cached_size = 0;
    pool->tc_slot = BP_TCACHE_SLOTS;
    if (os->purge != NULL)
        os->purge(pool, size, os->ctx);
    struct dead_pool oldest, *d;
    pthread_mutex_lock(&pools_lock);
    d = &dead_pools[dead_next++ % DEAD_POOLS];
    oldest = *d;
    *d = (struct dead_pool){pool, size, *os};
    pthread_mutex_unlock(&pools_lock);
    if (oldest.addr != NULL)
        bp_os_unmap(&oldest.os, oldest.addr, oldest.size);
}
#endif

/* A destroyed pool passed again: in every build bp_pool_destroy finds it missing from the
 * list of live pools before it reads the pool. Checked builds keep recent destroyed pools
 * mapped and every entry point's slow path checks the magic; release builds unmap at once,
 * and any other use is undefined. */
void bp_pool_destroy(bp_pool *pool)
{
    if (pool == NULL)
        return;
    if (!is_linked(pool))
        bp_fatal("bp_pool_destroy(%p): not a live pool (destroyed already?)", (void *)pool);
    bp_pool_check_live(pool, "bp_pool_destroy");
    void *buf_state = __atomic_load_n(&pool->buf_state, __ATOMIC_ACQUIRE);
    if (buf_state != NULL)
        buf_state_destroy(pool, buf_state);
    if (!unlink_pool(pool)) /* another thread's destroy got there first */
        bp_fatal("bp_pool_destroy(%p): destroyed twice at once", (void *)pool);
    bp_track_pool(pool, false);
    bp_tcache_pool_destroying(pool);
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        bp_arena_destroy(&pool->arenas[i]);
    bp_os_retry_stuck(&pool->engine.memory); /* what is refused now stays mapped, for good */
    pool->magic = 0;
    bp_os os = pool->engine.memory.os;
#if BP_CHECKED
    if (os.map == bp_os_default()->map) {
        keep_dead(pool, &os);
        return;
    }
#endif
    bp_os_unmap(&os, pool, pool->map_size);
}

#if BP_CHECKED
void bp_pool_check_live(const bp_pool *pool, const char *what)
{
    if (pool == NULL || pool->magic != BP_POOL_MAGIC)
        bp_fatal("%s(%p): not a live pool (destroyed?)", what, (const void *)pool);
}
#endif

/* ---- pool_hooks.h: what bp_buf needs of a pool ----------------------------------------- */

bp_pool *bp_pool_of_block(const void *p)
{
    return bp_chunk_map_lookup((uintptr_t)p)->pool;
}

int bp_pool_leak_level(const bp_pool *pool)
{
    return pool->config.leak_level;
}

void *bp_pool_state(const bp_pool *pool)
{
    return __atomic_load_n(&pool->buf_state, __ATOMIC_ACQUIRE);
}

bool bp_pool_attach_state(bp_pool *pool, void *state, void (*destroy)(bp_pool *pool, void *state))
{
    __atomic_store_n(&buf_state_destroy, destroy, __ATOMIC_RELEASE);
    void *none = NULL;
    return __atomic_compare_exchange_n(&pool->buf_state, &none, state, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

void bp_pool_config(const bp_pool *pool, bp_config *out)
{
    bp_pool_check_live(pool, "bp_pool_config");
    *out = pool->config;
}

void bp_pool_for_each(void (*fn)(bp_pool *pool))
{
    pthread_mutex_lock(&pools_lock);
    for (bp_pool *p = all_pools; p != NULL; p = p->next_pool)
        fn(p);
    pthread_mutex_unlock(&pools_lock);
}

static bp_pool *default_pool;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void create_default_pool(void)
{
    default_pool = bp_pool_new(NULL);
    if (default_pool == NULL)
        bp_fatal("cannot create the default pool (errno %d)", errno);
    __atomic_store_n(&bp_default_pool, default_pool, __ATOMIC_RELEASE);
}

bp_pool *bp_pool_default(void)
{
    pthread_once(&default_once, create_default_pool);
    return default_pool;
}

int bp_pool_check(bp_pool *pool)
{
    int problems = 0;
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++)
        problems += bp_arena_check(&pool->arenas[i]);
    return problems;
}

void bp_pool_counters(bp_pool *pool, bp_arena_counters *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++) {
        bp_arena *a = &pool->arenas[i];
        bp_lock_acquire(&a->lock);
        const bp_arena_counters *in = &a->counters;
        BP_ARENA_TOTALS(BP_TOTAL_ADD)
        for (unsigned cls = 0; cls < pool->engine.sc.nclasses; cls++) {
            bp_class_counters *k = &out->classes[cls];
            k->allocs += in->classes[cls].allocs;
            k->frees += in->classes[cls].frees;
            k->cache_fills += in->classes[cls].cache_fills;
            k->cache_hits += __atomic_load_n(&in->classes[cls].cache_hits, __ATOMIC_RELAXED);
        }
        bp_lock_release(&a->lock);
    }
}

/* Both give back what the pool keeps for reuse: every thread's cache, the transfer and run
 * caches, empty subpages, empty and retained chunks; a trim also purges free pages. */
static size_t trim(bp_pool *pool, bool purge)
{
    size_t released = 0;
    bp_tcache_reclaim_all(pool);
    unsigned ready = bp_pool_arenas_ready(pool);
    for (unsigned i = 0; i < ready; i++)
        bp_arena_drain_transfers(&pool->arenas[i]);
    for (unsigned i = 0; i < ready; i++)
        released += bp_arena_trim(&pool->arenas[i], purge);
    return released;
}

size_t bp_pool_trim(bp_pool *pool)
{
    bp_pool_check_live(pool, "bp_pool_trim");
    return trim(pool, true);
}

size_t bp_pool_reclaim(bp_pool *pool)
{
    return trim(pool, false);
}
