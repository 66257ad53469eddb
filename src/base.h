/* base.h — what every file of the library uses: build variants, branch hints,
 * assertions, arithmetic helpers, the clock, and messages that never allocate (os.c). */
#ifndef BP_BASE_H
#define BP_BASE_H

#include "bufpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * Build variants and helpers
 * ------------------------------------------------------------------------------------------ */
#ifndef BP_CHECKED
#define BP_CHECKED 0
#endif

#define bp_likely(x)   __builtin_expect(!!(x), 1)
#define bp_unlikely(x) __builtin_expect(!!(x), 0)
#define bp_noinline    __attribute__((noinline))
#define bp_inline      static inline __attribute__((always_inline))
#define bp_cold        __attribute__((cold, noinline))
#define bp_hidden      __attribute__((visibility("hidden")))

/* Assertions on internal state. Active in checked builds only; never allocate. */
#if BP_CHECKED
#define bp_assert(cond) ((cond) ? (void)0 : bp_assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define bp_assert(cond) ((void)0)
#endif

#define BP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BP_MAX(a, b) ((a) > (b) ? (a) : (b))

bp_inline unsigned bp_log2(size_t x) /* floor(log2(x)), x > 0 */
{
    return (unsigned)(63 - __builtin_clzll((unsigned long long)x));
}
bp_inline bool bp_is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}
bp_inline size_t bp_align_up(size_t x, size_t align) /* align: power of two */
{
    return (x + align - 1) & ~(align - 1);
}
/* Intrusive doubly linked lists, NULL-terminated, with a head pointer: `prev` and `next` name
 * the members a list links through (a struct may be on several lists). Push at the head and
 * unlink anywhere, O(1) each. head and node are evaluated more than once: pass plain names.
 * Invariant: *head == NULL or (*head)->prev == NULL; x->next->prev == x whenever x->next. */
#define bp_list_push(head, node, prev, next)                                                       \
    do {                                                                                           \
        (node)->prev = NULL;                                                                       \
        (node)->next = *(head);                                                                    \
        if (*(head) != NULL)                                                                       \
            (*(head))->prev = (node);                                                              \
        *(head) = (node);                                                                          \
    } while (0)
#define bp_list_unlink(head, node, prev, next)                                                     \
    do {                                                                                           \
        if ((node)->prev != NULL)                                                                  \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            *(head) = (node)->next;                                                                \
        if ((node)->next != NULL)                                                                  \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)

/* Monotonic milliseconds, coarse (a few ms): what the decay and idle rules are measured in. */
bp_inline uint64_t bp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* printf-style message on stderr, one line prefixed "bufpool: PROGRAM[PID]: ", formatted on
 * the stack (no allocation, no stdio: it may run inside malloc). */
void bp_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* That prefix, NUL-terminated in buf (len > 0), for reports written elsewhere; its length. */
int bp_message_prefix(char *buf, size_t len);
_Noreturn void bp_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void bp_assert_fail(const char *cond, const char *file, int line, const char *func);

#endif /* BP_BASE_H */
