/* bench.c — the benchmark program: runs the workloads of workloads.h through bufpool's API
 * (--api bp) or through whatever malloc the process has (--api malloc, under LD_PRELOAD for
 * jemalloc, mimalloc, tcmalloc), and prints one result line per measurement. */
#define _GNU_SOURCE
#include "bufpool.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
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

typedef struct thread_arg {
    unsigned id, nthreads;
    uint64_t seed;
    long iterations;
    size_t size;
    pthread_barrier_t *start;
    spsc_ring *ring;
    mailbox *boxes;
} thread_arg;

static void barrier_wait(thread_arg *a)
{
    pthread_barrier_wait(a->start);
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
    void (*tc_release)(void) = (void (*)(void))dlsym(RTLD_DEFAULT,
                                                     "MallocExtension_ReleaseFreeMemory");
    if (mallctl != NULL)
        mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
    if (mi_collect != NULL)
        mi_collect(true);
    if (tc_release != NULL)
        tc_release();
    malloc_trim(0);
}

static bp_pool *bench_pool;

/* ---- the workloads, once per API -------------------------------------------------------- */

#define ALLOC(n) bp_alloc(bench_pool, (n))
#define FREE(p)  bp_free(p)
#define TRIM()   bp_pool_trim(bench_pool)
#define W(name)  bp_##name
#include "workloads.h"
#undef ALLOC
#undef FREE
#undef TRIM
#undef W

#define ALLOC(n) malloc(n)
#define FREE(p)  free(p)
#define TRIM()   malloc_trim_all()
#define W(name)  malloc_##name
#include "workloads.h"
#undef ALLOC
#undef FREE
#undef TRIM
#undef W

/* ---- running ---------------------------------------------------------------------------- */

