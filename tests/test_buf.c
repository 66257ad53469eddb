/* test_buf.c — bp_buf family by family: life cycle, indexes and marks, growth across class
 * boundaries up to max, typed access against fixed byte patterns, bytes, views and their
 * lifetimes, wrapped memory, composites, iovecs with readv/writev, search, and every error
 * path leaving the buffer as it was. */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bp_pool *pool;

/* The state a failed call must leave alone: indexes, capacity and every byte. */
typedef struct snapshot {
    size_t reader, writer, capacity;
    unsigned char bytes[512];
} snapshot;

static snapshot take(const bp_buf *b)
{
    snapshot s = {b->reader, b->writer, bp_buf_capacity(b), {0}};
    bp_buf_get_bytes(b, 0, s.bytes, BP_MIN(b->writer, sizeof s.bytes));
    return s;
}

static bool same(const bp_buf *b, const snapshot *s)
{
    snapshot now = take(b);
    return now.reader == s->reader && now.writer == s->writer && now.capacity == s->capacity &&
           memcmp(now.bytes, s->bytes, sizeof s->bytes) == 0;
}

#define CHECK_FAILS_CLEANLY(b, call, code)                                                         \
    do {                                                                                           \
        snapshot before_ = take(b);                                                                \
        CHECK_EQ((call), (code));                                                                  \
        CHECK(same((b), &before_));                                                                \
    } while (0)

static void test_lifecycle(void)
{
    bp_buf *b = bp_buf_new(pool, 100, 1000);
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_refcnt(b), 1);
    CHECK_EQ(bp_buf_capacity(b), 100);
    CHECK_EQ(bp_buf_max_capacity(b), 1000);
    CHECK(bp_buf_retain(b) == b);
    CHECK_EQ(bp_buf_refcnt(b), 2);
    CHECK(!bp_buf_release(b));
    CHECK(bp_buf_release(b));
    errno = 0;
    CHECK(bp_buf_new(pool, 10, 5) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(bp_buf_new(pool, SIZE_MAX - 8, 0) == NULL);
    CHECK_EQ(errno, EINVAL);
    b = bp_buf_new(pool, 0, 0); /* empty, unlimited */
    REQUIRE(b != NULL);
    CHECK_EQ(bp_buf_capacity(b), 0);
    CHECK_EQ(bp_buf_write_u8(b, 7), BP_OK);
    CHECK(bp_buf_release(b));
    CHECK(strcmp(bp_strerror(BP_ECAP), "maximum capacity reached") == 0);
}

static void test_indexes(void)
{
    bp_buf *b = bp_buf_new(pool, 64, 64);
    for (int i = 0; i < 10; i++)
        bp_buf_write_u8(b, (uint8_t)i);
    CHECK_EQ(bp_buf_readable(b), 10);
    CHECK_EQ(bp_buf_writable(b), 54);
    bp_mark m;
    bp_buf_mark(b, &m);
    uint8_t v = 0; /* failed calls leave it alone: set, for the compiler */
    bp_buf_read_u8(b, &v);
    bp_buf_read_u8(b, &v);
    CHECK_EQ(v, 1);
    CHECK_EQ(bp_buf_reset(b, &m), BP_OK);
    CHECK_EQ(bp_buf_reader_index(b), 0);
    CHECK_FAILS_CLEANLY(b, bp_buf_set_index(b, 5, 4), BP_EBOUNDS);
    CHECK_FAILS_CLEANLY(b, bp_buf_set_index(b, 0, 65), BP_EBOUNDS);
    CHECK_EQ(bp_buf_set_index(b, 3, 10), BP_OK);
    CHECK_EQ(bp_buf_discard_read(b), BP_OK);
    CHECK_EQ(bp_buf_reader_index(b), 0);
    CHECK_EQ(bp_buf_writer_index(b), 7);
    CHECK_EQ(bp_buf_get_u8(b, 0, &v), BP_OK);
    CHECK_EQ(v, 3);
    CHECK_FAILS_CLEANLY(b, bp_buf_skip(b, 8), BP_EBOUNDS);
    CHECK_EQ(bp_buf_skip(b, 7), BP_OK);
    bp_buf_clear(b);
    CHECK_EQ(bp_buf_readable(b), 0);
    CHECK_EQ(bp_buf_writer_index(b), 0);
    bp_buf_release(b);
}

