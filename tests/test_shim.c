/* test_shim.c — the malloc family of libbufpool-malloc.so, run under LD_PRELOAD (ctest sets
 * it): glibc's semantics at the edges, every posix_memalign power of two, realloc across
 * every class boundary, usable sizes, and C++-style new/delete through malloc. */
#define _GNU_SOURCE
#include "test.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static void test_active(void)
{
    /* 100 bytes round to bufpool's 112-byte class (glibc would say 104) */
    void *p = malloc(100);
    CHECK_EQ(malloc_usable_size(p), 112);
    free(p);
    const char *preload = getenv("LD_PRELOAD");
    CHECK(preload != NULL && strstr(preload, "bufpool-malloc") != NULL);
}

/* Sizes the compiler must not see through (it rejects constant impossible sizes). */
static volatile size_t size_max = SIZE_MAX;
static volatile size_t align_48 = 48;
static volatile size_t align_0 = 0;
static volatile size_t align_2_41 = (size_t)1 << 41;

static void test_edges(void)
{
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    free(a);
    free(b);
    free(NULL);
    CHECK_EQ(malloc_usable_size(NULL), 0);
    errno = 0;
    CHECK(malloc(size_max) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(calloc(size_max / 2, 3) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, size_max / 2, 3) == NULL);
    CHECK_EQ(errno, ENOMEM);
    void *r = realloc(NULL, 50); /* malloc */
    CHECK(r != NULL);
    CHECK(realloc(r, 0) == NULL); /* glibc: frees, returns NULL */
    void *p;
    CHECK_EQ(posix_memalign(&p, align_48 / 16, 10), EINVAL); /* 3 */
    CHECK_EQ(posix_memalign(&p, align_48 / 12, 10), EINVAL); /* 4: not a multiple of 8 */
    errno = 1234;
    CHECK_EQ(posix_memalign(&p, 64, size_max), ENOMEM);
    CHECK_EQ(errno, 1234);
    p = memalign(align_48, 10); /* glibc rounds the alignment up to 64 */
    CHECK(p != NULL && (uintptr_t)p % 64 == 0);
    free(p);
    p = valloc(10);
    CHECK(p != NULL && (uintptr_t)p % 4096 == 0);
    free(p);
    p = pvalloc(10);
    CHECK(p != NULL && (uintptr_t)p % 4096 == 0 && malloc_usable_size(p) >= 4096);
    free(p);
    unsigned char *z = calloc(1000, 7);
    size_t nonzero = 0;
    for (size_t i = 0; i < 7000; i++)
        nonzero += z[i];
    CHECK_EQ(nonzero, 0);
    free(z);
}

static void test_alignments(void)
{
    for (size_t align = sizeof(void *); align <= ((size_t)64 << 20); align <<= 1) {
        size_t sizes[] = {1, 100, align, 3 * align / 2};
        for (size_t i = 0; i < 4; i++) {
            void *p = NULL;
            CHECK_EQ(posix_memalign(&p, align, sizes[i]), 0);
            CHECK(p != NULL && (uintptr_t)p % align == 0);
            CHECK(malloc_usable_size(p) >= sizes[i]);
            memset(p, 0xab, sizes[i]);
            free(p);
        }
        void *q = aligned_alloc(align, align);
        CHECK(q != NULL && (uintptr_t)q % align == 0);
        free(q);
    }
}

/* glibc 2.36 (up to 2.37): aligned_alloc is memalign, so an alignment of 0 or one that is no
 * power of two is served (rounded up to a power of two); past SIZE_MAX / 2 + 1 none is. */
static void test_aligned_alloc_as_glibc_236(void)
{
    void *p = aligned_alloc(align_0, 10);
    CHECK(p != NULL);
    free(p);
    p = aligned_alloc(align_48 / 2, 10); /* 24: rounded up to 32 */
    CHECK(p != NULL && (uintptr_t)p % 32 == 0);
    free(p);
    p = aligned_alloc(align_48, 100); /* 48: rounded up to 64 */
    CHECK(p != NULL && (uintptr_t)p % 64 == 0 && malloc_usable_size(p) >= 100);
    free(p);
    errno = 0;
    CHECK(aligned_alloc(size_max / 2 + 2, 10) == NULL);
    CHECK_EQ(errno, EINVAL);
}

/* A size-0 request with an alignment above the chunk size (4 MiB by default) gets a block of
 * its own: two are different, each has usable bytes, realloc and free work. */
