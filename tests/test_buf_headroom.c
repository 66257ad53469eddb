/* test_buf_headroom.c — headroom and prepend (bytes and typed, inside the headroom and past
 * it, against max, read-only buffers, views and composites, a source inside the buffer),
 * bp_buf_peek, the inline bp_buf_new's argument rules, a composite slice inside one part,
 * and the frame codes' numbers and texts. Only the public API, as a program sees it. */
#include "bufpool.h"
#include "test.h"

#include <errno.h>
#include <string.h>

static bp_pool *pool;

static uint64_t allocations_now(void)
{
    static bp_stats s;
    s.struct_size = sizeof s;
    REQUIRE(bp_pool_stats(pool, &s) == BP_OK);
    return s.program_allocations;
}

/* The readable bytes of b as they are, compared with `want`. */
static void check_readable(bp_buf *b, const void *want, size_t n)
{
    uint8_t got[256];
    REQUIRE(n <= sizeof got);
    CHECK_EQ(bp_buf_readable(b), n);
    CHECK_EQ(bp_buf_get_bytes(b, bp_buf_reader_index(b), got, n), BP_OK);
    CHECK(memcmp(got, want, n) == 0);
}

static void test_new_headroom(void)
{
    bp_buf *b = bp_buf_new_headroom(pool, 16, 32, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_reader_index(b), 16);
    CHECK_EQ(bp_buf_writer_index(b), 16);
    CHECK_EQ(bp_buf_capacity(b), 48);
    CHECK_EQ(bp_buf_writable(b), 32);
    CHECK_EQ(bp_buf_max_capacity(b), SIZE_MAX / 2);
    CHECK(bp_buf_release(b));

    b = bp_buf_new_headroom(pool, 8, 8, 16); /* exactly at max */
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_max_capacity(b), 16);
    CHECK(bp_buf_release(b));

    errno = 0;
    CHECK(bp_buf_new_headroom(pool, 9, 8, 16) == NULL); /* headroom + initial > max */
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(bp_buf_new_headroom(pool, SIZE_MAX, 8, 0) == NULL); /* a sum that would wrap */
    CHECK_EQ(errno, EINVAL);
}

/* Inside the headroom the body stays where it is: only the reader index moves down. */
static void test_prepend_in_headroom(void)
{
    bp_buf *b = bp_buf_new_headroom(pool, 16, 32, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "body", 4), BP_OK);
    const uint8_t *body = NULL;
    CHECK_EQ(bp_buf_peek(b, &body), 4);
    CHECK_EQ(bp_buf_prepend_u16_be(b, 0x0102), BP_OK);
    CHECK_EQ(bp_buf_prepend_bytes(b, "hd", 2), BP_OK);
    CHECK_EQ(bp_buf_prepend_u8(b, 0x7f), BP_OK);
    CHECK_EQ(bp_buf_reader_index(b), 11);
    CHECK_EQ(bp_buf_writer_index(b), 20);
    const uint8_t *now = NULL;
    CHECK_EQ(bp_buf_peek(b, &now), 9);
    CHECK(now + 5 == body); /* the body did not move */
    check_readable(b,
                   "\x7f"
                   "hd\x01\x02"
                   "body",
                   9);
    CHECK_EQ(bp_buf_prepend_bytes(b, NULL, 0), BP_OK); /* nothing, and no pointer needed */
    CHECK_EQ(bp_buf_reader_index(b), 11);
    CHECK(bp_buf_release(b));
}

/* Each typed prepend's byte order and width, down to index 0 of a buffer at its max: then
 * the next prepend may not grow, and changes nothing. */
static void test_prepend_typed(void)
{
    bp_buf *b = bp_buf_new_headroom(pool, 36, 0, 36);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_prepend_u64_le(b, 0x0807060504030201ull), BP_OK);
    CHECK_EQ(bp_buf_prepend_u64_be(b, 0x0102030405060708ull), BP_OK);
    CHECK_EQ(bp_buf_prepend_u32_le(b, 0x04030201u), BP_OK);
    CHECK_EQ(bp_buf_prepend_u32_be(b, 0x01020304u), BP_OK);
    CHECK_EQ(bp_buf_prepend_u24_le(b, 0xff030201u), BP_OK); /* the high byte is no part */
    CHECK_EQ(bp_buf_prepend_u24_be(b, 0xff010203u), BP_OK);
    CHECK_EQ(bp_buf_prepend_u16_le(b, 0x0201), BP_OK);
    CHECK_EQ(bp_buf_prepend_u16_be(b, 0x0102), BP_OK);
    CHECK_EQ(bp_buf_prepend_u8(b, 0x01), BP_OK);
    CHECK_EQ(bp_buf_reader_index(b), 1);
    CHECK_EQ(bp_buf_prepend_u16_be(b, 0xaaaa), BP_ECAP); /* one byte short, at max */
    CHECK_EQ(bp_buf_reader_index(b), 1);
    CHECK_EQ(bp_buf_prepend_u8(b, 0x01), BP_OK); /* the last byte fits */
    CHECK_EQ(bp_buf_prepend_u8(b, 0xaa), BP_ECAP);
    CHECK_EQ(bp_buf_reader_index(b), 0);
    CHECK_EQ(bp_buf_capacity(b), 36);
    static const uint8_t want[36] = {1, 1, 1, 2, 1, 2, 1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 1, 2,
                                     3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    check_readable(b, want, sizeof want);
    CHECK(bp_buf_release(b));
}

