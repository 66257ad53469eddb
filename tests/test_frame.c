/* test_frame.c — the frame decoders and the length-field prepender: Netty's documented
 * length-field examples, lines (LF, CRLF, kept or stripped), delimiters (several, the
 * shortest frame first), frames over the maximum under each policy, corrupt length fields,
 * frames spanning the parts of a composite, failed calls changing nothing, and a model test:
 * random streams split at random points, fed to contiguous and composite inputs, decode to
 * what the unsplit stream decodes to (fixed seed, printed, replayable with BP_TEST_SEED).
 * Runs with leak detection at level 3: every frame handed out is released. */
#include "bufpool.h"
#include "test.h"

#include <string.h>

static bp_pool *pool;

/* A contiguous buffer holding n bytes. */
static bp_buf *bytes_buf(const void *bytes, size_t n)
{
    bp_buf *b = bp_buf_new(pool, n, 0);
    REQUIRE(b != NULL);
    REQUIRE(bp_buf_write_bytes(b, bytes, n) == BP_OK);
    return b;
}

/* A composite of the n bytes cut into parts at each of cuts[0..ncuts) (ascending). */
static bp_buf *composite_of(const void *bytes, size_t n, const size_t *cuts, size_t ncuts)
{
    bp_buf *c = bp_buf_composite(pool, 64);
    REQUIRE(c != NULL);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        REQUIRE(bp_buf_append(c, bytes_buf((const uint8_t *)bytes + at, to - at)) == BP_OK);
        at = to;
    }
    return c;
}

/* Whether the frame's readable bytes are exactly want[0, n); releases the frame. */
static bool frame_is(bp_buf *frame, const void *want, size_t n)
{
    uint8_t got[512];
    bool ok = frame != NULL && bp_buf_readable(frame) == n && n <= sizeof got &&
              bp_buf_get_bytes(frame, bp_buf_reader_index(frame), got, n) == BP_OK &&
              memcmp(got, want, n) == 0;
    if (frame != NULL)
        bp_buf_release(frame);
    return ok;
}

#define CHECK_FRAME(d, in, want)                                                                   \
    do {                                                                                           \
        bp_buf *frame_;                                                                            \
        CHECK_EQ(bp_frame_next((d), (in), &frame_), BP_OK);                                        \
        CHECK(frame_is(frame_, (want), sizeof(want) - 1));                                         \
    } while (0)

#define CHECK_RESULT(d, in, code)                                                                  \
    do {                                                                                           \
        bp_buf *frame_ = (bp_buf *)1;                                                              \
        CHECK_EQ(bp_frame_next((d), (in), &frame_), (code));                                       \
        CHECK(frame_ == NULL);                                                                     \
    } while (0)

/* ---- Netty's LengthFieldBasedFrameDecoder examples ------------------------------------- */

typedef struct netty_example {
    const char *name;
    size_t offset;
    unsigned size;
    int64_t adjustment;
    size_t strip;
    const char *before;
    size_t before_len;
    const char *after;
    size_t after_len;
} netty_example;

#define S(lit) lit, sizeof(lit) - 1
static const netty_example examples[] = {
    {"2-byte field at 0, header kept", 0, 2, 0, 0,
     S("\x00\x0c"
       "HELLO, WORLD"),
     S("\x00\x0c"
       "HELLO, WORLD")},
    {"2-byte field at 0, header stripped", 0, 2, 0, 2,
     S("\x00\x0c"
       "HELLO, WORLD"),
     S("HELLO, WORLD")},
    {"length of the whole message", 0, 2, -2, 0,
     S("\x00\x0e"
       "HELLO, WORLD"),
     S("\x00\x0e"
       "HELLO, WORLD")},
    {"3-byte field after a 2-byte header", 2, 3, 0, 0,
     S("\xca\xfe\x00\x00\x0c"
       "HELLO, WORLD"),
     S("\xca\xfe\x00\x00\x0c"
       "HELLO, WORLD")},
    {"3-byte field before a 2-byte header", 0, 3, 2, 0,
     S("\x00\x00\x0c\xca\xfe"
       "HELLO, WORLD"),
     S("\x00\x00\x0c\xca\xfe"
       "HELLO, WORLD")},
    {"field inside a 4-byte header, 3 stripped", 1, 2, 1, 3,
     S("\xca\x00\x0c\xfe"
       "HELLO, WORLD"),
     S("\xfe"
       "HELLO, WORLD")},
    {"as before, length of the whole message", 1, 2, -3, 3,
     S("\xca\x00\x10\xfe"
       "HELLO, WORLD"),
     S("\xfe"
       "HELLO, WORLD")},
};

