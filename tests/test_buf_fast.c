/* test_buf_fast.c — bufpool.h's inline buffer calls: a 64-byte buffer's memory, each inline
 * call at its bound (the last fitting index, the first outside, an index that would overflow
 * the bound's sum), the buffers the inline tests must send out of line (read-only, composite,
 * empty), release of each kind, and the exported copies behind a taken address. Only the
 * public API, as a program sees it. */
#include "bufpool.h"
#include "test.h"

#include <errno.h>
#include <string.h>

static bp_pool *pool;

/* A 64-byte buffer sits in the 112-byte class or below: the header is 48 bytes. */
static void test_small_buffer_memory(void)
{
    bp_buf *b = bp_buf_new(pool, 64, 0);
    REQUIRE(b != NULL);
    CHECK_OP(bp_usable_size(b), <=, 112);
    CHECK_EQ(sizeof(struct bp_buf), 48);
    CHECK_EQ(BP_BUF_ABI_VERSION, 1);
    CHECK(bp_buf_release(b));
}

/* The typed calls of one width at their bounds, on a buffer of capacity 16 that may not
 * grow: a failed call changes neither the indexes nor the value it was given. */
#define CHECK_TYPED_BOUNDS(name, type, width)                                                      \
    do {                                                                                           \
        bp_buf *b = bp_buf_new(pool, 16, 16);                                                      \
        REQUIRE(b != NULL);                                                                        \
        size_t n = 0;                                                                              \
        while (n + (width) <= 16) {                                                                \
            CHECK_EQ(bp_buf_write_##name(b, (type)(n + 1)), BP_OK);                                \
            n += (width);                                                                          \
        }                                                                                          \
        CHECK_EQ(bp_buf_writer_index(b), n);                                                       \
        CHECK_EQ(bp_buf_write_##name(b, (type)1), BP_ECAP); /* one past the capacity */            \
        CHECK_EQ(bp_buf_writer_index(b), n);                                                       \
        type v = (type)77;                                                                         \
        CHECK_EQ(bp_buf_get_##name(b, n - (width), &v), BP_OK); /* the last that fits */           \
        CHECK_EQ(v, (type)(n - (width) + 1));                                                      \
        v = (type)77;                                                                              \
        CHECK_EQ(bp_buf_get_##name(b, n - (width) + 1, &v), BP_EBOUNDS);                           \
        CHECK_EQ(bp_buf_get_##name(b, SIZE_MAX - 1, &v), BP_EBOUNDS); /* idx + width wraps */      \
        CHECK_EQ(v, (type)77);                                                                     \
        CHECK_EQ(bp_buf_set_##name(b, 16 - (width), (type)5), BP_OK);                              \
        CHECK_EQ(bp_buf_set_##name(b, 16 - (width) + 1, (type)5), BP_EBOUNDS);                     \
        CHECK_EQ(bp_buf_set_##name(b, SIZE_MAX - 1, (type)5), BP_EBOUNDS);                         \
        CHECK_EQ(bp_buf_set_index(b, 0, n), BP_OK);                                                \
        size_t left = n;                                                                           \
        while (left >= (width)) {                                                                  \
            CHECK_EQ(bp_buf_read_##name(b, &v), BP_OK);                                            \
            left -= (width);                                                                       \
        }                                                                                          \
        v = (type)77;                                                                              \
        CHECK_EQ(bp_buf_read_##name(b, &v), BP_EBOUNDS); /* fewer readable than width */           \
        CHECK_EQ(v, (type)77);                                                                     \
        CHECK_EQ(bp_buf_reader_index(b), n);                                                       \
        CHECK(bp_buf_release(b));                                                                  \
    } while (0)

static void test_typed_bounds(void)
{
    CHECK_TYPED_BOUNDS(u8, uint8_t, 1);
    CHECK_TYPED_BOUNDS(i8, int8_t, 1);
    CHECK_TYPED_BOUNDS(u16_be, uint16_t, 2);
    CHECK_TYPED_BOUNDS(u16_le, uint16_t, 2);
    CHECK_TYPED_BOUNDS(u24_be, uint32_t, 3);
    CHECK_TYPED_BOUNDS(u24_le, uint32_t, 3);
    CHECK_TYPED_BOUNDS(u32_be, uint32_t, 4);
    CHECK_TYPED_BOUNDS(u32_le, uint32_t, 4);
    CHECK_TYPED_BOUNDS(u64_be, uint64_t, 8);
    CHECK_TYPED_BOUNDS(u64_le, uint64_t, 8);
    CHECK_TYPED_BOUNDS(f32_be, float, 4);
    CHECK_TYPED_BOUNDS(f32_le, float, 4);
    CHECK_TYPED_BOUNDS(f64_be, double, 8);
    CHECK_TYPED_BOUNDS(f64_le, double, 8);
}

/* The byte order of each width, against bytes written one by one. */
static void test_typed_byte_order(void)
{
    static const uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bp_buf *b = bp_buf_new(pool, 8, 0);
    REQUIRE(bp_buf_write_bytes(b, bytes, 8) == BP_OK);
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    CHECK(bp_buf_get_u16_be(b, 0, &u16) == BP_OK && u16 == 0x0102);
    CHECK(bp_buf_get_u16_le(b, 0, &u16) == BP_OK && u16 == 0x0201);
    CHECK(bp_buf_get_u24_be(b, 0, &u32) == BP_OK && u32 == 0x010203);
    CHECK(bp_buf_get_u24_le(b, 0, &u32) == BP_OK && u32 == 0x030201);
    CHECK(bp_buf_get_u32_be(b, 0, &u32) == BP_OK && u32 == 0x01020304);
    CHECK(bp_buf_get_u32_le(b, 0, &u32) == BP_OK && u32 == 0x04030201);
    CHECK(bp_buf_get_u64_be(b, 0, &u64) == BP_OK && u64 == 0x0102030405060708u);
    CHECK(bp_buf_get_u64_le(b, 0, &u64) == BP_OK && u64 == 0x0807060504030201u);
    CHECK_EQ(bp_buf_set_u24_be(b, 1, 0xaabbcc), BP_OK);
    uint8_t got[8] = {0};
    CHECK(bp_buf_get_bytes(b, 0, got, 8) == BP_OK && got[1] == 0xaa && got[3] == 0xcc &&
          got[4] == 5);
    int8_t i8 = 0;
    CHECK_EQ(bp_buf_set_i8(b, 0, -3), BP_OK);
    CHECK(bp_buf_get_i8(b, 0, &i8) == BP_OK && i8 == -3);
    CHECK(bp_buf_release(b));
}

/* read_bytes and write_bytes at their bounds, zero bytes included (they go out of line). */
static void test_bytes_bounds(void)
{
    uint8_t src[32], dst[32];
    for (int i = 0; i < 32; i++)
        src[i] = (uint8_t)i;
    bp_buf *b = bp_buf_new(pool, 16, 16);
    CHECK_EQ(bp_buf_write_bytes(b, src, 16), BP_OK); /* exactly the capacity */
    CHECK_EQ(bp_buf_write_bytes(b, src, 1), BP_ECAP);
    CHECK_EQ(bp_buf_write_bytes(b, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_write_bytes(b, src, SIZE_MAX), BP_ECAP); /* writer + n wraps */
    CHECK_EQ(bp_buf_writer_index(b), 16);
    CHECK_EQ(bp_buf_writable(b), 0);
    CHECK_EQ(bp_buf_readable(b), 16);
    memset(dst, 0xee, sizeof dst);
    CHECK_EQ(bp_buf_read_bytes(b, dst, 17), BP_EBOUNDS);
    CHECK_EQ(bp_buf_read_bytes(b, dst, SIZE_MAX), BP_EBOUNDS);
    CHECK_EQ(dst[0], 0xee);
    CHECK_EQ(bp_buf_read_bytes(b, dst, 16), BP_OK);
    CHECK(memcmp(dst, src, 16) == 0);
    CHECK_EQ(bp_buf_read_bytes(b, NULL, 0), BP_OK);
    CHECK_EQ(bp_buf_read_bytes(b, dst, 1), BP_EBOUNDS);
    CHECK(bp_buf_release(b));

    b = bp_buf_new(pool, 8, 0); /* a growing one: the write past the capacity grows it */
    CHECK_EQ(bp_buf_write_bytes(b, src, 32), BP_OK);
    CHECK_OP(bp_buf_capacity(b), >=, 32);
    CHECK_EQ(bp_buf_writable(b), bp_buf_capacity(b) - 32);
    CHECK(bp_buf_read_bytes(b, dst, 32) == BP_OK && memcmp(dst, src, 32) == 0);
    CHECK(bp_buf_release(b));
}

/* A read-only view: every write fails with BP_ERDONLY, zero bytes included, and reads work;
 * writable is still capacity - writer. */
static void test_readonly_goes_out_of_line(void)
{
    bp_buf *b = bp_buf_new(pool, 16, 0);
    REQUIRE(bp_buf_write_bytes(b, "0123456789", 10) == BP_OK);
    bp_buf *v = bp_buf_slice(b, 0, 16, BP_RDONLY);
    REQUIRE(v != NULL);
    CHECK_EQ(bp_buf_set_index(v, 0, 4), BP_OK);
    CHECK_EQ(bp_buf_write_u8(v, 1), BP_ERDONLY);
    CHECK_EQ(bp_buf_write_u64_le(v, 1), BP_ERDONLY);
    CHECK_EQ(bp_buf_write_bytes(v, "x", 1), BP_ERDONLY);
    CHECK_EQ(bp_buf_write_bytes(v, NULL, 0), BP_ERDONLY);
    CHECK_EQ(bp_buf_set_u8(v, 0, 1), BP_ERDONLY);
    CHECK_EQ(bp_buf_set_u8(v, 16, 1), BP_EBOUNDS); /* bounds first, as before */
    CHECK_EQ(bp_buf_writer_index(v), 4);
    CHECK_EQ(bp_buf_writable(v), 12);
    CHECK_EQ(bp_buf_readable(v), 4);
    uint32_t u32 = 0;
    CHECK(bp_buf_read_u32_be(v, &u32) == BP_OK && u32 == 0x30313233);
    char text[4] = {0};
    CHECK(bp_buf_get_bytes(b, 0, text, 4) == BP_OK && memcmp(text, "0123", 4) == 0);
    CHECK(bp_buf_release(b)); /* b goes; its memory stays for the view */
    CHECK(bp_buf_get_u32_be(v, 0, &u32) == BP_OK && u32 == 0x30313233);
    CHECK(bp_buf_release(v));
}

/* A composite: the inline tests send every call out of line, which does the whole work. */
static void test_composite_goes_out_of_line(void)
{
    bp_buf *c = bp_buf_composite(pool, 8);
    REQUIRE(c != NULL);
    for (int i = 0; i < 2; i++) {
        bp_buf *part = bp_buf_new(pool, 2, 0);
        REQUIRE(bp_buf_write_bytes(part, i == 0 ? "ab" : "cd", 2) == BP_OK);
        REQUIRE(bp_buf_append(c, part) == BP_OK);
    }
    CHECK_EQ(bp_buf_readable(c), 4);
    CHECK_EQ(bp_buf_writable(c), 0);
    uint16_t u16 = 0;
    CHECK(bp_buf_get_u16_be(c, 1, &u16) == BP_OK && u16 == 0x6263); /* across the parts */
    uint32_t u32 = 0;
    CHECK(bp_buf_read_u32_be(c, &u32) == BP_OK && u32 == 0x61626364);
    CHECK_EQ(bp_buf_read_u8(c, (uint8_t *)&u16), BP_EBOUNDS);
    CHECK_EQ(bp_buf_write_u16_le(c, 0x6665), BP_OK); /* grows by a part */
    CHECK_EQ(bp_buf_part_count(c), 3);
    char tail[2] = {0};
    CHECK(bp_buf_read_bytes(c, tail, 2) == BP_OK && memcmp(tail, "ef", 2) == 0);
    CHECK(bp_buf_release(c));
}

static int wrapped_frees;
static void count_free(void *mem, void *ud)
{
    (void)mem;
    (void)ud;
    wrapped_frees++;
}

/* Release of each kind: plain (inline), retained, grown, viewed, wrapped. */
static void test_release_kinds(void)
{
    bp_buf *b = bp_buf_new(pool, 8, 0);
    CHECK(bp_buf_release(b));

    b = bp_buf_retain(bp_buf_new(pool, 8, 0));
    CHECK_EQ(bp_buf_refcnt(b), 2);
    CHECK(!bp_buf_release(b));
    CHECK(bp_buf_release(b));

    b = bp_buf_new(pool, 8, 0);
    static char big[5000];
    CHECK_EQ(bp_buf_write_bytes(b, big, sizeof big), BP_OK); /* the bytes move out */
    bp_buf *v = bp_buf_read_slice(b, 100);
    REQUIRE(v != NULL);
    CHECK(bp_buf_release(b));
    CHECK_EQ(bp_buf_readable(v), 100);
    CHECK(bp_buf_release(v));

    char mem[16] = "wrapped";
    wrapped_frees = 0;
    b = bp_buf_wrap(pool, mem, sizeof mem, 7, count_free, NULL, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_writable(b), 9);
    CHECK_EQ(bp_buf_write_u8(b, '!'), BP_OK); /* inline, into the caller's memory */
    CHECK_EQ(mem[7], '!');
    CHECK(bp_buf_release(b));
    CHECK_EQ(wrapped_frees, 1);

    errno = 0;
    CHECK(bp_buf_wrap(pool, mem, SIZE_MAX / 2 + 1, 0, NULL, NULL, 0) == NULL);
    CHECK_EQ(errno, EINVAL);
}

/* A taken address is a call like any other (the program's inline copy, or the library's). */
static void test_address_taken(void)
{
    int (*write_u32)(bp_buf *, uint32_t) = bp_buf_write_u32_be;
    int (*read_u32)(bp_buf *, uint32_t *) = bp_buf_read_u32_be;
    bool (*release)(bp_buf *) = bp_buf_release;
    bp_buf *b = bp_buf_new(pool, 4, 4);
    uint32_t v = 0;
    CHECK_EQ(write_u32(b, 0xdeadbeef), BP_OK);
    CHECK_EQ(write_u32(b, 1), BP_ECAP);
    CHECK(read_u32(b, &v) == BP_OK && v == 0xdeadbeef);
    CHECK(release(b));
}

int main(void)
{
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 1;
    cfg.leak_level = 0;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_small_buffer_memory);
    RUN(test_typed_bounds);
    RUN(test_typed_byte_order);
    RUN(test_bytes_bounds);
    RUN(test_readonly_goes_out_of_line);
    RUN(test_composite_goes_out_of_line);
    RUN(test_release_kinds);
    RUN(test_address_taken);
    bp_thread_flush(pool);
    bp_stats s;
    s.struct_size = sizeof s;
    bp_pool_stats(pool, &s);
    CHECK_EQ(s.active_bytes, 0); /* every header, extension and grown block went back */
    bp_pool_destroy(pool);
    return test_report();
}
