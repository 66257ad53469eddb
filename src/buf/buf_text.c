/* buf_text.c — text and debugging over bp_buf: printf into a buffer, zero fill, Netty's pretty
 * hex dump (to a stream or into a buffer) and a byte-scan callback. Built on bp_buf's public
 * API alone, so every buffer kind works as bp_buf makes it work. */
#include "bufpool.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- printf ------------------------------------------------------------------------------ */

int bp_buf_vprintf(bp_buf *b, const char *fmt, va_list ap)
{
    /* Short text (most of it) is formatted once, on the stack. Longer text is formatted a
     * second time into memory of its exact size: formatting straight into b would write
     * its bytes past the writer index before knowing whether the whole text fits. */
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    int err = BP_OK;
    if (n < 0) {
        err = BP_EINVAL;
    } else if ((size_t)n < sizeof small) {
        err = bp_buf_write_bytes(b, small, (size_t)n);
    } else if ((err = bp_buf_ensure_writable(b, (size_t)n)) == BP_OK) {
        char *text = malloc((size_t)n + 1);
        if (text == NULL) {
            err = BP_ENOMEM;
        } else {
            vsnprintf(text, (size_t)n + 1, fmt, again);
            err = bp_buf_write_bytes(b, text, (size_t)n);
            free(text);
        }
    }
    va_end(again);
    return err == BP_OK ? n : err;
}

int bp_buf_printf(bp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = bp_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- zero fill --------------------------------------------------------------------------- */

int bp_buf_write_zero(bp_buf *b, size_t n)
{
    int err = bp_buf_ensure_writable(b, n);
    if (err != BP_OK || n == 0)
        return err;
    /* in place, extent by extent: the room is there, so nothing below can fail halfway */
    size_t writer = bp_buf_writer_index(b);
    struct iovec extents[16];
    for (size_t done = 0; done < n;) {
        size_t covered = 0;
        int count = bp_buf_iov(b, writer + done, n - done, extents, 16, &covered);
        if (count <= 0 || covered == 0)
            return count < 0 ? count : BP_EBOUNDS; /* nothing committed yet */
        for (int i = 0; i < count; i++)
            memset(extents[i].iov_base, 0, extents[i].iov_len);
        done += covered;
    }
    return bp_buf_commit(b, n);
}

/* ---- hex dump ---------------------------------------------------------------------------- */

#define DUMP_RULE "+--------+-------------------------------------------------+----------------+\n"
#define DUMP_HEAD                                                                                  \
    "         +-------------------------------------------------+\n"                               \
    "         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n" DUMP_RULE
/* |00000000| + 16 x " hh" + " |" + 16 characters + "|\n" */
#define DUMP_ROW 78

/* One row of the dump for bytes[0, n) (n 1..16) at offset `at`; returns its length. */
static size_t dump_row(char *out, size_t at, const uint8_t *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *p = out;
    *p++ = '|';
    /* the offset's low 32 bits, as Netty prints it */
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = digits[(at >> shift) & 15];
    *p++ = '|';
    for (size_t i = 0; i < 16; i++) {
        *p++ = ' ';
        *p++ = i < n ? digits[bytes[i] >> 4] : ' ';
        *p++ = i < n ? digits[bytes[i] & 15] : ' ';
    }
    *p++ = ' ';
    *p++ = '|';
    for (size_t i = 0; i < 16; i++)
        *p++ = i >= n ? ' ' : bytes[i] >= 0x20 && bytes[i] < 0x7f ? (char)bytes[i] : '.';
    *p++ = '|';
    *p++ = '\n';
    return (size_t)(p - out);
}

/* Writes the dump of b's readable bytes through emit(ctx, text, len), which returns false
 * to stop. */
static bool dump(const bp_buf *b, bool (*emit)(void *ctx, const char *text, size_t len), void *ctx)
{
    size_t start = bp_buf_reader_index(b), n = bp_buf_readable(b);
    if (n == 0)
        return true;
    if (!emit(ctx, DUMP_HEAD, sizeof DUMP_HEAD - 1))
        return false;
    for (size_t at = 0; at < n; at += 16) {
        uint8_t bytes[16];
        size_t take = n - at < 16 ? n - at : 16;
        char row[DUMP_ROW];
        bp_buf_get_bytes(b, start + at, bytes, take);
        if (!emit(ctx, row, dump_row(row, at, bytes, take)))
            return false;
    }
    return emit(ctx, DUMP_RULE, sizeof DUMP_RULE - 1);
}

static bool emit_stream(void *ctx, const char *text, size_t len)
{
    return fwrite(text, 1, len, ctx) == len;
}

int bp_buf_hex_dump(const bp_buf *b, FILE *out)
{
    return dump(b, emit_stream, out) && fflush(out) == 0 ? BP_OK : BP_EIO;
}

static bool emit_buf(void *ctx, const char *text, size_t len)
{
    return bp_buf_write_bytes(ctx, text, len) == BP_OK;
}

int bp_buf_write_hex_dump(bp_buf *dst, const bp_buf *b)
{
    if (dst == b)
        return BP_EINVAL;
    size_t n = bp_buf_readable(b);
    size_t rows = n / 16 + (n % 16 != 0);
    if (rows > (SIZE_MAX - 512) / DUMP_ROW)
        return BP_ECAP;
    size_t total = n == 0 ? 0 : sizeof DUMP_HEAD - 1 + rows * DUMP_ROW + sizeof DUMP_RULE - 1;
    /* all the room first: then the writes cannot fail, and a failure changes nothing */
    int err = bp_buf_ensure_writable(dst, total);
    if (err != BP_OK || n == 0)
        return err;
    size_t writer = bp_buf_writer_index(dst);
    if (!dump(b, emit_buf, dst)) {
        bp_buf_set_index(dst, bp_buf_reader_index(dst), writer);
        return BP_EIO;
    }
    return BP_OK;
}

/* ---- byte scan --------------------------------------------------------------------------- */

int bp_buf_for_each_byte(const bp_buf *b, bool (*visit)(void *ctx, uint8_t byte), void *ctx,
                         size_t *pos)
{
    size_t at = bp_buf_reader_index(b), end = bp_buf_writer_index(b);
    struct iovec extents[16];
    while (at < end) {
        size_t covered = 0;
        int count = bp_buf_iov(b, at, end - at, extents, 16, &covered);
        if (count <= 0 || covered == 0)
            break;
        for (int i = 0; i < count; i++) {
            const uint8_t *p = extents[i].iov_base;
            for (size_t k = 0; k < extents[i].iov_len; k++, at++) {
                if (!visit(ctx, p[k])) {
                    *pos = at;
                    return BP_OK;
                }
            }
        }
    }
    return BP_NOTFOUND;
}
