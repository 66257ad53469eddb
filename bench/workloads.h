/* workloads.h — the benchmark workloads, written once and compiled twice by bench.c: with
 * ALLOC/FREE bound to bufpool's API and to the process's malloc/free. W(name) names the
 * variant. Every workload seeds its own fast PRNG; none calls rand(). */

/* 1. The seeds' benchmark: each iteration allocates random % 32768 bytes and frees them. */
static void *W(seeds_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        void *p = ALLOC(rng_next(&r) % 32768);
        escape(p);
        FREE(p);
    }
    return NULL;
}

/* 2. Alloc+free pairs of one size. */
static void *W(pair_thread)(void *arg)
{
    thread_arg *a = arg;
    size_t size = a->size;
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        void *p = ALLOC(size);
        escape(p);
        FREE(p);
    }
    return NULL;
}

/* 3. Batches: `batch` allocations of random size in [16, size], then all freed. */
static void *W(batch_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    void *blocks[1000];
    barrier_wait(a);
    for (long round = 0; round < a->iterations; round++) {
        for (int i = 0; i < 1000; i++) {
            blocks[i] = ALLOC(16 + rng_next(&r) % (a->size - 15));
            escape(blocks[i]);
        }
        for (int i = 0; i < 1000; i++)
            FREE(blocks[i]);
    }
    return NULL;
}

/* 4. Random replacement over 1024 live slots, sizes 16 B..64 KiB; each block's first and
 * last byte written. */
static void *W(replace_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    void *slot[1024];
    size_t size[1024];
    for (int i = 0; i < 1024; i++) {
        size[i] = 16 + rng_next(&r) % (65536 - 15);
        slot[i] = ALLOC(size[i]);
        touch(slot[i], size[i]);
    }
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        unsigned s = (unsigned)(rng_next(&r) & 1023);
        FREE(slot[s]);
        size[s] = 16 + rng_next(&r) % (65536 - 15);
        slot[s] = ALLOC(size[s]);
        touch(slot[s], size[s]);
    }
    for (int i = 0; i < 1024; i++)
        FREE(slot[i]);
    return NULL;
}

/* 5. Producer/consumer: the producer allocates, the consumer frees, through a lock-free
 * single-producer single-consumer ring. */