static void test_netty_examples(void)
{
    for (size_t e = 0; e < sizeof examples / sizeof examples[0]; e++) {
        const netty_example *x = &examples[e];
        bp_frame_length_config cfg = {.max_frame = 1024,
                                      .field_offset = x->offset,
                                      .field_size = x->size,
                                      .adjustment = x->adjustment,
                                      .strip = x->strip};
        bp_frame_decoder d;
        REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
        /* whole, then byte by byte (each prefix needs more), then as a composite cut at
         * every byte */
        for (int way = 0; way < 3; way++) {
            bp_buf *in;
            if (way == 2) {
                size_t cuts[32];
                for (size_t i = 0; i + 1 < x->before_len; i++)
                    cuts[i] = i + 1;
                in = composite_of(x->before, x->before_len, cuts, x->before_len - 1);
            } else {
                in = bp_buf_new(pool, 0, 0);
            }
            if (way == 0)
                bp_buf_write_bytes(in, x->before, x->before_len);
            if (way == 1) {
                for (size_t i = 0; i + 1 < x->before_len; i++) {
                    bp_buf_write_u8(in, (uint8_t)x->before[i]);
                    CHECK_RESULT(&d, in, BP_NEED_MORE);
                    CHECK_EQ(bp_buf_reader_index(in), 0);
                }
                bp_buf_write_u8(in, (uint8_t)x->before[x->before_len - 1]);
            }
            bp_buf *frame;
            CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
            if (!frame_is(frame, x->after, x->after_len)) {
                fprintf(stderr, "example '%s' (way %d): wrong frame\n", x->name, way);
                test_failures++;
            }
            CHECK_EQ(bp_buf_readable(in), 0);
            CHECK_RESULT(&d, in, BP_NEED_MORE);
            bp_buf_release(in);
        }
    }
}

/* ---- lines ------------------------------------------------------------------------------ */

static void test_lines(void)
{
    bp_frame_decoder d;
    REQUIRE(bp_frame_line_init(&d, 16, 0) == BP_OK);
    bp_buf *in = bytes_buf(S("one\ntwo\r\n\nthree\r"));
    CHECK_FRAME(&d, in, "one");
    CHECK_FRAME(&d, in, "two");
    CHECK_FRAME(&d, in, "");
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    CHECK_EQ(bp_buf_readable(in), 6); /* "three\r" stays for its LF */
    bp_buf_write_bytes(in, S("\na\rb\n"));
    CHECK_FRAME(&d, in, "three");
    CHECK_FRAME(&d, in, "a\rb"); /* a CR alone is no delimiter */
    bp_buf_release(in);

    REQUIRE(bp_frame_line_init(&d, 16, BP_FRAME_KEEP_DELIMITER) == BP_OK);
    in = bytes_buf(S("x\r\ny\n"));
    CHECK_FRAME(&d, in, "x\r\n");
    CHECK_FRAME(&d, in, "y\n");
    bp_buf_release(in);

    /* a line of exactly max bytes whose CR has come but not its LF waits (Netty calls it too
     * long when split there, and not when whole) */
    REQUIRE(bp_frame_line_init(&d, 4, 0) == BP_OK);
    in = bytes_buf(S("abcd\r"));
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    bp_buf_write_bytes(in, S("\n"));
    CHECK_FRAME(&d, in, "abcd");
    bp_buf_release(in);
}

/* A search goes on where the last one stopped: bytes already searched are not searched
 * again, shown by a byte the caller changes behind the decoder's back (which a rescan
 * would find). */
static void test_line_search_resumes(void)
{
    bp_frame_decoder d;
    REQUIRE(bp_frame_line_init(&d, 64, 0) == BP_OK);
    bp_buf *in = bytes_buf(S("abcdef"));
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    bp_buf_set_u8(in, 2, '\n'); /* already searched: not seen */
    bp_buf_write_bytes(in, S("gh\n"));
    CHECK_FRAME(&d, in, "ab\ndefgh");
    bp_buf_release(in);
}