/* Growth doubles from 64 B to 4 MiB then steps by 4 MiB, never past max; contents stay. */
static void test_growth(void)
{
    CHECK_EQ(bp_buf_grow_capacity(1, SIZE_MAX), 64);
    CHECK_EQ(bp_buf_grow_capacity(65, SIZE_MAX), 128);
    CHECK_EQ(bp_buf_grow_capacity(3 << 20, SIZE_MAX), 4 << 20);
    CHECK_EQ(bp_buf_grow_capacity((4 << 20) + 1, SIZE_MAX), 8 << 20);
    CHECK_EQ(bp_buf_grow_capacity((9 << 20) + 5, SIZE_MAX), 12 << 20);
    CHECK_EQ(bp_buf_grow_capacity(100, 80), 80);
    CHECK_EQ(bp_buf_grow_capacity((5 << 20), (6 << 20)), 6 << 20);

    size_t max = (size_t)9 << 20;
    bp_buf *b = bp_buf_new(pool, 16, max);
    uint32_t n = 0;
    size_t last_capacity = 16;
    unsigned grew = 0;
    while (bp_buf_writer_index(b) + 4 <= max) {
        REQUIRE(bp_buf_write_u32_be(b, n++) == BP_OK);
        if (bp_buf_capacity(b) != last_capacity) {
            grew++;
            last_capacity = bp_buf_capacity(b);
        }
    }
    CHECK(grew >= 15);
    CHECK_EQ(bp_buf_capacity(b), max);
    CHECK_FAILS_CLEANLY(b, bp_buf_write_u64_be(b, 1), BP_ECAP);
    CHECK_FAILS_CLEANLY(b, bp_buf_ensure_writable(b, 5), BP_ECAP);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = 0;
        bp_buf_read_u32_be(b, &v);
        if (v != i) {
            CHECK_EQ(v, i);
            break;
        }
    }
    CHECK(bp_buf_fast_writable(b) >= bp_buf_writable(b));
    bp_buf_release(b);
}

/* Fixed byte patterns, both byte orders. */
static void test_typed(void)
{
    bp_buf *b = bp_buf_new(pool, 8, 0);
    bp_buf_write_u16_be(b, 0x0102);
    bp_buf_write_u16_le(b, 0x0102);
    bp_buf_write_u24_be(b, 0x010203);
    bp_buf_write_u24_le(b, 0x010203);
    bp_buf_write_u32_be(b, 0x01020304);
    bp_buf_write_u32_le(b, 0x01020304);
    bp_buf_write_u64_be(b, 0x0102030405060708ull);
    bp_buf_write_u64_le(b, 0x0102030405060708ull);
    bp_buf_write_i8(b, -2);
    bp_buf_write_f32_be(b, 1.5f);
    bp_buf_write_f64_le(b, -0.25);
    static const unsigned char expect[] = {
        1, 2, 2, 1, 1, 2, 3,    3,    2, 1, 1, 2, 3, 4, 4,    3,    2,    1, 1, 2,
        3, 4, 5, 6, 7, 8, 8,    7,    6, 5, 4, 3, 2, 1, 0xfe, 0x3f, 0xc0, 0, 0, /* 1.5f big-endian
                                                                                 */
        0, 0, 0, 0, 0, 0, 0xd0, 0xbf, /* -0.25 little-endian */
    };
    unsigned char got[sizeof expect];
    CHECK_EQ(bp_buf_readable(b), sizeof expect);
    CHECK_EQ(bp_buf_get_bytes(b, 0, got, sizeof got), BP_OK);
    CHECK(memcmp(got, expect, sizeof expect) == 0);
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    int8_t i8;
    float f;
    double d;
    CHECK(bp_buf_read_u16_be(b, &u16) == 0 && u16 == 0x0102);
    CHECK(bp_buf_read_u16_le(b, &u16) == 0 && u16 == 0x0102);
    CHECK(bp_buf_read_u24_be(b, &u32) == 0 && u32 == 0x010203);
    CHECK(bp_buf_read_u24_le(b, &u32) == 0 && u32 == 0x010203);
    CHECK(bp_buf_read_u32_be(b, &u32) == 0 && u32 == 0x01020304);
    CHECK(bp_buf_read_u32_le(b, &u32) == 0 && u32 == 0x01020304);
    CHECK(bp_buf_read_u64_be(b, &u64) == 0 && u64 == 0x0102030405060708ull);
    CHECK(bp_buf_read_u64_le(b, &u64) == 0 && u64 == 0x0102030405060708ull);
    CHECK(bp_buf_read_i8(b, &i8) == 0 && i8 == -2);
    CHECK(bp_buf_read_f32_be(b, &f) == 0 && f == 1.5f);
    CHECK(bp_buf_read_f64_le(b, &d) == 0 && d == -0.25);
    CHECK_FAILS_CLEANLY(b, bp_buf_read_u8(b, (uint8_t *)&i8), BP_EBOUNDS);
    CHECK_FAILS_CLEANLY(b, bp_buf_get_u32_be(b, bp_buf_writer_index(b) - 3, &u32), BP_EBOUNDS);
    CHECK_FAILS_CLEANLY(b, bp_buf_set_u64_le(b, bp_buf_capacity(b) - 7, 1), BP_EBOUNDS);
    CHECK_EQ(bp_buf_set_u16_be(b, 0, 0xbeef), BP_OK);
    CHECK(bp_buf_get_u16_be(b, 0, &u16) == 0 && u16 == 0xbeef);
    bp_buf_release(b);
}

