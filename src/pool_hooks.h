/* pool_hooks.h — the one hook bp_buf (src/buf) has into pools beyond the public API: the pool
 * of a block, the leak level, and a word of state per pool with a call at its destroy. */
#ifndef BP_POOL_HOOKS_H
#define BP_POOL_HOOKS_H

#include "base.h"

/* The pool a live block belongs to: p is the address bp_alloc gave (bp_buf headers are). */
bp_pool *bp_pool_of_block(const void *p);
/* The pool's leak_level (bp_config). */
int bp_pool_leak_level(const bp_pool *pool);
/* The buffer layer's state for a pool: NULL until bp_pool_attach_state set it. */
void *bp_pool_state(const bp_pool *pool);
/* Sets the pool's state when it has none (one CAS): true, or false with nothing changed when
 * another thread set one first. bp_pool_destroy then calls `destroy` once with it, before it
 * takes anything apart; `destroy` is the same function for every pool (one buffer layer). */
bool bp_pool_attach_state(bp_pool *pool, void *state, void (*destroy)(bp_pool *pool, void *state));

#endif /* BP_POOL_HOOKS_H */
