/* stats.c — pool statistics: the snapshot (bp_pool_stats), its text and JSON forms, an SVG
 * picture of every chunk's pages, and the report BUFPOOL_CONF's stats_print asks for at exit. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "front.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ---- the snapshot ----------------------------------------------------------------------- */

static void chunk_into(const bp_chunk *chunk, bp_stats *st, bp_stats_list *list)
{
    size_t page = (size_t)1 << chunk->page_shift;
    if (list != NULL) {
        list->chunks++;
        list->free_bytes += (uint64_t)chunk->free_pages * page;
        list->used_bytes += (uint64_t)(chunk->npages - chunk->free_pages) * page;
    }
    st->chunks++;
    st->dirty_bytes += (size_t)chunk->dirty_pages * page;
    bp_chunk_run run;
    for (uint32_t next = 0; bp_chunk_next_run(chunk, &next, &run);) {
        if (run.subpage != NULL) {
            bp_stats_class *c = &st->class_stats[run.subpage->class_index];
            c->subpages++;
            c->elements += run.subpage->elem_count;
            c->free_elements += run.subpage->free_count;
        }
    }
}

/* Under the arena's lock: its counters, added to the pool's. */
static void counters_into(const bp_arena *arena, bp_stats *st)
{
    const bp_arena_counters *in = &arena->counters;
    bp_stats *out = st;
    BP_ARENA_TOTALS(BP_TOTAL_ADD)
    for (unsigned cls = 0; cls < arena->engine->sc.nclasses && cls < BP_STATS_CLASSES; cls++) {
        const bp_class_counters *c = &in->classes[cls];
        bp_stats_class_ops *ops = &st->class_ops[cls];
        uint64_t hits = __atomic_load_n(&c->cache_hits, __ATOMIC_RELAXED);
        ops->program_allocations += hits + c->allocs - c->cache_fills;
        ops->arena_allocations += c->allocs;
        ops->arena_frees += c->frees;
        ops->cache_fills += c->cache_fills;
        ops->program_frees += __atomic_load_n(&c->program_frees, __ATOMIC_RELAXED);
    }
}

static void arena_into(bp_arena *arena, bp_stats *st, unsigned index)
{
    bp_lock_acquire(&arena->lock);
    const bp_arena_counters *k = &arena->counters;
    counters_into(arena, st);
    st->retained_chunks += arena->nretained;
    uint32_t chunks_before = st->chunks;
    for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);)
        chunk_into(w.chunk, st, w.list < BP_NLISTS ? &st->lists[w.list] : NULL);
    for (unsigned cls = 0; cls < arena->engine->sc.nclasses; cls++)
        st->run_cache_bytes += (size_t)arena->run_cache[cls].count * arena->engine->sc.size[cls];
    if (index < BP_STATS_ARENAS) {
        bp_stats_arena *a = &st->arena_stats[index];
        a->threads = __atomic_load_n(&arena->bound_threads, __ATOMIC_RELAXED);
        a->allocations = k->alloc_small + k->alloc_normal + k->alloc_huge;
        a->frees = k->free_small + k->free_normal + k->free_huge;
        a->active_bytes = k->active_bytes;
        a->chunk_bytes = k->chunk_bytes;
        a->huge_bytes = k->huge_bytes;
        a->chunks = st->chunks - chunks_before;
        a->retained_chunks = arena->nretained;
    }
    /* counts, not a walk: safe under traffic; read under the lock, so no block can leave the
     * bitmaps meanwhile and the transfer caches hold only blocks active_bytes counted */
    st->transfer_bytes += bp_arena_transfer_bytes(arena);
    bp_lock_release(&arena->lock);
}

/* The configuration part and the tables' fixed columns. */
static void describe_pool(bp_pool *pool, bp_stats *out)
{
    out->page_size = pool->engine.page_size;
    out->chunk_size = pool->engine.chunk_size;
    out->arenas = pool->narenas;
    out->cache_bound_bytes = pool->cache_bound_bytes;
    out->classes = pool->engine.sc.nclasses;
    for (int i = 0; i < BP_NLISTS; i++) {
        const bp_chunk_list *l = &pool->arenas[0].lists[i];
        out->lists[i].name = l->name;
        out->lists[i].min_usage = BP_MAX(l->min_usage, 0);
        out->lists[i].max_usage = BP_MIN(l->max_usage, 100);
    }
    for (unsigned cls = 0; cls < pool->engine.sc.nclasses && cls < BP_STATS_CLASSES; cls++) {
        out->class_stats[cls].size = pool->engine.sc.size[cls];
        out->class_stats[cls].small = bp_class_is_small(&pool->engine.sc, cls);
        out->class_stats[cls].cached = bp_tcache_cached_class(pool, cls);
    }
}

