/* leak.c — the bp_buf leak detector: which buffers are tracked (sampled or all, by level),
 * their allocation backtraces and touch records, and the reports at bp_leak_report, at
 * bp_pool_destroy and at exit. C frees deterministically, so a report is exact: every
 * tracked buffer alive at that moment and not reported before is listed. */
#define _GNU_SOURCE /* dladdr1 */
#include "buf_internal.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
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
 * while the buffer is alive; ntouch counts every touch, the last TOUCHES are kept; reported
 * is set, under leak_lock, by the one report that lists it. frames[0] is the detector's own
 * (bp_leak_track_slow), left out of reports. */
typedef struct bp_leak {
    struct bp_leak *prev, *next;
    bp_buf *buf;
    void *frames[FRAMES];
    int nframes;
    unsigned ntouch;
    bool reported;
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

void bp_leak_track_slow(bp_pool *pool, bp_buf *b)
{
    int level = pool->config.leak_level;
    if (level < 3 &&
        __atomic_fetch_add(&pool->leak_sample, 1, __ATOMIC_RELAXED) % SAMPLE_PERIOD != 0)
        return;
    pthread_once(&exit_once, register_exit_report);
    /* the record hangs off the extension, which a plain buffer gets now */
    bp_buf_ext *x = bp_buf_ext_get(b);
    bp_leak *rec = x != NULL ? bp_calloc(pool, 1, sizeof *rec) : NULL;
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
    x->leak = rec;
}

void bp_leak_untrack(bp_buf *b)
{
    bp_pool *pool = bp_buf_pool(b);
    bp_buf_ext *x = b->more.ext;
    bp_leak *rec = x->leak;
    pthread_mutex_lock(&pool->leak_lock);
    if (rec->prev != NULL)
        rec->prev->next = rec->next;
    else
        pool->leaks = rec->next;
    if (rec->next != NULL)
        rec->next->prev = rec->prev;
    pthread_mutex_unlock(&pool->leak_lock);
    x->leak = NULL;
    bp_free(rec);
}

void bp_buf_touch_at(bp_buf *b, const char *hint, const char *file, int line)
{
    const bp_buf_ext *x = bp_buf_ext_of(b);
    bp_leak *rec = x != NULL ? x->leak : NULL;
    if (rec == NULL)
        return;
    bp_pool *pool = bp_buf_pool(b);
    if (pool->config.leak_level < 2)
        return;
    pthread_mutex_lock(&pool->leak_lock);
    touch *t = &rec->touches[rec->ntouch++ % TOUCHES];
    t->file = file;
    t->line = line;
    snprintf(t->hint, sizeof t->hint, "%s", hint ? hint : "");
    pthread_mutex_unlock(&pool->leak_lock);
}

/* ---- reports ------------------------------------------------------------------------------
 * Written from a snapshot, with no lock held: the stream may allocate (and track) buffers of
 * the very pool it reports on. */

/* A leak as the report found it. */
typedef struct leak_shot {
    bp_leak rec; /* a copy: its links are not followed */
    size_t capacity, readable;
    unsigned refs;
} leak_shot;

/* The leaks one report lists, in memory mapped for it (never from a pool: the stream may
 * allocate from this one). Invariant: n * sizeof(leak_shot) <= bytes. */
typedef struct leak_shots {
    leak_shot *shot;
    size_t n, bytes;
} leak_shots;

static size_t count_unreported(const bp_pool *pool)
{
    size_t n = 0;
    for (const bp_leak *rec = pool->leaks; rec != NULL; rec = rec->next)
        n += !rec->reported;
    return n;
}

static bool shots_grow(leak_shots *s, size_t n)
{
    size_t bytes = bp_align_up(n * sizeof(leak_shot), 64 << 10);
    leak_shot *mem = bp_os_map(bp_os_default(), bytes, 4096);
    if (mem == NULL)
        return false;
    if (s->shot != NULL)
        bp_os_unmap(bp_os_default(), s->shot, s->bytes);
    s->shot = mem;
    s->bytes = bytes;
    return true;
}

static void shots_free(leak_shots *s)
{
    if (s->shot != NULL)
        bp_os_unmap(bp_os_default(), s->shot, s->bytes);
}

/* Copies the unreported leaks and marks them reported; the lock is dropped to map more
 * memory when they do not fit, then the list is read again. false when memory was refused. */
static bool take_shots(bp_pool *pool, leak_shots *s)
{
    memset(s, 0, sizeof *s);
    for (;;) {
        pthread_mutex_lock(&pool->leak_lock);
        size_t n = count_unreported(pool);
        if (n * sizeof(leak_shot) <= s->bytes)
            break;
        pthread_mutex_unlock(&pool->leak_lock);
        if (!shots_grow(s, n))
            return false;
    }
    for (bp_leak *rec = pool->leaks; rec != NULL; rec = rec->next) {
        if (rec->reported)
            continue;
        rec->reported = true;
        leak_shot *shot = &s->shot[s->n++];
        shot->rec = *rec;
        shot->capacity = bp_buf_capacity(rec->buf);
        shot->readable = bp_buf_readable(rec->buf);
        shot->refs = bp_buf_refcnt(rec->buf);
    }
    pthread_mutex_unlock(&pool->leak_lock);
    return true;
}

/* Where a return address lies: the module (the program by its /proc/self/exe path), the
 * offset addr2line takes there (the load bias removed, so it is right for PIE, non-PIE and
 * shared objects alike), and the exported symbol around it when dladdr finds one. Offsets are
 * of the call instruction (return address - 1), so that addr2line names the calling line. */
typedef struct frame {
    const char *module; /* NULL: in no module the dynamic linker knows */
    uintptr_t offset;   /* the address itself when module is NULL */
    const char *symbol; /* NULL: no exported symbol covers it (a static function, or a
                         * program not linked with -rdynamic) */
    uintptr_t symbol_offset;
} frame;

static void resolve(void *ret, const char *exe, frame *f)
{
    uintptr_t call = (uintptr_t)ret - 1;
    Dl_info info;
    struct link_map *map = NULL;
    memset(f, 0, sizeof *f);
    f->offset = call;
    if (dladdr1((void *)call, &info, (void **)&map, RTLD_DL_LINKMAP) == 0 || map == NULL)
        return;
    f->module = map->l_name[0] != '\0' ? map->l_name : exe[0] != '\0' ? exe : info.dli_fname;
    f->offset = call - (uintptr_t)map->l_addr;
    if (info.dli_sname != NULL) {
        f->symbol = info.dli_sname;
        f->symbol_offset = call - (uintptr_t)info.dli_saddr;
    }
}

static void write_frame(FILE *out, int index, const frame *f)
{
    if (f->module == NULL)
        fprintf(out, "    #%d %#lx\n", index, (unsigned long)f->offset);
    else if (f->symbol != NULL)
        fprintf(out, "    #%d %s+%#lx (%s+%#lx)\n", index, f->symbol,
                (unsigned long)f->symbol_offset, f->module, (unsigned long)f->offset);
    else
        fprintf(out, "    #%d ? (%s+%#lx)\n", index, f->module, (unsigned long)f->offset);
}

/* One addr2line command per module, its frames' offsets in order: function, file and line
 * of every frame from the debug information. */
static void write_addr2line(FILE *out, const frame *f, int n)
{
    bool first = true;
    for (int i = 0; i < n; i++) {
        bool seen = f[i].module == NULL;
        for (int j = 0; j < i && !seen; j++)
            seen = f[j].module != NULL && strcmp(f[j].module, f[i].module) == 0;
        if (seen)
            continue;
        fprintf(out, "  %s addr2line -p -f -i -e '%s'", first ? "file:line:" : "          ",
                f[i].module);
        for (int j = i; j < n; j++)
            if (f[j].module != NULL && strcmp(f[j].module, f[i].module) == 0)
                fprintf(out, " %#lx", (unsigned long)f[j].offset);
        fputc('\n', out);
        first = false;
    }
}

static void write_leak(FILE *out, const char *prefix, const char *exe, const leak_shot *s)
{
    const bp_leak *rec = &s->rec;
    fprintf(out,
            "%sLEAK: bp_buf %p (capacity %zu, readable %zu, %u reference%s) was never "
            "released; allocated at:\n",
            prefix, (void *)rec->buf, s->capacity, s->readable, s->refs, s->refs == 1 ? "" : "s");
    frame f[FRAMES];
    int n = 0;
    for (int i = 1; i < rec->nframes; i++) /* frames[0] is the detector's */
        resolve(rec->frames[i], exe, &f[n++]);
    for (int i = 0; i < n; i++)
        write_frame(out, i, &f[i]);
    unsigned kept = BP_MIN(rec->ntouch, (unsigned)TOUCHES);
    if (kept > 0)
        fprintf(out, "  last touched (most recent first, %u touches in all):\n", rec->ntouch);
    for (unsigned k = 0; k < kept; k++) {
        const touch *t = &rec->touches[(rec->ntouch - 1 - k) % TOUCHES];
        fprintf(out, "    %s:%d %s\n", t->file, t->line, t->hint);
    }
    write_addr2line(out, f, n);
}

size_t bp_leak_report(bp_pool *pool, FILE *out)
{
    leak_shots s;
    if (!take_shots(pool, &s)) {
        bp_message("bp_leak_report: no memory for a snapshot of the leaks; none reported");
        return 0;
    }
    char prefix[128], exe[4096];
    bp_message_prefix(prefix, sizeof prefix);
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    for (size_t i = 0; i < s.n; i++)
        write_leak(out, prefix, exe, &s.shot[i]);
    if (s.n > 0)
        fprintf(out, "%s%zu leaked buffer%s in pool %p\n", prefix, s.n, s.n == 1 ? "" : "s",
                (void *)pool);
    fflush(out);
    size_t n = s.n;
    shots_free(&s);
    return n;
}
