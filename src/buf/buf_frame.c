/* buf_frame.c — frame decoders over bp_buf (Netty's line, delimiter and length-field frame
 * decoders) and the length-field prepender. Built on bp_buf's public API alone, so it works
 * on any buffer, contiguous or composite, as bp_buf does.
 *
 * Every decoder call works out the next frame first (where it starts, how long it is, how
 * far the reader index moves) and changes the input only after that: a frame that cannot be
 * handed out leaves the input as it was. The only input changes that are no frame are
 * BP_FRAME_SKIP's drops, which are results, not failures.
 *
 * The frames of a stream must not depend on how its bytes were split into reads. Netty's
 * decoders come close but miss in three places, which these do not: a line decoder that sees
 * "max bytes and a CR" waits (the CR may start the CRLF) instead of calling the line too
 * long; a drop never swallows bytes that may start the delimiter ending the dropped frame;
 * and with several delimiters a frame is not cut at one that a longer delimiter starting
 * earlier (or at the same byte, listed first) may yet take over when more bytes come. */
#include "bufpool.h"

#include <string.h>
#include <sys/uio.h>

#define FRAME_LIMIT (SIZE_MAX / 2)
#define likely(x)   __builtin_expect(!!(x), 1)
/* the byte access of every decoder's loop: inlined, as each would be written by hand */
#define hot_inline static inline __attribute__((always_inline))

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

enum { KIND_LINE = 1, KIND_DELIMITER, KIND_LENGTH };

#define DECODER_FLAGS (BP_FRAME_KEEP_DELIMITER | BP_FRAME_SKIP | BP_FRAME_SKIP_REPORT_LATE)
#define LENGTH_FLAGS  (BP_FRAME_SKIP | BP_FRAME_SKIP_REPORT_LATE | BP_FRAME_LITTLE_ENDIAN)

/* Where the next frame lies, relative to the reader index: the view starts `skip` bytes in
 * and holds `len`; the reader index moves over `consumed` (skip + len <= consumed). */
typedef struct frame_at {
    size_t skip, len, consumed;
} frame_at;

/* The first contiguous extent of the input's readable bytes: [start, end) of its indexes at
 * p. All of them for a contiguous buffer; the first part's for a composite, whose other
 * bytes are read through the buffer calls. */
typedef struct window {
    const uint8_t *p;
    size_t start, end;
} window;

hot_inline window window_of(const bp_buf *in, size_t reader, size_t end)
{
    const uint8_t *p = NULL;
    size_t n = bp_buf_peek(in, &p); /* inline for a contiguous buffer */
    window w = {NULL, reader, reader};
    if (n > 0 && reader == bp_buf_reader_index(in)) {
        w.p = p;
        w.end = reader + min_size(n, end - reader);
    }
    return w;
}

hot_inline uint8_t byte_at(const window *w, const bp_buf *in, size_t i)
{
    if (likely(i >= w->start && i < w->end))
        return w->p[i - w->start];
    uint8_t c = 0;
    bp_buf_get_u8(in, i, &c);
    return c;
}

/* Whether bytes [i, i + n) of the input (below its writer index) are `bytes`. */
static bool bytes_equal(const window *w, const bp_buf *in, size_t i, const uint8_t *bytes, size_t n)
{
    if (i >= w->start && i <= w->end && n <= w->end - i)
        return memcmp(w->p + (i - w->start), bytes, n) == 0;
    uint8_t chunk[64];
    for (size_t done = 0; done < n; done += sizeof chunk) {
        size_t take = min_size(n - done, sizeof chunk);
        bp_buf_get_bytes(in, i + done, chunk, take);
        if (memcmp(chunk, bytes + done, take) != 0)
            return false;
    }
    return true;
}

/* The first index in [from, end) holding byte c. */
hot_inline bool find_byte(const window *w, const bp_buf *in, size_t from, size_t end, uint8_t c,
                          size_t *pos)
{
    if (from < w->end) {
        const uint8_t *hit = memchr(w->p + (from - w->start), c, w->end - from);
        if (hit != NULL) {
            *pos = w->start + (size_t)(hit - w->p);
            return true;
        }
        from = w->end;
    }
    return from < end && bp_buf_index_of(in, from, end, c, pos) == BP_OK;
}