static void fill_stats(bp_pool *pool, bp_stats *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof(bp_stats);
    out->version = BP_STATS_VERSION;
    describe_pool(pool, out);
    for (unsigned i = 0; i < bp_pool_arenas_ready(pool); i++) {
        arena_into(&pool->arenas[i], out, i);
        out->threads += __atomic_load_n(&pool->arenas[i].bound_threads, __ATOMIC_RELAXED);
    }
    out->active_blocks = out->alloc_small + out->alloc_normal + out->alloc_huge - out->free_small -
                         out->free_normal - out->free_huge;
    /* the pool's own figure: the arenas, read one after another, may hold blocks freed and
     * mapped meanwhile, which no moment of the pool ever held at once */
    out->mapped_bytes = __atomic_load_n(&pool->engine.memory.counted, __ATOMIC_RELAXED);
    /* this thread's hits and frees not yet in the arenas */
    uint64_t my_hits[BP_MAX_CLASSES] = {0}, my_frees[BP_MAX_CLASSES] = {0};
    bp_tcache_stats(pool, &out->cache_hits, &out->cached_bytes);
    bp_tcache_class_counts(pool, my_hits, my_frees);
    out->program_allocations = out->alloc_huge;
    out->program_frees = out->free_huge;
    for (unsigned cls = 0; cls < pool->engine.sc.nclasses && cls < BP_STATS_CLASSES; cls++) {
        out->class_ops[cls].program_allocations += my_hits[cls];
        out->class_ops[cls].program_frees += my_frees[cls];
        out->program_allocations += out->class_ops[cls].program_allocations;
        out->program_frees += out->class_ops[cls].program_frees;
    }
}

#define STATS_V1_SIZE offsetof(bp_stats, program_allocations)

int bp_pool_stats(bp_pool *pool, bp_stats *out)
{
    bp_pool_check_live(pool, "bp_pool_stats");
    size_t size = out->struct_size;
    if (size < STATS_V1_SIZE)
        return BP_EINVAL;
    if (size >= sizeof(bp_stats)) {
        fill_stats(pool, out);
        return BP_OK;
    }
    bp_stats full; /* a caller built against version 1 gets its part */
    fill_stats(pool, &full);
    full.struct_size = STATS_V1_SIZE;
    full.version = 1;
    memcpy(out, &full, STATS_V1_SIZE);
    return BP_OK;
}

/* ---- every chunk, copied out under the locks -------------------------------------------- */

/* What a page of a chunk holds, for the picture: a code per page. */
enum { PAGE_PURGED, PAGE_FREE, PAGE_RUN, PAGE_SUBPAGE /* + the subpage's class */ };

/* One chunk as its arena's lock saw it; page[] (npages codes) only in a picture's snapshot. */
typedef struct chunk_shot {
    uint32_t record_size; /* bytes of this record, page codes and padding included */
    uint32_t npages;
    unsigned arena, usage;
    const char *list; /* a list's name, or "retained" */
    uintptr_t base;
    size_t free_bytes, dirty_bytes;
    uint8_t page[];
} chunk_shot;

/* Records of every chunk, in arena and list order, in memory of its own: written to a stream
 * only after every lock is released. Invariant: records tile mem[0, used), used <= cap. */
typedef struct heap_shot {
    unsigned char *mem;
    size_t cap, used;
    unsigned chunks;
    bool pages; /* records carry page codes */
} heap_shot;

static uint32_t record_size(const bp_chunk *chunk, bool pages)
{
    size_t bytes = sizeof(chunk_shot) + (pages ? chunk->npages : 0);
    return (uint32_t)bp_align_up(bytes, _Alignof(chunk_shot));
}

/* Page codes by walking the runs (bp_chunk_next_run):
 * a subpage run's every page gets its class, whichever page a reader starts from. */
