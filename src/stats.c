/* stats.c — pool statistics: the snapshot (bp_pool_stats), its text and JSON forms, an SVG
 * picture of every chunk's pages, and the report BUFPOOL_CONF's stats_print asks for at exit. */
#include "internal.h"

#include <string.h>

/* ---- the snapshot ----------------------------------------------------------------------- */

static void chunk_into(const bp_chunk *chunk, bp_stats *st, bp_stats_list *list)
{
    const bp_size_classes *sc = &chunk->pool->sc;
    size_t page = (size_t)1 << chunk->page_shift;
    if (list != NULL) {
        list->chunks++;
        list->free_bytes += (uint64_t)chunk->free_pages * page;
        list->used_bytes += (uint64_t)(chunk->npages - chunk->free_pages) * page;
    }
    st->chunks++;
    st->dirty_bytes += (size_t)chunk->dirty_pages * page;
    for (uint32_t off = 0; off < chunk->npages;) {
        uint64_t h = chunk->run_map[off];
        uint32_t pages = bp_handle_pages(h);
        if (pages == 0)
            break;
        if (bp_handle_used(h) && bp_handle_subpage(h)) {
            const bp_subpage *sp = bp_chunk_subpage(chunk, off);
            bp_stats_class *c = &st->class_stats[sp->class_index];
            c->subpages++;
            c->elements += sp->elem_count;
            c->free_elements += sp->free_count;
        }
        off += pages;
    }
    (void)sc;
}

static void arena_into(bp_arena *arena, bp_stats *st, unsigned index)
{
    bp_lock_acquire(&arena->lock);
    const bp_arena_counters *k = &arena->counters;
    st->alloc_small += k->alloc_small;
    st->alloc_normal += k->alloc_normal;
    st->alloc_huge += k->alloc_huge;
    st->free_small += k->free_small;
    st->free_normal += k->free_normal;
    st->free_huge += k->free_huge;
    st->active_bytes += k->active_bytes;
    st->chunk_bytes += k->chunk_bytes;
    st->huge_bytes += k->huge_bytes;
    st->purged_bytes += k->purged_bytes;
    st->chunks_mapped += k->chunks_mapped;
    st->chunks_unmapped += k->chunks_unmapped;
    st->chunks_reused += k->chunks_reused;
    st->retained_chunks += arena->nretained;
    uint32_t chunks_before = st->chunks;
    for (int i = 0; i < BP_NLISTS; i++)
        for (const bp_chunk *c = arena->lists[i].head; c != NULL; c = c->next)
            chunk_into(c, st, &st->lists[i]);
    for (const bp_chunk *c = arena->retained; c != NULL; c = c->next)
        chunk_into(c, st, NULL);
    for (unsigned cls = 0; cls < arena->pool->sc.nclasses; cls++)
        st->run_cache_bytes += (size_t)arena->run_cache[cls].count * arena->pool->sc.size[cls];
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
    bp_lock_release(&arena->lock);
    /* racy by nature (lock-free stacks): exact when no thread pushes or takes meanwhile */
    st->transfer_bytes += bp_arena_transfer_bytes(arena);
}

int bp_pool_stats(bp_pool *pool, bp_stats *out)
{
    if (out->struct_size < sizeof(bp_stats))
        return BP_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof(bp_stats);
    out->version = BP_STATS_VERSION;
    out->page_size = pool->page_size;
    out->chunk_size = pool->chunk_size;
    out->arenas = pool->narenas;
    out->classes = pool->sc.nclasses;
    for (int i = 0; i < BP_NLISTS; i++) {
        const bp_chunk_list *l = &pool->arenas[0].lists[i];
        out->lists[i].name = l->name;
        out->lists[i].min_usage = BP_MAX(l->min_usage, 0);
        out->lists[i].max_usage = BP_MIN(l->max_usage, 100);
    }
    for (unsigned cls = 0; cls < pool->sc.nclasses && cls < BP_STATS_CLASSES; cls++) {
        out->class_stats[cls].size = pool->sc.size[cls];
        out->class_stats[cls].small = bp_class_is_small(&pool->sc, cls);
        out->class_stats[cls].cached = bp_tcache_cached_class(pool, cls);
    }
    for (unsigned i = 0; i < pool->narenas; i++) {
        arena_into(&pool->arenas[i], out, i);
        out->threads += __atomic_load_n(&pool->arenas[i].bound_threads, __ATOMIC_RELAXED);
    }
    out->active_blocks = out->alloc_small + out->alloc_normal + out->alloc_huge - out->free_small -
                         out->free_normal - out->free_huge;
    out->mapped_bytes = out->chunk_bytes + out->huge_bytes;
    bp_tcache_stats(pool, &out->cache_hits, &out->cached_bytes);
    return BP_OK;
}

