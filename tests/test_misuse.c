/* test_misuse.c — misuse is reported with the address, then the process aborts: double
 * frees, pointers into the middle of blocks, pointers no pool owns.
 *
 * Each case sets up in this process (so the address the report must name is known here,
 * formatted with %p), then forks a child (test_in_child: stderr into a pipe) that commits the
 * misuse. The child must die of SIGABRT after a "bufpool: " line that names the address and
 * the expected words. Checked builds catch each misuse at the call; release builds catch a
 * foreign pointer at once and the others when the block reaches its arena, which the child
 * forces with bp_thread_flush and bp_pool_trim; a child that gets past those returns, exits
 * 0, and the case fails. The checker itself is tested on children that exit normally, abort
 * without a report, or report another address. */
#include "front.h"
#include "test.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

typedef struct ctx {
    bp_pool *pool;
    void *victim;  /* the pointer misused; its %p is what the report must name */
    void *base;    /* the block victim points into, when it is not a block start */
    void *keep[2]; /* live neighbours: the victim's run or subpage stays where it is */
    void *extra[BP_RUN_CACHE_SLOTS];
    unsigned nextra;
    int local;     /* a stack address (the setup's frame is still live in the child) */
    bool malloced; /* victim came from malloc() */
    bool buf;      /* victim is a bp_buf */
    bool is_pool;  /* victim is the pool itself */
} ctx;

typedef struct misuse {
    const char *name;
    void (*tune)(bp_config *cfg); /* NULL: the defaults */
    void (*setup)(ctx *c);        /* here, before the fork */
    void (*act)(ctx *c);          /* in the child */
    const char *words;            /* each of these '|'-separated phrases must be on the line */
    bool checked_only;
    bool tool; /* the report is a sanitizer's: the words anywhere, an abort or a failed exit */
} misuse;

static int a_global;

/* ---- running a case ---------------------------------------------------------------------- */

static const misuse *current;
static ctx *current_ctx;

static void child(void *arg)
{
    (void)arg;
    current->act(current_ctx);
    /* Release builds look at a cached block when it goes back to its arena. */
    bp_thread_flush(current_ctx->pool);
    bp_pool_trim(current_ctx->pool);
}

/* Whether `line` contains every '|'-separated phrase of `words`. */
static bool has_words(const char *line, const char *words)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", words);
    for (char *save = NULL, *w = strtok_r(buf, "|", &save); w != NULL;
         w = strtok_r(NULL, "|", &save))
        if (strstr(line, w) == NULL)
            return false;
    return true;
}

/* The verdict on one child: died of SIGABRT, with a "bufpool: " line naming the address and
 * the words. Prints why not when `loud`. */
static bool judge(const misuse *m, int status, const char *out, const char *addr, bool loud)
{
    const char *name = m->name, *words = m->words;
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    bool reported = false;
    if (m->tool) { /* ASan aborts with abort_on_error=1 (the test script's), else exits 1 */
        aborted |= WIFEXITED(status) && WEXITSTATUS(status) != 0;
        reported = has_words(out, words);
    }
    for (const char *line = out; *line != '\0' && !reported;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)BP_MIN(len, sizeof buf - 1), line);
        const char *at = strstr(buf, "bufpool: ");
        const char *a = at ? strstr(at, addr) : NULL;
        /* the address as a whole token: not the prefix of a longer number */
        if (a != NULL && !(a[strlen(addr)] >= '0' && a[strlen(addr)] <= '9') &&
            !(a[strlen(addr)] >= 'a' && a[strlen(addr)] <= 'f'))
            reported = has_words(at, words);
        line += len + (end != NULL);
    }
    if (loud && !(aborted && reported)) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "  %s: killed by signal %d", name, WTERMSIG(status));
        else
            fprintf(stderr, "  %s: exited with status %d", name, WEXITSTATUS(status));
        fprintf(stderr, "%s; expected SIGABRT and a report naming %s with \"%s\"; stderr:\n%s\n",
                aborted ? "" : " (no abort)", addr, words, out);
    }
    return aborted && reported;
}

