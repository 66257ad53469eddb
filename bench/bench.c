/* bench.c — the benchmark program: runs the workloads of workloads.h through bufpool's API
 * (--api bp) or through whatever malloc the process has (--api malloc, under LD_PRELOAD for
 * jemalloc, mimalloc, tcmalloc), and prints one result line per measurement. */
#define _GNU_SOURCE
#include "bufpool.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- harness ---------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r) /* xorshift64*: a few instructions, no locks */
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static inline void escape(void *p) /* the block is used: the pair cannot be elided */
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static inline void touch(void *p, size_t n)
{
    ((volatile char *)p)[0] = 1;
    ((volatile char *)p)[n - 1] = 1;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* One round of waiting for a peer thread. Spinning alone is right while the peer runs on
 * another core; when the peer has been descheduled (2 cores, other load), a spinner would burn
 * its whole time slice before the peer runs again, so after a few spins it yields the core. */
static inline void spin_wait(unsigned *spins)
{
    if (++*spins < 64) {
        cpu_relax();
    } else {
        *spins = 0;
        sched_yield();
    }
}

#define RING_SIZE 4096
typedef struct spsc_ring {
    unsigned head __attribute__((aligned(64)));
    unsigned tail __attribute__((aligned(64)));
    void *slot[RING_SIZE] __attribute__((aligned(64)));
} spsc_ring;

#define MAILBOX_SIZE 256
typedef struct mailbox {
    pthread_mutex_t lock;
    unsigned n;
    void *blocks[MAILBOX_SIZE];
} __attribute__((aligned(64))) mailbox;

static bool mailbox_put(mailbox *m, void *p)
{
    pthread_mutex_lock(&m->lock);
    bool ok = m->n < MAILBOX_SIZE;
    if (ok)
        m->blocks[m->n++] = p;
    pthread_mutex_unlock(&m->lock);
    return ok;
}

static unsigned mailbox_take(mailbox *m, void **out)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = m->n;
    memcpy(out, m->blocks, n * sizeof(void *));
    m->n = 0;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* Cross-thread hand-off for threads-8: blocks a thread allocated, for another to free. Several
 * time slices of hand-offs fit, so a descheduled receiver does not turn them into local frees.
 * Invariant: blocks[0..n) are live blocks owned by this hand-off, n <= HANDOFF_SIZE; `spare` is
 * its owner's private array of the same size, swapped with `blocks` under the lock to take all
 * of them at once (the lock is held for O(1), never while freeing). */
#define HANDOFF_SIZE 65536
typedef struct handoff {
    pthread_mutex_t lock;
    unsigned n;
    void **blocks, **spare;
} __attribute__((aligned(64))) handoff;

/* Puts all of batch[0..n) or none; false when they do not fit (the caller frees them). */
static bool handoff_put(handoff *h, void *const *batch, unsigned n)
{
    pthread_mutex_lock(&h->lock);
    bool ok = h->n + n <= HANDOFF_SIZE;
    if (ok) {
        memcpy(h->blocks + h->n, batch, n * sizeof(void *));
        h->n += n;
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* Takes every block handed over so far; they are in *out until the next call. */
static unsigned handoff_take(handoff *h, void ***out)
{
    pthread_mutex_lock(&h->lock);
    void **taken = h->blocks;
    unsigned n = h->n;
    h->blocks = h->spare;
    h->n = 0;
    pthread_mutex_unlock(&h->lock);
    h->spare = taken;
    *out = taken;
    return n;
}

typedef struct thread_arg {
    unsigned id, nthreads;
    uint64_t seed;
    long iterations;
    size_t size;
    pthread_barrier_t *start;
    spsc_ring *ring;
    mailbox *boxes;
    handoff *handoffs;
    void *(*fn)(void *);
    double t_start, t_end; /* each thread times itself: the main thread may run late */
} thread_arg;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Set-up is done: wait for the others, then start the clock. */
static void barrier_wait(thread_arg *a)
{
    pthread_barrier_wait(a->start);
    a->t_start = now();
}

static void *timed_thread(void *arg)
{
    thread_arg *a = arg;
    a->fn(a);
    a->t_end = now();
    return NULL;
}

/* From the first thread's start to the last thread's end. */
static double wall_time(const thread_arg *args, unsigned n)
{
    double start = args[0].t_start, end = args[0].t_end;
    for (unsigned i = 1; i < n; i++) {
        start = args[i].t_start < start ? args[i].t_start : start;
        end = args[i].t_end > end ? args[i].t_end : end;
    }
    return end - start;
}

typedef struct memory_result {
    size_t rss_start, rss_peak, rss_end, requested;
} memory_result;

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Gives free memory back the way each allocator offers: bp_pool_trim, malloc_trim (glibc),
 * mallctl arena purge (jemalloc), mi_collect (mimalloc), ReleaseFreeMemory (tcmalloc). */
static void malloc_trim_all(void)
{
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
    void (*mi_collect)(bool) = (void (*)(bool))dlsym(RTLD_DEFAULT, "mi_collect");
    void (*tc_release)(void) =
        (void (*)(void))dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
    if (mallctl != NULL)
        mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
    if (mi_collect != NULL)
        mi_collect(true);
    if (tc_release != NULL)
        tc_release();
    malloc_trim(0);
}

static bp_pool *bench_pool;

/* Iterations per thread at scale 1, sized for about a second per allocator on 2 cores. */
#define HUGE_CHURN_ITERATIONS   400
#define REALLOC_GROW_ITERATIONS 20
#define REALLOC_GROW_STEPS      14 /* 4 KiB doubled 14 times is 64 MiB */
#define THREADS8_ITERATIONS     1500000

/* ---- the workloads, once per API -------------------------------------------------------- */

#define ALLOC(n)      bp_alloc(bench_pool, (n))
#define REALLOC(p, n) bp_realloc(bench_pool, (p), (n))
#define FREE(p)       bp_free(p)
#define TRIM()        bp_pool_trim(bench_pool)
#define W(name)       bp_##name
#include "workloads.h"
#undef ALLOC
#undef REALLOC
#undef FREE
#undef TRIM
#undef W

#define ALLOC(n)      malloc(n)
#define REALLOC(p, n) realloc((p), (n))
#define FREE(p)       free(p)
#define TRIM()        malloc_trim_all()
#define W(name)       malloc_##name
#include "workloads.h"
#undef ALLOC
#undef REALLOC
#undef FREE
#undef TRIM
#undef W

/* ---- buffer workloads: bp_buf against malloc + memcpy ------------------------------------ */

/* new, write 64 bytes, read them back, release. */
static void *bp_buf_thread(void *arg)
{
    thread_arg *a = arg;
    unsigned char src[64], dst[64];
    memset(src, 7, sizeof src);
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        bp_buf *b = bp_buf_new(bench_pool, 64, 0);
        bp_buf_write_bytes(b, src, 64);
        bp_buf_read_bytes(b, dst, 64);
        escape(dst);
        bp_buf_release(b);
    }
    return NULL;
}

static void *malloc_buf_thread(void *arg)
{
    thread_arg *a = arg;
    unsigned char src[64], dst[64];
    memset(src, 7, sizeof src);
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        unsigned char *p = malloc(64);
        memcpy(p, src, 64);
        escape(p);
        memcpy(dst, p, 64);
        escape(dst);
        free(p);
    }
    return NULL;
}

/* A 4 KiB message from 8 parts of 512 B, gathered into one writev to /dev/null. */
static int devnull = -1;

static void *bp_writev_thread(void *arg)
{
    thread_arg *a = arg;
    unsigned char src[512];
    memset(src, 3, sizeof src);
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        bp_buf *msg = bp_buf_composite(bench_pool, 8);
        for (int k = 0; k < 8; k++) {
            bp_buf *part = bp_buf_new(bench_pool, 512, 0);
            bp_buf_write_bytes(part, src, sizeof src);
            bp_buf_append(msg, part);
        }
        bp_buf_writev_fd(msg, devnull, 0);
        bp_buf_release(msg);
    }
    return NULL;
}