static void test_lines_too_long(void)
{
    bp_frame_decoder d;
    /* default policy: BP_ETOOLONG, nothing consumed, again and again */
    REQUIRE(bp_frame_line_init(&d, 4, 0) == BP_OK);
    bp_buf *in = bytes_buf(S("ok\ntoolong\nnext\n"));
    CHECK_FRAME(&d, in, "ok");
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    CHECK_EQ(bp_buf_reader_index(in), 3);
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    bp_buf_release(in);
    in = bytes_buf(S("abcde")); /* no end yet, already too long */
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    CHECK_EQ(bp_buf_reader_index(in), 0);
    bp_buf_release(in);

    /* skip, reported as soon as seen, in one piece and in several */
    for (unsigned late = 0; late <= BP_FRAME_SKIP_REPORT_LATE; late += BP_FRAME_SKIP_REPORT_LATE) {
        REQUIRE(bp_frame_line_init(&d, 4, BP_FRAME_SKIP | late) == BP_OK);
        in = bytes_buf(S("toolong\r\nnext\n"));
        CHECK_RESULT(&d, in, BP_SKIPPED);
        CHECK_FRAME(&d, in, "next");
        bp_buf_release(in);

        in = bytes_buf(S("abcdef"));
        CHECK_RESULT(&d, in, late ? BP_NEED_MORE : BP_SKIPPED);
        CHECK_EQ(bp_buf_readable(in), 0);
        bp_buf_write_bytes(in, S("ghijk\r"));
        CHECK_RESULT(&d, in, BP_NEED_MORE);
        CHECK_EQ(bp_buf_readable(in), 1); /* the CR may start the delimiter: kept */
        bp_buf_write_bytes(in, S("\nfine\n"));
        if (late)
            CHECK_RESULT(&d, in, BP_SKIPPED);
        CHECK_FRAME(&d, in, "fine");
        CHECK_RESULT(&d, in, BP_NEED_MORE);
        bp_buf_release(in);
    }
}

/* ---- delimiters ------------------------------------------------------------------------- */

static void test_delimiters(void)
{
    bp_frame_decoder d;
    bp_frame_delimiter one[] = {{"--", 2}};
    REQUIRE(bp_frame_delimiter_init(&d, 32, one, 1, 0) == BP_OK);
    bp_buf *in = bytes_buf(S("a-b--c-"));
    CHECK_FRAME(&d, in, "a-b");
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    bp_buf_write_bytes(in, S("-"));
    CHECK_FRAME(&d, in, "c");
    bp_buf_release(in);

    /* several: the shortest frame; at the same byte, the first listed */
    bp_frame_delimiter several[] = {{"\r\n", 2}, {"\n", 1}, {"\r", 1}};
    REQUIRE(bp_frame_delimiter_init(&d, 32, several, 3, BP_FRAME_KEEP_DELIMITER) == BP_OK);
    in = bytes_buf(S("a\r\nb\nc\rd\r"));
    CHECK_FRAME(&d, in, "a\r\n");
    CHECK_FRAME(&d, in, "b\n");
    CHECK_FRAME(&d, in, "c\r");
    /* "d\r" could still be "d\r\n": the first listed, so it waits */
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    bp_buf_write_bytes(in, S("x"));
    CHECK_FRAME(&d, in, "d\r");
    bp_buf_release(in);

    /* a longer delimiter starting earlier may yet end the frame first: wait for it */
    bp_frame_delimiter overlap[] = {{"abcd", 4}, {"b", 1}};
    REQUIRE(bp_frame_delimiter_init(&d, 32, overlap, 2, 0) == BP_OK);
    in = bytes_buf(S("ab"));
    CHECK_RESULT(&d, in, BP_NEED_MORE);
    bp_buf_write_bytes(in, S("cd"));
    CHECK_FRAME(&d, in, "");
    bp_buf_write_bytes(in, S("xaby"));
    CHECK_FRAME(&d, in, "xa"); /* "aby" is no "abcd": "b" ends it */
    bp_buf_release(in);

    REQUIRE(bp_frame_delimiter_init(&d, 32, one, 0, 0) == BP_EINVAL);
    bp_frame_delimiter empty[] = {{"", 0}};
    REQUIRE(bp_frame_delimiter_init(&d, 32, empty, 1, 0) == BP_EINVAL);
}

