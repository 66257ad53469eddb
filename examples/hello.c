/* hello.c — a first bufpool program: a pool of its own, blocks of every kind, realloc,
 * aligned blocks, and the default pool that bp_free finds from the pointer alone. */
#include "bufpool.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    bp_config cfg;
    bp_config_init(&cfg); /* defaults, then BUFPOOL_CONF (a bad key is reported, skipped) */
    cfg.arenas = 2;
    bp_pool *pool = bp_pool_new(&cfg);
    if (pool == NULL) { /* the config is good whatever BUFPOOL_CONF says: out of memory */
        perror("bp_pool_new");
        return 1;
    }

    /* small (a subpage element), normal (a run of pages), huge (its own mapping) */
    size_t sizes[] = {100, 64 << 10, 6 << 20};
    const char *kinds[] = {"small", "normal", "huge"};
    for (int i = 0; i < 3; i++) {
        char *p = bp_alloc(pool, sizes[i]);
        if (p == NULL) {
            perror("bp_alloc");
            return 1;
        }
        memset(p, 'x', sizes[i]);
        printf("%-6s %8zu bytes at %p, usable %zu\n", kinds[i], sizes[i], (void *)p,
               bp_usable_size(p));
        bp_free(p); /* the pool is found from the pointer */
    }

    char *s = bp_alloc(pool, 16);
    strcpy(s, "hello, bufpool");
    s = bp_realloc(pool, s, 4000); /* contents move with the block */
    printf("realloc kept \"%s\" (usable %zu)\n", s, bp_usable_size(s));
    bp_free(s);

    void *page = bp_aligned_alloc(pool, 4096, 100);
    printf("aligned to 4096: %s\n", ((unsigned long)page % 4096) == 0 ? "yes" : "no");
    bp_free(page);

    errno = 0;
    if (bp_alloc(pool, (size_t)-1) == NULL && errno == ENOMEM)
        printf("bp_alloc(SIZE_MAX) -> NULL, ENOMEM\n");

    bp_pool_destroy(pool);

    void *d = bp_alloc(bp_pool_default(), 42); /* the process-wide pool */
    bp_free(d);
    return 0;
}