static void page_codes(const bp_chunk *chunk, uint8_t *code)
{
    bp_chunk_run run;
    for (uint32_t next = 0; bp_chunk_next_run(chunk, &next, &run);) {
        for (uint32_t p = run.offset; p < run.offset + run.pages; p++) {
            bool dirty = (chunk->dirty[p >> 6] >> (p & 63)) & 1;
            uint8_t c = dirty ? PAGE_FREE : PAGE_PURGED;
            if (run.subpage != NULL)
                c = (uint8_t)(PAGE_SUBPAGE + run.subpage->class_index);
            else if (run.used)
                c = PAGE_RUN;
            code[p] = c;
        }
    }
}

static void shot_chunk(heap_shot *hs, const bp_chunk *chunk, unsigned arena, const char *list)
{
    chunk_shot *r = (chunk_shot *)(hs->mem + hs->used);
    r->record_size = record_size(chunk, hs->pages);
    r->npages = hs->pages ? chunk->npages : 0;
    r->arena = arena;
    r->usage = bp_chunk_usage(chunk);
    r->list = list;
    r->base = chunk->base;
    r->free_bytes = (size_t)chunk->free_pages << chunk->page_shift;
    r->dirty_bytes = (size_t)chunk->dirty_pages << chunk->page_shift;
    if (hs->pages) {
        memset(r->page, PAGE_PURGED, chunk->npages);
        page_codes(chunk, r->page);
    }
    hs->used += r->record_size;
    hs->chunks++;
}

/* Bytes the records of the arena's chunks take (under the arena's lock). */
static size_t arena_bytes(const bp_arena *arena, bool pages)
{
    size_t bytes = 0;
    for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);)
        bytes += record_size(w.chunk, pages);
    return bytes;
}

static void arena_shot(heap_shot *hs, const bp_arena *arena)
{
    for (bp_arena_walk w = bp_arena_walk_start(arena); bp_arena_walk_next(&w);)
        shot_chunk(hs, w.chunk, arena->index,
                   w.list < BP_NLISTS ? arena->lists[w.list].name : "retained");
}

/* Mapped through the OS layer, never from a pool: the stream may allocate from this one. */
static bool shot_grow(heap_shot *hs, size_t need)
{
    unsigned char *mem =
        bp_os_scratch_grow(hs->mem, hs->cap, BP_MAX(need, hs->cap * 2), hs->used, &hs->cap);
    if (mem == NULL)
        return false;
    hs->mem = mem;
    return true;
}

static void shot_free(heap_shot *hs)
{
    bp_os_scratch_free(hs->mem, hs->cap);
    hs->mem = NULL;
}

/* Each arena under its own lock; the lock is dropped to grow the memory when the arena's
 * chunks do not fit, then the arena is read again. BP_ENOMEM when the memory was refused. */
static int take_shot(bp_pool *pool, heap_shot *hs, bool pages)
{
    memset(hs, 0, sizeof *hs);
    hs->pages = pages;
    for (unsigned a = 0; a < bp_pool_arenas_ready(pool); a++) {
        bp_arena *arena = &pool->arenas[a];
        for (;;) {
            bp_lock_acquire(&arena->lock);
            size_t need = hs->used + arena_bytes(arena, pages);
            if (need <= hs->cap)
                break;
            bp_lock_release(&arena->lock);
            if (!shot_grow(hs, need)) {
                shot_free(hs);
                return BP_ENOMEM;
            }
        }
        arena_shot(hs, arena);
        bp_lock_release(&arena->lock);
    }
    return BP_OK;
}

static const chunk_shot *shot_at(const heap_shot *hs, size_t off)
{
    return (const chunk_shot *)(hs->mem + off);
}

/* ---- text and JSON ---------------------------------------------------------------------- */

/* Allocations the arenas served to the program directly: uncached classes and threads, huge
 * blocks. The rest of the program's allocations were thread-cache hits. */
static uint64_t direct_allocations(const bp_stats *s)
{
    uint64_t n = s->alloc_huge;
    for (unsigned c = 0; c < s->classes && c < BP_STATS_CLASSES; c++)
        n += s->class_ops[c].arena_allocations - s->class_ops[c].cache_fills;
    return n;
}