static void test_delimiters_too_long(void)
{
    bp_frame_decoder d;
    bp_frame_delimiter one[] = {{"||", 2}};
    REQUIRE(bp_frame_delimiter_init(&d, 3, one, 1, BP_FRAME_SKIP) == BP_OK);
    bp_buf *in = bytes_buf(S("abcde|"));
    CHECK_RESULT(&d, in, BP_SKIPPED);
    CHECK_EQ(bp_buf_readable(in), 1); /* the '|' may start the delimiter */
    bp_buf_write_bytes(in, S("|ok||"));
    CHECK_FRAME(&d, in, "ok");
    bp_buf_release(in);
    REQUIRE(bp_frame_delimiter_init(&d, 3, one, 1, 0) == BP_OK);
    in = bytes_buf(S("abcd||"));
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    CHECK_EQ(bp_buf_readable(in), 6);
    bp_buf_release(in);
}

/* ---- length fields ---------------------------------------------------------------------- */

static void test_length_fields(void)
{
    static const unsigned sizes[] = {1, 2, 3, 4, 8, BP_FRAME_UVARINT};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (unsigned le = 0; le <= BP_FRAME_LITTLE_ENDIAN; le += BP_FRAME_LITTLE_ENDIAN) {
            unsigned size = sizes[s];
            bp_buf *body = bytes_buf(S("payload"));
            bp_buf *in = bp_buf_new(pool, 0, 0);
            CHECK_EQ(bp_frame_prepend_length(in, body, size, 0, le), BP_OK);
            CHECK_EQ(bp_frame_prepend_length(in, body, size, 0, le), BP_OK);
            size_t field = size == BP_FRAME_UVARINT ? 1 : size;
            CHECK_EQ(bp_buf_readable(in), 2 * (field + 7));
            CHECK_EQ(bp_buf_readable(body), 7);
            bp_frame_length_config cfg = {
                .max_frame = 64, .field_size = size, .strip = field, .flags = le};
            bp_frame_decoder d;
            REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
            CHECK_FRAME(&d, in, "payload");
            CHECK_FRAME(&d, in, "payload");
            CHECK_RESULT(&d, in, BP_NEED_MORE);
            bp_buf_release(in);
            bp_buf_release(body);
        }
    }
    /* big-endian 4-byte field by hand; little-endian 2-byte */
    bp_frame_decoder d;
    bp_frame_length_config cfg = {.max_frame = 64, .field_size = 4, .strip = 4};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    bp_buf *in = bytes_buf(S("\x00\x00\x00\x02hi"));
    CHECK_FRAME(&d, in, "hi");
    bp_buf_release(in);
    cfg = (bp_frame_length_config){
        .max_frame = 64, .field_size = 2, .flags = BP_FRAME_LITTLE_ENDIAN, .strip = 2};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    in = bytes_buf(S("\x03\x00"
                     "abc"));
    CHECK_FRAME(&d, in, "abc");
    bp_buf_release(in);

    /* set-up errors */
    cfg = (bp_frame_length_config){.max_frame = 64, .field_size = 5};
    CHECK_EQ(bp_frame_length_init(&d, &cfg), BP_EINVAL);
    cfg = (bp_frame_length_config){.max_frame = 4, .field_size = 4, .field_offset = 1};
    CHECK_EQ(bp_frame_length_init(&d, &cfg), BP_EINVAL);
    cfg = (bp_frame_length_config){.max_frame = 0, .field_size = 4};
    CHECK_EQ(bp_frame_length_init(&d, &cfg), BP_EINVAL);
    cfg = (bp_frame_length_config){
        .max_frame = 8, .field_size = 4, .flags = BP_FRAME_SKIP_REPORT_LATE};
    CHECK_EQ(bp_frame_length_init(&d, &cfg), BP_EINVAL);
}

