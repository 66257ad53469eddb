/* options.c — the configuration keys in one table: defaults, BUFPOOL_CONF parsing
 * ("key:value,key:value", K/M/G suffixes), the rules a config must meet (each field's range,
 * chunk_size against page_size) and the warnings that name a bad key or value. */
#include "front.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum option_kind { OPT_SIZE, OPT_POW2, OPT_UINT, OPT_INT }; /* POW2: a size, power of two */

typedef struct option {
    const char *name;
    size_t offset; /* in bp_config */
    enum option_kind kind;
    uint64_t min, max; /* accepted range (signed for OPT_INT), for BUFPOOL_CONF and bp_pool_new
                        * alike; fits_page() adds the rule between fields */
} option;

/* clang-format off */
#define OPT(field, kind, min, max) {#field, offsetof(bp_config, field), kind, min, max}
/* clang-format on */

static const option options[] = {
    OPT(page_size, OPT_POW2, 4096, 65536),
    OPT(chunk_size, OPT_POW2, 8192, (uint64_t)1 << 30), /* and fits_page() */
    OPT(arenas, OPT_UINT, 0, 4096),
    OPT(small_cache, OPT_UINT, 0, 32768),
    OPT(normal_cache, OPT_UINT, 0, 32768),
    OPT(max_cached, OPT_SIZE, 0, (uint64_t)1 << 30),
    OPT(cache_bytes, OPT_SIZE, 0, (uint64_t)1 << 30),
    OPT(trim_interval, OPT_UINT, 1, 1u << 30),
    OPT(memory_limit, OPT_SIZE, 0, UINT64_MAX),
    OPT(retained_chunks, OPT_UINT, 0, 1024),
    OPT(purge_decay_ms, OPT_INT, (uint64_t)-1, 3600000), /* -1..1h: INT ranges are signed */
    OPT(huge_cache_bytes, OPT_SIZE, 0, (uint64_t)1 << 40),
    OPT(cache_idle_ms, OPT_UINT, 0, 3600000),
    OPT(background_thread, OPT_INT, 0, 1),
    OPT(leak_level, OPT_INT, 0, 3),
    OPT(stats_print, OPT_INT, 0, 1),
};

void bp_config_defaults(bp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->page_size = 8192;
    cfg->chunk_size = (size_t)4 << 20;
    cfg->arenas = 0;
    cfg->small_cache = 256;
    cfg->normal_cache = 64;
    cfg->max_cached = (size_t)256 << 10;
    cfg->cache_bytes = (size_t)4 << 20;
    cfg->trim_interval = 8192;
    cfg->memory_limit = 0;
    cfg->retained_chunks = 2;
    cfg->purge_decay_ms = 10000;
    cfg->huge_cache_bytes = (size_t)64 << 20;
    cfg->cache_idle_ms = 10000;
    cfg->background_thread = 0;
    cfg->leak_level = 0;
    cfg->stats_print = 0;
    cfg->os = NULL;
}

/* ---- the rules ---------------------------------------------------------------------------- */

/* Whether v (an OPT_INT value sign-extended to 64 bits) lies in the option's range, and for
 * OPT_POW2 is a power of two. */
static bool in_range(const option *opt, uint64_t v)
{
    if (opt->kind == OPT_INT)
        return (int64_t)v >= (int64_t)opt->min && (int64_t)v <= (int64_t)opt->max;
    return v >= opt->min && v <= opt->max && (opt->kind != OPT_POW2 || bp_is_pow2(v));
}

/* "min..max" (or "a power of two in min..max") as the messages print it. */
static const char *range_text(const option *opt, char *buf, size_t len)
{
    if (opt->kind == OPT_INT)
        snprintf(buf, len, "%lld..%lld", (long long)opt->min, (long long)opt->max);
    else
        snprintf(buf, len, "%s%llu..%llu", opt->kind == OPT_POW2 ? "a power of two in " : "",
                 (unsigned long long)opt->min, (unsigned long long)opt->max);
    return buf;
}

/* The rule between fields: a chunk holds 2 to 2^14 pages, as many as a handle's 15-bit run
 * offset and page count can name. */
static bool fits_page(size_t chunk, size_t page)
{
    return chunk >= page << 1 && chunk <= page << 14;
}

static void store(bp_config *cfg, const option *opt, uint64_t v)
{
    char *field = (char *)cfg + opt->offset;
    switch (opt->kind) {
    case OPT_SIZE:
    case OPT_POW2: *(size_t *)field = (size_t)v; break;
    case OPT_UINT: *(unsigned *)field = (unsigned)v; break;
    case OPT_INT: *(int *)field = (int)(int64_t)v; break;
    }
}

/* The field as a 64-bit value (for OPT_INT: sign-extended, compare as int64_t). */
static uint64_t load(const bp_config *cfg, const option *opt)
{
    const char *field = (const char *)cfg + opt->offset;
    switch (opt->kind) {
    case OPT_SIZE:
    case OPT_POW2: return *(const size_t *)field;
    case OPT_UINT: return *(const unsigned *)field;
    case OPT_INT: return (uint64_t)(int64_t)(*(const int *)field);
    }
    return 0;
}

static void report_out_of_range(const option *opt, uint64_t v)
{
    char range[64];
    range_text(opt, range, sizeof range);
    if (opt->kind == OPT_INT)
        bp_message("bp_pool_new: %s %lld is outside %s", opt->name, (long long)v, range);
    else
        bp_message("bp_pool_new: %s %llu is %s %s", opt->name, (unsigned long long)v,
                   opt->kind == OPT_POW2 ? "not" : "outside", range);
}