static void test_uvarint(void)
{
    bp_buf *b = bp_buf_new(pool, 16, 0);
    uint64_t values[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        CHECK_EQ(bp_buf_write_uvarint(b, values[i]), BP_OK);
    uint8_t b300[2];
    bp_buf_get_bytes(b, 5, b300, 2); /* after 0, 1, 127 (1 byte each), 128 (2 bytes) */
    CHECK(b300[0] == 0xac && b300[1] == 0x02);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint64_t v = 1;
        CHECK_EQ(bp_buf_read_uvarint(b, &v), BP_OK);
        CHECK_EQ(v, values[i]);
    }
    bp_buf_clear(b);
    bp_buf_write_u8(b, 0x80); /* truncated */
    uint64_t v;
    CHECK_FAILS_CLEANLY(b, bp_buf_read_uvarint(b, &v), BP_EBOUNDS);
    bp_buf_clear(b);
    for (int i = 0; i < 10; i++)
        bp_buf_write_u8(b, 0xff); /* overflows 64 bits */
    bp_buf_write_u8(b, 0x01);
    CHECK_FAILS_CLEANLY(b, bp_buf_read_uvarint(b, &v), BP_EINVAL);
    bp_buf_release(b);
}

static int freed_with;
static void note_free(void *mem, void *ud)
{
    freed_with = *(int *)ud;
    (void)mem;
}

static void test_views_and_wrap(void)
{
    bp_buf *b = bp_buf_new(pool, 32, 0);
    bp_buf_write_bytes(b, "hello, bufpool world", 20);
    bp_buf *s = bp_buf_slice(b, 7, 7, 0);
    REQUIRE(s != NULL);
    char word[8] = {0};
    CHECK_EQ(bp_buf_read_bytes(s, word, 7), BP_OK);
    CHECK(strcmp(word, "bufpool") == 0);
    CHECK_EQ(bp_buf_set_u8(s, 0, 'B'), BP_OK); /* shares memory */
    uint8_t c = 0;
    bp_buf_get_u8(b, 7, &c);
    CHECK_EQ(c, 'B');
    CHECK_FAILS_CLEANLY(s, bp_buf_write_u8(s, 1), BP_ECAP); /* a view cannot grow */
    CHECK_FAILS_CLEANLY(b, bp_buf_discard_read(b), BP_OK);  /* reader 0: nothing to do */
    bp_buf_skip(b, 1);
    CHECK_FAILS_CLEANLY(b, bp_buf_discard_read(b), BP_ESHARED);
    bp_buf *ro = bp_buf_duplicate(b, BP_RDONLY);
    CHECK(bp_buf_is_readonly(ro));
    CHECK_EQ(bp_buf_reader_index(ro), 1);
    CHECK_FAILS_CLEANLY(ro, bp_buf_set_u8(ro, 0, 1), BP_ERDONLY);
    CHECK_FAILS_CLEANLY(ro, bp_buf_write_u8(ro, 1), BP_ERDONLY);
    /* the original grows and moves; the views keep the old memory alive */
    for (int i = 0; i < 100; i++)
        bp_buf_write_u64_be(b, (uint64_t)i);
    bp_buf_release(b);
    bp_buf_get_u8(s, 0, &c);
    CHECK_EQ(c, 'B');
    bp_buf *copy = bp_buf_copy(ro, 0, 5);
    bp_buf_release(ro);
    bp_buf_release(s); /* last reference to the original memory */
    char hello[6] = {0};
    bp_buf_read_bytes(copy, hello, 5);
    CHECK(strcmp(hello, "hello") == 0);
    bp_buf_release(copy);

    static char external[64] = "external bytes";
    int tag = 42;
    freed_with = 0;
    bp_buf *w = bp_buf_wrap(pool, external, sizeof external, 14, note_free, &tag, 0);
    bp_buf *ws = bp_buf_read_slice(w, 8);
    CHECK_EQ(bp_buf_readable(w), 6);
    bp_buf_release(w);
    CHECK_EQ(freed_with, 0); /* the slice still holds the memory */
    bp_buf_release(ws);
    CHECK_EQ(freed_with, 42);
    errno = 0;
    CHECK(bp_buf_wrap(pool, external, 4, 5, NULL, NULL, 0) == NULL && errno == EINVAL);
}