/* ---- text and JSON ---------------------------------------------------------------------- */

static void print_text(const bp_stats *s, FILE *f)
{
    fprintf(f,
            "bufpool stats (version %u): page %zu B, chunk %zu B, %u arenas, %u threads "
            "bound\n",
            s->version, s->page_size, s->chunk_size, s->arenas, s->threads);
    fprintf(f, "%-10s %14s %14s %14s\n", "", "small", "normal", "huge");
    fprintf(f, "%-10s %14llu %14llu %14llu\n", "allocs", (unsigned long long)s->alloc_small,
            (unsigned long long)s->alloc_normal, (unsigned long long)s->alloc_huge);
    fprintf(f, "%-10s %14llu %14llu %14llu\n", "frees", (unsigned long long)s->free_small,
            (unsigned long long)s->free_normal, (unsigned long long)s->free_huge);
    fprintf(f,
            "thread-cache hits %llu; active %zu B in %llu blocks; mapped %zu B (chunks %zu, "
            "huge %zu)\n",
            (unsigned long long)s->cache_hits, s->active_bytes,
            (unsigned long long)s->active_blocks, s->mapped_bytes, s->chunk_bytes, s->huge_bytes);
    fprintf(f, "cached: thread caches %zu B, transfer caches %zu B, run caches %zu B\n",
            s->cached_bytes, s->transfer_bytes, s->run_cache_bytes);
    fprintf(f,
            "memory return: dirty %zu B, purged %llu B, chunks mapped %llu, unmapped %llu, "
            "reused %llu, retained %u\n",
            s->dirty_bytes, (unsigned long long)s->purged_bytes,
            (unsigned long long)s->chunks_mapped, (unsigned long long)s->chunks_unmapped,
            (unsigned long long)s->chunks_reused, s->retained_chunks);
    fprintf(f, "\n%-6s %-10s %7s %14s %14s\n", "list", "usage", "chunks", "used B", "free B");
    for (int i = 0; i < 6; i++) {
        const bp_stats_list *l = &s->lists[i];
        char band[16];
        snprintf(band, sizeof band, "%d-%d%%", l->min_usage, l->max_usage);
        fprintf(f, "%-6s %-10s %7u %14llu %14llu\n", l->name, band, l->chunks,
                (unsigned long long)l->used_bytes, (unsigned long long)l->free_bytes);
    }
    fprintf(f, "\n%-5s %9s %9s %11s %11s %9s\n", "class", "size", "subpages", "elements", "free",
            "cached");
    for (unsigned c = 0; c < s->classes && c < BP_STATS_CLASSES; c++) {
        const bp_stats_class *k = &s->class_stats[c];
        if (k->subpages == 0 && k->cached == 0)
            continue;
        fprintf(f, "%-5u %9zu %9u %11llu %11llu %9llu\n", c, k->size, k->subpages,
                (unsigned long long)k->elements, (unsigned long long)k->free_elements,
                (unsigned long long)k->cached);
    }
    fprintf(f, "\n%-5s %7s %12s %12s %14s %14s %7s\n", "arena", "threads", "allocs", "frees",
            "active B", "chunk B", "chunks");
    for (unsigned a = 0; a < s->arenas && a < BP_STATS_ARENAS; a++) {
        const bp_stats_arena *k = &s->arena_stats[a];
        fprintf(f, "%-5u %7u %12llu %12llu %14zu %14zu %7u\n", a, k->threads,
                (unsigned long long)k->allocations, (unsigned long long)k->frees, k->active_bytes,
                k->chunk_bytes, k->chunks);
    }
}

/* Every chunk with its list, usage and free bytes (a separate walk: the snapshot keeps
 * per-list sums only). */