static void print_text_totals(const bp_stats *s, FILE *f)
{
    fprintf(f,
            "bufpool stats (version %u): page %zu B, chunk %zu B, %u arenas, %u threads "
            "bound\n",
            s->version, s->page_size, s->chunk_size, s->arenas, s->threads);
    uint64_t direct = direct_allocations(s);
    fprintf(f,
            "%llu allocations by the program: %llu from thread caches, %llu straight from an "
            "arena; %llu frees\n",
            (unsigned long long)s->program_allocations,
            (unsigned long long)(s->program_allocations - direct), (unsigned long long)direct,
            (unsigned long long)s->program_frees);
    fprintf(f, "\narena operations (thread caches refill and give back in batches)\n");
    fprintf(f, "%-12s %14s %14s %14s\n", "", "small", "normal", "huge");
    fprintf(f, "%-12s %14llu %14llu %14llu\n", "blocks out", (unsigned long long)s->alloc_small,
            (unsigned long long)s->alloc_normal, (unsigned long long)s->alloc_huge);
    fprintf(f, "%-12s %14llu %14llu %14llu\n", "blocks back", (unsigned long long)s->free_small,
            (unsigned long long)s->free_normal, (unsigned long long)s->free_huge);
    fprintf(f, "lock acquisitions: %llu handing blocks out, %llu taking them back\n\n",
            (unsigned long long)s->lock_allocs, (unsigned long long)s->lock_frees);
    fprintf(f,
            "thread-cache hits %llu; active %zu B in %llu blocks; mapped %zu B (chunks %zu, "
            "huge %zu)\n",
            (unsigned long long)s->cache_hits, s->active_bytes,
            (unsigned long long)s->active_blocks, s->mapped_bytes, s->chunk_bytes, s->huge_bytes);
    fprintf(f,
            "cached: thread caches %zu B (at most %zu B each), transfer caches %zu B, run caches "
            "%zu B\n",
            s->cached_bytes, s->cache_bound_bytes, s->transfer_bytes, s->run_cache_bytes);
    fprintf(f,
            "memory return: dirty %zu B, purged %llu B, chunks mapped %llu, unmapped %llu, "
            "reused %llu, retained %u\n",
            s->dirty_bytes, (unsigned long long)s->purged_bytes,
            (unsigned long long)s->chunks_mapped, (unsigned long long)s->chunks_unmapped,
            (unsigned long long)s->chunks_reused, s->retained_chunks);
}

static void print_text_lists(const bp_stats *s, FILE *f)
{
    fprintf(f, "\n%-6s %-10s %7s %14s %14s\n", "list", "usage", "chunks", "used B", "free B");
    for (int i = 0; i < BP_NLISTS; i++) {
        const bp_stats_list *l = &s->lists[i];
        char band[16];
        snprintf(band, sizeof band, "%d-%d%%", l->min_usage, l->max_usage);
        fprintf(f, "%-6s %-10s %7u %14llu %14llu\n", l->name, band, l->chunks,
                (unsigned long long)l->used_bytes, (unsigned long long)l->free_bytes);
    }
}

static void print_text_classes(const bp_stats *s, FILE *f)
{
    fprintf(f, "\n%-5s %9s %11s %11s %11s %11s %9s %11s %11s %7s\n", "class", "size", "prog allocs",
            "prog frees", "arena out", "arena back", "subpages", "elements", "free", "cached");
    for (unsigned c = 0; c < s->classes && c < BP_STATS_CLASSES; c++) {
        const bp_stats_class *k = &s->class_stats[c];
        const bp_stats_class_ops *o = &s->class_ops[c];
        if (k->subpages == 0 && k->cached == 0 && o->program_allocations == 0 &&
            o->program_frees == 0 && o->arena_allocations == 0)
            continue;
        fprintf(f, "%-5u %9zu %11llu %11llu %11llu %11llu %9u %11llu %11llu %7llu\n", c, k->size,
                (unsigned long long)o->program_allocations, (unsigned long long)o->program_frees,
                (unsigned long long)o->arena_allocations, (unsigned long long)o->arena_frees,
                k->subpages, (unsigned long long)k->elements, (unsigned long long)k->free_elements,
                (unsigned long long)k->cached);
    }
}