static bool use_bp;
static double scale = 1.0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads + 1);
    for (unsigned i = 0; i < threads; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        boxes[i].n = 0;
    }
    for (unsigned i = 0; i < threads; i++) {
        args[i] = (thread_arg){i,    threads, 0x9e3779b97f4a7c15ull * (i + 1), iterations, size,
                               &start, ring,   boxes};
        pthread_create(&tids[i], NULL, fn, &args[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now();
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double elapsed = now() - t0;
    for (unsigned i = 0; i < threads; i++) { /* what is still in a mailbox */
        void *got[MAILBOX_SIZE];
        unsigned n = mailbox_take(&boxes[i], got);
        for (unsigned k = 0; k < n; k++) {
            if (use_bp)
                bp_free(got[k]);
            else
                free(got[k]);
        }
    }
    pthread_barrier_destroy(&start);
    return elapsed;
}

static void report(const char *workload, const char *metric, double value, const char *unit)
{
    printf("%s\t%s\t%.6g\t%s\n", workload, metric, value, unit);
    fflush(stdout);
}

#define PICK(name) (use_bp ? bp_##name : malloc_##name)

static void run_seeds(void)
{
    long n4 = scaled(1000000), n1 = scaled(4000000);
    double t4 = run_threads(PICK(seeds_thread), 4, n4, 0, NULL);
    report("seeds-4t", "ns/pair", t4 * 1e9 / ((double)n4 * 4), "ns");
    report("seeds-4t", "seconds", t4, "s");
    double t1 = run_threads(PICK(seeds_thread), 1, n1, 0, NULL);
    report("seeds-1t", "ns/pair", t1 * 1e9 / (double)n1, "ns");
    report("seeds-1t", "seconds", t1, "s");
}

static void run_pairs(void)
{
    static const size_t sizes[] = {16, 64, 256, 1024, 4096, 32768, 262144, 1048576};
    static const char *names[] = {"16",    "64",    "256",   "1k",
                                  "4k",    "32k",   "256k",  "1m"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        long n = scaled(sizes[i] <= 32768 ? 3000000 : 300000);
        char name[32];
        snprintf(name, sizeof name, "pair-%s", names[i]);
        double t = run_threads(PICK(pair_thread), 1, n, sizes[i], NULL);
        report(name, "ns/pair", t * 1e9 / (double)n, "ns");
    }
}

static void run_batches(void)
{
    long rounds = scaled(1000);
    double t = run_threads(PICK(batch_thread), 1, rounds, 1024, NULL);
    report("batch-1k", "ns/op", t * 1e9 / ((double)rounds * 2000), "ns");
    rounds = scaled(300);
    t = run_threads(PICK(batch_thread), 1, rounds, 65536, NULL);
    report("batch-64k", "ns/op", t * 1e9 / ((double)rounds * 2000), "ns");
}

static void run_replace(void)
{
    long n = scaled(4000000);
    double t = run_threads(PICK(replace_thread), 1, n, 0, NULL);
    report("replace-1t", "ns/op", t * 1e9 / (double)n, "ns");
    t = run_threads(PICK(replace_thread), 2, n, 0, NULL);
    report("replace-2t", "ns/op", t * 1e9 / ((double)n * 2), "ns");
}

static void run_producer_consumer(void)
{
    static const size_t sizes[] = {64, 4096};
    static const char *names[] = {"prodcons-64", "prodcons-4k"};
    for (int i = 0; i < 2; i++) {
        long n = scaled(2000000);
        spsc_ring *ring = aligned_alloc(64, sizeof *ring);
        memset(ring, 0, sizeof *ring);
        pthread_t tids[2];
        thread_arg args[2];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 3);
        void *(*fns[2])(void *) = {PICK(producer_thread), PICK(consumer_thread)};
        for (unsigned k = 0; k < 2; k++) {
            args[k] = (thread_arg){k, 2, k + 1, n, sizes[i], &start, ring, NULL};
            pthread_create(&tids[k], NULL, fns[k], &args[k]);
        }
        pthread_barrier_wait(&start);
        double t0 = now();
        pthread_join(tids[0], NULL);
        pthread_join(tids[1], NULL);
        double t = now() - t0;
        pthread_barrier_destroy(&start);
        free(ring);
        report(names[i], "ns/pair", t * 1e9 / (double)n, "ns");
        report(names[i], "Mpairs/s", (double)n / t / 1e6, "M/s");
    }
}

static void run_server(void)
{
    long n = scaled(2000000);
    double t = run_threads(PICK(server_thread), 2, n, 0, NULL);
    report("server-2t", "ns/op", t * 1e9 / ((double)n * 2), "ns");
}

static void run_memory(void)
{
    thread_arg a = {0, 1, 12345, scaled(100000), 0, NULL, NULL, NULL};
    memory_result m;
    if (use_bp)
        bp_memory_run(&a, &m);
    else
        malloc_memory_run(&a, &m);
    double peak = (double)(m.rss_peak - m.rss_start) / (double)m.requested;
    report("memory", "peak-rss/requested", peak, "x");
    report("memory", "rss-after-trim/start", (double)m.rss_end / (double)m.rss_start, "x");
    report("memory", "retained-after-trim", (double)(m.rss_end - m.rss_start) / 1048576.0, "MiB");
}

static const struct {
    const char *name;
    void (*run)(void);
} workloads[] = {
    {"seeds", run_seeds},     {"pairs", run_pairs},   {"batches", run_batches},
    {"replace", run_replace}, {"prodcons", run_producer_consumer},
    {"server", run_server},   {"memory", run_memory},
};

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --api bp|malloc [--workload NAME|all] [--scale F]\n"
            "workloads: seeds pairs batches replace prodcons server memory\n"
            "prints one line per figure: workload, metric, value, unit (tab-separated)\n",
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
    bool any = false;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        if (strcmp(which, "all") == 0 || strcmp(which, workloads[i].name) == 0) {
            workloads[i].run();
            any = true;
        }
    }
    return any ? 0 : usage(argv[0]);
}
