/* fuzz_conf.c — libFuzzer target: any bytes as a BUFPOOL_CONF string. Parsing never crashes,
 * and whatever it says the resulting config makes a pool (bad keys, values and page/chunk
 * combinations keep their defaults): only ENOMEM may refuse it. The pool then allocates and
 * is destroyed. Run it with -close_fd_mask=2: the warnings are expected. */
#include "front.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char conf[512];
    if (n >= sizeof conf)
        n = sizeof conf - 1;
    memcpy(conf, data, n);
    conf[n] = '\0';
    bp_config cfg;
    bp_config_defaults(&cfg);
    bp_options_apply(&cfg, conf, "fuzz");
    if (cfg.arenas > 8)
        cfg.arenas = 8; /* keep each input cheap */
    if (cfg.memory_limit != 0 && cfg.memory_limit < ((size_t)1 << 20))
        cfg.memory_limit = 0;
    errno = 0;
    bp_pool *pool = bp_pool_new(&cfg);
    if (pool == NULL) {
        if (errno != ENOMEM) /* EINVAL: parsing let through a config bp_pool_new refuses */
            __builtin_trap();
        return 0;
    }
    void *p = bp_alloc(pool, 1000), *q = bp_alloc(pool, cfg.chunk_size + 1);
    bp_free(p);
    bp_free(q);
    if (bp_pool_check(pool) != 0)
        __builtin_trap();
    bp_pool_destroy(pool);
    return 0;
}
