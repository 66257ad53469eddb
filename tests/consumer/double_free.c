/* double_free.c — a program that frees a block twice, built against the installed checked
 * library (bufpool-checked.pc, bufpool::bufpool_checked). The checked library must stop it at
 * the second bp_free with its report; the line after that call must never be printed. */
#include <bufpool.h>
#include <stdio.h>

int main(void)
{
    bp_pool *pool = bp_pool_new(NULL);
    void *p = pool != NULL ? bp_alloc(pool, 100) : NULL;
    if (p == NULL) {
        perror("bufpool");
        return 1;
    }
    bp_free(p);
    printf("freed once\n");
    fflush(stdout);
    bp_free(p);
    printf("freed twice: the second free was not caught at the call\n");
    return 0;
}