static bool run_case(const misuse *m, bool loud)
{
    bp_config cfg;
    bp_config_defaults(&cfg); /* not BUFPOOL_CONF: the cases assume the defaults */
    if (m->tune != NULL)
        m->tune(&cfg);
    ctx c;
    memset(&c, 0, sizeof c);
    c.pool = bp_pool_new(&cfg);
    REQUIRE(c.pool != NULL);
    m->setup(&c);
    char addr[32];
    snprintf(addr, sizeof addr, "%p", c.victim);
    current = m;
    current_ctx = &c;
    char out[8192];
    int status = test_in_child(child, NULL, out, sizeof out);
    bool ok = judge(m, status, out, addr, loud);
    /* Nothing was misused here: give back what setup made. */
    if (c.malloced)
        free(c.victim);
    else if (c.buf)
        bp_buf_release(c.victim);
    else if (c.is_pool)
        ; /* the pool is destroyed below */
    else if (c.base != NULL)
        bp_free(c.base);
    else if (c.victim != (void *)&a_global && c.victim != (void *)&c.local)
        bp_free(c.victim);
    for (unsigned i = 0; i < 2; i++)
        bp_free(c.keep[i]);
    for (unsigned i = 0; i < c.nextra; i++)
        bp_free(c.extra[i]);
    CHECK_EQ(bp_pool_check(c.pool), 0);
    bp_pool_destroy(c.pool);
    return ok;
}

/* ---- the cases --------------------------------------------------------------------------- */

static void pair(ctx *c, size_t size) /* a victim and a live neighbour of the same class */
{
    c->victim = bp_alloc(c->pool, size);
    c->keep[0] = bp_alloc(c->pool, size);
    REQUIRE(c->victim != NULL && c->keep[0] != NULL);
}

static void setup_small(ctx *c)
{
    pair(c, 100);
}

/* A normal class above max_cached (256 KiB by default): freed straight to its arena. */
#define UNCACHED_NORMAL (512 * KiB)

static void setup_normal(ctx *c)
{
    pair(c, UNCACHED_NORMAL);
}

static void setup_medium(ctx *c)
{
    pair(c, 20 * KiB); /* 8 KiB pages: the largest small classes are below 32 KiB */
}

static void setup_cached_normal(ctx *c)
{
    pair(c, 32 * KiB); /* the smallest normal class: thread-cached */
}

/* An uncached victim freed when its class's run cache is full: its run goes back to the chunk.
 * Live runs on both sides (the last cached one and keep) keep it from coalescing. */
static void setup_normal_past_run_cache(ctx *c)
{
    unsigned cls = bp_size_to_class(&c->pool->engine.sc, UNCACHED_NORMAL);
    c->nextra = c->pool->engine.run_cache_limit[cls];
    REQUIRE(c->nextra >= 1 && c->nextra <= BP_RUN_CACHE_SLOTS);
    for (unsigned i = 0; i < c->nextra; i++)
        c->extra[i] = bp_alloc(c->pool, UNCACHED_NORMAL);
    pair(c, UNCACHED_NORMAL);
}

static void setup_huge(ctx *c)
{
    c->victim = bp_alloc(c->pool, 5 * MiB);
    REQUIRE(c->victim != NULL);
}

static void act_double_free(ctx *c)
{
    bp_free(c->victim);
    bp_free(c->victim);
}

static void act_double_free_sized(ctx *c)
{
    bp_free_sized(c->victim, 100);
    bp_free_sized(c->victim, 100);
}

static void act_double_free_past_run_cache(ctx *c)
{
    for (unsigned i = 0; i < c->nextra; i++) {
        bp_free(c->extra[i]);
        c->extra[i] = NULL;
    }
    bp_free(c->victim);
    bp_free(c->victim);
}

