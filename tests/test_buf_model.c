/* test_buf_model.c — random bp_buf operations checked against a flat byte-array model:
 * every call's result code, indexes and bytes must match what the model says, failed calls
 * included (they must change nothing). Contiguous and composite buffers, the composites also
 * taking parts at either end, slices of other buffers, copies in and out, writes that let
 * go of what they consumed, consolidation and shrinking; fixed seed, printed, replayable
 * with BP_TEST_SEED. */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <string.h>
#include <unistd.h>

#define MODEL_MAX 4096

typedef struct model {
    uint8_t bytes[MODEL_MAX];
    size_t reader, writer, capacity, max;
} model;

static bp_pool *pool;
static long op;
static uint64_t seed_used;

static void mismatch(const char *what)
{
    fprintf(stderr, "op %ld: %s; replay with BP_TEST_SEED=%#llx\n", op, what,
            (unsigned long long)seed_used);
    test_failures++;
}

static void compare(const bp_buf *b, const model *m)
{
    if (b->reader != m->reader || b->writer != m->writer)
        mismatch("indexes differ");
    if (bp_buf_capacity(b) < m->writer || bp_buf_capacity(b) > m->max)
        mismatch("capacity out of range");
    uint8_t got[MODEL_MAX];
    if (bp_buf_get_bytes(b, 0, got, m->writer) != BP_OK || memcmp(got, m->bytes, m->writer) != 0)
        mismatch("bytes differ");
}

/* Width and byte order of each typed family, in the order used below. */
static const size_t widths[] = {1, 2, 2, 3, 3, 4, 4, 8, 8};

static uint64_t model_load(const model *m, size_t idx, int t)
{
    size_t w = widths[t];
    bool le = t > 0 && (t % 2) == 0;
    uint64_t v = 0;
    for (size_t i = 0; i < w; i++)
        v = v << 8 | m->bytes[idx + (le ? w - 1 - i : i)];
    return v;
}

static void model_store(model *m, size_t idx, int t, uint64_t v)
{
    size_t w = widths[t];
    bool le = t > 0 && (t % 2) == 0;
    for (size_t i = 0; i < w; i++, v >>= 8)
        m->bytes[idx + (le ? i : w - 1 - i)] = (uint8_t)v;
}

static int buf_set(bp_buf *b, size_t idx, int t, uint64_t v)
{
    switch (t) {
    case 0: return bp_buf_set_u8(b, idx, (uint8_t)v);
    case 1: return bp_buf_set_u16_be(b, idx, (uint16_t)v);
    case 2: return bp_buf_set_u16_le(b, idx, (uint16_t)v);
    case 3: return bp_buf_set_u24_be(b, idx, (uint32_t)v);
    case 4: return bp_buf_set_u24_le(b, idx, (uint32_t)v);
    case 5: return bp_buf_set_u32_be(b, idx, (uint32_t)v);
    case 6: return bp_buf_set_u32_le(b, idx, (uint32_t)v);
    case 7: return bp_buf_set_u64_be(b, idx, v);
    default: return bp_buf_set_u64_le(b, idx, v);
    }
}

static int buf_get(const bp_buf *b, size_t idx, int t, uint64_t *v)
{
    int err;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    switch (t) {
    case 0:
        err = bp_buf_get_u8(b, idx, &u8);
        *v = u8;
        return err;
    case 1:
        err = bp_buf_get_u16_be(b, idx, &u16);
        *v = u16;
        return err;
    case 2:
        err = bp_buf_get_u16_le(b, idx, &u16);
        *v = u16;
        return err;
    case 3:
        err = bp_buf_get_u24_be(b, idx, &u32);
        *v = u32;
        return err;
    case 4:
        err = bp_buf_get_u24_le(b, idx, &u32);
        *v = u32;
        return err;
    case 5:
        err = bp_buf_get_u32_be(b, idx, &u32);
        *v = u32;
        return err;
    case 6:
        err = bp_buf_get_u32_le(b, idx, &u32);
        *v = u32;
        return err;
    case 7: return bp_buf_get_u64_be(b, idx, v);
    default: return bp_buf_get_u64_le(b, idx, v);
    }
}