static bp_buf *filled(const char *text)
{
    bp_buf *b = bp_buf_new(pool, strlen(text), 0);
    bp_buf_write_bytes(b, text, strlen(text));
    return b;
}

static void test_composite(void)
{
    bp_buf *c = bp_buf_composite(pool, 4);
    bp_buf *a = filled("xxhello ");
    bp_buf_skip(a, 2); /* only the readable bytes join */
    CHECK_EQ(bp_buf_append(c, a), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("composite ")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("world")), BP_OK);
    CHECK_EQ(bp_buf_part_count(c), 3);
    CHECK_EQ(bp_buf_readable(c), 21);
    char text[32] = {0};
    CHECK_EQ(bp_buf_get_bytes(c, 0, text, 21), BP_OK);
    CHECK(strcmp(text, "hello composite world") == 0);
    uint32_t u32 = 0;
    CHECK_EQ(bp_buf_get_u32_be(c, 4, &u32), BP_OK); /* "o co" spans two parts */
    CHECK_EQ(u32, 0x6f20636full);
    size_t pos;
    CHECK_EQ(bp_buf_find(c, 0, "site wo", 7, &pos), BP_OK); /* across parts */
    CHECK_EQ(pos, 11);
    CHECK_EQ(bp_buf_index_of(c, 0, 21, 'w', &pos), BP_OK);
    CHECK_EQ(pos, 16);
    CHECK_EQ(bp_buf_index_of(c, 17, 21, 'w', &pos), BP_NOTFOUND);
    CHECK_EQ(bp_buf_find(c, 0, "worlds", 6, &pos), BP_NOTFOUND);
    struct iovec iov[4];
    size_t covered;
    CHECK_EQ(bp_buf_iov(c, 2, 17, iov, 4, &covered), 3);
    CHECK_EQ(covered, 17);
    CHECK_EQ(bp_buf_iov(c, 0, 21, iov, 2, &covered), 2);
    CHECK_EQ(covered, 16);
    CHECK_EQ(bp_buf_append(c, filled("!")), BP_OK);
    bp_buf *extra = filled("?");
    CHECK_FAILS_CLEANLY(c, bp_buf_append(c, extra), BP_ECAP);
    bp_buf_release(extra);
    bp_buf *s = bp_buf_slice(c, 6, 9, 0); /* "composite" */
    CHECK_EQ(bp_buf_set_u8(c, 6, 'C'), BP_OK);
    uint8_t ch = 0;
    bp_buf_get_u8(s, 0, &ch);
    CHECK_EQ(ch, 'C');
    CHECK_EQ(bp_buf_consolidate(c), BP_OK);
    CHECK_EQ(bp_buf_part_count(c), 1);
    CHECK_EQ(bp_buf_get_bytes(c, 0, text, 22), BP_OK);
    CHECK(memcmp(text, "hello Composite world!", 22) == 0);
    bp_buf_release(c);
    bp_buf_get_u8(s, 8, &ch); /* the slice keeps its parts alive */
    CHECK_EQ(ch, 'e');
    bp_buf_release(s);
    /* writing to a composite adds parts */
    c = bp_buf_composite(pool, 8);
    for (int i = 0; i < 300; i++)
        CHECK_EQ(bp_buf_write_u8(c, (uint8_t)i), BP_OK);
    CHECK(bp_buf_part_count(c) >= 2);
    CHECK_EQ(bp_buf_skip(c, 200), BP_OK);
    CHECK_EQ(bp_buf_discard_read(c), BP_OK);
    CHECK_EQ(bp_buf_readable(c), 100);
    CHECK(bp_buf_read_u8(c, &ch) == 0 && ch == 200);
    bp_buf_release(c);
}