static void act_free(ctx *c)
{
    bp_free(c->victim);
}

/* A new huge block of the same size is mapped between the two frees: without a quarantine it
 * takes the freed block's address, and the second free would free it. */
static void act_double_free_huge_after_reuse(ctx *c)
{
    bp_free(c->victim);
    void *reuser = bp_alloc(c->pool, 5 * MiB);
    REQUIRE(reuser != NULL);
    bp_free(c->victim);
}

static void act_free_sized(ctx *c)
{
    bp_free_sized(c->victim, 100);
}

static void act_usable_size(ctx *c)
{
    volatile size_t n = bp_usable_size(c->victim);
    (void)n;
}

static void act_realloc(ctx *c)
{
    void *p = bp_realloc(c->pool, c->victim, 200);
    (void)p;
}

static void act_free_sized_too_big(ctx *c)
{
    bp_free_sized(c->victim, 113); /* a 100-byte request holds 112 */
}

static void interior(ctx *c, size_t size, size_t offset)
{
    c->base = bp_alloc(c->pool, size);
    REQUIRE(c->base != NULL);
    c->victim = (char *)c->base + offset;
}

static void setup_interior_small(ctx *c)
{
    interior(c, 100, 16);
    c->keep[0] = bp_alloc(c->pool, 100);
}

static void setup_interior_normal_first_page(ctx *c)
{
    interior(c, UNCACHED_NORMAL, 64);
}

static void setup_interior_normal_later_page(ctx *c)
{
    interior(c, UNCACHED_NORMAL, 3 * 8 * KiB);
}

static void setup_interior_huge(ctx *c)
{
    interior(c, 5 * MiB, 8 * KiB);
}

static void setup_global(ctx *c)
{
    c->victim = &a_global;
}

static void setup_stack(ctx *c)
{
    c->victim = &c->local;
}

static void setup_pool(ctx *c)
{
    c->victim = c->pool;
    c->is_pool = true;
}

static void act_destroy_twice(ctx *c)
{
    bp_pool_destroy(c->pool);
    bp_pool_destroy(c->pool);
}

static void act_alloc_after_destroy(ctx *c)
{
    bp_pool_destroy(c->pool);
    c->extra[0] = bp_alloc(c->pool, 64); /* never returns */
}

static void act_aligned_alloc_after_destroy(ctx *c)
{
    bp_pool_destroy(c->pool);
    c->extra[0] = bp_aligned_alloc(c->pool, 4096, 100); /* never returns */
}

static void act_stats_after_destroy(ctx *c)
{
    bp_pool_destroy(c->pool);
    bp_stats s;
    s.struct_size = sizeof s;
    bp_pool_stats(c->pool, &s);
}

static void act_trim_after_destroy(ctx *c)
{
    bp_pool_destroy(c->pool);
    bp_pool_trim(c->pool);
}

static void setup_malloc(ctx *c)
{
    c->victim = malloc(100);
    c->malloced = true;
    REQUIRE(c->victim != NULL);
}

static void act_release_twice(ctx *c)
{
    bp_buf_release(c->victim);
    bp_buf_release(c->victim);
}

static void setup_buf(ctx *c)
{
    c->victim = bp_buf_new(c->pool, 64, 0);
    c->buf = true;
    REQUIRE(c->victim != NULL);
}

static void tune_no_huge_cache(bp_config *cfg)
{
    cfg->huge_cache_bytes = 0; /* release builds unmap a freed huge block at once */
}

static void tune_uncached(bp_config *cfg)
{
    cfg->small_cache = 0; /* every free goes to the arena at once */
    cfg->normal_cache = 0;
}

#define DOUBLE  "double free"
#define START   "not the start"
#define FOREIGN "not allocated by bufpool"

#define CASE(name, tune, setup, act, words)                                                        \
    {                                                                                              \
        name, tune, setup, act, words, false, false                                                \
    }