static void print_text_arenas(const bp_stats *s, FILE *f)
{
    fprintf(f, "\n%-5s %7s %12s %12s %14s %14s %7s\n", "arena", "threads", "blocks out",
            "blocks back", "active B", "chunk B", "chunks");
    for (unsigned a = 0; a < s->arenas && a < BP_STATS_ARENAS; a++) {
        const bp_stats_arena *k = &s->arena_stats[a];
        fprintf(f, "%-5u %7u %12llu %12llu %14zu %14zu %7u\n", a, k->threads,
                (unsigned long long)k->allocations, (unsigned long long)k->frees, k->active_bytes,
                k->chunk_bytes, k->chunks);
    }
}

static void print_text(const bp_stats *s, FILE *f)
{
    print_text_totals(s, f);
    print_text_lists(s, f);
    print_text_classes(s, f);
    print_text_arenas(s, f);
}

static void print_json_chunks(const heap_shot *hs, FILE *f)
{
    for (size_t off = 0; off < hs->used; off += shot_at(hs, off)->record_size) {
        const chunk_shot *r = shot_at(hs, off);
        fprintf(f,
                "%s    {\"arena\": %u, \"list\": \"%s\", \"usage\": %u, \"free_bytes\": %zu, "
                "\"dirty_bytes\": %zu}",
                off == 0 ? "" : ",\n", r->arena, r->list, r->usage, r->free_bytes, r->dirty_bytes);
    }
    if (hs->used > 0)
        fprintf(f, "\n");
}

static void print_json_totals(const bp_stats *s, FILE *f)
{
    fprintf(f, "{\n  \"version\": %u,\n  \"page_size\": %zu,\n  \"chunk_size\": %zu,\n", s->version,
            s->page_size, s->chunk_size);
    fprintf(f, "  \"arenas\": %u,\n  \"threads\": %u,\n", s->arenas, s->threads);
    fprintf(f, "  \"program_allocations\": %llu,\n", (unsigned long long)s->program_allocations);
    fprintf(f, "  \"program_frees\": %llu,\n", (unsigned long long)s->program_frees);
    fprintf(f, "  \"cache_bound_bytes\": %zu,\n", s->cache_bound_bytes);
    fprintf(f, "  \"allocations\": {\"small\": %llu, \"normal\": %llu, \"huge\": %llu},\n",
            (unsigned long long)s->alloc_small, (unsigned long long)s->alloc_normal,
            (unsigned long long)s->alloc_huge);
    fprintf(f, "  \"frees\": {\"small\": %llu, \"normal\": %llu, \"huge\": %llu},\n",
            (unsigned long long)s->free_small, (unsigned long long)s->free_normal,
            (unsigned long long)s->free_huge);
    fprintf(f, "  \"lock_acquisitions\": {\"alloc\": %llu, \"free\": %llu},\n",
            (unsigned long long)s->lock_allocs, (unsigned long long)s->lock_frees);
    fprintf(f, "  \"cache_hits\": %llu,\n  \"active_bytes\": %zu,\n  \"active_blocks\": %llu,\n",
            (unsigned long long)s->cache_hits, s->active_bytes,
            (unsigned long long)s->active_blocks);
    fprintf(f, "  \"mapped_bytes\": %zu,\n  \"chunk_bytes\": %zu,\n  \"huge_bytes\": %zu,\n",
            s->mapped_bytes, s->chunk_bytes, s->huge_bytes);
    fprintf(f,
            "  \"cached_bytes\": %zu,\n  \"transfer_bytes\": %zu,\n  \"run_cache_bytes\": %zu,\n",
            s->cached_bytes, s->transfer_bytes, s->run_cache_bytes);
    fprintf(f,
            "  \"memory_return\": {\"dirty_bytes\": %zu, \"purged_bytes\": %llu, "
            "\"chunks_mapped\": %llu, \"chunks_unmapped\": %llu, \"chunks_reused\": %llu, "
            "\"retained_chunks\": %u},\n",
            s->dirty_bytes, (unsigned long long)s->purged_bytes,
            (unsigned long long)s->chunks_mapped, (unsigned long long)s->chunks_unmapped,
            (unsigned long long)s->chunks_reused, s->retained_chunks);
    fprintf(f, "  \"chunks\": %u,\n", s->chunks);
}

