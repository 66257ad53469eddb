/* test.h — the test harness: checks that print both operands and their source, a failure
 * count, and a fixed-seed PRNG that tests print so a failing run can be replayed. */
#ifndef BP_TEST_H
#define BP_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Whether an integer expression has a signed type (enums with negative values are int). */
#define TEST_IS_SIGNED(x)                                                                          \
    _Generic((x), signed char : 1, short : 1, int : 1, long : 1, long long : 1, default : 0)

/* Integer comparison that prints both values: as signed numbers when both operands are
 * signed (BP_E* codes, ssize_t results), else as unsigned ones (sizes, addresses). */
#define CHECK_OP(a, op, b)                                                                         \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (TEST_IS_SIGNED(a) && TEST_IS_SIGNED(b)) {                                              \
            intmax_t check_a_ = (intmax_t)(a), check_b_ = (intmax_t)(b);                           \
            if (!(check_a_ op check_b_)) {                                                         \
                test_failures++;                                                                   \
                fprintf(stderr, "%s:%d: CHECK(%s %s %s) failed: %jd vs %jd\n", __FILE__, __LINE__, \
                        #a, #op, #b, check_a_, check_b_);                                          \
            }                                                                                      \
        } else {                                                                                   \
            uintmax_t check_a_ = (uintmax_t)(a), check_b_ = (uintmax_t)(b);                        \
            if (!(check_a_ op check_b_)) {                                                         \
                test_failures++;                                                                   \
                fprintf(stderr, "%s:%d: CHECK(%s %s %s) failed: %ju vs %ju\n", __FILE__, __LINE__, \
                        #a, #op, #b, check_a_, check_b_);                                          \
            }                                                                                      \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)

/* String comparison that prints both strings (NULL prints as (null)). */
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        test_checks++;                                                                             \
        const char *check_sa_ = (a), *check_sb_ = (b);                                             \
        if (check_sa_ == NULL || check_sb_ == NULL ? check_sa_ != check_sb_                        \
                                                   : strcmp(check_sa_, check_sb_) != 0) {          \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_STR(%s, %s) failed: \"%s\" vs \"%s\"\n", __FILE__,       \
                    __LINE__, #a, #b, check_sa_ ? check_sa_ : "(null)",                            \
                    check_sb_ ? check_sb_ : "(null)");                                             \
        }                                                                                          \
    } while (0)

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

/* Runs fn(arg) in a child process whose stderr goes into out (NUL-terminated); the child
 * exits 0 if fn returns. Returns the child's wait status. For tests that expect an abort or
 * a tool's report. */
static inline int test_in_child(void (*fn)(void *arg), void *arg, char *out, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n < len - 1 && (r = read(fds[0], out + n, len - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

#endif /* BP_TEST_H */