#define CHECKED_CASE(name, tune, setup, act, words)                                                \
    {                                                                                              \
        name, tune, setup, act, words, true, false                                                 \
    }

static const misuse cases[] = {
    CASE("double free of a small block", NULL, setup_small, act_double_free, DOUBLE),
    CASE("double free of a small block, sized", NULL, setup_small, act_double_free_sized, DOUBLE),
    CASE("double free of a small block, uncached", tune_uncached, setup_small, act_double_free,
         DOUBLE),
    CASE("double free of a 512 KiB block", NULL, setup_normal, act_double_free, DOUBLE),
    CASE("double free of a 512 KiB block past the run cache", NULL, setup_normal_past_run_cache,
         act_double_free_past_run_cache, DOUBLE),
    CASE("double free of a 20 KiB block", NULL, setup_medium, act_double_free, DOUBLE),
    CASE("double free of a 32 KiB block (cached normal class)", NULL, setup_cached_normal,
         act_double_free, DOUBLE),
    CASE("double free of a 32 KiB block, uncached", tune_uncached, setup_cached_normal,
         act_double_free, DOUBLE),
    /* freed, a huge block stays mapped and registered (the huge cache; checked builds'
     * quarantine): the second free names the double free */
    CASE("double free of a huge block", NULL, setup_huge, act_double_free, DOUBLE),
    CASE("double free of a huge block, no huge cache", tune_no_huge_cache, setup_huge,
         act_double_free, BP_CHECKED ? DOUBLE : FOREIGN),
    CHECKED_CASE("double free of a huge block after a new one was mapped", NULL, setup_huge,
                 act_double_free_huge_after_reuse, "bp_free(|" DOUBLE),
    CASE("free inside a small block", NULL, setup_interior_small, act_free, START),
    CASE("free inside a small block, uncached", tune_uncached, setup_interior_small, act_free,
         START),
    CASE("free inside a normal block's first page", NULL, setup_interior_normal_first_page,
         act_free, START),
    CASE("free inside a normal block's later page", NULL, setup_interior_normal_later_page,
         act_free, START),
    CASE("free inside a huge block", NULL, setup_interior_huge, act_free, START),
    CASE("free of a global's address", NULL, setup_global, act_free, FOREIGN),
    CASE("free of a stack address", NULL, setup_stack, act_free, FOREIGN),
    CASE("free of a malloc() block", NULL, setup_malloc, act_free, FOREIGN),
    CASE("bp_free_sized of a malloc() block", NULL, setup_malloc, act_free_sized, FOREIGN),
    CASE("bp_realloc of a malloc() block", NULL, setup_malloc, act_realloc, FOREIGN),
    CASE("bp_usable_size of a malloc() block", NULL, setup_malloc, act_usable_size,
         "bp_usable_size|" FOREIGN),
    CASE("bp_usable_size of a stack address", NULL, setup_stack, act_usable_size,
         "bp_usable_size|" FOREIGN),
    CASE("bp_usable_size of a global's address", NULL, setup_global, act_usable_size,
         "bp_usable_size|" FOREIGN),
    /* the report names the call the program made (tool builds look the block up first) */
    CASE("bp_free of a stack address names bp_free", NULL, setup_stack, act_free,
         "bp_free(|" FOREIGN),
    CASE("bp_free_sized of a stack address names it", NULL, setup_stack, act_free_sized,
         "bp_free_sized(|" FOREIGN),
    CASE("bp_realloc of a stack address names it", NULL, setup_stack, act_realloc,
         "bp_realloc(|" FOREIGN),
    /* a destroyed pool: destroying it again is caught in every build (the list of live pools
     * is read, not the pool); checked builds keep its mapping and check any other call */
    CASE("bp_pool_destroy twice", NULL, setup_pool, act_destroy_twice,
         "bp_pool_destroy(|not a live pool"),
    CHECKED_CASE("bp_alloc on a destroyed pool", NULL, setup_pool, act_alloc_after_destroy,
                 "bp_alloc(|not a live pool"),
    CHECKED_CASE("bp_aligned_alloc on a destroyed pool", NULL, setup_pool,
                 act_aligned_alloc_after_destroy, "bp_aligned_alloc(|not a live pool"),
    CHECKED_CASE("bp_pool_stats on a destroyed pool", NULL, setup_pool, act_stats_after_destroy,
                 "bp_pool_stats(|not a live pool"),
    CHECKED_CASE("bp_pool_trim on a destroyed pool", NULL, setup_pool, act_trim_after_destroy,
                 "bp_pool_trim(|not a live pool"),
    CHECKED_CASE("bp_free_sized beyond the block", NULL, setup_small, act_free_sized_too_big,
                 "bp_free_sized|holds only 112"),
};