static void print_json_lists(const bp_stats *s, FILE *f)
{
    fprintf(f, "  \"lists\": [\n");
    for (int i = 0; i < BP_NLISTS; i++) {
        const bp_stats_list *l = &s->lists[i];
        fprintf(f,
                "    {\"name\": \"%s\", \"min_usage\": %d, \"max_usage\": %d, \"chunks\": %u, "
                "\"used_bytes\": %llu, \"free_bytes\": %llu}%s\n",
                l->name, l->min_usage, l->max_usage, l->chunks, (unsigned long long)l->used_bytes,
                (unsigned long long)l->free_bytes, i + 1 < BP_NLISTS ? "," : "");
    }
    fprintf(f, "  ],\n");
}

static void print_json_classes(const bp_stats *s, FILE *f)
{
    fprintf(f, "  \"classes\": [\n");
    unsigned rows = BP_MIN(s->classes, (unsigned)BP_STATS_CLASSES);
    for (unsigned c = 0; c < rows; c++) {
        const bp_stats_class *k = &s->class_stats[c];
        const bp_stats_class_ops *o = &s->class_ops[c];
        fprintf(f,
                "    {\"class\": %u, \"size\": %zu, \"small\": %s, \"program_allocations\": %llu, "
                "\"program_frees\": %llu, \"arena_allocations\": %llu, \"arena_frees\": %llu, "
                "\"cache_fills\": %llu, "
                "\"subpages\": %u, \"elements\": %llu, \"free_elements\": %llu, \"cached\": "
                "%llu}%s\n",
                c, k->size, k->small ? "true" : "false", (unsigned long long)o->program_allocations,
                (unsigned long long)o->program_frees, (unsigned long long)o->arena_allocations,
                (unsigned long long)o->arena_frees, (unsigned long long)o->cache_fills, k->subpages,
                (unsigned long long)k->elements, (unsigned long long)k->free_elements,
                (unsigned long long)k->cached, c + 1 < rows ? "," : "");
    }
    fprintf(f, "  ],\n");
}

static void print_json_arenas(const bp_stats *s, FILE *f)
{
    fprintf(f, "  \"arena_stats\": [\n");
    unsigned rows = BP_MIN(s->arenas, (unsigned)BP_STATS_ARENAS);
    for (unsigned a = 0; a < rows; a++) {
        const bp_stats_arena *k = &s->arena_stats[a];
        fprintf(f,
                "    {\"arena\": %u, \"threads\": %u, \"allocations\": %llu, \"frees\": %llu, "
                "\"active_bytes\": %zu, \"chunk_bytes\": %zu, \"huge_bytes\": %zu, "
                "\"chunks\": %u, \"retained_chunks\": %u}%s\n",
                a, k->threads, (unsigned long long)k->allocations, (unsigned long long)k->frees,
                k->active_bytes, k->chunk_bytes, k->huge_bytes, k->chunks, k->retained_chunks,
                a + 1 < rows ? "," : "");
    }
    fprintf(f, "  ]\n");
}

static void print_json(const bp_stats *s, const heap_shot *hs, FILE *f)
{
    print_json_totals(s, f);
    print_json_lists(s, f);
    print_json_classes(s, f);
    fprintf(f, "  \"chunk_list\": [\n");
    print_json_chunks(hs, f);
    fprintf(f, "  ],\n");
    print_json_arenas(s, f);
    fprintf(f, "}\n");
}

/* ---- the picture ------------------------------------------------------------------------ */

#define CELL       8
#define COLUMNS    64
#define SVG_WIDTH  (COLUMNS * CELL + 10)
#define KEY_ROW    14
#define KEY_ITEMS  4 /* swatches to a row */
#define BAND_LEFT  60
#define BAND_SCALE 4 /* pixels per percent */

static const char *class_colour(unsigned cls, char *buf, size_t len)
{
    snprintf(buf, len, "hsl(%u,65%%,55%%)", (cls * 47) % 360);
    return buf;
}

/* A page code's colour and its state (the rect's class). */
static const char *page_colour(uint8_t code, char *buf, size_t len, const char **state)
{
    static const char *const states[] = {"purged", "free", "run"};
    static const char *const colours[] = {"#ffffff", "#d9d9d9", "#4e79a7"};
    if (code < PAGE_SUBPAGE) {
        *state = states[code];
        return colours[code];
    }
    *state = "subpage";
    return class_colour(code - PAGE_SUBPAGE, buf, len);
}