static int buf_write(bp_buf *b, int t, uint64_t v)
{
    switch (t) {
    case 0: return bp_buf_write_u8(b, (uint8_t)v);
    case 1: return bp_buf_write_u16_be(b, (uint16_t)v);
    case 2: return bp_buf_write_u16_le(b, (uint16_t)v);
    case 3: return bp_buf_write_u24_be(b, (uint32_t)v);
    case 4: return bp_buf_write_u24_le(b, (uint32_t)v);
    case 5: return bp_buf_write_u32_be(b, (uint32_t)v);
    case 6: return bp_buf_write_u32_le(b, (uint32_t)v);
    case 7: return bp_buf_write_u64_be(b, v);
    default: return bp_buf_write_u64_le(b, v);
    }
}

/* One random operation on b and the model; the result codes must agree. */
static void step(test_rng *r, bp_buf *b, model *m, bool composite)
{
    int t = (int)test_below(r, 9);
    size_t w = widths[t];
    uint64_t v = test_rand(r);
    size_t idx = test_below(r, m->writer + 16);
    uint64_t got = 0;
    int expect, err;
    switch (test_below(r, 10)) {
    case 0: /* write_T grows within max */
    case 1:
        expect = m->writer + w > m->max ? BP_ECAP : BP_OK;
        if (buf_write(b, t, v) != expect)
            mismatch("write result differs");
        if (expect == BP_OK) {
            model_store(m, m->writer, t, v);
            m->writer += w;
        }
        break;
    case 2: /* get_T: inside [0, writer) */
        expect = idx + w > m->writer ? BP_EBOUNDS : BP_OK;
        err = buf_get(b, idx, t, &got);
        if (err != expect || (err == BP_OK && got != model_load(m, idx, t)))
            mismatch("get differs");
        break;
    case 3: /* set_T: inside [0, capacity) — only where the model knows the bytes */
        if (idx + w <= m->writer) {
            if (buf_set(b, idx, t, v) != BP_OK)
                mismatch("set failed");
            model_store(m, idx, t, v);
        } else if (idx + w > bp_buf_capacity(b) && buf_set(b, idx, t, v) != BP_EBOUNDS) {
            mismatch("set past capacity accepted");
        }
        break;
    case 4: { /* read_bytes */
        size_t n = test_below(r, 64);
        uint8_t tmp[64];
        expect = n > m->writer - m->reader ? BP_EBOUNDS : BP_OK;
        if (bp_buf_read_bytes(b, tmp, n) != expect)
            mismatch("read_bytes result differs");
        if (expect == BP_OK) {
            if (memcmp(tmp, m->bytes + m->reader, n) != 0)
                mismatch("read_bytes bytes differ");
            m->reader += n;
        }
        break;
    }
    case 5: { /* write_bytes */
        size_t n = test_below(r, 100);
        uint8_t tmp[100];
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)test_rand(r);
        expect = m->writer + n > m->max ? BP_ECAP : BP_OK;
        if (bp_buf_write_bytes(b, tmp, n) != expect)
            mismatch("write_bytes result differs");
        if (expect == BP_OK) {
            memcpy(m->bytes + m->writer, tmp, n);
            m->writer += n;
        }
        break;
    }
    case 6: /* skip, then sometimes discard */
        expect = idx > m->writer - m->reader ? BP_EBOUNDS : BP_OK;
        if (bp_buf_skip(b, idx) != expect)
            mismatch("skip result differs");
        if (expect == BP_OK)
            m->reader += idx;
        if (test_below(r, 4) == 0) {
            if (bp_buf_discard_read(b) != BP_OK)
                mismatch("discard_read failed");
            if (composite) { /* a composite drops whole parts only: follow its indexes */
                size_t gone = m->reader - b->reader;
                memmove(m->bytes, m->bytes + gone, m->writer - gone);
                m->writer -= gone;
                m->reader -= gone;
            } else {
                memmove(m->bytes, m->bytes + m->reader, m->writer - m->reader);
                m->writer -= m->reader;
                m->reader = 0;
            }
        }
        break;
    case 7: { /* set_index */
        size_t rd = test_below(r, m->writer + 8), wr = test_below(r, m->writer + 8);
        expect = rd <= wr && wr <= m->writer ? BP_OK : BP_EBOUNDS; /* stay within known bytes */
        if (expect == BP_OK || wr > bp_buf_capacity(b) || rd > wr) {
            if (bp_buf_set_index(b, rd, wr) != expect)
                mismatch("set_index result differs");
            if (expect == BP_OK) {
                m->reader = rd;
                m->writer = wr;
            }
        }
        break;
    }
    case 8: { /* a slice sees the same bytes, then goes */
        size_t len = test_below(r, m->writer - idx % (m->writer + 1) + 1);
        size_t at = idx % (m->writer + 1);
        bp_buf *s = bp_buf_slice(b, at, len, 0);
        uint8_t tmp[MODEL_MAX];
        if (s == NULL || bp_buf_get_bytes(s, 0, tmp, len) != BP_OK ||
            memcmp(tmp, m->bytes + at, len) != 0)
            mismatch("slice bytes differ");
        if (s != NULL)
            bp_buf_release(s);
        break;
    }
    default: { /* uvarint round trip */
        expect = m->writer + 10 > m->max ? -99 : BP_OK;
        if (expect != BP_OK)
            break;
        size_t before = m->writer;
        if (bp_buf_write_uvarint(b, v) != BP_OK)
            mismatch("uvarint write failed");
        uint64_t back;
        size_t len;
        if (bp_buf_get_uvarint(b, before, &back, &len) != BP_OK || back != v)
            mismatch("uvarint round trip differs");
        bp_buf_get_bytes(b, before, m->bytes + before, len);
        m->writer += len;
        break;
    }
    }
}

