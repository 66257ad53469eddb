/* test_composite.c — moving bytes between buffers: composites that grow past any part count,
 * consolidation past a threshold (Netty's maxNumComponents), parts taken at the front,
 * slices of other buffers taken by reference, copies between buffers, and the parts a write
 * consumed released by the write; every failed call leaves both buffers as they were. */
#include "buf/buf_internal.h"
#include "front.h"
#include "test.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bp_pool *pool;

/* The state a failed call must leave alone: indexes, capacity, part count and every byte. */
typedef struct snapshot {
    size_t reader, writer, capacity;
    unsigned parts;
    unsigned char bytes[512];
} snapshot;

static snapshot take(const bp_buf *b)
{
    snapshot s = {b->reader, b->writer, bp_buf_capacity(b), bp_buf_part_count(b), {0}};
    bp_buf_get_bytes(b, 0, s.bytes, BP_MIN(b->writer, sizeof s.bytes));
    return s;
}

static bool same(const bp_buf *b, const snapshot *s)
{
    snapshot now = take(b);
    return now.reader == s->reader && now.writer == s->writer && now.capacity == s->capacity &&
           now.parts == s->parts && memcmp(now.bytes, s->bytes, sizeof s->bytes) == 0;
}

#define CHECK_FAILS_CLEANLY(b, call, code)                                                         \
    do {                                                                                           \
        snapshot before_ = take(b);                                                                \
        CHECK_EQ((call), (code));                                                                  \
        CHECK(same((b), &before_));                                                                \
    } while (0)

static bp_buf *filled(const char *text)
{
    bp_buf *b = bp_buf_new(pool, strlen(text), 0);
    REQUIRE(b != NULL && bp_buf_write_bytes(b, text, strlen(text)) == BP_OK);
    return b;
}

/* Whether b's readable bytes are exactly text. */
static bool readable_is(const bp_buf *b, const char *text)
{
    char got[512];
    size_t n = strlen(text);
    return bp_buf_readable(b) == n && n <= sizeof got &&
           bp_buf_get_bytes(b, bp_buf_reader_index(b), got, n) == BP_OK &&
           memcmp(got, text, n) == 0;
}

/* ---- part counts ------------------------------------------------------------------------- */

