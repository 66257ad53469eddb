/* test_buf_text.c — text and debugging helpers: printf into contiguous and composite buffers
 * (short and long text, growth, the maximum capacity, failures changing nothing), zero fill,
 * Netty's pretty hex dump byte for byte (to a stream and into a buffer), and the byte-scan
 * callback stopping early across the parts of a composite. */
#include "bufpool.h"
#include "test.h"

#include <errno.h>
#include <string.h>

static bp_pool *pool;

/* b's readable bytes as a NUL-terminated string in out (len bytes at most). */
static const char *text_of(const bp_buf *b, char *out, size_t len)
{
    size_t n = bp_buf_readable(b);
    if (n >= len)
        n = len - 1;
    bp_buf_get_bytes(b, bp_buf_reader_index(b), out, n);
    out[n] = '\0';
    return out;
}

static void test_printf(void)
{
    char got[4096];
    bp_buf *b = bp_buf_new(pool, 0, 0);
    CHECK_EQ(bp_buf_printf(b, "%d-%s", 42, "x"), 4);
    CHECK_EQ(bp_buf_printf(b, "%s", ""), 0);
    CHECK(strcmp(text_of(b, got, sizeof got), "42-x") == 0);
    /* longer than the stack buffer: formatted into memory of its size */
    char big[1001];
    memset(big, 'z', 1000);
    big[1000] = '\0';
    CHECK_EQ(bp_buf_printf(b, "[%s]", big), 1002);
    CHECK_EQ(bp_buf_readable(b), 1006);
    text_of(b, got, sizeof got);
    CHECK(got[4] == '[' && got[5] == 'z' && got[1004] == 'z' && got[1005] == ']');
    bp_buf_release(b);

    /* the maximum holds, and a text that does not fit writes nothing */
    b = bp_buf_new(pool, 0, 8);
    CHECK_EQ(bp_buf_printf(b, "%s", "12345678"), 8); /* exactly full: no room for a NUL needed */
    CHECK_EQ(bp_buf_printf(b, "%s", "9"), BP_ECAP);
    CHECK_EQ(bp_buf_writer_index(b), 8);
    bp_buf_release(b);
    b = bp_buf_new(pool, 0, 300);
    CHECK_EQ(bp_buf_printf(b, "%s", big), BP_ECAP);
    CHECK_EQ(bp_buf_writer_index(b), 0);
    bp_buf_release(b);

    /* read-only */
    static char ro[4];
    b = bp_buf_wrap(pool, ro, sizeof ro, 0, NULL, NULL, BP_RDONLY);
    CHECK_EQ(bp_buf_printf(b, "x"), BP_ERDONLY);
    bp_buf_release(b);

    /* a composite grows by a part */
    b = bp_buf_composite(pool, 8);
    bp_buf *part = bp_buf_new(pool, 4, 4);
    bp_buf_write_bytes(part, "abc", 3);
    REQUIRE(bp_buf_append(b, part) == BP_OK);
    CHECK_EQ(bp_buf_printf(b, "%05d", 7), 5);
    CHECK(strcmp(text_of(b, got, sizeof got), "abc00007") == 0);
    CHECK_EQ(bp_buf_printf(b, "%s", big), 1000);
    CHECK_EQ(bp_buf_readable(b), 1008);
    bp_buf_release(b);
}

static void test_write_zero(void)
{
    bp_buf *b = bp_buf_new(pool, 4, 0);
    bp_buf_write_u8(b, 0xff);
    bp_buf_set_u8(b, 2, 0xee); /* a byte past the writer index, about to be zeroed */
    CHECK_EQ(bp_buf_write_zero(b, 300), BP_OK);
    CHECK_EQ(bp_buf_readable(b), 301);
    uint8_t got[301];
    bp_buf_get_bytes(b, 0, got, 301);
    bool zero = got[0] == 0xff;
    for (size_t i = 1; i < 301; i++)
        zero = zero && got[i] == 0;
    CHECK(zero);
    CHECK_EQ(bp_buf_write_zero(b, 0), BP_OK);
    bp_buf_release(b);

    b = bp_buf_new(pool, 0, 16);
    CHECK_EQ(bp_buf_write_zero(b, 17), BP_ECAP);
    CHECK_EQ(bp_buf_writer_index(b), 0);
    CHECK_EQ(bp_buf_write_zero(b, SIZE_MAX), BP_ECAP);
    bp_buf_release(b);

    /* a composite: across the part it grows by */
    b = bp_buf_composite(pool, 8);
    CHECK_EQ(bp_buf_write_zero(b, 100), BP_OK);
    CHECK_EQ(bp_buf_readable(b), 100);
    uint8_t c = 1;
    bp_buf_get_u8(b, 99, &c);
    CHECK_EQ(c, 0);
    bp_buf_release(b);
}

static const char expected_dump[] =
    "         +-------------------------------------------------+\n"
    "         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n"
    "+--------+-------------------------------------------------+----------------+\n"
    "|00000000| 48 45 4c 4c 4f 2c 20 57 4f 52 4c 44 00 01 7f 80 |HELLO, WORLD....|\n"
    "|00000010| 7e 20 0a                                        |~ .             |\n"
    "+--------+-------------------------------------------------+----------------+\n";

