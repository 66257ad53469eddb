/* fastpath.c — alloc+free pairs of one size in a tight loop, through bufpool or through the
 * process's malloc; scripts/callgrind.sh counts the instructions one pair costs. */
#include "bufpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "bp") != 0 && strcmp(argv[1], "malloc") != 0)) {
        fprintf(stderr, "usage: %s bp|malloc SIZE ITERATIONS\n", argv[0]);
        return 2;
    }
    int use_bp = strcmp(argv[1], "bp") == 0;
    size_t size = strtoull(argv[2], NULL, 0);
    long iterations = strtol(argv[3], NULL, 0);
    bp_pool *pool = use_bp ? bp_pool_default() : NULL;
    /* one pair outside the loop, so first-use set-up is not counted in the loop */
    void *warm = use_bp ? bp_alloc(pool, size) : malloc(size);
    if (use_bp)
        bp_free(warm);
    else
        free(warm);
    /* The block escapes through the empty asm, so neither call can be elided. */
    if (use_bp) {
        for (long i = 0; i < iterations; i++) {
            void *p = bp_alloc(pool, size);
            __asm__ volatile("" : : "r"(p) : "memory");
            bp_free(p);
        }
    } else {
        for (long i = 0; i < iterations; i++) {
            void *p = malloc(size);
            __asm__ volatile("" : : "r"(p) : "memory");
            free(p);
        }
    }
    return 0;
}