static void test_parts_grow(void)
{
    /* max_parts 0: no limit; with consolidation off, every part stays a part */
    bp_buf *c = bp_buf_composite(pool, 0);
    REQUIRE(c != NULL);
    CHECK_EQ(bp_buf_set_consolidate_at(c, 0), BP_OK);
    char want[301] = {0};
    for (int i = 0; i < 300; i++) {
        char one[2] = {(char)('a' + i % 26), 0};
        want[i] = one[0];
        CHECK_EQ(bp_buf_append(c, filled(one)), BP_OK);
    }
    CHECK_EQ(bp_buf_part_count(c), 300);
    CHECK(readable_is(c, want));
    bp_buf_release(c);

    /* a limit still holds: past it BP_ECAP, the composite as it was */
    c = bp_buf_composite(pool, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(bp_buf_append(c, filled("xy")), BP_OK);
    bp_buf *extra = filled("z");
    CHECK_FAILS_CLEANLY(c, bp_buf_append(c, extra), BP_ECAP);
    CHECK_FAILS_CLEANLY(c, bp_buf_prepend_part(c, extra), BP_ECAP);
    CHECK_FAILS_CLEANLY(c, bp_buf_append_slice(c, extra, 1), BP_ECAP);
    CHECK_EQ(bp_buf_readable(extra), 1); /* still the caller's, unread */
    bp_buf_release(extra);
    bp_buf_release(c);

    errno = 0;
    CHECK(bp_buf_composite(pool, (1u << 20) + 1) == NULL && errno == EINVAL);
}

static void test_consolidate_threshold(void)
{
    bp_buf *c = bp_buf_composite(pool, 0);
    char want[64] = {0};
    for (int i = 0; i < BP_CONSOLIDATE_DEFAULT; i++) {
        char one[2] = {(char)('A' + i), 0};
        want[i] = one[0];
        CHECK_EQ(bp_buf_append(c, filled(one)), BP_OK);
    }
    CHECK_EQ(bp_buf_part_count(c), BP_CONSOLIDATE_DEFAULT);
    /* the 17th part: all of them copied into one, Netty's default */
    bp_buf *last = filled("!");
    bp_buf_retain(last);
    CHECK_EQ(bp_buf_append(c, last), BP_OK);
    want[BP_CONSOLIDATE_DEFAULT] = '!';
    CHECK_EQ(bp_buf_part_count(c), 1);
    CHECK(readable_is(c, want));
    CHECK_EQ(bp_buf_refcnt(last), 1); /* copied, so the composite let it go */
    bp_buf_release(last);

    /* growth is an addition too: writes past the threshold keep one part */
    CHECK_EQ(bp_buf_set_consolidate_at(c, 2), BP_OK);
    for (int i = 0; i < 2000; i++)
        CHECK_EQ(bp_buf_write_u8(c, (uint8_t)i), BP_OK);
    CHECK(bp_buf_part_count(c) <= 2);
    uint8_t v = 0;
    CHECK(bp_buf_get_u8(c, BP_CONSOLIDATE_DEFAULT + 1 + 1999, &v) == BP_OK && v == (uint8_t)1999);
    bp_buf_release(c);

    /* the threshold's errors */
    bp_buf *plain = filled("plain");
    CHECK_EQ(bp_buf_set_consolidate_at(plain, 4), BP_EINVAL);
    c = bp_buf_composite(pool, 0);
    CHECK_EQ(bp_buf_set_consolidate_at(c, 65536), BP_EINVAL);
    CHECK_EQ(bp_buf_set_consolidate_at(c, 65535), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("ab")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("cd")), BP_OK);
    bp_buf *across = bp_buf_slice(c, 1, 2, 0);
    REQUIRE(across != NULL && bp_buf_is_composite(across));
    CHECK_EQ(bp_buf_set_consolidate_at(across, 4), BP_EINVAL); /* a view never copies */
    bp_buf_release(across);
    bp_buf_release(c);
    bp_buf_release(plain);
}

/* ---- prepend ---------------------------------------------------------------------------- */

static void test_prepend_part(void)
{
    bp_buf *c = bp_buf_composite(pool, 0);
    CHECK_EQ(bp_buf_append(c, filled("world")), BP_OK);
    CHECK_EQ(bp_buf_prepend_part(c, filled("hello ")), BP_OK);
    CHECK(readable_is(c, "hello world"));
    CHECK_EQ(bp_buf_part_count(c), 2);
    CHECK_EQ(bp_buf_reader_index(c), 0);

    /* with bytes read: those go first (no copy), the new ones come before the unread */
    CHECK_EQ(bp_buf_skip(c, 8), BP_OK); /* reader inside "world", at "rld" */
    CHECK_EQ(bp_buf_prepend_part(c, filled("W")), BP_OK);
    CHECK(readable_is(c, "Wrld"));
    CHECK_EQ(bp_buf_reader_index(c), 0);
    CHECK_EQ(bp_buf_writer_index(c), 4);
    CHECK_EQ(bp_buf_part_count(c), 2);

    /* everything read: the composite is just the new part */
    CHECK_EQ(bp_buf_skip(c, 4), BP_OK);
    CHECK_EQ(bp_buf_prepend_part(c, filled("new")), BP_OK);
    CHECK(readable_is(c, "new"));
    CHECK_EQ(bp_buf_part_count(c), 1);

    /* the errors, each leaving the composite as it was and the part the caller's */
    bp_buf *p = filled("p");
    CHECK_FAILS_CLEANLY(c, bp_buf_prepend_part(c, c), BP_EINVAL);
    bp_buf *other = bp_buf_composite(pool, 0);
    CHECK_FAILS_CLEANLY(c, bp_buf_prepend_part(c, other), BP_EINVAL);
    CHECK_EQ(bp_buf_prepend_part(p, other), BP_EINVAL);
    bp_buf_ext_of(c)->max_capacity = 3; /* full at its maximum */
    CHECK_FAILS_CLEANLY(c, bp_buf_prepend_part(c, p), BP_ECAP);
    bp_buf_ext_of(c)->max_capacity = BP_BUF_NO_LIMIT;
    CHECK_EQ(bp_buf_append(c, filled("er")), BP_OK);
    bp_buf *s = bp_buf_slice(c, 1, 3, 0); /* "ewe": across two parts */
    REQUIRE(s != NULL && bp_buf_is_composite(s));
    CHECK_FAILS_CLEANLY(s, bp_buf_prepend_part(s, p), BP_ECAP); /* a slice never grows */
    CHECK_EQ(bp_buf_refcnt(p), 1);
    bp_buf_release(s);
    bp_buf_release(other);
    bp_buf_release(p);

    /* past the threshold: copied into one, the read bytes left out */
    CHECK_EQ(bp_buf_set_consolidate_at(c, 2), BP_OK);
    CHECK_EQ(bp_buf_skip(c, 1), BP_OK);
    CHECK_EQ(bp_buf_prepend_part(c, filled(">")), BP_OK);
    CHECK(readable_is(c, ">ewer"));
    CHECK_EQ(bp_buf_part_count(c), 1);
    CHECK_EQ(bp_buf_reader_index(c), 0);
    bp_buf_release(c);
}