/* Past the headroom the buffer grows in front: every byte kept (those past the writer index
 * too), both indexes moved up by what was added, the prepended bytes in front. */
static void test_prepend_grows(void)
{
    bp_buf *b = bp_buf_new(pool, 64, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "0123456789", 10), BP_OK);
    CHECK_EQ(bp_buf_set_bytes(b, 20, "past", 4), BP_OK); /* set beyond the writer index */
    CHECK_EQ(bp_buf_read_u8(b, &(uint8_t){0}), BP_OK);   /* one byte of room: not enough */
    CHECK_EQ(bp_buf_prepend_bytes(b, "abc", 3), BP_OK);
    size_t reader = bp_buf_reader_index(b), writer = bp_buf_writer_index(b);
    CHECK_EQ(writer - reader, 12);
    size_t added = writer - 10;
    CHECK_OP(added, >=, 2);
    CHECK_EQ(bp_buf_capacity(b), 64 + added);
    check_readable(b, "abc123456789", 12);
    uint8_t got[4];
    CHECK_EQ(bp_buf_set_index(b, 0, bp_buf_capacity(b)), BP_OK);
    CHECK_EQ(bp_buf_get_bytes(b, 20 + added, got, 4), BP_OK);
    CHECK(memcmp(got, "past", 4) == 0);
    CHECK(bp_buf_release(b));

    /* a plain buffer with no headroom at all, and a typed prepend that goes out of line */
    b = bp_buf_new(pool, 8, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_u32_be(b, 0x05060708u), BP_OK);
    CHECK_EQ(bp_buf_prepend_u32_be(b, 0x01020304u), BP_OK);
    check_readable(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    CHECK(bp_buf_release(b));
}

/* Growth at the front respects max; a failed prepend changes nothing. */
static void test_prepend_max(void)
{
    bp_buf *b = bp_buf_new_headroom(pool, 2, 6, 10);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "xyz", 3), BP_OK);
    CHECK_EQ(bp_buf_prepend_bytes(b, "12345", 5), BP_ECAP); /* needs 3 more: 8 + 3 > 10 */
    CHECK_EQ(bp_buf_reader_index(b), 2);
    CHECK_EQ(bp_buf_writer_index(b), 5);
    CHECK_EQ(bp_buf_capacity(b), 8);
    check_readable(b, "xyz", 3);
    CHECK_EQ(bp_buf_prepend_bytes(b, "1234", 4), BP_OK); /* needs 2: up to max exactly */
    CHECK_EQ(bp_buf_capacity(b), 10);
    CHECK_EQ(bp_buf_reader_index(b), 0);
    check_readable(b, "1234xyz", 7);
    CHECK(bp_buf_release(b));
}

/* Read-only buffers refuse, views cannot grow (but take prepends in their reader index),
 * and a view keeps seeing the bytes it shares when the buffer grows at the front. */
static void test_prepend_kinds(void)
{
    static uint8_t memory[16] = "hello";
    bp_buf *ro = bp_buf_wrap(pool, memory, sizeof memory, 5, NULL, NULL, BP_RDONLY);
    REQUIRE(ro != NULL);
    CHECK_EQ(bp_buf_skip(ro, 2), BP_OK);
    CHECK_EQ(bp_buf_prepend_u8(ro, 1), BP_ERDONLY); /* even with room */
    CHECK_EQ(bp_buf_prepend_bytes(ro, "a", 1), BP_ERDONLY);
    CHECK_EQ(bp_buf_reader_index(ro), 2);
    CHECK(bp_buf_release(ro));

    bp_buf *b = bp_buf_new_headroom(pool, 4, 12, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "shared", 6), BP_OK);
    bp_buf *v = bp_buf_duplicate(b, 0);
    REQUIRE(v != NULL);
    CHECK_EQ(bp_buf_prepend_u16_be(v, 0x4142), BP_OK);    /* inside the view's reader index */
    CHECK_EQ(bp_buf_prepend_bytes(v, "abc", 3), BP_ECAP); /* a view never grows */
    CHECK_EQ(bp_buf_reader_index(v), 2);
    CHECK_EQ(bp_buf_prepend_bytes(b, "0123456789", 10), BP_OK); /* b moves to new memory */
    check_readable(b, "0123456789shared", 16);
    check_readable(v, "ABshared", 8); /* the view's bytes stayed */
    CHECK(bp_buf_release(b));         /* its header; the view holds the old memory */
    CHECK(bp_buf_release(v));
}

