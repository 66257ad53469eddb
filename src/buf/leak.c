/* leak.c — the bp_buf leak detector: which buffers are tracked (sampled or all, by level),
 * their allocation backtraces and touch records, and the reports at bp_leak_report, at
 * bp_pool_destroy and at exit. C frees deterministically, so a report is exact: every
 * tracked buffer alive at that moment and not reported before is listed. */
#define _GNU_SOURCE /* dladdr1 */
#include "buf_internal.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
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

/* A tracked buffer. Invariant: linked in its pool's leak list (under the list's lock) exactly
 * while the buffer is alive; ntouch counts every touch, the last TOUCHES are kept; reported
 * is set, under the lock, by the one report that lists it. frames[0] is the detector's own
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

/* A pool's leak list: made at its first tracked buffer, hung on the pool with
 * bp_pool_attach_state, reported and unmapped by its bp_pool_destroy. Invariant: on the exit
 * list (under exit_lock) from its attach to its pool's destroy. */
typedef struct leak_list {
    pthread_mutex_t lock;
    bp_leak *leaks;
    uint32_t sample; /* atomic: buffers offered, for levels 1 and 2's sampling */
    bp_pool *pool;
    struct leak_list *next_exit;
} leak_list;

static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static leak_list *exit_lists; /* every pool's list, reported at exit */

static void report_at_exit(void)
{
    pthread_mutex_lock(&exit_lock);
    for (leak_list *l = exit_lists; l != NULL; l = l->next_exit)
        bp_leak_report(l->pool, stderr);
    pthread_mutex_unlock(&exit_lock);
}

/* fork(): every list lock is taken before and released after, so the child can track. No
 * code holds a list lock while it takes a pool's lock, so the order against the pools'
 * handlers does not matter. */
static void prefork(void)
{
    pthread_mutex_lock(&exit_lock);
    for (leak_list *l = exit_lists; l != NULL; l = l->next_exit)
        pthread_mutex_lock(&l->lock);
}

static void postfork(void)
{
    for (leak_list *l = exit_lists; l != NULL; l = l->next_exit)
        pthread_mutex_unlock(&l->lock);
    pthread_mutex_unlock(&exit_lock);
}

/* atexit and pthread_atfork may allocate: they are registered at the first tracked buffer,
 * never while a pool is being made. */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void register_handlers(void)
{
    atexit(report_at_exit);
    pthread_atfork(prefork, postfork, postfork);
}

static void list_destroy(bp_pool *pool, void *state)
{
    leak_list *list = state;
    bp_leak_report(pool, stderr);
    pthread_mutex_lock(&exit_lock);
    for (leak_list **pp = &exit_lists; *pp != NULL; pp = &(*pp)->next_exit) {
        if (*pp == list) {
            *pp = list->next_exit;
            break;
        }
    }
    pthread_mutex_unlock(&exit_lock);
    pthread_mutex_destroy(&list->lock);
    bp_os_unmap(bp_os_default(), list, bp_align_up(sizeof *list, 4096));
}

/* The pool's list, made and attached at its first use; NULL when no memory. */
static leak_list *list_of(bp_pool *pool)
{
    leak_list *list = bp_pool_state(pool);
    if (bp_likely(list != NULL))
        return list;
    pthread_once(&handlers_once, register_handlers);
    list = bp_os_map(bp_os_default(), bp_align_up(sizeof *list, 4096), 4096);
    if (list == NULL)
        return NULL;
    pthread_mutex_init(&list->lock, NULL);
    list->pool = pool;
    if (!bp_pool_attach_state(pool, list, list_destroy)) { /* another thread's came first */
        pthread_mutex_destroy(&list->lock);
        bp_os_unmap(bp_os_default(), list, bp_align_up(sizeof *list, 4096));
        return bp_pool_state(pool);
    }
    pthread_mutex_lock(&exit_lock);
    list->next_exit = exit_lists;
    exit_lists = list;
    pthread_mutex_unlock(&exit_lock);
    return list;
}

void bp_leak_track_slow(bp_pool *pool, bp_buf *b)
{
    int level = bp_pool_leak_level(pool);
    if (level == 0)
        return;
    leak_list *list = list_of(pool);
    if (list == NULL)
        return; /* untracked, not failed: detection is best effort under memory pressure */
    if (level < 3 && __atomic_fetch_add(&list->sample, 1, __ATOMIC_RELAXED) % SAMPLE_PERIOD != 0)
        return;
    /* the record hangs off the extension, which a plain buffer gets now */
    bp_buf_ext *x = bp_buf_ext_get(b);
    bp_leak *rec = x != NULL ? bp_calloc(pool, 1, sizeof *rec) : NULL;
    if (rec == NULL)
        return;
    rec->buf = b;
    rec->nframes = backtrace(rec->frames, FRAMES);
    pthread_mutex_lock(&list->lock);
    bp_list_push(&list->leaks, rec, prev, next);
    pthread_mutex_unlock(&list->lock);
    x->leak = rec;
}

void bp_leak_untrack(bp_buf *b)
{
    leak_list *list = bp_pool_state(bp_buf_pool(b)); /* made when b was tracked */
    bp_buf_ext *x = b->more.ext;
    bp_leak *rec = x->leak;
    pthread_mutex_lock(&list->lock);
    bp_list_unlink(&list->leaks, rec, prev, next);
    pthread_mutex_unlock(&list->lock);
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
    if (bp_pool_leak_level(pool) < 2)
        return;
    leak_list *list = bp_pool_state(pool);
    pthread_mutex_lock(&list->lock);
    touch *t = &rec->touches[rec->ntouch++ % TOUCHES];
    t->file = file;
    t->line = line;
    snprintf(t->hint, sizeof t->hint, "%s", hint ? hint : "");
    pthread_mutex_unlock(&list->lock);
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

static size_t count_unreported(const leak_list *list)
{
    size_t n = 0;
    for (const bp_leak *rec = list->leaks; rec != NULL; rec = rec->next)
        n += !rec->reported;
    return n;
}

static bool shots_grow(leak_shots *s, size_t n)
{
    leak_shot *mem = bp_os_scratch_grow(s->shot, s->bytes, n * sizeof(leak_shot), 0, &s->bytes);
    if (mem == NULL)
        return false;
    s->shot = mem;
    return true;
}

static void shots_free(leak_shots *s)
{
    bp_os_scratch_free(s->shot, s->bytes);
}

/* Copies the unreported leaks and marks them reported; the lock is dropped to map more
 * memory when they do not fit, then the list is read again. false when memory was refused. */
static bool take_shots(leak_list *list, leak_shots *s)
{
    memset(s, 0, sizeof *s);
    if (list == NULL)
        return true; /* nothing was ever tracked */
    for (;;) {
        pthread_mutex_lock(&list->lock);
        size_t n = count_unreported(list);
        if (n * sizeof(leak_shot) <= s->bytes)
            break;
        pthread_mutex_unlock(&list->lock);
        if (!shots_grow(s, n))
            return false;
    }
    for (bp_leak *rec = list->leaks; rec != NULL; rec = rec->next) {
        if (rec->reported)
            continue;
        rec->reported = true;
        leak_shot *shot = &s->shot[s->n++];
        shot->rec = *rec;
        shot->capacity = bp_buf_capacity(rec->buf);
        shot->readable = bp_buf_readable(rec->buf);
        shot->refs = bp_buf_refcnt(rec->buf);
    }
    pthread_mutex_unlock(&list->lock);
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
    if (!take_shots(bp_pool_state(pool), &s)) {
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