static void test_zero_size_large_alignment(void)
{
    for (size_t align = (size_t)64 << 10; align <= ((size_t)16 << 20); align <<= 1) {
        void *a = NULL, *b = NULL;
        CHECK_EQ(posix_memalign(&a, align, 0), 0);
        CHECK_EQ(posix_memalign(&b, align, 0), 0);
        CHECK(a != NULL && b != NULL && a != b);
        CHECK((uintptr_t)a % align == 0 && (uintptr_t)b % align == 0);
        CHECK(malloc_usable_size(a) > 0);
        void *c = aligned_alloc(align, 0), *d = memalign(align, 0);
        CHECK(c != NULL && d != NULL && c != d && c != a && d != b);
        CHECK((uintptr_t)c % align == 0 && (uintptr_t)d % align == 0);
        memset(a, 0x5a, malloc_usable_size(a));
        unsigned char *r = realloc(a, 100000);
        REQUIRE(r != NULL);
        CHECK(r[0] == 0x5a);
        free(r);
        free(b);
        free(c);
        free(d);
    }
}

/* glibc: a power-of-two alignment it cannot serve is ENOMEM, not EINVAL. */
static void test_alignment_too_large(void)
{
    void *p = NULL;
    CHECK_EQ(posix_memalign(&p, align_2_41, 10), ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(align_2_41, 10) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(memalign(align_2_41, 10) == NULL);
    CHECK_EQ(errno, ENOMEM);
}

/* A misuse report names the call the program made, not bufpool's own. */
static int not_a_block;
static void *volatile foreign = &not_a_block; /* the compiler must not see what it is */

static void free_foreign(void *arg)
{
    (void)arg;
    free(foreign);
}

static void realloc_foreign(void *arg)
{
    (void)arg;
    void *volatile p = realloc(foreign, 100);
    (void)p;
}

static void usable_size_foreign(void *arg)
{
    (void)arg;
    volatile size_t n = malloc_usable_size(foreign);
    (void)n;
}

static void expect_named(void (*fn)(void *), const char *call)
{
    char out[4096], want[64];
    int status = test_in_child(fn, NULL, out, sizeof out);
    snprintf(want, sizeof want, "%s(%p): pointer not allocated by bufpool", call,
             (void *)&not_a_block);
    const char *at = strstr(out, want);
    bool named = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && at != NULL &&
                 (at == out || at[-1] == ' ');
    CHECK(named);
    if (!named)
        fprintf(stderr, "  expected \"%s\" and an abort; status %#x, stderr:\n%s\n", want, status,
                out);
}

static void test_misuse_names_the_call(void)
{
    expect_named(free_foreign, "free");
    expect_named(realloc_foreign, "realloc");
    expect_named(usable_size_foreign, "malloc_usable_size");
}

static void test_realloc_classes(void)
{
    /* grow one block a byte past every size up to 8 MiB, then shrink it back */
    unsigned char *p = NULL;
    size_t have = 0;
    size_t size = 1;
    while (size <= ((size_t)8 << 20)) {
        unsigned char *q = realloc(p, size);
        REQUIRE(q != NULL);
        CHECK(malloc_usable_size(q) >= size);
        for (size_t i = 0; i < have; i += 97)
            if (q[i] != (unsigned char)(i * 7)) {
                CHECK(q[i] == (unsigned char)(i * 7));
                break;
            }
        for (size_t i = have; i < size; i++)
            q[i] = (unsigned char)(i * 7);
        p = q;
        have = size;
        size = malloc_usable_size(q) + 1; /* the next class */
    }
    while (have > 16) {
        have /= 3;
        p = realloc(p, have);
        for (size_t i = 0; i < have; i += 97)
            if (p[i] != (unsigned char)(i * 7)) {
                CHECK(p[i] == (unsigned char)(i * 7));
                break;
            }
    }
    free(p);
}

static void *worker(void *arg)
{
    (void)arg;
    void *keep[100];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 100; i++)
            keep[i] = malloc((size_t)(i * 37 + round) % 5000 + 1);
        for (int i = 0; i < 100; i++)
            free(keep[i]);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, worker, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

int main(void)
{
    RUN(test_active);
    RUN(test_edges);
    RUN(test_alignments);
    RUN(test_aligned_alloc_as_glibc_236);
    RUN(test_zero_size_large_alignment);
    RUN(test_alignment_too_large);
    RUN(test_misuse_names_the_call);
    RUN(test_realloc_classes);
    RUN(test_threads);
    return test_report();
}