int bp_options_check(const bp_config *cfg)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        uint64_t v = load(cfg, &options[i]);
        if (!in_range(&options[i], v)) {
            report_out_of_range(&options[i], v);
            return EINVAL;
        }
    }
    if (!fits_page(cfg->chunk_size, cfg->page_size)) {
        bp_message("bp_pool_new: chunk_size %zu is not page_size << 1..14 (%zu..%zu)",
                   cfg->chunk_size, cfg->page_size << 1, cfg->page_size << 14);
        return EINVAL;
    }
    return 0;
}

/* ---- BUFPOOL_CONF ------------------------------------------------------------------------- */

/* A decimal number with an optional K, M or G suffix (powers of 1024); false on anything
 * else, including overflow. */
static bool parse_number(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (len == 0)
        return false;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0)
        return false;
    if (i < len) {
        unsigned shift;
        switch (s[i]) {
        case 'k':
        case 'K': shift = 10; break;
        case 'm':
        case 'M': shift = 20; break;
        case 'g':
        case 'G': shift = 30; break;
        default: return false;
        }
        if (i + 1 != len || v > (UINT64_MAX >> shift))
            return false;
        v <<= shift;
    }
    *out = v;
    return true;
}

/* A value in the option's range: unsigned with K/M/G, or for OPT_INT an optional minus sign. */
static bool parse_value(const option *opt, const char *s, size_t len, uint64_t *out)
{
    bool negative = opt->kind == OPT_INT && len > 0 && s[0] == '-';
    uint64_t v;
    if (!parse_number(s + negative, len - negative, &v))
        return false;
    if (opt->kind == OPT_INT) {
        if (v > INT32_MAX)
            return false;
        v = (uint64_t)(negative ? -(int64_t)v : (int64_t)v);
    }
    if (!in_range(opt, v))
        return false;
    *out = v;
    return true;
}

static const option *find_option(const char *key, size_t len)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, key, len) == 0)
            return &options[i];
    return NULL;
}

static void warn_unknown(const char *source, const char *key, size_t len)
{
    char names[512];
    size_t n = 0;
    names[0] = '\0';
    for (size_t i = 0; i < sizeof options / sizeof options[0] && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", options[i].name);
    bp_message("%s: unknown key '%.*s' ignored (keys: %s)", source, (int)len, key, names);
}

/* One "key:value" item (len > 0) into cfg: false, with a message unless quiet, when it is
 * not a known key with a value in its range. */
static bool apply_item(bp_config *cfg, const char *item, size_t len, const char *source, bool quiet)
{
    const char *colon = memchr(item, ':', len);
    if (colon == NULL) {
        if (!quiet)
            bp_message("%s: '%.*s' is not key:value, ignored", source, (int)len, item);
        return false;
    }
    size_t key_len = (size_t)(colon - item), value_len = len - key_len - 1;
    const option *opt = find_option(item, key_len);
    uint64_t v;
    if (opt == NULL) {
        if (!quiet)
            warn_unknown(source, item, key_len);
        return false;
    }
    if (!parse_value(opt, colon + 1, value_len, &v)) {
        char range[64];
        if (!quiet)
            bp_message("%s: bad value '%.*s' for %s (accepted: %s%s); default kept", source,
                       (int)value_len, colon + 1, opt->name, range_text(opt, range, sizeof range),
                       opt->kind == OPT_INT ? "" : ", K/M/G suffixes");
        return false;
    }
    store(cfg, opt, v);
    return true;
}

/* The rule between fields, once every item is in: when the chunk does not fit the page,
 * both go back to what they were before, so the config stays one bp_pool_new accepts. */
static bool keep_combination(bp_config *cfg, const bp_config *before, const char *source,
                             bool quiet)
{
    if (fits_page(cfg->chunk_size, cfg->page_size))
        return true;
    if (!quiet)
        bp_message("%s: chunk_size %zu does not fit page_size %zu (accepted: page_size << 1..14, "
                   "%zu..%zu); defaults kept: page_size %zu, chunk_size %zu",
                   source, cfg->chunk_size, cfg->page_size, cfg->page_size << 1,
                   cfg->page_size << 14, before->page_size, before->chunk_size);
    cfg->page_size = before->page_size;
    cfg->chunk_size = before->chunk_size;
    return false;
}

static int apply(bp_config *cfg, const char *conf, const char *source, bool quiet)
{
    int errors = 0;
    bp_config before = *cfg;
    for (const char *p = conf;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) /* empty items, such as after a trailing comma, are tolerated */
            errors += !apply_item(cfg, p, len, source, quiet);
        if (end == NULL)
            break;
        p = end + 1;
    }
    errors += !keep_combination(cfg, &before, source, quiet);
    return errors;
}

int bp_options_apply(bp_config *cfg, const char *conf, const char *source)
{
    return apply(cfg, conf, source, false);
}

/* FNV-1a of the BUFPOOL_CONF value whose problems were reported last (atomic): every
 * bp_config_init parses the variable again (a program may change it), but reports a value's
 * problems only the first time, so a process says each thing once (hello.c's second
 * bp_config_init, the default pool's, is silent). */
static uint64_t reported_conf;

static uint64_t conf_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

void bp_config_init(bp_config *cfg)
{
    bp_config_defaults(cfg);
    const char *conf = getenv("BUFPOOL_CONF");
    if (conf == NULL)
        return;
    uint64_t h = conf_hash(conf);
    bool quiet = __atomic_exchange_n(&reported_conf, h, __ATOMIC_RELAXED) == h;
    apply(cfg, conf, "BUFPOOL_CONF", quiet);
}
