/* test_shim_fork.c — fork() under the malloc library: the parent forks again and again while
 * three other threads allocate and free; each child allocates, frees and exits cleanly (a
 * lock left held by a thread that does not exist in the child would hang it: the alarm
 * turns that into a failure). Run under LD_PRELOAD by ctest with BUFPOOL_CONF=arenas:1, so
 * that every thread shares the arena whose lock the children need, and with sizes above the
 * thread caches' limit, so that lock is held often. */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *keep[64] = {0};
    while (!stop) {
        for (int i = 0; i < 64; i++) {
            seed = seed * 1103515245 + 12345;
            free(keep[i]);
            keep[i] = malloc(40000 + seed % 300000);
            memset(keep[i], 1, 1);
        }
    }
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    return NULL;
}

static int child(void)
{
    alarm(10);
    void *p[1000];
    for (int i = 0; i < 1000; i++) {
        p[i] = malloc(40000 + (size_t)i * 613 % 300000);
        if (p[i] == NULL)
            return 1;
        memset(p[i], 2, 1);
    }
    for (int i = 0; i < 1000; i++)
        free(p[i]);
    return 0;
}

int main(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    int clean = 0, forks = 200;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0)
            _exit(child());
        int status;
        waitpid(pid, &status, 0);
        clean += WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            fprintf(stderr, "child %d: status %#x\n", i, status);
    }
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(clean, forks);
    printf("%d forks under allocation traffic, %d children exited cleanly\n", forks, clean);
    return test_report();
}
