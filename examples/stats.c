/* stats.c — what a pool looks like after some traffic: the statistics as text (to stdout),
 * and an SVG picture of every chunk's pages, with its key, written to the path given (default
 * heap.svg: the README's docs/heap.svg is this program's output). */
#include "bufpool.h"

#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *svg = argc > 1 ? argv[1] : "heap.svg";
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 1;
    cfg.chunk_size = 1 << 20; /* small chunks make a readable picture */
    bp_pool *pool = bp_pool_new(&cfg);
    if (pool == NULL) {
        perror("bp_pool_new");
        return 1;
    }
    static void *blocks[1200];
    uint64_t x = 42;
    for (int i = 0; i < 1200; i++) { /* mixed sizes, then every third one freed */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = (x >> 33) % 4 == 0 ? 16 + (x >> 40) % 60000 : 16 + (x >> 40) % 2000;
        blocks[i] = bp_alloc(pool, size);
    }
    for (int i = 0; i < 1200; i += 3)
        bp_free(blocks[i]);
    bp_thread_flush(pool);
    bp_pool_print_stats(pool, stdout, BP_FORMAT_TEXT);
    FILE *f = fopen(svg, "w");
    if (f == NULL || bp_pool_print_stats(pool, f, BP_FORMAT_SVG) != 0) {
        perror(svg);
        return 1;
    }
    fclose(f);
    printf("\nwrote %s\n", svg);
    bp_pool_destroy(pool);
    return 0;
}