static void test_length_corrupt(void)
{
    bp_frame_decoder d;
    /* the adjusted length falls below the field's end (Netty's CorruptedFrameException) */
    bp_frame_length_config cfg = {.max_frame = 64, .field_size = 2, .adjustment = -4};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    bp_buf *in = bytes_buf(S("\x00\x01xyz"));
    CHECK_RESULT(&d, in, BP_EINVAL);
    CHECK_EQ(bp_buf_reader_index(in), 0);
    bp_buf_release(in);
    /* more to strip than the frame holds */
    cfg = (bp_frame_length_config){.max_frame = 64, .field_size = 1, .strip = 4};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    in = bytes_buf(S("\x01x"));
    CHECK_RESULT(&d, in, BP_EINVAL);
    bp_buf_release(in);
    /* an overlong varint */
    cfg = (bp_frame_length_config){.max_frame = 64, .field_size = BP_FRAME_UVARINT};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    in = bytes_buf(S("\x80\x00"));
    CHECK_RESULT(&d, in, BP_EINVAL);
    bp_buf_release(in);
    /* an 8-byte field with every bit set: too long, never an overflow */
    cfg = (bp_frame_length_config){.max_frame = 64, .field_size = 8, .adjustment = INT64_MAX};
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    in = bytes_buf(S("\xff\xff\xff\xff\xff\xff\xff\xff"));
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    bp_buf_release(in);
    cfg.adjustment = INT64_MIN;
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    in = bytes_buf(S("\x00\x00\x00\x00\x00\x00\x00\x10"));
    CHECK_RESULT(&d, in, BP_EINVAL);
    bp_buf_release(in);
}

static void test_length_too_long(void)
{
    for (unsigned late = 0; late <= BP_FRAME_SKIP_REPORT_LATE; late += BP_FRAME_SKIP_REPORT_LATE) {
        bp_frame_length_config cfg = {
            .max_frame = 6, .field_size = 1, .strip = 1, .flags = BP_FRAME_SKIP | late};
        bp_frame_decoder d;
        REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
        bp_buf *in = bytes_buf(S("\x08"
                                 "abc"));
        CHECK_RESULT(&d, in, late ? BP_NEED_MORE : BP_SKIPPED);
        CHECK_EQ(bp_buf_readable(in), 0);
        bp_buf_write_bytes(in, S("defg"));
        CHECK_RESULT(&d, in, BP_NEED_MORE);
        bp_buf_write_bytes(in, S("h\x02ok"));
        if (late)
            CHECK_RESULT(&d, in, BP_SKIPPED);
        CHECK_FRAME(&d, in, "ok");
        /* whole in the input: dropped at once */
        bp_buf_write_bytes(in, S("\x07"
                                 "abcdefg\x01z"));
        CHECK_RESULT(&d, in, BP_SKIPPED);
        CHECK_FRAME(&d, in, "z");
        bp_buf_release(in);
    }
    bp_frame_length_config cfg = {.max_frame = 6, .field_size = 1};
    bp_frame_decoder d;
    REQUIRE(bp_frame_length_init(&d, &cfg) == BP_OK);
    bp_buf *in = bytes_buf(S("\x09"));
    CHECK_RESULT(&d, in, BP_ETOOLONG);
    CHECK_EQ(bp_buf_readable(in), 1);
    bp_buf_release(in);
}

/* ---- the prepender ---------------------------------------------------------------------- */