static void print_json_chunks(bp_pool *pool, FILE *f)
{
    bool first = true;
    for (unsigned a = 0; a < pool->narenas; a++) {
        bp_arena *arena = &pool->arenas[a];
        bp_lock_acquire(&arena->lock);
        for (int i = 0; i <= BP_NLISTS; i++) {
            const bp_chunk *c = i < BP_NLISTS ? arena->lists[i].head : arena->retained;
            for (; c != NULL; c = c->next) {
                fprintf(f,
                        "%s    {\"arena\": %u, \"list\": \"%s\", \"usage\": %u, \"free_bytes\": "
                        "%zu, \"dirty_bytes\": %zu}",
                        first ? "" : ",\n", a, i < BP_NLISTS ? arena->lists[i].name : "retained",
                        bp_chunk_usage(c), (size_t)c->free_pages << c->page_shift,
                        (size_t)c->dirty_pages << c->page_shift);
                first = false;
            }
        }
        bp_lock_release(&arena->lock);
    }
    if (!first)
        fprintf(f, "\n");
}

static void print_json(bp_pool *pool, const bp_stats *s, FILE *f)
{
    fprintf(f, "{\n  \"version\": %u,\n  \"page_size\": %zu,\n  \"chunk_size\": %zu,\n", s->version,
            s->page_size, s->chunk_size);
    fprintf(f, "  \"arenas\": %u,\n  \"threads\": %u,\n", s->arenas, s->threads);
    fprintf(f, "  \"allocations\": {\"small\": %llu, \"normal\": %llu, \"huge\": %llu},\n",
            (unsigned long long)s->alloc_small, (unsigned long long)s->alloc_normal,
            (unsigned long long)s->alloc_huge);
    fprintf(f, "  \"frees\": {\"small\": %llu, \"normal\": %llu, \"huge\": %llu},\n",
            (unsigned long long)s->free_small, (unsigned long long)s->free_normal,
            (unsigned long long)s->free_huge);
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
    fprintf(f, "  \"chunks\": %u,\n  \"lists\": [\n", s->chunks);
    for (int i = 0; i < 6; i++) {
        const bp_stats_list *l = &s->lists[i];
        fprintf(f,
                "    {\"name\": \"%s\", \"min_usage\": %d, \"max_usage\": %d, \"chunks\": %u, "
                "\"used_bytes\": %llu, \"free_bytes\": %llu}%s\n",
                l->name, l->min_usage, l->max_usage, l->chunks, (unsigned long long)l->used_bytes,
                (unsigned long long)l->free_bytes, i < 5 ? "," : "");
    }
    fprintf(f, "  ],\n  \"classes\": [\n");
    for (unsigned c = 0; c < s->classes && c < BP_STATS_CLASSES; c++) {
        const bp_stats_class *k = &s->class_stats[c];
        fprintf(f,
                "    {\"class\": %u, \"size\": %zu, \"small\": %s, \"subpages\": %u, "
                "\"elements\": %llu, \"free_elements\": %llu, \"cached\": %llu}%s\n",
                c, k->size, k->small ? "true" : "false", k->subpages,
                (unsigned long long)k->elements, (unsigned long long)k->free_elements,
                (unsigned long long)k->cached, c + 1 < s->classes ? "," : "");
    }
    fprintf(f, "  ],\n  \"chunk_list\": [\n");
    print_json_chunks(pool, f);
    fprintf(f, "  ],\n  \"arena_stats\": [\n");
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
    fprintf(f, "  ]\n}\n");
}

/* ---- the picture ------------------------------------------------------------------------ */

#define CELL    8
#define COLUMNS 64

/* A page's state and colour: free (still backed), purged or never touched, a normal run, or
 * a subpage run coloured by its class. */
static const char *page_colour(const bp_chunk *chunk, uint32_t page, char *buf, size_t len,
                               const char **state)
{
    uint64_t h = 0;
    uint32_t first = page;
    while (first > 0 && chunk->run_map[first] == 0)
        first--;
    h = chunk->run_map[first];
    if (!bp_handle_used(h) || first + bp_handle_pages(h) <= page) {
        bool dirty = (chunk->dirty[page >> 6] >> (page & 63)) & 1;
        *state = dirty ? "free" : "purged";
        return dirty ? "#d9d9d9" : "#ffffff";
    }
    if (!bp_handle_subpage(h)) {
        *state = "run";
        return "#4e79a7";
    }
    unsigned cls = bp_chunk_subpage(chunk, first)->class_index;
    *state = "subpage";
    snprintf(buf, len, "hsl(%u,65%%,55%%)", (cls * 47) % 360);
    return buf;
}