static void test_readv_writev(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    bp_buf *c = bp_buf_composite(pool, 8);
    for (int i = 0; i < 5; i++) {
        bp_buf *part = bp_buf_new(pool, 1000, 0);
        for (int k = 0; k < 1000; k++)
            bp_buf_write_u8(part, (uint8_t)(i * 7 + k));
        bp_buf_append(c, part);
    }
    CHECK_EQ(bp_buf_writev_fd(c, sv[0], 0), 5000);
    CHECK_EQ(bp_buf_readable(c), 0);
    bp_buf *in = bp_buf_new(pool, 0, 0);
    size_t got = 0;
    while (got < 5000) {
        ssize_t r = bp_buf_readv_fd(in, sv[1], 1500);
        REQUIRE(r > 0);
        CHECK(r <= 1500);
        got += (size_t)r;
    }
    for (int i = 0; i < 5; i++) {
        for (int k = 0; k < 1000; k++) {
            uint8_t v = 0;
            bp_buf_read_u8(in, &v);
            if (v != (uint8_t)(i * 7 + k)) {
                CHECK_EQ(v, (uint8_t)(i * 7 + k));
                i = 5;
                break;
            }
        }
    }
    close(sv[0]);
    CHECK_EQ(bp_buf_readv_fd(in, sv[1], 0), 0); /* end of file */
    close(sv[1]);
    CHECK_EQ(bp_buf_readv_fd(in, sv[1], 0), BP_EIO);
    CHECK_EQ(errno, EBADF);
    struct iovec iov[2];
    CHECK_FAILS_CLEANLY(in, bp_buf_reserve_iov(in, 10, iov, 0), BP_EINVAL);
    CHECK_FAILS_CLEANLY(in, bp_buf_commit(in, bp_buf_writable(in) + 1), BP_EBOUNDS);
    bp_buf_release(in);
    bp_buf_release(c);

    /* A read-only buffer with room is still read-only to readv: nothing is read from the
     * socket, no extent is handed out, and the bytes wait for a writable buffer. */
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    static char mem[64] = "read-only";
    bp_buf *ro = bp_buf_wrap(pool, mem, sizeof mem, 9, NULL, NULL, BP_RDONLY);
    REQUIRE(ro != NULL && bp_buf_writable(ro) == sizeof mem - 9);
    CHECK_EQ(write(sv[0], "incoming", 8), 8);
    CHECK_FAILS_CLEANLY(ro, bp_buf_readv_fd(ro, sv[1], 0), BP_ERDONLY);
    CHECK_FAILS_CLEANLY(ro, bp_buf_reserve_iov(ro, 1, iov, 2), BP_ERDONLY);
    CHECK_FAILS_CLEANLY(ro, bp_buf_ensure_writable(ro, 1), BP_ERDONLY);
    CHECK(memcmp(mem + 9, "\0\0\0\0\0\0\0\0", 8) == 0);
    bp_buf *rw = bp_buf_new(pool, 16, 0);
    CHECK_EQ(bp_buf_readv_fd(rw, sv[1], 0), 8);
    CHECK_EQ(bp_buf_find(rw, 0, "incoming", 8, &got), BP_OK);
    bp_buf_release(rw);
    bp_buf_release(ro);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 2;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_lifecycle);
    RUN(test_indexes);
    RUN(test_growth);
    RUN(test_typed);
    RUN(test_uvarint);
    RUN(test_views_and_wrap);
    RUN(test_composite);
    RUN(test_readv_writev);
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0); /* every buffer, view, part and grown memory went back */
    bp_pool_destroy(pool);
    return test_report();
}
