/* chunk_list.c — an arena's chunks grouped by usage (qInit, q000 .. q100): the bands, and
 * moving a chunk between lists as allocations and frees change its usage. */
#include "chunk_list.h"

static const struct {
    const char *name;
    int min_usage, max_usage;
} bands[BP_NLISTS] = {
    [BP_QINIT] = {"qInit", -1, 25}, [BP_Q000] = {"q000", 1, 50},   [BP_Q025] = {"q025", 25, 75},
    [BP_Q050] = {"q050", 50, 100},  [BP_Q075] = {"q075", 75, 100}, [BP_Q100] = {"q100", 100, 101},
};

void bp_chunk_lists_init(bp_chunk_list lists[BP_NLISTS], uint32_t chunk_pages)
{
    for (int i = 0; i < BP_NLISTS; i++) {
        bp_chunk_list *l = &lists[i];
        l->head = NULL;
        l->nchunks = 0;
        l->name = bands[i].name;
        l->min_usage = bands[i].min_usage;
        l->max_usage = bands[i].max_usage;
        l->next_list = i + 1 < BP_NLISTS ? &lists[i + 1] : NULL;
        /* A chunk in a list with minimum usage m has at most (100 - m)% of its pages free;
         * qInit may hold an entirely free chunk. */
        if (l->min_usage < 0)
            l->max_run_pages = chunk_pages;
        else if (l->min_usage >= 100)
            l->max_run_pages = 0;
        else
            l->max_run_pages = (uint32_t)((uint64_t)chunk_pages * (100 - l->min_usage) / 100);
    }
    lists[BP_QINIT].prev_list = &lists[BP_QINIT];
    lists[BP_Q000].prev_list = NULL;
    for (int i = BP_Q025; i < BP_NLISTS; i++)
        lists[i].prev_list = &lists[i - 1];
}

static void link_head(bp_chunk_list *list, bp_chunk *chunk)
{
    chunk->list = list;
    bp_list_push(&list->head, chunk, prev, next);
    list->nchunks++;
}

void bp_chunk_list_remove(bp_chunk_list *list, bp_chunk *chunk)
{
    bp_assert(chunk->list == list);
    bp_list_unlink(&list->head, chunk, prev, next);
    chunk->prev = chunk->next = NULL;
    chunk->list = NULL;
    list->nchunks--;
}

void bp_chunk_list_add(bp_chunk_list *list, bp_chunk *chunk)
{
    while ((int)bp_chunk_usage(chunk) >= list->max_usage && list->next_list != NULL)
        list = list->next_list;
    link_head(list, chunk);
}

void bp_chunk_list_after_alloc(bp_chunk *chunk)
{
    bp_chunk_list *list = chunk->list;
    if ((int)bp_chunk_usage(chunk) < list->max_usage)
        return;
    bp_chunk_list_remove(list, chunk);
    bp_chunk_list_add(list->next_list, chunk);
}

bool bp_chunk_list_after_free(bp_chunk *chunk)
{
    bp_chunk_list *list = chunk->list;
    int usage = (int)bp_chunk_usage(chunk);
    if (usage >= list->min_usage)
        return false;
    bp_chunk_list_remove(list, chunk);
    for (;;) {
        bp_chunk_list *prev = list->prev_list;
        if (prev == NULL)
            return true; /* emptied out of q000: the caller releases it */
        if (prev == list || usage >= prev->min_usage) {
            link_head(prev, chunk);
            return false;
        }
        list = prev;
    }
}

int bp_chunk_list_check(const bp_chunk_list *list)
{
    int problems = 0;
    uint32_t n = 0;
    const bp_chunk *prev = NULL;
    for (const bp_chunk *c = list->head; c != NULL; prev = c, c = c->next, n++) {
        int usage = (int)bp_chunk_usage(c);
        if (c->list != list || c->prev != prev) {
            bp_message("check: %s: chunk %p badly linked", list->name, (void *)c->base);
            problems++;
        }
        if (usage < list->min_usage || usage >= list->max_usage) {
            bp_message("check: %s [%d, %d): chunk %p at usage %d", list->name, list->min_usage,
                       list->max_usage, (void *)c->base, usage);
            problems++;
        }
        problems += bp_chunk_check(c);
    }
    if (n != list->nchunks) {
        bp_message("check: %s holds %u chunks, counts %u", list->name, n, list->nchunks);
        problems++;
    }
    return problems;
}