/* ---- by reference and by copy ----------------------------------------------------------- */

static void test_append_slice(void)
{
    bp_buf *src = filled("hello world");
    bp_buf *c = bp_buf_composite(pool, 0);
    CHECK_EQ(bp_buf_append_slice(c, src, 6), BP_OK);
    CHECK(readable_is(c, "hello "));
    CHECK(readable_is(src, "world"));
    /* no copy: a write into src's bytes is seen through the composite */
    CHECK_EQ(bp_buf_set_u8(src, 0, 'J'), BP_OK);
    uint8_t v = 0;
    CHECK(bp_buf_get_u8(c, 0, &v) == BP_OK && v == 'J');
    CHECK_FAILS_CLEANLY(src, bp_buf_discard_read(src), BP_ESHARED);

    /* from a composite: the slice spans its parts, each becomes a part */
    bp_buf *q = bp_buf_composite(pool, 0);
    CHECK_EQ(bp_buf_append(q, filled("ab")), BP_OK);
    CHECK_EQ(bp_buf_append(q, filled("cd")), BP_OK);
    CHECK_EQ(bp_buf_append(q, filled("ef")), BP_OK);
    CHECK_EQ(bp_buf_skip(q, 1), BP_OK);
    CHECK_EQ(bp_buf_append_slice(c, q, 4), BP_OK);
    CHECK(readable_is(c, "Jello bcde"));
    CHECK(readable_is(q, "f"));
    CHECK_EQ(bp_buf_part_count(c), 4);
    bp_buf_release(q); /* the composite's views keep those bytes */
    CHECK(readable_is(c, "Jello bcde"));

    /* read-only bytes stay read-only */
    static char mem[] = "ro!";
    bp_buf *ro = bp_buf_wrap(pool, mem, 3, 3, NULL, NULL, BP_RDONLY);
    CHECK_EQ(bp_buf_append_slice(c, ro, 3), BP_OK);
    CHECK_EQ(bp_buf_set_u8(c, 10, 'x'), BP_ERDONLY);
    bp_buf_release(ro);

    /* the errors, each leaving both buffers as they were */
    snapshot src_before = take(src);
    CHECK_FAILS_CLEANLY(c, bp_buf_append_slice(c, src, 6), BP_EBOUNDS);
    CHECK_FAILS_CLEANLY(c, bp_buf_append_slice(c, c, 1), BP_EINVAL);
    CHECK_EQ(bp_buf_append_slice(src, c, 1), BP_EINVAL);
    bp_buf_ext_of(c)->max_capacity = bp_buf_capacity(c) + 2;
    CHECK_FAILS_CLEANLY(c, bp_buf_append_slice(c, src, 3), BP_ECAP);
    CHECK(same(src, &src_before));
    bp_buf_release(c);
    bp_buf_release(src);
}