static void test_prepender(void)
{
    bp_buf *body = bytes_buf(S("HELLO, WORLD"));
    bp_buf *out = bp_buf_new(pool, 0, 0);
    /* Netty's third example, written: the length counts the field */
    CHECK_EQ(bp_frame_prepend_length(out, body, 2, 0, BP_FRAME_LENGTH_INCLUDES_FIELD), BP_OK);
    uint8_t got[32];
    CHECK_EQ(bp_buf_read_bytes(out, got, 14), BP_OK);
    CHECK(memcmp(got, "\x00\x0eHELLO, WORLD", 14) == 0);
    CHECK_EQ(bp_frame_prepend_length(out, body, 3, 2, 0), BP_OK);
    CHECK_EQ(bp_buf_read_bytes(out, got, 15), BP_OK);
    CHECK(memcmp(got, "\x00\x00\x0eHELLO, WORLD", 15) == 0);
    /* a varint that counts itself: 126 + 1 byte fits one byte, 127 + 1 takes two */
    bp_buf *long_body = bp_buf_new(pool, 0, 0);
    bp_buf_write_zero(long_body, 126);
    CHECK_EQ(bp_frame_prepend_length(out, long_body, BP_FRAME_UVARINT, 0,
                                     BP_FRAME_LENGTH_INCLUDES_FIELD),
             BP_OK);
    uint8_t first = 0;
    bp_buf_get_u8(out, bp_buf_reader_index(out), &first);
    CHECK_EQ(first, 127);
    bp_buf_skip(out, 127);
    bp_buf_write_u8(long_body, 0);
    CHECK_EQ(bp_frame_prepend_length(out, long_body, BP_FRAME_UVARINT, 0,
                                     BP_FRAME_LENGTH_INCLUDES_FIELD),
             BP_OK);
    uint64_t v;
    CHECK_EQ(bp_buf_read_uvarint(out, &v), BP_OK);
    CHECK_EQ(v, 129);
    bp_buf_release(long_body);

    /* failures change nothing */
    size_t writer = bp_buf_writer_index(out);
    CHECK_EQ(bp_frame_prepend_length(out, body, 2, -13, 0), BP_EINVAL); /* below 0 */
    CHECK_EQ(bp_frame_prepend_length(out, body, 1, 244, 0), BP_EINVAL); /* 256: past a byte */
    CHECK_EQ(bp_frame_prepend_length(out, body, 1, 243, 0), BP_OK);     /* 255 fits */
    writer += 13;
    CHECK_EQ(bp_frame_prepend_length(out, body, 6, 0, 0), BP_EINVAL);
    CHECK_EQ(bp_frame_prepend_length(out, out, 2, 0, 0), BP_EINVAL);
    CHECK_EQ(bp_buf_writer_index(out), writer);
    bp_buf *small = bp_buf_new(pool, 0, 13);
    CHECK_EQ(bp_frame_prepend_length(small, body, 2, 0, 0), BP_ECAP);
    CHECK_EQ(bp_buf_writer_index(small), 0);
    CHECK_EQ(bp_frame_prepend_length(small, body, 1, 0, 0), BP_OK);
    bp_buf_release(small);
    bp_buf_release(out);
    CHECK_EQ(bp_buf_readable(body), 12);
    bp_buf_release(body);
}

/* ---- composites, views, ranges ---------------------------------------------------------- */

static void test_composite_frames(void)
{
    bp_frame_decoder d;
    REQUIRE(bp_frame_line_init(&d, 64, 0) == BP_OK);
    size_t cuts[] = {3, 9};
    bp_buf *in = composite_of(S("ab\ncdefgh\r\nij\n"), cuts, 2);
    bp_buf *frame;
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    CHECK(frame_is(frame, S("ab")));
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    /* "cdefgh" lies in one part, its "\r\n" across the cut: the CR is found in the next */
    CHECK(frame != NULL && bp_buf_part_count(frame) == 1);
    CHECK(frame_is(frame, S("cdefgh")));
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    CHECK(frame_is(frame, S("ij")));
    bp_buf_release(in);

    size_t cut[] = {4};
    in = composite_of(S("abcdef\n"), cut, 1);
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    CHECK(frame != NULL && bp_buf_part_count(frame) == 2); /* across the parts: a composite */
    CHECK(frame_is(frame, S("abcdef")));
    bp_buf_release(in);

    /* a view keeps the bytes when the input goes */
    in = bytes_buf(S("keep\n"));
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    bp_buf_release(in);
    CHECK(frame_is(frame, S("keep")));

    /* read-only input, read-only frames */
    static char text[] = "ro\n";
    in = bp_buf_wrap(pool, text, 3, 3, NULL, NULL, BP_RDONLY);
    REQUIRE(in != NULL);
    CHECK_EQ(bp_frame_next(&d, in, &frame), BP_OK);
    CHECK(frame != NULL && bp_buf_is_readonly(frame));
    CHECK(frame_is(frame, S("ro")));
    bp_buf_release(in);

    /* ranges: where the frame lies, no view */
    in = bytes_buf(S("xx\nyy\r\n"));
    size_t index, len;
    CHECK_EQ(bp_frame_next_range(&d, in, &index, &len), BP_OK);
    CHECK_EQ(index, 0);
    CHECK_EQ(len, 2);
    CHECK_EQ(bp_frame_next_range(&d, in, &index, &len), BP_OK);
    CHECK_EQ(index, 3);
    CHECK_EQ(len, 2);
    CHECK_EQ(bp_frame_next_range(&d, in, &index, &len), BP_NEED_MORE);
    bp_buf_release(in);

    /* a decoder never set up */
    bp_frame_decoder zero;
    memset(&zero, 0, sizeof zero);
    in = bytes_buf(S("a\n"));
    CHECK_RESULT(&zero, in, BP_EINVAL);
    CHECK_EQ(bp_frame_line_init(&d, 0, 0), BP_EINVAL);
    CHECK_EQ(bp_frame_line_init(&d, 8, 0x100), BP_EINVAL);
    bp_buf_release(in);
}