static unsigned chunk_height(const chunk_shot *r)
{
    return 16 + (r->npages + COLUMNS - 1) / COLUMNS * CELL + 10;
}

static void svg_chunk(const chunk_shot *r, FILE *f, unsigned *y)
{
    fprintf(f, "<g class=\"chunk\" data-arena=\"%u\" data-list=\"%s\" data-pages=\"%u\">\n",
            r->arena, r->list, r->npages);
    fprintf(f, "<text x=\"0\" y=\"%u\">arena %u, %s, chunk %p: %u%% used</text>\n", *y + 11,
            r->arena, r->list, (void *)r->base, r->usage);
    unsigned top = *y + 16;
    for (uint32_t p = 0; p < r->npages; p++) {
        char buf[32], cls[24] = "";
        const char *state;
        const char *colour = page_colour(r->page[p], buf, sizeof buf, &state);
        if (r->page[p] >= PAGE_SUBPAGE)
            snprintf(cls, sizeof cls, " data-class=\"%u\"", r->page[p] - PAGE_SUBPAGE);
        fprintf(f,
                "<rect class=\"page %s\"%s x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" "
                "fill=\"%s\" stroke=\"#999\" stroke-width=\"0.3\"/>\n",
                state, cls, (p % COLUMNS) * CELL, top + (p / COLUMNS) * CELL, CELL, CELL, colour);
    }
    *y += chunk_height(r);
    fprintf(f, "</g>\n");
}

/* The key's swatches: the three page states, then every class the picture shows. */
typedef struct svg_key {
    bool shown[BP_MAX_CLASSES];
    unsigned items;
} svg_key;

static void key_classes(const heap_shot *hs, svg_key *key)
{
    memset(key, 0, sizeof *key);
    key->items = 3;
    for (size_t off = 0; off < hs->used; off += shot_at(hs, off)->record_size) {
        const chunk_shot *r = shot_at(hs, off);
        for (uint32_t p = 0; p < r->npages; p++) {
            unsigned cls = r->page[p] >= PAGE_SUBPAGE ? r->page[p] - PAGE_SUBPAGE : 0;
            if (r->page[p] >= PAGE_SUBPAGE && !key->shown[cls]) {
                key->shown[cls] = true;
                key->items++;
            }
        }
    }
}

static unsigned key_height(const svg_key *key)
{
    unsigned swatch_rows = (key->items + KEY_ITEMS - 1) / KEY_ITEMS;
    return 20 + swatch_rows * KEY_ROW + 2 * KEY_ROW + BP_NLISTS * KEY_ROW + 10;
}

static void key_swatch(FILE *f, unsigned item, int cls, const char *colour, const char *label)
{
    unsigned x = (item % KEY_ITEMS) * 130, y = 20 + (item / KEY_ITEMS) * KEY_ROW;
    char data[24] = "";
    if (cls >= 0)
        snprintf(data, sizeof data, " data-class=\"%d\"", cls);
    fprintf(f,
            "<rect class=\"swatch\"%s x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"%s\" "
            "stroke=\"#999\" stroke-width=\"0.5\"/>\n",
            data, x, y, colour);
    fprintf(f, "<text x=\"%u\" y=\"%u\">%s</text>\n", x + 14, y + 9, label);
}

/* The chunk lists' usage bands on one 0..100 % scale, so their overlap shows. */
static void key_bands(const bp_stats *s, FILE *f, unsigned y)
{
    fprintf(f,
            "<text x=\"0\" y=\"%u\">chunk lists by usage: the bands overlap, so a chunk near "
            "a boundary</text>\n",
            y + 10);
    fprintf(f, "<text x=\"0\" y=\"%u\">does not move back and forth between two lists</text>\n",
            y + 10 + KEY_ROW);
    y += 2 * KEY_ROW;
    for (int i = 0; i < BP_NLISTS; i++, y += KEY_ROW) {
        const bp_stats_list *l = &s->lists[i];
        unsigned width = (unsigned)BP_MAX((l->max_usage - l->min_usage) * BAND_SCALE, 2);
        fprintf(f, "<text x=\"0\" y=\"%u\">%s</text>\n", y + 9, l->name);
        fprintf(f,
                "<rect class=\"band\" x=\"%d\" y=\"%u\" width=\"%u\" height=\"9\" "
                "fill=\"#9c9ede\"/>\n",
                BAND_LEFT + l->min_usage * BAND_SCALE, y + 1, width);
        fprintf(f, "<text x=\"%d\" y=\"%u\">%d-%d%%</text>\n", BAND_LEFT + 100 * BAND_SCALE + 6,
                y + 9, l->min_usage, l->max_usage);
    }
}

