/* main.c — a program built against an installed bufpool (pkg-config and find_package, shared
 * and static): a pool, a block, a buffer and a statistics snapshot. Prints "installed 9". */
#include <bufpool.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    bp_pool *pool = bp_pool_new(NULL);
    char *p = pool != NULL ? bp_alloc(pool, 100) : NULL;
    bp_buf *b = pool != NULL ? bp_buf_new(pool, 16, 0) : NULL;
    if (p == NULL || b == NULL) {
        perror("bufpool");
        return 1;
    }
    strcpy(p, "installed");
    if (bp_buf_write_bytes(b, p, strlen(p)) != BP_OK)
        return 1;
    bp_stats s = {.struct_size = sizeof s};
    if (bp_pool_stats(pool, &s) != 0 || s.version != BP_STATS_VERSION || s.active_blocks < 2)
        return 1;
    printf("%s %zu\n", p, bp_buf_readable(b));
    bp_buf_release(b);
    bp_free(p);
    bp_pool_destroy(pool);
    return 0;
}