/* ---- model: any split decodes as the whole stream ---------------------------------------- */

#define STREAM_MAX 4096
#define EVENTS_MAX 4096

typedef struct event {
    int result;
    uint16_t len;
    uint8_t bytes[48];
} event;

typedef struct events {
    event e[EVENTS_MAX];
    size_t n;
    size_t left; /* readable bytes of the input at the end */
} events;

/* Decodes what the input holds, recording each result; false after a terminal error. */
static bool drain(bp_frame_decoder *d, bp_buf *in, events *out)
{
    for (;;) {
        bp_buf *frame;
        int r = bp_frame_next(d, in, &frame);
        if (r == BP_NEED_MORE)
            return true;
        REQUIRE(out->n < EVENTS_MAX);
        event *e = &out->e[out->n++];
        memset(e, 0, sizeof *e);
        e->result = r;
        if (r == BP_OK) {
            size_t n = bp_buf_readable(frame);
            e->len = (uint16_t)n;
            bp_buf_get_bytes(frame, 0, e->bytes, n < sizeof e->bytes ? n : sizeof e->bytes);
            bp_buf_release(frame);
        }
        if (r < 0)
            return false;
    }
}

/* Feeds stream[0, n) in pieces cut at random (whole when pieces is 0), to a contiguous
 * input or to a composite taking each piece as a part, dropping read bytes now and then. */
static void feed(bp_frame_decoder *d, const uint8_t *stream, size_t n, test_rng *r, bool pieces,
                 bool composite, events *out)
{
    bp_buf *in = composite ? bp_buf_composite(pool, 1024) : bp_buf_new(pool, 0, 0);
    REQUIRE(in != NULL);
    out->n = 0;
    bool going = true;
    for (size_t at = 0; at < n && going;) {
        size_t take = pieces ? 1 + test_below(r, test_below(r, 4) == 0 ? 200 : 12) : n;
        if (take > n - at)
            take = n - at;
        if (composite) {
            if (bp_buf_part_count(in) > 1000)
                REQUIRE(bp_buf_discard_read(in) == BP_OK);
            REQUIRE(bp_buf_append(in, bytes_buf(stream + at, take)) == BP_OK);
        } else {
            REQUIRE(bp_buf_write_bytes(in, stream + at, take) == BP_OK);
        }
        at += take;
        going = drain(d, in, out);
        if (test_below(r, 4) == 0)
            REQUIRE(bp_buf_discard_read(in) == BP_OK);
    }
    out->left = bp_buf_readable(in);
    bp_buf_release(in);
}

static bool same_events(const events *a, const events *b)
{
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        if (memcmp(&a->e[i], &b->e[i], sizeof a->e[i]) != 0) {
            fprintf(stderr, "event %zu: result %d, %u bytes \"%.*s\" vs %d, %u bytes \"%.*s\"\n", i,
                    a->e[i].result, a->e[i].len, (int)BP_TEST_MIN(a->e[i].len, 48),
                    (const char *)a->e[i].bytes, b->e[i].result, b->e[i].len,
                    (int)BP_TEST_MIN(b->e[i].len, 48), (const char *)b->e[i].bytes);
            return false;
        }
    }
    /* after an error the stream stops where its piece ended */
    bool stopped = a->n > 0 && a->e[a->n - 1].result < 0;
    if (a->n != b->n || (!stopped && a->left != b->left))
        fprintf(stderr, "%zu events, %zu bytes left vs %zu, %zu\n", a->n, a->left, b->n, b->left);
    return a->n == b->n && (stopped || a->left == b->left);
}

/* A stream for the decoder kind: random bytes over a small alphabet, so delimiters come
 * often and overlap; for length fields, prepended frames with now and then a bad byte. */
