/* fuzz_frame.c — libFuzzer target: the frame decoders on any byte stream. The first input
 * bytes choose a decoder (line, one of several delimiter sets, a length field of any size
 * and order), its maximum, policy and flags; the rest is the stream. It is decoded whole
 * from a contiguous buffer, then split at points the input also chooses, into a contiguous
 * buffer and into a composite taking each piece as a part: the three must give the same
 * results and frames, and no frame may be longer than its maximum allows. Out-of-bounds
 * reads are ASan's to find. */
#include "bufpool.h"

#include <string.h>

#define EVENTS 512

typedef struct events {
    int result[EVENTS];
    uint32_t hash[EVENTS], len[EVENTS];
    size_t n;
} events;

static bp_pool *pool;

static uint32_t hash_of(const bp_buf *frame)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < bp_buf_readable(frame); i++) {
        uint8_t c = 0;
        bp_buf_get_u8(frame, bp_buf_reader_index(frame) + i, &c);
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static bool drain(bp_frame_decoder *d, bp_buf *in, events *ev, size_t limit)
{
    for (;;) {
        bp_buf *frame;
        int r = bp_frame_next(d, in, &frame);
        if (r == BP_NEED_MORE)
            return true;
        if (ev->n == EVENTS)
            return false;
        ev->result[ev->n] = r;
        ev->hash[ev->n] = frame ? hash_of(frame) : 0;
        ev->len[ev->n] = frame ? (uint32_t)bp_buf_readable(frame) : 0;
        if (frame != NULL && bp_buf_readable(frame) > limit)
            __builtin_trap();
        ev->n++;
        if (frame != NULL)
            bp_buf_release(frame);
        if (r < 0)
            return false;
    }
}

/* cuts: NULL for the whole stream at once, else piece lengths taken from it in turn. */
static void run(bp_frame_decoder *d, const uint8_t *s, size_t n, const uint8_t *cuts, size_t ncuts,
                bool composite, size_t limit, events *ev)
{
    bp_buf *in = composite ? bp_buf_composite(pool, 4096) : bp_buf_new(pool, 0, 0);
    if (in == NULL)
        __builtin_trap();
    bp_frame_reset(d);
    ev->n = 0;
    for (size_t at = 0, k = 0; at < n;) {
        size_t take = cuts == NULL ? n : 1 + cuts[k++ % ncuts] % 32;
        if (take > n - at)
            take = n - at;
        bp_buf *piece = bp_buf_new(pool, take, 0);
        bp_buf_write_bytes(piece, s + at, take);
        if (composite) {
            if (bp_buf_append(in, piece) != BP_OK)
                __builtin_trap();
        } else {
            bp_buf_write_bytes(in, s + at, take);
            bp_buf_release(piece);
        }
        at += take;
        if (!drain(d, in, ev, limit))
            break;
        if (k % 3 == 0 && bp_buf_discard_read(in) != BP_OK)
            __builtin_trap();
    }
    bp_buf_release(in);
}

static bool same(const events *a, const events *b)
{
    return a->n == b->n && memcmp(a->result, b->result, a->n * sizeof a->result[0]) == 0 &&
           memcmp(a->hash, b->hash, a->n * sizeof a->hash[0]) == 0 &&
           memcmp(a->len, b->len, a->n * sizeof a->len[0]) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (pool == NULL) {
        bp_config cfg;
        bp_config_init(&cfg);
        cfg.arenas = 1;
        pool = bp_pool_new(&cfg);
    }
    if (n < 4)
        return 0;
    static const bp_frame_delimiter sets[][3] = {
        {{"\n", 1}}, {{"ab", 2}}, {{"ab|", 3}, {"b", 1}}, {{"\r\n", 2}, {"x", 1}, {"bx", 2}}};
    static const unsigned set_sizes[] = {1, 1, 2, 3};
    static const unsigned sizes[] = {1, 2, 3, 4, 8, BP_FRAME_UVARINT};
    static const unsigned policies[] = {0, BP_FRAME_SKIP,
                                        BP_FRAME_SKIP | BP_FRAME_SKIP_REPORT_LATE};
    unsigned kind = data[0] % 3, policy = policies[(data[0] >> 2) % 3];
    unsigned keep = (data[0] & 0x80) ? BP_FRAME_KEEP_DELIMITER : 0;
    size_t max = 1 + data[1] % 64, ncuts = 1 + data[2] % 16;
    if (n < 3 + ncuts)
        return 0;
    const uint8_t *cuts = data + 3;
    const uint8_t *stream = data + 3 + ncuts;
    size_t len = n - 3 - ncuts;
    bp_frame_decoder d;
    size_t limit = max + 3; /* a kept delimiter at the most */
    int err;
    if (kind == 0) {
        err = bp_frame_line_init(&d, max, policy | keep);
    } else if (kind == 1) {
        unsigned set = data[1] >> 6;
        err = bp_frame_delimiter_init(&d, max, sets[set], set_sizes[set], policy | keep);
    } else {
        bp_frame_length_config cfg = {.max_frame = max + 10,
                                      .field_offset = data[2] >> 6,
                                      .field_size = sizes[(data[0] >> 4) % 6],
                                      .adjustment = (int8_t)data[1] >> 3,
                                      .strip = (data[0] >> 5) & 3,
                                      .flags =
                                          policy | ((data[0] & 0x40) ? BP_FRAME_LITTLE_ENDIAN : 0)};
        err = bp_frame_length_init(&d, &cfg);
        limit = max + 10;
    }
    if (err != BP_OK)
        __builtin_trap();
    static events whole, split;
    run(&d, stream, len, NULL, 0, false, limit, &whole);
    for (int composite = 0; composite < 2; composite++) {
        run(&d, stream, len, cuts, ncuts, composite, limit, &split);
        /* a run cut short by the event limit is compared up to there */
        if (whole.n == EVENTS || split.n == EVENTS) {
            size_t k = whole.n < split.n ? whole.n : split.n;
            whole.n = split.n = k;
        }
        if (!same(&whole, &split))
            __builtin_trap();
    }
    return 0;
}