/* The first index p >= from where the delimiter lies whole below end (the writer index). */
static bool find_delimiter(const window *w, const bp_buf *in, size_t from, size_t end,
                           const bp_frame_delimiter *dl, size_t *pos)
{
    const uint8_t *bytes = dl->bytes;
    if (dl->len == 1)
        return find_byte(w, in, from, end, bytes[0], pos);
    if (end - from < dl->len)
        return false;
    if (w->end == end) { /* all of it in one extent */
        /* The first byte by memchr, then the rest compared: for the short delimiters of
         * protocols far cheaper than memmem, whose set-up costs more than a frame's search. */
        const uint8_t *at = w->p + (from - w->start), *last = w->p + (end - w->start) - dl->len;
        while (at <= last && (at = memchr(at, bytes[0], (size_t)(last - at) + 1)) != NULL) {
            if (memcmp(at + 1, bytes + 1, dl->len - 1) == 0) {
                *pos = w->start + (size_t)(at - w->p);
                return true;
            }
            at++;
        }
        return false;
    }
    return bp_buf_find(in, from, bytes, dl->len, pos) == BP_OK;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static void decoder_start(bp_frame_decoder *d, unsigned kind, size_t max, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->max = max;
    d->flags = flags;
}

static bool flags_valid(unsigned flags, unsigned allowed)
{
    /* a report time without the drop it reports is a mistake, not a choice */
    return (flags & ~allowed) == 0 &&
           (!(flags & BP_FRAME_SKIP_REPORT_LATE) || (flags & BP_FRAME_SKIP));
}

int bp_frame_line_init(bp_frame_decoder *d, size_t max, unsigned flags)
{
    if (max == 0 || max > FRAME_LIMIT || !flags_valid(flags, DECODER_FLAGS))
        return BP_EINVAL;
    decoder_start(d, KIND_LINE, max, flags);
    d->longest_delimiter = 2;
    return BP_OK;
}

int bp_frame_delimiter_init(bp_frame_decoder *d, size_t max, const bp_frame_delimiter *delimiters,
                            unsigned count, unsigned flags)
{
    if (max == 0 || max > FRAME_LIMIT || !flags_valid(flags, DECODER_FLAGS) || count == 0 ||
        count > BP_FRAME_MAX_DELIMITERS || delimiters == NULL)
        return BP_EINVAL;
    size_t longest = 0;
    for (unsigned i = 0; i < count; i++) {
        if (delimiters[i].bytes == NULL || delimiters[i].len == 0 ||
            delimiters[i].len > FRAME_LIMIT)
            return BP_EINVAL;
        if (delimiters[i].len > longest)
            longest = delimiters[i].len;
    }
    decoder_start(d, KIND_DELIMITER, max, flags);
    memcpy(d->delimiters, delimiters, count * sizeof *delimiters);
    d->delimiter_count = count;
    d->longest_delimiter = longest;
    return BP_OK;
}

static bool field_size_valid(unsigned size)
{
    return size == 1 || size == 2 || size == 3 || size == 4 || size == 8 ||
           size == BP_FRAME_UVARINT;
}

int bp_frame_length_init(bp_frame_decoder *d, const bp_frame_length_config *cfg)
{
    /* a varint field takes one byte at the least */
    size_t least = cfg->field_size == BP_FRAME_UVARINT ? 1 : cfg->field_size;
    if (cfg->max_frame == 0 || cfg->max_frame > FRAME_LIMIT || !field_size_valid(cfg->field_size) ||
        !flags_valid(cfg->flags, LENGTH_FLAGS) || cfg->field_offset > cfg->max_frame - least)
        return BP_EINVAL;
    decoder_start(d, KIND_LENGTH, cfg->max_frame, cfg->flags);
    d->length = *cfg;
    return BP_OK;
}

void bp_frame_reset(bp_frame_decoder *d)
{
    d->scanned = 0;
    d->discarding = false;
    d->discard_left = 0;
}

/* ---- drops ------------------------------------------------------------------------------- */

/* A frame over the maximum whose end has not arrived: under BP_FRAME_SKIP its first
 * `droppable` bytes go and the decoder drops on from there; otherwise BP_ETOOLONG. */
static int drop_unfinished(bp_frame_decoder *d, bp_buf *in, size_t droppable)
{
    if (!(d->flags & BP_FRAME_SKIP))
        return BP_ETOOLONG;
    bp_buf_skip(in, droppable);
    d->discarding = true;
    return (d->flags & BP_FRAME_SKIP_REPORT_LATE) ? BP_NEED_MORE : BP_SKIPPED;
}

/* A frame over the maximum, all `consumed` bytes of it (and its delimiter) in the input. */
static int drop_whole(bp_frame_decoder *d, bp_buf *in, size_t consumed)
{
    if (!(d->flags & BP_FRAME_SKIP))
        return BP_ETOOLONG;
    bp_buf_skip(in, consumed);
    d->scanned = 0;
    return BP_SKIPPED;
}

/* The end of a frame being dropped has come: `consumed` more bytes go. BP_OK: decode on. */
static int drop_finished(bp_frame_decoder *d, bp_buf *in, size_t consumed)
{
    bp_buf_skip(in, consumed);
    d->discarding = false;
    d->scanned = 0;
    return (d->flags & BP_FRAME_SKIP_REPORT_LATE) ? BP_SKIPPED : BP_OK;
}

/* ---- the three decoders ------------------------------------------------------------------ */

hot_inline int line_step(bp_frame_decoder *d, bp_buf *in, frame_at *f)
{
    for (;;) {
        size_t reader = bp_buf_reader_index(in), end = bp_buf_writer_index(in);
        size_t readable = end - reader;
        if (d->scanned > readable) /* the caller moved the reader index: search again */
            d->scanned = 0;
        window w = window_of(in, reader, end);
        size_t eol;
        if (!find_byte(&w, in, reader + d->scanned, end, '\n', &eol)) {
            /* a CR at the end may yet be the first half of a CRLF */
            size_t line = readable - (readable > 0 && byte_at(&w, in, end - 1) == '\r');
            if (d->discarding) {
                bp_buf_skip(in, line);
                d->scanned = readable - line;
                return BP_NEED_MORE;
            }
            if (line > d->max) {
                int r = drop_unfinished(d, in, line);
                if (r != BP_ETOOLONG)
                    d->scanned = readable - line;
                return r;
            }
            d->scanned = readable;
            return BP_NEED_MORE;
        }
        size_t delimiter = eol > reader && byte_at(&w, in, eol - 1) == '\r' ? 2 : 1;
        size_t line = eol + 1 - delimiter - reader, consumed = eol + 1 - reader;
        if (d->discarding) {
            int r = drop_finished(d, in, consumed);
            if (r != BP_OK)
                return r;
            continue;
        }
        if (line > d->max)
            return drop_whole(d, in, consumed);
        *f = (frame_at){0, (d->flags & BP_FRAME_KEEP_DELIMITER) ? consumed : line, consumed};
        return BP_OK;
    }
}

/* Whether delimiter dl may start at p (end - dl->len < p < end): the bytes there so far are
 * the first of it. */
static bool may_start_at(const window *w, const bp_buf *in, size_t p, size_t end,
                         const bp_frame_delimiter *dl)
{
    return bytes_equal(w, in, p, dl->bytes, end - p);
}

static int delimiter_step(bp_frame_decoder *d, bp_buf *in, frame_at *f)
{
    for (;;) {
        size_t reader = bp_buf_reader_index(in), end = bp_buf_writer_index(in);
        size_t readable = end - reader;
        if (d->scanned > readable)
            d->scanned = 0;
        window w = window_of(in, reader, end);
        /* no delimiter starts where the last search found none whole */
        size_t back = d->longest_delimiter - 1;
        size_t from = reader + (d->scanned > back ? d->scanned - back : 0);
        size_t best = end;
        unsigned chosen = 0;
        bool found = false;
        for (unsigned i = 0; i < d->delimiter_count; i++) {
            size_t at;
            if (find_delimiter(&w, in, from, end, &d->delimiters[i], &at) &&
                (!found || at < best)) {
                best = at;
                chosen = i;
                found = true;
            }
        }
        /* The earliest byte a delimiter cut short by the end of the input may start at, if
         * it could end the frame before (or instead of) the one found. */
        size_t partial = end;
        /* one that starts after end - longest cannot start before what was found */
        bool settled = found && best + d->longest_delimiter <= end;
        for (unsigned i = 0; i < d->delimiter_count && !settled; i++) {
            const bp_frame_delimiter *dl = &d->delimiters[i];
            size_t first = end - reader >= dl->len ? end - dl->len + 1 : reader;
            for (size_t p = first; p < end && p < partial; p++) {
                bool beats = !found || p < best || (p == best && i < chosen);
                if (beats && may_start_at(&w, in, p, end, dl)) {
                    partial = p;
                    break;
                }
            }
        }
        if (!found || partial <= best) {
            size_t frame = (found ? min_size(best, partial) : partial) - reader;
            if (d->discarding) {
                bp_buf_skip(in, frame);
                d->scanned = readable - frame;
                return BP_NEED_MORE;
            }
            if (frame > d->max) {
                int r = drop_unfinished(d, in, frame);
                if (r != BP_ETOOLONG)
                    d->scanned = readable - frame;
                return r;
            }
            d->scanned = readable;
            return BP_NEED_MORE;
        }
        size_t frame = best - reader, consumed = frame + d->delimiters[chosen].len;
        if (d->discarding) {
            int r = drop_finished(d, in, consumed);
            if (r != BP_OK)
                return r;
            continue;
        }
        if (frame > d->max)
            return drop_whole(d, in, consumed);
        *f = (frame_at){0, (d->flags & BP_FRAME_KEEP_DELIMITER) ? consumed : frame, consumed};
        return BP_OK;
    }
}

/* The length field's value at idx: BP_OK, BP_NEED_MORE (its bytes have not all come), or
 * BP_EINVAL (a malformed varint). *size gets the field's bytes. */
hot_inline int read_field(const bp_frame_decoder *d, const window *w, const bp_buf *in, size_t idx,
                          size_t end, uint64_t *value, size_t *size)
{
    unsigned n = d->length.field_size;
    if (n == BP_FRAME_UVARINT) {
        int err = bp_buf_get_uvarint(in, idx, value, size);
        return err == BP_EBOUNDS ? BP_NEED_MORE : err;
    }
    if (end - idx < n)
        return BP_NEED_MORE;
    uint64_t v = 0;
    if (d->length.flags & BP_FRAME_LITTLE_ENDIAN) {
        for (unsigned i = n; i-- > 0;)
            v = v << 8 | byte_at(w, in, idx + i);
    } else {
        for (unsigned i = 0; i < n; i++)
            v = v << 8 | byte_at(w, in, idx + i);
    }
    *value = v;
    *size = n;
    return BP_OK;
}

/* Netty's frame length: value + adjustment + the bytes up to the field's end, in exact
 * arithmetic. BP_EINVAL when that is below those bytes (corrupt); UINT64_MAX for any length
 * past what 64 bits hold (past every maximum). */
static int frame_length(int64_t adjustment, uint64_t value, uint64_t field_end, uint64_t *out)
{
    __extension__ __int128 length = (__int128)value + field_end + adjustment;
    if (length < (__int128)field_end)
        return BP_EINVAL;
    *out = length > (__int128)UINT64_MAX ? UINT64_MAX : (uint64_t)length;
    return BP_OK;
}

hot_inline int length_step(bp_frame_decoder *d, bp_buf *in, frame_at *f)
{
    size_t reader = bp_buf_reader_index(in), end = bp_buf_writer_index(in);
    if (d->discarding) {
        size_t readable = end - reader;
        size_t take = d->discard_left < readable ? (size_t)d->discard_left : readable;
        d->discard_left -= take;
        if (d->discard_left > 0) {
            bp_buf_skip(in, take);
            return BP_NEED_MORE;
        }
        int r = drop_finished(d, in, take);
        if (r != BP_OK)
            return r;
        reader += take;
    }
    size_t readable = end - reader, offset = d->length.field_offset;
    if (readable <= offset)
        return BP_NEED_MORE;
    window w = window_of(in, reader, end);
    uint64_t value, length;
    size_t size;
    int err = read_field(d, &w, in, reader + offset, end, &value, &size);
    if (err != BP_OK)
        return err;
    err = frame_length(d->length.adjustment, value, offset + size, &length);
    if (err != BP_OK)
        return err;
    if (length > d->max) {
        if (!(d->flags & BP_FRAME_SKIP))
            return BP_ETOOLONG;
        if (length <= readable)
            return drop_whole(d, in, (size_t)length);
        d->discard_left = length - readable;
        return drop_unfinished(d, in, readable);
    }
    if (readable < length)
        return BP_NEED_MORE;
    if (d->length.strip > length)
        return BP_EINVAL; /* Netty: "Adjusted frame length is less than initialBytesToStrip" */
    *f = (frame_at){d->length.strip, (size_t)length - d->length.strip, (size_t)length};
    return BP_OK;
}

/* What line_quick returns when the general step must decide. */
#define GENERAL 1000

/* A line decoder's common case, in few instructions: not dropping, and the bytes not yet
 * scanned in the input's first extent (all of a contiguous input). It decides as line_step
 * would: the line at the first newline, or BP_NEED_MORE when a contiguous input has none;
 * GENERAL for everything else (a line over the maximum, drops, a composite's other parts). */
hot_inline int line_quick(bp_frame_decoder *d, const bp_buf *in, frame_at *f)
{
    const uint8_t *p = NULL;
    size_t n = bp_buf_peek(in, &p), from = d->scanned;
    if (d->discarding || from >= n)
        return GENERAL;
    const uint8_t *hit = memchr(p + from, '\n', n - from);
    if (hit == NULL) {
        size_t line = n - (p[n - 1] == '\r'); /* a CR at the end may start a CRLF */
        if (n != bp_buf_readable(in) || line > d->max)
            return GENERAL;
        d->scanned = n;
        return BP_NEED_MORE;
    }
    size_t consumed = (size_t)(hit - p) + 1;
    size_t line = consumed - 1 - (hit > p && hit[-1] == '\r');
    if (line > d->max)
        return GENERAL;
    *f = (frame_at){0, (d->flags & BP_FRAME_KEEP_DELIMITER) ? consumed : line, consumed};
    return BP_OK;
}

hot_inline int step(bp_frame_decoder *d, bp_buf *in, frame_at *f)
{
    if (likely(d->kind == KIND_LINE)) {
        int r = line_quick(d, in, f);
        if (r != GENERAL)
            return r;
    }
    switch (d->kind) {
    case KIND_LINE: return line_step(d, in, f);
    case KIND_DELIMITER: return delimiter_step(d, in, f);
    case KIND_LENGTH: return length_step(d, in, f);
    default: return BP_EINVAL; /* never set up */
    }
}

int bp_frame_next_range(bp_frame_decoder *d, bp_buf *in, size_t *index, size_t *len)
{
    frame_at f;
    int r = step(d, in, &f);
    if (r != BP_OK)
        return r;
    size_t reader = bp_buf_reader_index(in);
    bp_buf_skip(in, f.consumed);
    d->scanned = 0;
    *index = reader + f.skip;
    *len = f.len;
    return BP_OK;
}

int bp_frame_next(bp_frame_decoder *d, bp_buf *in, bp_buf **frame)
{
    *frame = NULL;
    frame_at f;
    int r = step(d, in, &f);
    if (r != BP_OK)
        return r;
    bp_buf *view = bp_buf_slice(in, bp_buf_reader_index(in) + f.skip, f.len, 0);
    if (view == NULL)
        return BP_ENOMEM;
    bp_buf_skip(in, f.consumed);
    d->scanned = 0;
    *frame = view;
    return BP_OK;
}

/* ---- the prepender ----------------------------------------------------------------------- */

static size_t uvarint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* value = body + adjustment (+ the field's size): BP_EINVAL when below 0 or past what the
 * field holds. */
static int prepended_value(size_t body, int64_t adjustment, unsigned field_size, unsigned flags,
                           uint64_t *value, size_t *size)
{
    uint64_t v = body;
    if (adjustment < 0) {
        if (v < -(uint64_t)adjustment)
            return BP_EINVAL;
        v -= -(uint64_t)adjustment;
    } else {
        if (v > UINT64_MAX - (uint64_t)adjustment)
            return BP_EINVAL;
        v += (uint64_t)adjustment;
    }
    size_t n = field_size;
    if (field_size == BP_FRAME_UVARINT) {
        n = uvarint_size(v);
        /* the size counts itself: the smallest n whose value still takes n bytes */
        if (flags & BP_FRAME_LENGTH_INCLUDES_FIELD) {
            for (n = 1; n <= 10 && (v > UINT64_MAX - n || uvarint_size(v + n) != n); n++)
                ;
            if (n > 10)
                return BP_EINVAL;
        }
    }
    if ((flags & BP_FRAME_LENGTH_INCLUDES_FIELD)) {
        if (v > UINT64_MAX - n)
            return BP_EINVAL;
        v += n;
    }
    if (field_size != BP_FRAME_UVARINT && n < 8 && v >> (8 * n) != 0)
        return BP_EINVAL;
    *value = v;
    *size = n;
    return BP_OK;
}

int bp_frame_prepend_length(bp_buf *dst, const bp_buf *body, unsigned field_size,
                            int64_t adjustment, unsigned flags)
{
    if (!field_size_valid(field_size) ||
        (flags & ~(BP_FRAME_LITTLE_ENDIAN | BP_FRAME_LENGTH_INCLUDES_FIELD)) || dst == body)
        return BP_EINVAL;
    size_t n = bp_buf_readable(body), size;
    uint64_t value;
    int err = prepended_value(n, adjustment, field_size, flags, &value, &size);
    if (err != BP_OK)
        return err;
    if (n > SIZE_MAX - size)
        return BP_ECAP;
    err = bp_buf_ensure_writable(dst, size + n);
    if (err != BP_OK)
        return err;
    uint8_t field[10];
    if (field_size == BP_FRAME_UVARINT) {
        for (size_t i = 0; i < size; i++, value >>= 7)
            field[i] = (uint8_t)((value & 0x7f) | (i + 1 < size ? 0x80 : 0));
    } else if (flags & BP_FRAME_LITTLE_ENDIAN) {
        for (size_t i = 0; i < size; i++, value >>= 8)
            field[i] = (uint8_t)value;
    } else {
        for (size_t i = size; i-- > 0; value >>= 8)
            field[i] = (uint8_t)value;
    }
    size_t writer = bp_buf_writer_index(dst);
    err = bp_buf_write_bytes(dst, field, size);
    /* The room is there, so these writes cannot fail; should one, dst goes back as it was. */
    struct iovec parts[16];
    for (size_t done = 0, idx = bp_buf_reader_index(body); err == BP_OK && done < n;) {
        size_t covered = 0;
        int count = bp_buf_iov(body, idx + done, n - done, parts, 16, &covered);
        if (count <= 0 || covered == 0) {
            err = count < 0 ? count : BP_EINVAL;
            break;
        }
        for (int i = 0; i < count && err == BP_OK; i++)
            err = bp_buf_write_bytes(dst, parts[i].iov_base, parts[i].iov_len);
        done += covered;
    }
    if (err != BP_OK)
        bp_buf_set_index(dst, bp_buf_reader_index(dst), writer);
    return err;
}