static void test_hex_dump(void)
{
    static const uint8_t bytes[] = "xxHELLO, WORLD\x00\x01\x7f\x80~ \n";
    bp_buf *b = bp_buf_new(pool, 0, 0);
    bp_buf_write_bytes(b, bytes, sizeof bytes - 1);
    bp_buf_skip(b, 2); /* the readable bytes only, offsets from the reader index */
    char got[2048];
    bp_buf *out = bp_buf_new(pool, 0, 0);
    CHECK_EQ(bp_buf_write_hex_dump(out, b), BP_OK);
    CHECK(strcmp(text_of(out, got, sizeof got), expected_dump) == 0);
    CHECK_EQ(bp_buf_readable(b), 19);

    /* to a stream: the same text */
    char streamed[2048] = {0};
    FILE *f = fmemopen(streamed, sizeof streamed, "w");
    REQUIRE(f != NULL);
    CHECK_EQ(bp_buf_hex_dump(b, f), BP_OK);
    fclose(f);
    CHECK(strcmp(streamed, expected_dump) == 0);

    /* a composite dumps the same; no bytes dump nothing */
    bp_buf *c = bp_buf_composite(pool, 4);
    bp_buf *p1 = bp_buf_new(pool, 0, 0), *p2 = bp_buf_new(pool, 0, 0);
    bp_buf_write_bytes(p1, bytes + 2, 7);
    bp_buf_write_bytes(p2, bytes + 9, sizeof bytes - 10);
    bp_buf_append(c, p1);
    bp_buf_append(c, p2);
    bp_buf_clear(out);
    CHECK_EQ(bp_buf_write_hex_dump(out, c), BP_OK);
    CHECK(strcmp(text_of(out, got, sizeof got), expected_dump) == 0);
    bp_buf_skip(c, 19);
    bp_buf_clear(out);
    CHECK_EQ(bp_buf_write_hex_dump(out, c), BP_OK);
    CHECK_EQ(bp_buf_readable(out), 0);
    bp_buf_release(c);

    /* failing whole: a maximum too small for the dump writes nothing */
    bp_buf *small = bp_buf_new(pool, 0, sizeof expected_dump - 2);
    bp_buf_write_u8(small, '!');
    CHECK_EQ(bp_buf_write_hex_dump(small, b), BP_ECAP);
    CHECK_EQ(bp_buf_writer_index(small), 1);
    bp_buf_release(small);
    CHECK_EQ(bp_buf_write_hex_dump(b, b), BP_EINVAL);

    /* a stream that fails reports it */
    f = fopen("/dev/full", "w");
    if (f != NULL) {
        setvbuf(f, NULL, _IONBF, 0);
        errno = 0;
        CHECK_EQ(bp_buf_hex_dump(b, f), BP_EIO);
        CHECK_EQ(errno, ENOSPC);
        fclose(f);
    }
    bp_buf_release(out);
    bp_buf_release(b);
}

/* A row offset past 4096 rows: the same eight digits. */
static void test_hex_dump_long(void)
{
    bp_buf *b = bp_buf_new(pool, 0, 0);
    bp_buf_write_zero(b, 16 * 5000 + 1);
    bp_buf *out = bp_buf_new(pool, 0, 0);
    CHECK_EQ(bp_buf_write_hex_dump(out, b), BP_OK);
    CHECK_EQ(bp_buf_readable(out), 2 * 61 + 78 + 5001 * 78 + 78);
    size_t at;
    CHECK_EQ(bp_buf_find(out, 0, "|00013880| 00", 13, &at), BP_OK); /* row 5000 */
    bp_buf_release(out);
    bp_buf_release(b);
}

typedef struct scan {
    uint8_t stop_at;
    size_t seen;
} scan;

static bool until(void *ctx, uint8_t byte)
{
    scan *s = ctx;
    s->seen++;
    return byte != s->stop_at;
}

static void test_for_each_byte(void)
{
    bp_buf *b = bp_buf_new(pool, 0, 0);
    bp_buf_write_bytes(b, "..abc;def", 9);
    bp_buf_skip(b, 2);
    scan s = {';', 0};
    size_t pos = 0;
    CHECK_EQ(bp_buf_for_each_byte(b, until, &s, &pos), BP_OK);
    CHECK_EQ(pos, 5); /* absolute */
    CHECK_EQ(s.seen, 4);
    s = (scan){'!', 0};
    CHECK_EQ(bp_buf_for_each_byte(b, until, &s, &pos), BP_NOTFOUND);
    CHECK_EQ(s.seen, 7);
    bp_buf_skip(b, 7);
    CHECK_EQ(bp_buf_for_each_byte(b, until, &s, &pos), BP_NOTFOUND);
    bp_buf_release(b);

    /* across 20 parts (more than one call's iovecs) */
    bp_buf *c = bp_buf_composite(pool, 32);
    for (int i = 0; i < 20; i++) {
        bp_buf *p = bp_buf_new(pool, 0, 0);
        bp_buf_write_bytes(p, i == 18 ? "xy" : "xx", 2);
        bp_buf_append(c, p);
    }
    s = (scan){'y', 0};
    CHECK_EQ(bp_buf_for_each_byte(c, until, &s, &pos), BP_OK);
    CHECK_EQ(pos, 37);
    CHECK_EQ(s.seen, 38);
    bp_buf_release(c);
}

int main(void)
{
    bp_config cfg;
    bp_config_init(&cfg);
    cfg.arenas = 1;
    cfg.leak_level = 3;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_printf);
    RUN(test_write_zero);
    RUN(test_hex_dump);
    RUN(test_hex_dump_long);
    RUN(test_for_each_byte);
    CHECK_EQ(bp_leak_report(pool, stderr), 0);
    bp_pool_destroy(pool);
    return test_report();
}