/* A contiguous buffer of n random bytes (also copied to bytes), or, with parts > 1, a
 * composite of them cut into that many parts. */
static bp_buf *random_source(test_rng *r, size_t n, unsigned parts, uint8_t *bytes)
{
    for (size_t i = 0; i < n; i++)
        bytes[i] = (uint8_t)test_rand(r);
    if (parts <= 1) {
        bp_buf *b = bp_buf_new(pool, n, 0);
        bp_buf_write_bytes(b, bytes, n);
        return b;
    }
    bp_buf *c = bp_buf_composite(pool, 0);
    for (size_t at = 0, i = 0; i < parts; i++) {
        size_t len = i + 1 == parts ? n - at : test_below(r, n - at + 1);
        bp_buf *part = bp_buf_new(pool, len, 0);
        bp_buf_write_bytes(part, bytes + at, len);
        bp_buf_append(c, part);
        at += len;
    }
    return c;
}

/* One random move of bytes into, out of or inside composite b; result codes, indexes and
 * bytes must agree with the model. */
static void composite_step(test_rng *r, bp_buf *b, model *m, int pipe_fds[2])
{
    uint8_t tmp[MODEL_MAX];
    size_t n = test_below(r, 80);
    size_t capacity = bp_buf_capacity(b);
    int expect, err;
    switch (test_below(r, 8)) {
    case 0:   /* append a part */
    case 1: { /* or a slice of a buffer, by reference */
        bool by_slice = test_below(r, 2) == 0;
        bp_buf *src = random_source(r, n, by_slice ? 1 + (unsigned)test_below(r, 3) : 1, tmp);
        expect = b->writer != capacity ? BP_EINVAL : m->writer + n > m->max ? BP_ECAP : BP_OK;
        err = by_slice ? bp_buf_append_slice(b, src, n) : bp_buf_append(b, src);
        if (err != expect)
            mismatch(by_slice ? "append_slice result differs" : "append result differs");
        if (err == BP_OK) {
            memcpy(m->bytes + m->writer, tmp, n);
            m->writer += n;
        }
        if (by_slice && err == BP_OK && bp_buf_readable(src) != 0)
            mismatch("append_slice left bytes in its source");
        if (by_slice || err != BP_OK)
            bp_buf_release(src);
        break;
    }
    case 2: { /* prepend a part: the read bytes go, the part's come first */
        bp_buf *src = random_source(r, n, 1, tmp);
        expect = n + (capacity - m->reader) > m->max ? BP_ECAP : BP_OK;
        err = bp_buf_prepend_part(b, src);
        if (err != expect)
            mismatch("prepend_part result differs");
        if (err != BP_OK) {
            bp_buf_release(src);
            break;
        }
        size_t readable = m->writer - m->reader;
        memmove(m->bytes + n, m->bytes + m->reader, readable);
        memcpy(m->bytes, tmp, n);
        m->reader = 0;
        m->writer = n + readable;
        break;
    }
    case 3: { /* copy in from another buffer */
        bp_buf *src = random_source(r, n, 1 + (unsigned)test_below(r, 3), tmp);
        size_t take = test_below(r, n + 2);
        expect = take > n ? BP_EBOUNDS : m->writer + take > m->max ? BP_ECAP : BP_OK;
        if (bp_buf_write_buf(b, src, take) != expect)
            mismatch("write_buf in result differs");
        if (expect == BP_OK) {
            memcpy(m->bytes + m->writer, tmp, take);
            m->writer += take;
        }
        bp_buf_release(src);
        break;
    }
    case 4: { /* copy out into another buffer */
        bp_buf *dst = bp_buf_new(pool, 0, 0);
        expect = n > m->writer - m->reader ? BP_EBOUNDS : BP_OK;
        if (bp_buf_write_buf(dst, b, n) != expect)
            mismatch("write_buf out result differs");
        if (expect == BP_OK) {
            if (bp_buf_read_bytes(dst, tmp, n) != BP_OK || memcmp(tmp, m->bytes + m->reader, n))
                mismatch("write_buf out bytes differ");
            m->reader += n;
        }
        bp_buf_release(dst);
        break;
    }
    case 5: /* a write to a pipe: what it consumed goes, the indexes follow */
        if (m->writer > m->reader) {
            ssize_t w = bp_buf_writev_fd(b, pipe_fds[1], n);
            size_t want = BP_MIN(n ? n : SIZE_MAX, m->writer - m->reader);
            if (w != (ssize_t)want || read(pipe_fds[0], tmp, want) != (ssize_t)want ||
                memcmp(tmp, m->bytes + m->reader, want) != 0) {
                mismatch("writev_fd differs");
                break;
            }
            m->reader += want;
            size_t gone = m->reader - b->reader;
            memmove(m->bytes, m->bytes + gone, m->writer - gone);
            m->writer -= gone;
            m->reader -= gone;
        }
        break;
    case 6: /* the threshold moves, or an explicit consolidation */
        if (test_below(r, 2) == 0) {
            if (bp_buf_set_consolidate_at(b, (unsigned)test_below(r, 24)) != BP_OK)
                mismatch("set_consolidate_at failed");
        } else if (bp_buf_consolidate(b) != BP_OK || bp_buf_part_count(b) > 1) {
            mismatch("consolidate failed");
        }
        break;
    default: /* a drained composite gives its parts back */
        expect = m->writer != m->reader ? BP_EINVAL : BP_OK;
        if (bp_buf_shrink(b) != expect)
            mismatch("shrink result differs");
        if (expect == BP_OK) {
            m->reader = m->writer = 0;
            if (bp_buf_part_count(b) != 0 || bp_buf_capacity(b) != 0)
                mismatch("shrink kept parts");
        }
        break;
    }
}

