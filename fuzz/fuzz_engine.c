/* fuzz_engine.c — libFuzzer target: bytes decoded into engine operations (alloc, calloc,
 * aligned, realloc, free, free_sized, trim, flush) on a small pool, checked against a model
 * of live blocks: every block keeps its fill until freed, usable sizes cover requests, and
 * the invariant walker passes at the end of every input. */
#include "front.h"

#include <string.h>

#define SLOTS 64

typedef struct slot {
    unsigned char *p;
    size_t size;
    unsigned char fill;
} slot;

static bp_pool *pool;

static bool intact(const slot *s)
{
    for (size_t i = 0; i < s->size; i += 1 + s->size / 64)
        if (s->p[i] != s->fill)
            return false;
    return s->size == 0 || s->p[s->size - 1] == s->fill;
}

static size_t take(const uint8_t **d, size_t *n, size_t bytes)
{
    size_t v = 0;
    for (size_t i = 0; i<bytes && * n> 0; i++, (*d)++, (*n)--)
        v = v << 8 | **d;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (pool == NULL) {
        bp_config cfg;
        bp_config_defaults(&cfg);
        cfg.chunk_size = 64 << 10; /* huge blocks from 64 KiB: every path is cheap to reach */
        cfg.arenas = 2;
        cfg.purge_decay_ms = 0;
        pool = bp_pool_new(&cfg);
    }
    slot slots[SLOTS] = {{0}};
    unsigned char fill = 1;
    while (n > 0) {
        unsigned op = (unsigned)take(&data, &n, 1);
        slot *s = &slots[take(&data, &n, 1) % SLOTS];
        size_t size = take(&data, &n, 2) << (op >> 6); /* up to ~ 512 KiB */
        if ((op & 7) <= 3 && s->p == NULL) {
            unsigned char *p;
            if ((op & 7) == 0 || (op & 7) == 1)
                p = bp_alloc(pool, size);
            else if ((op & 7) == 2)
                p = bp_calloc(pool, 1, size);
            else
                p = bp_aligned_alloc(pool, (size_t)1 << (op >> 3 & 15), size);
            if (p == NULL)
                __builtin_trap(); /* nothing here is too large to serve */
            if (bp_usable_size(p) < size)
                __builtin_trap();
            if ((op & 7) == 2)
                for (size_t i = 0; i < size; i++)
                    if (p[i] != 0)
                        __builtin_trap();
            *s = (slot){p, size, fill++};
            memset(p, s->fill, size);
        } else if ((op & 7) == 4 && s->p != NULL) {
            if (!intact(s))
                __builtin_trap();
            unsigned char *p = bp_realloc(pool, s->p, size);
            if (p == NULL)
                __builtin_trap();
            size_t keep = size < s->size ? size : s->size;
            for (size_t i = 0; i < keep; i++)
                if (p[i] != s->fill)
                    __builtin_trap();
            *s = (slot){p, size, s->fill};
            memset(p, s->fill, size);
        } else if (((op & 7) == 5 || (op & 7) == 6) && s->p != NULL) {
            if (!intact(s))
                __builtin_trap();
            if ((op & 7) == 5)
                bp_free(s->p);
            else
                bp_free_sized(s->p, s->size);
            s->p = NULL;
        } else if ((op & 7) == 7) {
            if (op & 8)
                bp_pool_trim(pool);
            else
                bp_thread_flush(pool);
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p != NULL) {
            if (!intact(&slots[i]))
                __builtin_trap();
            bp_free(slots[i].p);
        }
    }
    if (bp_pool_check(pool) != 0)
        __builtin_trap();
    return 0;
}