/* A source inside the buffer itself, whose bytes move with the growth. */
static void test_prepend_from_itself(void)
{
    bp_buf *b = bp_buf_new(pool, 8, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_write_bytes(b, "abcdefgh", 8), BP_OK);
    const uint8_t *p = NULL;
    CHECK_EQ(bp_buf_peek(b, &p), 8);
    CHECK_EQ(bp_buf_prepend_bytes(b, p + 4, 4), BP_OK); /* "efgh" in front */
    check_readable(b, "efghabcdefgh", 12);
    CHECK_EQ(bp_buf_peek(b, &p), 12);
    CHECK_EQ(bp_buf_skip(b, 2), BP_OK);
    CHECK_EQ(bp_buf_prepend_bytes(b, p + 4, 2), BP_OK); /* overlapping, in the headroom */
    check_readable(b, "abghabcdefgh", 12);
    CHECK(bp_buf_release(b));
}

static bp_buf *filled(const char *text)
{
    size_t n = strlen(text);
    bp_buf *b = bp_buf_new(pool, n, 0);
    REQUIRE(b != NULL);
    REQUIRE(bp_buf_write_bytes(b, text, n) == BP_OK);
    return b;
}

/* A composite takes prepends into its parts' bytes below its reader index only. */
static void test_prepend_composite(void)
{
    bp_buf *c = bp_buf_composite(pool, 4);
    REQUIRE(c != NULL);
    CHECK_EQ(bp_buf_append(c, filled("abcd")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("efgh")), BP_OK);
    CHECK_EQ(bp_buf_skip(c, 5), BP_OK);
    CHECK_EQ(bp_buf_prepend_u16_be(c, 0x5859), BP_OK); /* across the two parts */
    CHECK_EQ(bp_buf_reader_index(c), 3);
    check_readable(c, "XYfgh", 5);
    CHECK_EQ(bp_buf_prepend_bytes(c, "1234", 4), BP_ECAP); /* past its reader index */
    CHECK_EQ(bp_buf_reader_index(c), 3);
    check_readable(c, "XYfgh", 5);
    CHECK(bp_buf_release(c));
}

/* bp_buf_peek: all readable bytes of a contiguous buffer, the first part's of a composite. */
static void test_peek(void)
{
    bp_buf *b = filled("peek");
    const uint8_t *p = NULL;
    CHECK_EQ(bp_buf_peek(b, &p), 4);
    CHECK(p != NULL && memcmp(p, "peek", 4) == 0);
    CHECK_EQ(bp_buf_skip(b, 1), BP_OK);
    CHECK_EQ(bp_buf_peek(b, &p), 3);
    CHECK(memcmp(p, "eek", 3) == 0);
    CHECK_EQ(bp_buf_skip(b, 4), BP_EBOUNDS);
    CHECK_EQ(bp_buf_reader_index(b), 1);
    CHECK(bp_buf_release(b));

    bp_buf *c = bp_buf_composite(pool, 4);
    REQUIRE(c != NULL);
    CHECK_EQ(bp_buf_peek(c, &p), 0);
    CHECK_EQ(bp_buf_append(c, filled("abc")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("defg")), BP_OK);
    CHECK_EQ(bp_buf_peek(c, &p), 3);
    CHECK(p != NULL && memcmp(p, "abc", 3) == 0);
    CHECK_EQ(bp_buf_skip(c, 4), BP_OK);
    CHECK_EQ(bp_buf_peek(c, &p), 3);
    CHECK(p != NULL && memcmp(p, "efg", 3) == 0);
    CHECK(bp_buf_release(c));
}

/* The inline bp_buf_new keeps bp_buf_new's rules for max and its errors. */
static void test_new_arguments(void)
{
    bp_buf *b = bp_buf_new(pool, 64, 0);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_capacity(b), 64);
    CHECK_EQ(bp_buf_max_capacity(b), SIZE_MAX / 2);
    CHECK_EQ(bp_buf_refcnt(b), 1);
    CHECK_EQ(bp_buf_readable(b), 0);
    CHECK(bp_buf_release(b));
    volatile size_t huge = SIZE_MAX, initial = 100, max = 100, small = 99;
    b = bp_buf_new(pool, initial, huge); /* past the limit: no limit */
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_max_capacity(b), SIZE_MAX / 2);
    CHECK(bp_buf_release(b));
    b = bp_buf_new(pool, initial, max);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_max_capacity(b), 100);
    CHECK_EQ(bp_buf_write_zero(b, 101), BP_ECAP);
    CHECK(bp_buf_release(b));
    errno = 0;
    CHECK(bp_buf_new(pool, initial, small) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(bp_buf_new(pool, huge, 0) == NULL); /* past the limit itself */
    CHECK_EQ(errno, EINVAL);
    b = bp_buf_new(pool, 1 << 20, 0); /* a size no thread caches */
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_capacity(b), 1 << 20);
    CHECK(bp_buf_release(b));
}