static void svg_key_print(const bp_stats *s, const heap_shot *hs, const svg_key *key, FILE *f)
{
    fprintf(f, "<g class=\"key\">\n");
    fprintf(f,
            "<text x=\"0\" y=\"12\">%u chunks of %zu B; one cell is one page (%zu B), %d to a "
            "row</text>\n",
            hs->chunks, s->chunk_size, s->page_size, COLUMNS);
    key_swatch(f, 0, -1, "#d9d9d9", "free, still backed");
    key_swatch(f, 1, -1, "#ffffff", "free, purged/untouched");
    key_swatch(f, 2, -1, "#4e79a7", "normal run");
    unsigned item = 3;
    for (unsigned cls = 0; cls < BP_MAX_CLASSES; cls++) {
        if (!key->shown[cls])
            continue;
        char colour[32], label[48];
        snprintf(label, sizeof label, "subpages of %u B", (unsigned)s->class_stats[cls].size);
        key_swatch(f, item++, (int)cls, class_colour(cls, colour, sizeof colour), label);
    }
    key_bands(s, f, 20 + (key->items + KEY_ITEMS - 1) / KEY_ITEMS * KEY_ROW);
    fprintf(f, "</g>\n");
}

static void print_svg(const bp_stats *s, const heap_shot *hs, FILE *f)
{
    svg_key key;
    key_classes(hs, &key);
    unsigned height = key_height(&key);
    for (size_t off = 0; off < hs->used; off += shot_at(hs, off)->record_size)
        height += chunk_height(shot_at(hs, off));
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
            "font-family=\"sans-serif\" font-size=\"11\">\n",
            SVG_WIDTH, height);
    svg_key_print(s, hs, &key, f);
    unsigned y = key_height(&key);
    for (size_t off = 0; off < hs->used; off += shot_at(hs, off)->record_size)
        svg_chunk(shot_at(hs, off), f, &y);
    fprintf(f, "</svg>\n");
}

/* Everything is read first, under the locks (the counters by bp_pool_stats, the chunks into
 * a heap_shot), and written after they are released: the stream may allocate from the pool. */
int bp_pool_print_stats(bp_pool *pool, FILE *out, bp_format fmt)
{
    bp_pool_check_live(pool, "bp_pool_print_stats");
    bp_stats s;
    s.struct_size = sizeof s;
    bp_pool_stats(pool, &s);
    heap_shot hs = {0};
    if (fmt != BP_FORMAT_TEXT && take_shot(pool, &hs, fmt == BP_FORMAT_SVG) != BP_OK)
        return BP_ENOMEM;
    if (fmt == BP_FORMAT_SVG)
        print_svg(&s, &hs, out);
    else if (fmt == BP_FORMAT_JSON)
        print_json(&s, &hs, out);
    else
        print_text(&s, out);
    shot_free(&hs);
    return fflush(out) == 0 && !ferror(out) ? BP_OK : BP_EIO;
}

/* BUFPOOL_CONF's stats_print: the statistics of every pool that asked, at exit, each headed
 * by the program and process that printed it (a preloaded script's children all report). A
 * destructor rather than atexit, which may allocate (the malloc library makes its pool inside
 * malloc). */
static void print_if_asked(bp_pool *pool)
{
    if (!pool->config.stats_print)
        return;
    fprintf(stderr, "bufpool: statistics of %s (pid %ld) at exit, pool %p\n",
            program_invocation_short_name, (long)getpid(), (void *)pool);
    bp_pool_print_stats(pool, stderr, BP_FORMAT_TEXT);
}

__attribute__((destructor)) static void stats_at_exit(void)
{
    bp_pool_for_each(print_if_asked);
}