static void *malloc_writev_thread(void *arg)
{
    thread_arg *a = arg;
    unsigned char src[512];
    memset(src, 3, sizeof src);
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        struct iovec iov[8];
        for (int k = 0; k < 8; k++) {
            iov[k].iov_base = malloc(512);
            memcpy(iov[k].iov_base, src, sizeof src);
            iov[k].iov_len = 512;
        }
        if (writev(devnull, iov, 8) < 0)
            abort();
        for (int k = 0; k < 8; k++)
            free(iov[k].iov_base);
    }
    return NULL;
}

/* ---- running ---------------------------------------------------------------------------- */

static bool use_bp;
static double scale = 1.0;

static void free_any(void *p) /* the harness's leftovers, through the API being measured */
{
    if (use_bp)
        bp_free(p);
    else
        free(p);
}

static long scaled(long n)
{
    long v = (long)((double)n * scale);
    return v < 1 ? 1 : v;
}

/* Runs fn in `threads` threads released together; returns the wall time in seconds. */
static double run_threads(void *(*fn)(void *), unsigned threads, long iterations, size_t size,
                          spsc_ring *ring)
{
    pthread_t tids[16];
    thread_arg args[16];
    mailbox boxes[16];
    static handoff handoffs[16]; /* their arrays are the harness's: plain malloc, once */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads);
    for (unsigned i = 0; i < threads; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        boxes[i].n = 0;
        if (handoffs[i].blocks == NULL) {
            pthread_mutex_init(&handoffs[i].lock, NULL);
            handoffs[i].blocks = malloc(HANDOFF_SIZE * sizeof(void *));
            handoffs[i].spare = malloc(HANDOFF_SIZE * sizeof(void *));
            if (handoffs[i].blocks == NULL || handoffs[i].spare == NULL)
                abort();
        }
    }
    for (unsigned i = 0; i < threads; i++) {
        args[i] = (thread_arg){.id = i,
                               .nthreads = threads,
                               .seed = 0x9e3779b97f4a7c15ull * (i + 1),
                               .iterations = iterations,
                               .size = size,
                               .start = &start,
                               .ring = ring,
                               .boxes = boxes,
                               .handoffs = handoffs,
                               .fn = fn};
        pthread_create(&tids[i], NULL, timed_thread, &args[i]);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double elapsed = wall_time(args, threads);
    for (unsigned i = 0; i < threads; i++) { /* what is still in a mailbox */
        void *got[MAILBOX_SIZE];
        unsigned n = mailbox_take(&boxes[i], got);
        for (unsigned k = 0; k < n; k++)
            free_any(got[k]);
        void **handed;
        n = handoff_take(&handoffs[i], &handed);
        for (unsigned k = 0; k < n; k++)
            free_any(handed[k]);
    }
    pthread_barrier_destroy(&start);
    return elapsed;
}