static void run(uint64_t seed, bool composite, long ops)
{
    test_rng r = {seed};
    int before = test_failures;
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    for (long round = 0; round < ops / 500 && test_failures == before; round++) {
        model m = {.max = 1024 + test_below(&r, MODEL_MAX - 1024)};
        bp_buf *b;
        if (composite) {
            b = bp_buf_composite(pool, 64);
            bp_buf_ext_of(b)->max_capacity = m.max;
            for (int i = (int)test_below(&r, 4); i > 0; i--) { /* a few parts to start */
                size_t n = test_below(&r, 40);
                bp_buf *part = bp_buf_new(pool, n, n);
                for (size_t k = 0; k < n; k++) {
                    uint8_t byte = (uint8_t)test_rand(&r);
                    bp_buf_write_u8(part, byte);
                    m.bytes[m.writer++] = byte;
                }
                bp_buf_append(b, part);
            }
        } else {
            b = bp_buf_new(pool, test_below(&r, 200), m.max);
        }
        for (int i = 0; i < 500; i++, op++) {
            if (composite && test_below(&r, 3) == 0)
                composite_step(&r, b, &m, pipe_fds);
            else
                step(&r, b, &m, composite);
            if (i % 50 == 0)
                compare(b, &m);
        }
        compare(b, &m);
        bp_buf_release(b);
    }
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

static void test_model(void)
{
    const char *san = getenv("BP_SANITIZER");
    long ops = san != NULL && *san != '\0' ? 50000 : 200000;
    seed_used = test_seed(0xb0ffe5);
    run(seed_used, false, ops);
    run(seed_used + 1, true, ops);
    printf("  %ld operations\n", op);
}

int main(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_model);
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0);
    bp_pool_destroy(pool);
    return test_report();
}
