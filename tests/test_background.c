/* test_background.c — the background thread (config background_thread): a quiet program's
 * free pages are purged and its idle thread caches emptied without any call into the pool,
 * pools that did not ask are left alone, and a fork child gets a thread of its own. */
#include "front.h"
#include "test.h"

#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bp_stats snapshot(bp_pool *pool)
{
    bp_stats st = {.struct_size = sizeof st};
    REQUIRE(bp_pool_stats(pool, &st) == BP_OK);
    return st;
}

static bp_pool *quiet_pool(int background)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    cfg.purge_decay_ms = 100;
    cfg.cache_idle_ms = 100;
    cfg.background_thread = background;
    bp_pool *pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    return pool;
}

/* 16 MiB of 64 KiB blocks (uncached runs), every one freed: free pages, still backed. */
static void burst(bp_pool *pool)
{
    enum { N = 256 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = bp_alloc(pool, 64 << 10);
        REQUIRE(blocks[i] != NULL);
        memset(blocks[i], 1, 64 << 10);
    }
    for (int i = 0; i < N; i++)
        bp_free(blocks[i]);
}

/* Waits (at most 10 s: the thread is expected within a few hundred ms) until the pool holds
 * no dirty pages. Returns whether it got there. */
static bool wait_purged(bp_pool *pool)
{
    for (int i = 0; i < 1000; i++) {
        if (snapshot(pool).dirty_bytes == 0)
            return true;
        sleep_ms(10);
    }
    return false;
}

static void test_quiet_pool_purged(void)
{
    bp_pool *served = quiet_pool(1), *alone = quiet_pool(0);
    burst(served);
    burst(alone);
    bp_stats before = snapshot(served);
    CHECK(before.dirty_bytes > 0);
    CHECK(wait_purged(served));
    bp_stats after = snapshot(served);
    CHECK(after.purged_bytes >= before.dirty_bytes);
    /* the pool that did not ask keeps its pages until its own slow paths or a trim */
    uint64_t passes = bp_background_passes();
    while (bp_background_passes() < passes + 3)
        sleep_ms(10);
    CHECK(snapshot(alone).dirty_bytes > 0);
    printf("  %zu dirty bytes purged with no call; the other pool still holds %zu\n",
           before.dirty_bytes, snapshot(alone).dirty_bytes);
    bp_pool_destroy(served);
    bp_pool_destroy(alone);
}

typedef struct idler {
    bp_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage; /* 0 filling, 1 idle with a full cache, 2 told to exit */
} idler;

static void set_stage(idler *s, int stage)
{
    pthread_mutex_lock(&s->lock);
    s->stage = stage;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void wait_stage(idler *s, int stage)
{
    pthread_mutex_lock(&s->lock);
    while (s->stage < stage)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static void *fill_then_idle(void *arg)
{
    idler *s = arg;
    enum { N = 64 };
    void *blocks[N];
    for (int i = 0; i < N; i++)
        blocks[i] = bp_alloc(s->pool, 1024);
    for (int i = 0; i < N; i++)
        bp_free(blocks[i]);   /* into this thread's cache */
    bp_thread_flush(s->pool); /* published: stats see the cache */
    for (int i = 0; i < N; i++)
        blocks[i] = bp_alloc(s->pool, 1024);
    for (int i = 0; i < N; i++)
        bp_free(blocks[i]);
    set_stage(s, 1);
    wait_stage(s, 2);
    return NULL;
}

static bool membarrier_available(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

/* A thread that filled its cache and went idle: the background thread empties it (the
 * blocks are back in the arena: active bytes fall to zero) while every thread is quiet. */
static void test_idle_cache_emptied(void)
{
    if (!membarrier_available()) {
        printf("  membarrier is not available: only own caches can be reclaimed\n");
        return;
    }
    idler s = {.pool = quiet_pool(1)};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fill_then_idle, &s) == 0);
    wait_stage(&s, 1);
    CHECK(snapshot(s.pool).active_bytes > 0); /* the blocks wait in the idle thread's cache */
    bool emptied = false;
    for (int i = 0; i < 1000 && !emptied; i++) {
        emptied = snapshot(s.pool).active_bytes == 0;
        if (!emptied)
            sleep_ms(10);
    }
    CHECK(emptied);
    set_stage(&s, 2);
    pthread_join(t, NULL);
    CHECK_EQ(bp_pool_check(s.pool), 0);
    bp_pool_destroy(s.pool);
}

static bp_pool *fork_pool;

static void child_purges(void *arg)
{
    (void)arg;
    uint64_t passes = bp_background_passes();
    burst(fork_pool); /* the first slow path starts the child's own thread */
    for (int i = 0; i < 1000 && bp_background_passes() == passes; i++)
        sleep_ms(10);
    if (bp_background_passes() == passes) {
        fprintf(stderr, "no background pass in the child\n");
        exit(1);
    }
    exit(wait_purged(fork_pool) ? 0 : 2);
}

static void test_fork_child_has_its_own(void)
{
    const char *san = getenv("BP_SANITIZER");
    if (san != NULL && strcmp(san, "thread") == 0) {
        printf("  skipped under TSan: it does not start threads after a multi-threaded fork\n");
        return;
    }
    fork_pool = quiet_pool(1);
    burst(fork_pool); /* the parent's thread runs */
    char out[4096];
    int status = test_in_child(child_purges, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "child status %#x, stderr:\n%s\n", status, out);
    bp_pool_destroy(fork_pool);
}

int main(void)
{
    RUN(test_quiet_pool_purged);
    RUN(test_idle_cache_emptied);
    RUN(test_fork_child_has_its_own);
    return test_report();
}