static size_t make_stream(int kind, test_rng *r, uint8_t *s, unsigned *size, unsigned *flags)
{
    size_t n = 100 + test_below(r, STREAM_MAX - 100);
    if (kind < 2) {
        static const char alphabet[] = "ab\r\nxab|";
        for (size_t i = 0; i < n; i++)
            s[i] = (uint8_t)alphabet[test_below(r, sizeof alphabet - 1)];
        return n;
    }
    static const unsigned sizes[] = {1, 2, 3, 4, 8, BP_FRAME_UVARINT};
    *size = sizes[test_below(r, 6)];
    *flags = test_below(r, 2) ? BP_FRAME_LITTLE_ENDIAN : 0;
    bp_buf *out = bp_buf_new(pool, 0, STREAM_MAX);
    uint8_t body[64];
    for (;;) {
        size_t len = test_below(r, 40);
        for (size_t i = 0; i < len; i++)
            body[i] = (uint8_t)test_rand(r);
        bp_buf *b = bytes_buf(body, len);
        int err = bp_frame_prepend_length(out, b, *size, 0, *flags);
        bp_buf_release(b);
        if (err != BP_OK)
            break;
    }
    n = bp_buf_readable(out);
    bp_buf_read_bytes(out, s, n);
    bp_buf_release(out);
    if (test_below(r, 3) == 0) /* a stray byte: the rest decodes as garbage, or fails */
        s[test_below(r, n)] ^= (uint8_t)(1 + test_below(r, 255));
    return n;
}

static void test_model(void)
{
    const char *san = getenv("BP_SANITIZER");
    int rounds = san != NULL && *san != '\0' ? 150 : 600;
    uint64_t seed = test_seed(0xf4a3e5);
    test_rng r = {seed};
    static uint8_t stream[STREAM_MAX];
    static events whole, split;
    static const bp_frame_delimiter sets[][3] = {
        {{"\n", 1}}, {{"ab", 2}}, {{"ab|", 3}, {"b", 1}}, {{"\r\n", 2}, {"x", 1}, {"bx", 2}}};
    static const unsigned set_sizes[] = {1, 1, 2, 3};
    long frames = 0;
    for (int round = 0; round < rounds; round++) {
        int kind = (int)test_below(&r, 3);
        unsigned size = 0, order = 0;
        size_t n = make_stream(kind, &r, stream, &size, &order);
        unsigned policy = (unsigned[]){
            0, BP_FRAME_SKIP, BP_FRAME_SKIP | BP_FRAME_SKIP_REPORT_LATE}[test_below(&r, 3)];
        unsigned keep = kind < 2 && test_below(&r, 2) ? BP_FRAME_KEEP_DELIMITER : 0;
        size_t max = 1 + test_below(&r, 30);
        size_t set = test_below(&r, 4);
        bp_frame_decoder d;
        bp_frame_length_config cfg = {.max_frame = max + 10,
                                      .field_size = size,
                                      .strip = test_below(&r, 2),
                                      .flags = policy | order};
        int err = kind == 0 ? bp_frame_line_init(&d, max, policy | keep)
                  : kind == 1
                      ? bp_frame_delimiter_init(&d, max, sets[set], set_sizes[set], policy | keep)
                      : bp_frame_length_init(&d, &cfg);
        REQUIRE(err == BP_OK);
        feed(&d, stream, n, &r, false, false, &whole);
        frames += (long)whole.n;
        for (int way = 0; way < 3; way++) {
            bp_frame_reset(&d);
            feed(&d, stream, n, &r, true, way > 0, &split);
            if (!same_events(&whole, &split)) {
                fprintf(stderr,
                        "round %d (kind %d, %s input, max %zu, flags %#x): a split stream "
                        "decodes differently (%zu events vs %zu whole); replay with "
                        "BP_TEST_SEED=%#llx\n",
                        round, kind, way > 0 ? "composite" : "contiguous", max,
                        policy | keep | (unsigned)set << 8, split.n, whole.n,
                        (unsigned long long)seed);
                test_failures++;
                return;
            }
        }
    }
    printf("  %d streams, %ld events\n", rounds, frames);
}

int main(void)
{
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 1;
    cfg.leak_level = 3;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_netty_examples);
    RUN(test_lines);
    RUN(test_line_search_resumes);
    RUN(test_lines_too_long);
    RUN(test_delimiters);
    RUN(test_delimiters_too_long);
    RUN(test_length_fields);
    RUN(test_length_corrupt);
    RUN(test_length_too_long);
    RUN(test_prepender);
    RUN(test_composite_frames);
    RUN(test_model);
    CHECK_EQ(bp_leak_report(pool, stderr), 0);
    bp_pool_destroy(pool);
    return test_report();
}