static void test_write_buf(void)
{
    bp_buf *src = filled("0123456789");
    bp_buf *dst = bp_buf_new(pool, 4, 0);
    CHECK_EQ(bp_buf_write_buf(dst, src, 6), BP_OK);
    CHECK(readable_is(dst, "012345"));
    CHECK(readable_is(src, "6789"));
    CHECK_EQ(bp_buf_set_u8(src, 0, 'X'), BP_OK); /* a copy: dst does not see it */
    CHECK(readable_is(dst, "012345"));

    /* composite to contiguous and back */
    bp_buf *c = bp_buf_composite(pool, 0);
    CHECK_EQ(bp_buf_append(c, filled("ab")), BP_OK);
    CHECK_EQ(bp_buf_append(c, filled("cd")), BP_OK);
    CHECK_EQ(bp_buf_write_buf(dst, c, 3), BP_OK);
    CHECK(readable_is(dst, "012345abc"));
    CHECK(readable_is(c, "d"));
    CHECK_EQ(bp_buf_write_buf(c, dst, 9), BP_OK); /* the composite grows by a part */
    CHECK(readable_is(c, "d012345abc"));
    CHECK_EQ(bp_buf_readable(dst), 0);

    /* the errors */
    snapshot src_before = take(src);
    CHECK_FAILS_CLEANLY(dst, bp_buf_write_buf(dst, src, 5), BP_EBOUNDS);
    CHECK_FAILS_CLEANLY(dst, bp_buf_write_buf(dst, dst, 0), BP_EINVAL);
    bp_buf *capped = bp_buf_new(pool, 2, 3);
    CHECK_FAILS_CLEANLY(capped, bp_buf_write_buf(capped, src, 4), BP_ECAP);
    static char mem[8];
    bp_buf *ro = bp_buf_wrap(pool, mem, sizeof mem, 0, NULL, NULL, BP_RDONLY);
    CHECK_FAILS_CLEANLY(ro, bp_buf_write_buf(ro, src, 1), BP_ERDONLY);
    /* a composite whose writable bytes lie in a read-only part */
    bp_buf *rc = bp_buf_composite(pool, 0);
    bp_buf *rpart = bp_buf_wrap(pool, mem, sizeof mem, sizeof mem, NULL, NULL, BP_RDONLY);
    CHECK_EQ(bp_buf_append(rc, rpart), BP_OK);
    CHECK_EQ(bp_buf_set_index(rc, 0, 2), BP_OK);
    CHECK_FAILS_CLEANLY(rc, bp_buf_write_buf(rc, src, 1), BP_ERDONLY);
    CHECK(same(src, &src_before));
    bp_buf_release(rc);
    bp_buf_release(ro);
    bp_buf_release(capped);
    bp_buf_release(c);
    bp_buf_release(dst);
    bp_buf_release(src);
}

/* ---- a write queue lets go of what was written ------------------------------------------- */

