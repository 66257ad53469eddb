/* subpage.c — one run cut into equal elements of a small class: its free-element bitmap,
 * and its place in the arena's pool of subpages with free elements for that class. */
#include "subpage.h"

#include <string.h>

size_t bp_subpage_slot_size(size_t page_size)
{
    size_t max_elems = page_size >> BP_LOG2_QUANTUM;
    return bp_align_up(sizeof(bp_subpage) + max_elems / 64 * sizeof(uint64_t), 16);
}

void bp_subpage_init(bp_subpage *sp, bp_chunk *chunk, uintptr_t run_base, uint32_t run_offset,
                     unsigned cls, const bp_size_classes *sc)
{
    uint32_t elems = sc->run_elems[cls];
    sp->link.prev = sp->link.next = NULL;
    sp->chunk = chunk;
    sp->run_base = run_base;
    sp->run_offset = run_offset;
    sp->run_pages = sc->run_pages[cls];
    sp->elem_size = sc->size[cls];
    sp->div_magic = sc->div_magic[cls];
    sp->elem_count = (uint16_t)elems;
    sp->free_count = (uint16_t)elems;
    sp->words = (uint16_t)((elems + 63) / 64);
    sp->search_word = 0;
    sp->class_index = (uint8_t)cls;
    sp->in_pool = false;
    for (uint32_t w = 0; w < sp->words; w++) {
        uint32_t left = elems - w * 64;
        sp->free_bits[w] = left >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << left) - 1;
    }
}

uint32_t bp_subpage_take(bp_subpage *sp)
{
    bp_assert(sp->free_count > 0);
    uint32_t w = sp->search_word;
    while (sp->free_bits[w] == 0)
        w++;
    uint64_t bits = sp->free_bits[w];
    uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(bits);
    sp->free_bits[w] = bits & (bits - 1);
    sp->search_word = (uint16_t)w;
    sp->free_count--;
    return idx;
}

long bp_subpage_index_of(const bp_subpage *sp, uintptr_t p)
{
    uint64_t offset = p - sp->run_base;
    uint64_t idx = (offset * sp->div_magic) >> 32;
    if (idx >= sp->elem_count || idx * sp->elem_size != offset)
        return -1;
    return (long)idx;
}

void bp_subpage_give(bp_subpage *sp, uint32_t idx)
{
    bp_assert(idx < sp->elem_count && !bp_subpage_is_free(sp, idx));
    sp->free_bits[idx >> 6] |= (uint64_t)1 << (idx & 63);
    sp->free_count++;
    if ((idx >> 6) < sp->search_word)
        sp->search_word = (uint16_t)(idx >> 6);
}

void bp_subpage_pool_init(bp_subpage_link *head)
{
    head->prev = head->next = (bp_subpage *)head;
}

/* New and newly non-full subpages go to the front: the next allocation takes them. */
void bp_subpage_pool_push(bp_subpage_link *head, bp_subpage *sp)
{
    bp_assert(!sp->in_pool);
    bp_subpage *first = head->next;
    sp->link.prev = (bp_subpage *)head;
    sp->link.next = first;
    first->link.prev = sp;
    head->next = sp;
    sp->in_pool = true;
}

void bp_subpage_pool_remove(bp_subpage *sp)
{
    bp_assert(sp->in_pool);
    sp->link.prev->link.next = sp->link.next;
    sp->link.next->link.prev = sp->link.prev;
    sp->link.prev = sp->link.next = NULL;
    sp->in_pool = false;
}

int bp_subpage_check(const bp_subpage *sp)
{
    int problems = 0;
    uint32_t free_count = 0;
    for (uint32_t w = 0; w < sp->words; w++) {
        free_count += (uint32_t)__builtin_popcountll(sp->free_bits[w]);
        if (w < sp->search_word && sp->free_bits[w] != 0) {
            bp_message("check: subpage at page %u: free element below search word %u",
                       sp->run_offset, sp->search_word);
            problems++;
        }
    }
    uint32_t tail = sp->elem_count % 64;
    if (tail != 0 && (sp->free_bits[sp->words - 1] >> tail) != 0) {
        bp_message("check: subpage at page %u: free bits past element %u", sp->run_offset,
                   sp->elem_count);
        problems++;
    }
    if (free_count != sp->free_count) {
        bp_message("check: subpage at page %u: %u free bits, free_count %u", sp->run_offset,
                   free_count, sp->free_count);
        problems++;
    }
    if (sp->in_pool != (sp->free_count > 0)) {
        bp_message("check: subpage at page %u: in_pool %d with %u free", sp->run_offset,
                   sp->in_pool, sp->free_count);
        problems++;
    }
    return problems;
}
