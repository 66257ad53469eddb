/* leak.c — the bp_buf leak detector: which buffers are tracked (sampled or all, by level),
 * their allocation backtraces and touch records, and the reports at bp_leak_report, at
 * bp_pool_destroy and at exit. C frees deterministically, so a report is exact: every
 * tracked buffer alive at that moment is listed. */
#include "internal.h"

#include <execinfo.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRAMES        16
#define TOUCHES       4   /* the most recent touch records kept per buffer */
#define SAMPLE_PERIOD 128 /* levels 1 and 2 track one buffer in this many */

typedef struct touch {
    const char *file;
    int line;
    char hint[48];
} touch;

/* A tracked buffer. Invariant: linked in its pool's `leaks` list (under leak_lock) exactly
 * while the buffer is alive; ntouch counts every touch, the last TOUCHES are kept. */
typedef struct bp_leak {
    struct bp_leak *prev, *next;
    bp_buf *buf;
    void *frames[FRAMES];
    int nframes;
    unsigned ntouch;
    touch touches[TOUCHES];
} bp_leak;

static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static bp_pool *exit_pools; /* pools with leak detection on, reported at exit */

static void report_at_exit(void)
{
    pthread_mutex_lock(&exit_lock);
    for (bp_pool *p = exit_pools; p != NULL; p = p->leak_next)
        bp_leak_report(p, stderr);
    pthread_mutex_unlock(&exit_lock);
}

static void report_at_destroy(bp_pool *pool)
{
    bp_leak_report(pool, stderr);
    pthread_mutex_lock(&exit_lock);
    for (bp_pool **pp = &exit_pools; *pp != NULL; pp = &(*pp)->leak_next) {
        if (*pp == pool) {
            *pp = pool->leak_next;
            break;
        }
    }
    pthread_mutex_unlock(&exit_lock);
}

void bp_leak_pool_init(bp_pool *pool)
{
    pthread_mutex_init(&pool->leak_lock, NULL);
    pool->leaks = NULL;
    pool->leak_sample = 0;
    if (pool->config.leak_level == 0)
        return;
    pool->on_destroy = report_at_destroy;
    pthread_mutex_lock(&exit_lock);
    pool->leak_next = exit_pools;
    exit_pools = pool;
    pthread_mutex_unlock(&exit_lock);
}

/* atexit may allocate: it is registered at the first tracked buffer, never while a pool is
 * being made (the malloc library makes its pool from inside malloc). */
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void register_exit_report(void)
{
    atexit(report_at_exit);
}

void bp_leak_track_slow(bp_buf *b)
{
    bp_pool *pool = b->pool;
    int level = pool->config.leak_level;
    if (level < 3 &&
        __atomic_fetch_add(&pool->leak_sample, 1, __ATOMIC_RELAXED) % SAMPLE_PERIOD != 0)
        return;
    pthread_once(&exit_once, register_exit_report);
    bp_leak *rec = bp_calloc(pool, 1, sizeof *rec);
    if (rec == NULL)
        return; /* untracked, not failed: detection is best effort under memory pressure */
    rec->buf = b;
    rec->nframes = backtrace(rec->frames, FRAMES);
    pthread_mutex_lock(&pool->leak_lock);
    rec->next = pool->leaks;
    if (pool->leaks != NULL)
        pool->leaks->prev = rec;
    pool->leaks = rec;
    pthread_mutex_unlock(&pool->leak_lock);
    b->leak = rec;
}

void bp_leak_untrack(bp_buf *b)
{
    bp_pool *pool = b->pool;
    bp_leak *rec = b->leak;
    pthread_mutex_lock(&pool->leak_lock);
    if (rec->prev != NULL)
        rec->prev->next = rec->next;
    else
        pool->leaks = rec->next;
    if (rec->next != NULL)
        rec->next->prev = rec->prev;
    pthread_mutex_unlock(&pool->leak_lock);
    b->leak = NULL;
    bp_free(rec);
}

void bp_buf_touch_at(bp_buf *b, const char *hint, const char *file, int line)
{
    bp_leak *rec = b->leak;
    if (rec == NULL || b->pool->config.leak_level < 2)
        return;
    pthread_mutex_lock(&b->pool->leak_lock);
    touch *t = &rec->touches[rec->ntouch++ % TOUCHES];
    t->file = file;
    t->line = line;
    snprintf(t->hint, sizeof t->hint, "%s", hint ? hint : "");
    pthread_mutex_unlock(&b->pool->leak_lock);
}

size_t bp_leak_report(bp_pool *pool, FILE *out)
{
    size_t n = 0;
    pthread_mutex_lock(&pool->leak_lock);
    for (bp_leak *rec = pool->leaks; rec != NULL; rec = rec->next, n++) {
        bp_buf *b = rec->buf;
        fprintf(out,
                "bufpool: LEAK: bp_buf %p (capacity %zu, readable %zu, %u references) "
                "was never released; allocated at:\n",
                (void *)b, b->capacity, b->writer - b->reader, bp_buf_refcnt(b));
        fflush(out);
        backtrace_symbols_fd(rec->frames, rec->nframes, fileno(out));
        unsigned kept = BP_MIN(rec->ntouch, (unsigned)TOUCHES);
        if (kept > 0)
            fprintf(out, "  last touched (most recent first, %u touches in all):\n", rec->ntouch);
        for (unsigned k = 0; k < kept; k++) {
            const touch *t = &rec->touches[(rec->ntouch - 1 - k) % TOUCHES];
            fprintf(out, "    %s:%d %s\n", t->file, t->line, t->hint);
        }
    }
    pthread_mutex_unlock(&pool->leak_lock);
    if (n > 0)
        fprintf(out, "bufpool: %zu leaked buffer%s in pool %p\n", n, n == 1 ? "" : "s",
                (void *)pool);
    fflush(out);
    return n;
}
