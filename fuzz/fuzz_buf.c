/* fuzz_buf.c — libFuzzer target: bytes decoded into bp_buf operations (typed and byte
 * writes and reads, skips, index moves, discards, slices, copies, growth, writes from the
 * buffer's own bytes) on a pooled buffer or on wrapped memory (a caller's array, or NULL
 * and 0 bytes), each checked against a flat byte-array model: result codes, indexes and
 * contents must agree. */
#include "front.h"

#include <string.h>
#include <sys/uio.h>

#define MAX 2048

static bp_pool *pool;
static uint8_t wrapped[MAX];

/* The first input byte picks the buffer: pooled with that many bytes to start (kinds 0, 1),
 * a wrap of 8 times that many bytes of a caller's array (2), or a wrap of NULL, 0 (3).
 * *max gets the capacity it may reach. */
static bp_buf *make(uint8_t first, size_t *max)
{
    switch (first % 4) {
    case 2: *max = (size_t)first * 8; return bp_buf_wrap(pool, wrapped, *max, 0, NULL, NULL, 0);
    case 3: *max = 0; return bp_buf_wrap(pool, NULL, 0, 0, NULL, NULL, 0);
    default: *max = MAX; return bp_buf_new(pool, first, MAX);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (pool == NULL) {
        bp_config cfg;
        bp_config_defaults(&cfg);
        cfg.arenas = 1;
        pool = bp_pool_new(&cfg);
    }
    uint8_t model[MAX];
    size_t reader = 0, writer = 0, max;
    bp_buf *b = make(n > 0 ? data[0] : 0, &max);
    if (b == NULL)
        __builtin_trap();
    for (size_t i = 1; i + 2 < n; i += 3) {
        unsigned op = data[i] % 11;
        size_t arg = data[i + 1] | (size_t)data[i + 2] << 8;
        uint8_t tmp[256];
        int err;
        switch (op) {
        case 0: { /* write_bytes */
            size_t len = arg % 200;
            for (size_t k = 0; k < len; k++)
                tmp[k] = (uint8_t)(arg + k);
            err = bp_buf_write_bytes(b, tmp, len);
            if (err != (writer + len > max ? BP_ECAP : BP_OK))
                __builtin_trap();
            if (err == BP_OK) {
                memcpy(model + writer, tmp, len);
                writer += len;
            }
            break;
        }
        case 1: { /* read_bytes */
            size_t len = arg % 200;
            err = bp_buf_read_bytes(b, tmp, len);
            if (err != (len > writer - reader ? BP_EBOUNDS : BP_OK))
                __builtin_trap();
            if (err == BP_OK) {
                if (memcmp(tmp, model + reader, len) != 0)
                    __builtin_trap();
                reader += len;
            }
            break;
        }
        case 2: { /* write_u32_be / read back with get */
            err = bp_buf_write_u32_be(b, (uint32_t)arg * 2654435761u);
            if (err != (writer + 4 > max ? BP_ECAP : BP_OK))
                __builtin_trap();
            if (err == BP_OK) {
                uint32_t v = (uint32_t)arg * 2654435761u, got;
                for (int k = 0; k < 4; k++)
                    model[writer + (size_t)k] = (uint8_t)(v >> (24 - 8 * k));
                if (bp_buf_get_u32_be(b, writer, &got) != BP_OK || got != v)
                    __builtin_trap();
                writer += 4;
            }
            break;
        }
        case 3: { /* get_u16_le anywhere */
            uint16_t got;
            size_t idx = arg % (writer + 8);
            err = bp_buf_get_u16_le(b, idx, &got);
            if (err != (idx + 2 > writer ? BP_EBOUNDS : BP_OK))
                __builtin_trap();
            if (err == BP_OK && got != (uint16_t)(model[idx] | model[idx + 1] << 8))
                __builtin_trap();
            break;
        }
        case 4: { /* set_index */
            size_t r = arg % (writer + 4), w = (arg >> 4) % (writer + 4);
            int expect = r <= w && w <= writer ? BP_OK : BP_EBOUNDS;
            if (expect == BP_OK || w > bp_buf_capacity(b) || r > w) {
                if (bp_buf_set_index(b, r, w) != expect)
                    __builtin_trap();
                if (expect == BP_OK) {
                    reader = r;
                    writer = w;
                }
            }
            break;
        }
        case 5: /* discard_read */
            if (bp_buf_discard_read(b) != BP_OK)
                __builtin_trap();
            memmove(model, model + reader, writer - reader);
            writer -= reader;
            reader = 0;
            break;
        case 6: { /* a slice sees the same bytes */
            size_t at = arg % (writer + 1), len = (arg >> 8) % (writer - at + 1);
            bp_buf *s = bp_buf_slice(b, at, len, BP_RDONLY);
            if (s == NULL || bp_buf_get_bytes(s, 0, tmp, len > 256 ? 256 : len) != BP_OK ||
                memcmp(tmp, model + at, len > 256 ? 256 : len) != 0)
                __builtin_trap();
            if (bp_buf_set_u8(s, 0, 1) != (len > 0 ? BP_ERDONLY : BP_EBOUNDS))
                __builtin_trap();
            bp_buf_release(s);
            break;
        }
        case 7: { /* a copy holds the same bytes in memory of its own */
            size_t at = arg % (writer + 1), len = (arg >> 8) % (writer - at + 1);
            bp_buf *c = bp_buf_copy(b, at, len);
            if (c == NULL || bp_buf_capacity(c) != len || bp_buf_readable(c) != len ||
                bp_buf_get_bytes(c, 0, tmp, len > 256 ? 256 : len) != BP_OK ||
                memcmp(tmp, model + at, len > 256 ? 256 : len) != 0)
                __builtin_trap();
            bp_buf_release(c);
            break;
        }
        case 8: { /* readable bytes written again from where they lie in the buffer */
            size_t len = BP_MIN(arg % 200, writer - reader);
            struct iovec iov[1];
            if (bp_buf_iov(b, reader, len, iov, 1, NULL) != (len > 0))
                __builtin_trap();
            err = bp_buf_write_bytes(b, len > 0 ? iov[0].iov_base : NULL, len);
            if (err != (writer + len > max ? BP_ECAP : BP_OK))
                __builtin_trap();
            if (err == BP_OK) {
                memcpy(model + writer, model + reader, len);
                writer += len;
            }
            break;
        }
        case 9: /* zero bytes, out and in, with no memory named */
            if (bp_buf_get_bytes(b, arg % (writer + 1), NULL, 0) != BP_OK ||
                bp_buf_read_bytes(b, NULL, 0) != BP_OK || bp_buf_write_bytes(b, NULL, 0) != BP_OK)
                __builtin_trap();
            break;
        default: /* skip */
            err = bp_buf_skip(b, arg % 64);
            if (err != (arg % 64 > writer - reader ? BP_EBOUNDS : BP_OK))
                __builtin_trap();
            if (err == BP_OK)
                reader += arg % 64;
            break;
        }
        if (bp_buf_reader_index(b) != reader || bp_buf_writer_index(b) != writer)
            __builtin_trap();
    }
    bp_buf_release(b);
    return 0;
}