static void test_writev_releases_parts(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    bp_buf *q = bp_buf_composite(pool, 0);
    bp_buf *first = bp_buf_new(pool, 1000, 0);
    REQUIRE(bp_buf_write_zero(first, 1000) == BP_OK);
    bp_buf_retain(first); /* to watch the queue let go of it */
    CHECK_EQ(bp_buf_append(q, first), BP_OK);
    for (int i = 0; i < 2; i++) {
        bp_buf *part = bp_buf_new(pool, 1000, 0);
        REQUIRE(bp_buf_write_zero(part, 1000) == BP_OK);
        CHECK_EQ(bp_buf_append(q, part), BP_OK);
    }
    CHECK_EQ(bp_buf_refcnt(first), 2);
    CHECK_EQ(bp_buf_writev_fd(q, sv[0], 1500), 1500);
    CHECK_EQ(bp_buf_part_count(q), 2);     /* the first part, written whole, is gone */
    CHECK_EQ(bp_buf_refcnt(first), 1);     /* ... and released */
    CHECK_EQ(bp_buf_reader_index(q), 500); /* the indexes moved down by its bytes */
    CHECK_EQ(bp_buf_readable(q), 1500);
    CHECK_EQ(bp_buf_writev_fd(q, sv[0], 0), 1500);
    CHECK_EQ(bp_buf_part_count(q), 0);
    CHECK_EQ(bp_buf_capacity(q), 0);
    bp_buf_release(first);
    bp_buf_release(q);
    close(sv[0]);
    close(sv[1]);
}

/* A part whose buffer the composite holds alone costs no reference on its memory (no
 * extension, no atomic); a view of it gets one then, and outlives the composite. A part whose
 * buffer someone else still holds takes the reference at once, so its owner's writes copy. */
static void test_parts_owned_alone(void)
{
    bp_buf *c = bp_buf_composite(pool, 0);
    bp_buf *alone = filled("abcdef");
    CHECK_EQ(bp_buf_append(c, alone), BP_OK);
    CHECK(c->more.ext->parts[0].mem == NULL);
    CHECK(bp_buf_ext_of(alone) == NULL); /* still plain */
    bp_buf *shared = filled("ghij");
    bp_buf_retain(shared);
    CHECK_EQ(bp_buf_append(c, shared), BP_OK);
    CHECK(c->more.ext->parts[1].mem != NULL);
    /* its owner sees the bytes shared: they cannot move under the composite */
    CHECK_EQ(bp_buf_skip(shared, 1), BP_OK);
    CHECK_EQ(bp_buf_discard_read(shared), BP_ESHARED);
    /* a view handed over holds its memory itself: the part needs no reference of its own */
    bp_buf *origin = filled("klmn");
    CHECK_EQ(bp_buf_append(c, bp_buf_slice(origin, 1, 2, 0)), BP_OK); /* "lm" */
    CHECK(c->more.ext->parts[2].mem == NULL);
    bp_buf_release(origin);                    /* the view keeps the bytes */
    bp_buf *inside = bp_buf_slice(c, 1, 3, 0); /* one part: a plain view of it */
    REQUIRE(inside != NULL);
    CHECK(c->more.ext->parts[0].mem != NULL); /* made for the view */
    bp_buf *across = bp_buf_slice(c, 4, 4, 0);
    REQUIRE(across != NULL);
    bp_buf *tail = bp_buf_slice(c, 8, 4, 0); /* "ij" + "lm", across the view part */
    REQUIRE(tail != NULL);
    CHECK(c->more.ext->parts[2].mem != NULL); /* made for the slice */
    bp_buf_release(c);
    CHECK(readable_is(inside, "bcd")); /* the view keeps the bytes alive */
    CHECK_EQ(bp_buf_readable(across), 4);
    CHECK(readable_is(tail, "ijlm"));
    bp_buf_release(tail);
    bp_buf_release(inside);
    bp_buf_release(across);
    bp_buf_release(shared);
}

int main(void)
{
    bp_config cfg;
    bp_config_defaults(&cfg);
    cfg.arenas = 1;
    pool = bp_pool_new(&cfg);
    REQUIRE(pool != NULL);
    RUN(test_parts_grow);
    RUN(test_consolidate_threshold);
    RUN(test_prepend_part);
    RUN(test_append_slice);
    RUN(test_write_buf);
    RUN(test_writev_releases_parts);
    RUN(test_parts_owned_alone);
    bp_thread_flush(pool);
    bp_arena_counters c;
    bp_pool_counters(pool, &c);
    CHECK_EQ(c.active_bytes, 0); /* every part released */
    bp_pool_destroy(pool);
    return test_report();
}