/* One measured figure: a workload at one size and thread count. Time per operation is wall
 * time over (threads x iterations x ops_per_iteration); an operation is an alloc+free pair
 * (seeds, pairs, producer/consumer), one alloc or one free (batches), one replacement
 * (replace, server, threads-8), one allocate+memset+free (huge-churn), one realloc
 * (realloc-grow). */
typedef struct figure {
    const char *name, *group;
    void *(*bp_fn)(void *), *(*malloc_fn)(void *);
    unsigned threads;
    long iterations; /* per thread, at scale 1 */
    size_t size;
    long ops_per_iteration;
    bool producer_consumer;
} figure;

#define FIG(name, group, fn, threads, iterations, size, ops)                                       \
    {                                                                                              \
        name, group, bp_##fn, malloc_##fn, threads, iterations, size, ops, false                   \
    }
#define PAIR(name, size, iterations) FIG(name, "pairs", pair_thread, 1, iterations, size, 1)

static const figure figures[] = {
    FIG("seeds-4t", "seeds", seeds_thread, 4, 1000000, 0, 1),
    FIG("seeds-1t", "seeds", seeds_thread, 1, 4000000, 0, 1),
    PAIR("pair-16", 16, 3000000),
    PAIR("pair-64", 64, 3000000),
    PAIR("pair-256", 256, 3000000),
    PAIR("pair-1k", 1024, 3000000),
    PAIR("pair-4k", 4096, 3000000),
    PAIR("pair-32k", 32768, 3000000),
    PAIR("pair-256k", 262144, 300000),
    PAIR("pair-1m", 1048576, 300000),
    FIG("batch-1k", "batches", batch_thread, 1, 1000, 1024, 2000),
    FIG("batch-64k", "batches", batch_thread, 1, 300, 65536, 2000),
    FIG("replace-1t", "replace", replace_thread, 1, 4000000, 0, 1),
    FIG("replace-2t", "replace", replace_thread, 2, 4000000, 0, 1),
    {"prodcons-64", "prodcons", bp_producer_thread, malloc_producer_thread, 2, 2000000, 64, 1,
     true},
    {"prodcons-4k", "prodcons", bp_producer_thread, malloc_producer_thread, 2, 2000000, 4096, 1,
     true},
    FIG("server-2t", "server", server_thread, 2, 2000000, 0, 1),
    FIG("churn", "churn", churn_thread, 1, 20000, 0, 1),
    FIG("buf-64-1t", "buffers", buf_thread, 1, 3000000, 64, 1),
    FIG("buf-64-2t", "buffers", buf_thread, 2, 3000000, 64, 1),
    FIG("buf-writev", "buffers", writev_thread, 1, 300000, 4096, 1),
    FIG("huge-churn", "huge", huge_churn_thread, 1, HUGE_CHURN_ITERATIONS, 0, 1),
    FIG("realloc-grow", "realloc", realloc_grow_thread, 1, REALLOC_GROW_ITERATIONS, 0,
        REALLOC_GROW_STEPS),
    FIG("threads-8", "threads", threads8_thread, 8, THREADS8_ITERATIONS, 0, 1),
};

