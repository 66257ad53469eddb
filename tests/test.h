/* test.h — the test harness: checks that print both operands and their source, a failure
 * count, and a fixed-seed PRNG that tests print so a failing run can be replayed. */
#ifndef BP_TEST_H
#define BP_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BP_TEST_MIN(a, b) ((a) < (b) ? (a) : (b))

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

/* Integer comparison that prints both values. */
#define CHECK_OP(a, op, b)                                                                         \
    do {                                                                                           \
        test_checks++;                                                                             \
        uintmax_t check_a_ = (uintmax_t)(a), check_b_ = (uintmax_t)(b);                            \
        if (!(check_a_ op check_b_)) {                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s %s %s) failed: %ju vs %ju\n", __FILE__, __LINE__, #a, \
                    #op, #b, check_a_, check_b_);                                                  \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)

/* Stops the test at once: for a state later checks cannot make sense of. Evaluates cond
 * once. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed; stopping\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int before_ = test_failures;                                                               \
        fn();                                                                                      \
        printf("%-40s %s\n", #fn, test_failures == before_ ? "ok" : "FAILED");                     \
    } while (0)

#define RUN_NAMED(label, call)                                                                     \
    do {                                                                                           \
        int before_ = test_failures;                                                               \
        call;                                                                                      \
        printf("%-40s %s\n", label, test_failures == before_ ? "ok" : "FAILED");                   \
    } while (0)

static inline int test_report(void)
{
    printf("%d checks, %d failed\n", test_checks, test_failures);
    return test_failures == 0 ? 0 : 1;
}

/* xorshift64*: fast, deterministic, good enough to drive tests. */
typedef struct test_rng {
    uint64_t s;
} test_rng;

static inline uint64_t test_rand(test_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n). */
static inline uint64_t test_below(test_rng *r, uint64_t n)
{
    return n ? test_rand(r) % n : 0;
}

/* The seed comes from BP_TEST_SEED when set, else the fixed default; it is printed so a
 * failure can be replayed. */
static inline uint64_t test_seed(uint64_t fixed)
{
    const char *env = getenv("BP_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : fixed;
    printf("seed %#" PRIx64 " (replay with BP_TEST_SEED=%#" PRIx64 ")\n", seed, seed);
    return seed ? seed : 1;
}

#endif /* BP_TEST_H */