/* A pool with leak tracking: buffers from the inline bp_buf_new are tracked too. */
static void test_new_tracked(void)
{
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.leak_level = 3;
    bp_pool *tracked = bp_pool_new(&cfg);
    REQUIRE(tracked != NULL);
    bp_buf *b = bp_buf_new(tracked, 64, 0);
    REQUIRE(b != NULL);
    FILE *out = tmpfile();
    REQUIRE(out != NULL);
    CHECK_EQ(bp_leak_report(tracked, out), 1);
    fclose(out);
    CHECK(bp_buf_release(b));
    bp_pool_destroy(tracked);
}

/* A slice inside one part of a composite is one plain view: one block, no composite. */
static void test_slice_inside_part(void)
{
    bp_buf *c = bp_buf_composite(pool, 4);
    REQUIRE(c != NULL);
    CHECK_EQ(bp_buf_append(c, filled("abcd")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("efghij")), BP_OK);
    /* the parts' bookkeeping first, so the count below is the slice's alone */
    bp_buf *warm = bp_buf_slice(c, 5, 2, 0);
    REQUIRE(warm != NULL);
    CHECK(bp_buf_release(warm));
    uint64_t before = allocations_now();
    bp_buf *s = bp_buf_slice(c, 5, 4, 0);
    REQUIRE(s != NULL);
    CHECK_EQ(allocations_now() - before, 1);
    const uint8_t *p = NULL;
    CHECK_EQ(bp_buf_peek(s, &p), 4);
    CHECK(p != NULL && memcmp(p, "fghi", 4) == 0);
    CHECK_EQ(bp_buf_capacity(s), 4);
    CHECK_EQ(bp_buf_write_u8(s, 1), BP_ECAP);  /* a view never grows */
    CHECK_EQ(bp_buf_set_u8(s, 0, 'F'), BP_OK); /* and shares the bytes */
    check_readable(c, "abcdeFghij", 10);
    CHECK(bp_buf_release(s));
    bp_buf *across = bp_buf_slice(c, 2, 4, 0); /* two parts: a composite view */
    REQUIRE(across != NULL);
    CHECK_EQ(bp_buf_part_count(across), 2);
    check_readable(across, "cdeF", 4);
    CHECK(bp_buf_release(across));
    bp_buf *end = bp_buf_slice(c, 4, 6, BP_RDONLY); /* all of the last part, read-only */
    REQUIRE(end != NULL);
    CHECK_EQ(bp_buf_part_count(end), 1);
    CHECK(bp_buf_is_readonly(end));
    CHECK_EQ(bp_buf_set_u8(end, 0, 'x'), BP_ERDONLY);
    CHECK(bp_buf_release(end));
    CHECK(bp_buf_release(c));
}

/* The frame decoders' codes: the errors stay dense, and bp_strerror names every one. */
static void test_frame_codes(void)
{
    CHECK_EQ(BP_ETOOLONG, BP_EIO - 1);
    CHECK_STR(bp_strerror(BP_NEED_MORE), "no whole frame yet");
    CHECK_STR(bp_strerror(BP_SKIPPED), "frame over its maximum dropped");
    CHECK_STR(bp_strerror(BP_ETOOLONG), "frame over its maximum");
    CHECK_STR(bp_strerror(-100), "unknown bufpool error");
}

int main(void)
{
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 1;
    cfg.leak_level = 0;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_new_headroom);
    RUN(test_prepend_in_headroom);
    RUN(test_prepend_typed);
    RUN(test_prepend_grows);
    RUN(test_prepend_max);
    RUN(test_prepend_kinds);
    RUN(test_prepend_from_itself);
    RUN(test_prepend_composite);
    RUN(test_peek);
    RUN(test_new_arguments);
    RUN(test_new_tracked);
    RUN(test_slice_inside_part);
    RUN(test_frame_codes);
    bp_thread_flush(pool);
    bp_stats s;
    s.struct_size = sizeof s;
    bp_pool_stats(pool, &s);
    CHECK_EQ(s.active_bytes, 0); /* every header, extension and grown block went back */
    bp_pool_destroy(pool);
    return test_report();
}