/* The producer is thread 0, the consumer thread 1: both see the same iteration count. */
static double run_producer_consumer(const figure *f, long n)
{
    spsc_ring *ring = aligned_alloc(64, sizeof *ring);
    memset(ring, 0, sizeof *ring);
    pthread_t tids[2];
    thread_arg args[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    void *(*fns[2])(void *) = {use_bp ? bp_producer_thread : malloc_producer_thread,
                               use_bp ? bp_consumer_thread : malloc_consumer_thread};
    for (unsigned k = 0; k < 2; k++) {
        args[k] = (thread_arg){.id = k,
                               .nthreads = 2,
                               .seed = k + 1,
                               .iterations = n,
                               .size = f->size,
                               .start = &start,
                               .ring = ring,
                               .fn = fns[k]};
        pthread_create(&tids[k], NULL, timed_thread, &args[k]);
    }
    pthread_join(tids[0], NULL);
    pthread_join(tids[1], NULL);
    double t = wall_time(args, 2);
    pthread_barrier_destroy(&start);
    free(ring);
    return t;
}

static void run_figure(const figure *f)
{
    long n = scaled(f->iterations);
    double t = f->producer_consumer
                   ? run_producer_consumer(f, n)
                   : run_threads(use_bp ? f->bp_fn : f->malloc_fn, f->threads, n, f->size, NULL);
    long threads = f->producer_consumer ? 1 : (long)f->threads;
    double ops = (double)n * (double)threads * (double)f->ops_per_iteration;
    printf("%s\tns/op\t%.6g\tns\t%.0f\n", f->name, t * 1e9 / ops, ops);
    fflush(stdout);
}

static void run_memory(void)
{
    thread_arg a = {.nthreads = 1, .seed = 12345, .iterations = scaled(100000)};
    memory_result m;
    if (use_bp)
        bp_memory_run(&a, &m);
    else
        malloc_memory_run(&a, &m);
    printf("memory\tpeak-rss/requested\t%.6g\tx\t%ld\n",
           (double)(m.rss_peak - m.rss_start) / (double)m.requested, a.iterations);
    printf("memory\trss-after-trim/start\t%.6g\tx\t%ld\n", (double)m.rss_end / (double)m.rss_start,
           a.iterations);
    printf("memory\tretained-after-trim\t%.6g\tMiB\t%ld\n",
           ((double)m.rss_end - (double)m.rss_start) / 1048576.0, a.iterations);
    fflush(stdout);
}

static int usage(const char *argv0)
{
    fprintf(
        stderr,
        "usage: %s --api bp|malloc [--workload NAME|all] [--scale F]\n"
        "NAME: a group (seeds pairs batches replace prodcons server churn buffers huge realloc\n"
        "threads memory) or\n"
        "figure"
        " (seeds-4t, pair-64, batch-1k, replace-1t, prodcons-64, buf-64-1t, huge-churn, ...)\n"
        "prints one tab-separated line per figure: name, metric, value, unit, operations\n",
        argv0);
    return 2;
}

int main(int argc, char **argv)
{
    const char *api = NULL, *which = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--api") == 0 && i + 1 < argc)
            api = argv[++i];
        else if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc)
            which = argv[++i];
        else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc)
            scale = strtod(argv[++i], NULL);
        else
            return usage(argv[0]);
    }
    if (api == NULL || (strcmp(api, "bp") != 0 && strcmp(api, "malloc") != 0) || scale <= 0)
        return usage(argv[0]);
    use_bp = strcmp(api, "bp") == 0;
    if (use_bp)
        bench_pool = bp_pool_default();
    devnull = open("/dev/null", O_WRONLY);
    bool all = strcmp(which, "all") == 0, any = false;
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        const figure *f = &figures[i];
        if (all || strcmp(which, f->group) == 0 || strcmp(which, f->name) == 0) {
            run_figure(f);
            any = true;
        }
    }
    if (all || strcmp(which, "memory") == 0) {
        run_memory();
        any = true;
    }
    return any ? 0 : usage(argv[0]);
}