static void svg_chunk(const bp_chunk *chunk, unsigned arena, const char *where, FILE *f,
                      unsigned *y)
{
    unsigned rows = (chunk->npages + COLUMNS - 1) / COLUMNS;
    fprintf(f, "<g class=\"chunk\" data-arena=\"%u\" data-list=\"%s\" data-pages=\"%u\">\n", arena,
            where, chunk->npages);
    fprintf(f, "<text x=\"0\" y=\"%u\">arena %u, %s, chunk %p: %u%% used</text>\n", *y + 11, arena,
            where, (void *)chunk->base, bp_chunk_usage(chunk));
    *y += 16;
    for (uint32_t p = 0; p < chunk->npages; p++) {
        char buf[32];
        const char *state;
        const char *colour = page_colour(chunk, p, buf, sizeof buf, &state);
        fprintf(f,
                "<rect class=\"page %s\" x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" "
                "fill=\"%s\" stroke=\"#999\" stroke-width=\"0.3\"/>\n",
                state, (p % COLUMNS) * CELL, *y + (p / COLUMNS) * CELL, CELL, CELL, colour);
    }
    *y += rows * CELL + 10;
    fprintf(f, "</g>\n");
}

static void print_svg(bp_pool *pool, FILE *f)
{
    /* the height is known only after the walk: a generous viewBox, then the real one via a
     * nested <svg> would complicate readers; count first instead */
    unsigned height = 30;
    for (unsigned a = 0; a < pool->narenas; a++) {
        bp_arena *arena = &pool->arenas[a];
        bp_lock_acquire(&arena->lock);
        for (int i = 0; i < BP_NLISTS; i++)
            for (const bp_chunk *c = arena->lists[i].head; c != NULL; c = c->next)
                height += 26 + (c->npages + COLUMNS - 1) / COLUMNS * CELL;
        for (const bp_chunk *c = arena->retained; c != NULL; c = c->next)
            height += 26 + (c->npages + COLUMNS - 1) / COLUMNS * CELL;
        bp_lock_release(&arena->lock);
    }
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
            "font-family=\"sans-serif\" font-size=\"11\">\n",
            COLUMNS * CELL + 10, height);
    fprintf(f, "<text x=\"0\" y=\"12\">pages: grey free, white purged/untouched, blue run, "
               "other colours subpages by class</text>\n");
    unsigned y = 20;
    for (unsigned a = 0; a < pool->narenas; a++) {
        bp_arena *arena = &pool->arenas[a];
        bp_lock_acquire(&arena->lock);
        for (int i = 0; i < BP_NLISTS; i++)
            for (const bp_chunk *c = arena->lists[i].head; c != NULL; c = c->next)
                svg_chunk(c, a, arena->lists[i].name, f, &y);
        for (const bp_chunk *c = arena->retained; c != NULL; c = c->next)
            svg_chunk(c, a, "retained", f, &y);
        bp_lock_release(&arena->lock);
    }
    fprintf(f, "</svg>\n");
}

int bp_pool_print_stats(bp_pool *pool, FILE *out, bp_format fmt)
{
    if (fmt == BP_FORMAT_SVG) {
        print_svg(pool, out);
    } else {
        bp_stats s;
        s.struct_size = sizeof s;
        bp_pool_stats(pool, &s);
        if (fmt == BP_FORMAT_JSON)
            print_json(pool, &s, out);
        else
            print_text(&s, out);
    }
    return fflush(out) == 0 && !ferror(out) ? BP_OK : BP_EIO;
}

/* BUFPOOL_CONF's stats_print: the statistics of every pool that asked, at exit. A destructor
 * rather than atexit, which may allocate (the malloc library makes its pool inside malloc). */
static void print_if_asked(bp_pool *pool)
{
    if (pool->config.stats_print)
        bp_pool_print_stats(pool, stderr, BP_FORMAT_TEXT);
}

__attribute__((destructor)) static void stats_at_exit(void)
{
    bp_pool_for_each(print_if_asked);
}