static void *W(consumer_thread)(void *arg)
{
    thread_arg *a = arg;
    spsc_ring *ring = a->ring;
    unsigned spins = 0;
    barrier_wait(a);
    for (long n = 0; n < a->iterations;) {
        unsigned head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
        unsigned tail = ring->tail;
        if (tail == head) {
            spin_wait(&spins);
            continue;
        }
        for (; tail != head; tail++, n++)
            FREE(ring->slot[tail & (RING_SIZE - 1)]);
        __atomic_store_n(&ring->tail, tail, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *W(producer_thread)(void *arg)
{
    thread_arg *a = arg;
    spsc_ring *ring = a->ring;
    size_t size = a->size;
    barrier_wait(a);
    unsigned head = 0, spins = 0;
    for (long n = 0; n < a->iterations; n++) {
        while (head - __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) == RING_SIZE)
            spin_wait(&spins);
        void *p = ALLOC(size);
        *(volatile char *)p = 1;
        ring->slot[head & (RING_SIZE - 1)] = p;
        __atomic_store_n(&ring->head, ++head, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* 6. Server-like (in the spirit of larson): random sizes 8..1000 B over a window of live
 * blocks; every 8th replaced block is handed to the next thread, which frees it. */
static void *W(server_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    enum { WINDOW = 1000 };
    void *live[WINDOW];
    for (int i = 0; i < WINDOW; i++)
        live[i] = ALLOC(8 + rng_next(&r) % 993);
    barrier_wait(a);
    mailbox *mine = &a->boxes[a->id];
    mailbox *next = &a->boxes[(a->id + 1) % a->nthreads];
    for (long i = 0; i < a->iterations; i++) {
        unsigned s = (unsigned)(rng_next(&r) % WINDOW);
        void *old = live[s];
        if ((i & 7) == 0 && mailbox_put(next, old)) {
            /* handed over: the next thread frees it */
        } else {
            FREE(old);
        }
        live[s] = ALLOC(8 + rng_next(&r) % 993);
        *(volatile char *)live[s] = 1;
        if ((i & 255) == 0) {
            void *got[MAILBOX_SIZE];
            unsigned n = mailbox_take(mine, got);
            for (unsigned k = 0; k < n; k++)
                FREE(got[k]);
        }
    }
    for (int i = 0; i < WINDOW; i++)
        FREE(live[i]);
    return NULL;
}

/* 8. Churn at a band edge (netty#14257): a block the size of the default chunk and one half
 * its size, allocated and freed in turn; an allocator that maps and unmaps on each pays a
 * system call per operation (the driver counts them with strace). */
static void *W(churn_thread)(void *arg)
{
    thread_arg *a = arg;
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        void *p = ALLOC((i & 1) ? ((size_t)2 << 20) : ((size_t)4 << 20));
        touch(p, 4096);
        FREE(p);
    }
    return NULL;
}

/* 9. Huge churn (the pattern of the standard huge-block allocator benchmarks): 20 live blocks
 * of 5..25 MiB; each operation frees a random one, allocates a new one and zeroes all of it,
 * so an allocator that maps every huge block afresh pays its page faults again each time. */
static void *W(huge_churn_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    enum { LIVE = 20 };
    void *live[LIVE];
    for (int i = 0; i < LIVE; i++) {
        size_t size = ((size_t)5 << 20) + rng_next(&r) % ((size_t)20 << 20);
        live[i] = ALLOC(size);
        escape(live[i]);
        memset(live[i], 0, size);
    }
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        unsigned s = (unsigned)(rng_next(&r) % LIVE);
        FREE(live[s]);
        size_t size = ((size_t)5 << 20) + rng_next(&r) % ((size_t)20 << 20);
        live[s] = ALLOC(size);
        escape(live[s]); /* or the compiler makes malloc+memset a calloc, skipping the writes */
        memset(live[s], 0, size);
    }
    for (int i = 0; i < LIVE; i++)
        FREE(live[i]);
    return NULL;
}

/* 10. A read buffer growing the way a server's does: 4 KiB doubled by realloc up to 64 MiB,
 * the new half written after each step (the bytes a read would bring), then freed. */
static void *W(realloc_grow_thread)(void *arg)
{
    thread_arg *a = arg;
    barrier_wait(a);
    for (long i = 0; i < a->iterations; i++) {
        size_t size = 4096;
        char *buf = ALLOC(size);
        memset(buf, 1, size);
        for (int step = 0; step < REALLOC_GROW_STEPS; step++) {
            buf = REALLOC(buf, size * 2);
            memset(buf + size, (int)step, size);
            size *= 2;
        }
        escape(buf);
        FREE(buf);
    }
    return NULL;
}

/* 11. Eight threads (more than the cores of a small machine) replacing small blocks of
 * 16..1024 B over a window of 512; every 4th replaced block goes, in batches of 32, to the next
 * thread, which frees it: cross-thread frees at a fixed share, unless the next thread's
 * hand-off is full (it is sized for several time slices), when the block is freed here. */
static void *W(threads8_thread)(void *arg)
{
    thread_arg *a = arg;
    rng r = {a->seed};
    enum { WINDOW = 512, BATCH = 32 };
    void *live[WINDOW], *outgoing[BATCH];
    unsigned pending = 0;
    for (int i = 0; i < WINDOW; i++)
        live[i] = ALLOC(16 + rng_next(&r) % 1009);
    barrier_wait(a);
    handoff *mine = &a->handoffs[a->id];
    handoff *next = &a->handoffs[(a->id + 1) % a->nthreads];
    for (long i = 0; i < a->iterations; i++) {
        unsigned s = (unsigned)(rng_next(&r) % WINDOW);
        if ((i & 3) == 0) {
            outgoing[pending++] = live[s];
            if (pending == BATCH) {
                if (!handoff_put(next, outgoing, BATCH))
                    for (unsigned k = 0; k < BATCH; k++)
                        FREE(outgoing[k]);
                pending = 0;
            }
        } else {
            FREE(live[s]);
        }
        live[s] = ALLOC(16 + rng_next(&r) % 1009);
        *(volatile char *)live[s] = 1;
        if ((i & 255) == 0) {
            void **got;
            unsigned n = handoff_take(mine, &got);
            for (unsigned k = 0; k < n; k++)
                FREE(got[k]);
        }
    }
    for (unsigned k = 0; k < pending; k++)
        FREE(outgoing[k]);
    for (int i = 0; i < WINDOW; i++)
        FREE(live[i]);
    return NULL;
}

/* 7. Memory: `iterations` live blocks of random size 16 B..64 KiB, all written. */
static void W(memory_run)(thread_arg *a, memory_result *out)
{
    rng r = {a->seed};
    long n = a->iterations;
    void **blocks = calloc((size_t)n, sizeof(void *)); /* the harness's own, before start */
    /* fault the array in now: its pages would otherwise count as growth */
    memset((void *)blocks, 0xff, (size_t)n * sizeof(void *));
    size_t requested = 0;
    TRIM();
    out->rss_start = rss_bytes();
    for (long i = 0; i < n; i++) {
        size_t size = 16 + rng_next(&r) % (65536 - 15);
        blocks[i] = ALLOC(size);
        memset(blocks[i], (int)i, size);
        requested += size;
    }
    out->rss_peak = rss_bytes();
    out->requested = requested;
    for (long i = 0; i < n; i++)
        FREE(blocks[i]);
    TRIM();
    out->rss_end = rss_bytes();
    free(blocks);
}