static void test_misuse_reported(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].checked_only && !BP_CHECKED)
            continue;
        bool ok = run_case(&cases[i], true);
        CHECK(ok);
        printf("  %-52s %s\n", cases[i].name, ok ? "reported" : "NOT REPORTED");
    }
}

/* A bp_buf released twice: checked builds see the count at 0; ASan builds report the access
 * to the freed (poisoned) header first; release builds do not look. */
static void test_buf_released_twice(void)
{
    static const misuse asan = {.name = "bp_buf released twice (ASan)",
                                .setup = setup_buf,
                                .act = act_release_twice,
                                .words = "AddressSanitizer: use-after-poison|bp_buf_release",
                                .tool = true};
    static const misuse checked = {.name = "bp_buf released twice",
                                   .setup = setup_buf,
                                   .act = act_release_twice,
                                   .words = "bp_buf_release|release of a released buffer"};
    if (BP_ASAN)
        CHECK(run_case(&asan, true));
    else if (BP_CHECKED)
        CHECK(run_case(&checked, true));
}

/* ---- the checker's own test ------------------------------------------------------------- */

static void act_nothing(ctx *c)
{
    (void)c;
}

static void act_valid_free(ctx *c)
{
    bp_free(c->victim);
}

static void act_abort_silently(ctx *c)
{
    (void)c;
    abort();
}

static void act_report_other(ctx *c)
{
    /* bufpool's words and the right signal, but the neighbour's address */
    fprintf(stderr, "bufpool: bp_free(%p): double free (fake)\n", c->keep[0]);
    abort();
}

static void act_fake_report(ctx *c)
{
    fprintf(stderr, "bufpool: bp_free(%p): double free (fake)\n", c->victim);
    abort();
}

static void act_exit_after_report(ctx *c)
{
    fprintf(stderr, "bufpool: bp_free(%p): double free (fake)\n", c->victim);
    _exit(0);
}

/* The checker rejects children that do not abort with the report, and accepts one that
 * does. */
static void test_checker(void)
{
    static const misuse bad[] = {
        CASE("a child that does nothing", NULL, setup_small, act_nothing, DOUBLE),
        CASE("a child that frees validly", NULL, setup_small, act_valid_free, DOUBLE),
        CASE("a child that aborts silently", NULL, setup_small, act_abort_silently, DOUBLE),
        CASE("a child that names another address", NULL, setup_small, act_report_other, DOUBLE),
        CASE("a child that reports but exits 0", NULL, setup_small, act_exit_after_report, DOUBLE),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool ok = run_case(&bad[i], false);
        CHECK(!ok);
        if (ok)
            fprintf(stderr, "  the checker accepted %s\n", bad[i].name);
    }
    static const misuse good =
        CASE("a child that reports and aborts", NULL, setup_small, act_fake_report, DOUBLE);
    CHECK(run_case(&good, true));
}

int main(void)
{
    RUN(test_checker);
    RUN(test_misuse_reported);
    RUN(test_buf_released_twice);
    return test_report();
}
