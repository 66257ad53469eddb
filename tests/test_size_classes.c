/* test_size_classes.c — the generated size-class tables against the formula that defines
 * them and against Netty's published counts; size/class/page-class round trips. */
#include "front.h"
#include "test.h"

#include <errno.h>

/* The definition, independently: 16, 32, 48, 64, then four steps of group/4 per doubling. */
static size_t formula_size(unsigned cls)
{
    if (cls < 4)
        return (size_t)(cls + 1) << 4;
    unsigned group = (cls - 4) / 4, step = (cls - 4) % 4 + 1;
    size_t base = (size_t)64 << group;
    return base + step * (base / 4);
}

static void check_counts(size_t page, size_t chunk, unsigned nclasses, unsigned nsmall,
                         unsigned npage_classes)
{
    bp_size_classes sc;
    REQUIRE(bp_size_classes_init(&sc, page, chunk) == 0);
    CHECK_EQ(sc.nclasses, nclasses);
    CHECK_EQ(sc.nsmall, nsmall);
    CHECK_EQ(sc.npage_classes, npage_classes);
    CHECK_EQ(sc.size[sc.nclasses - 1], chunk);
    CHECK_EQ(sc.size[sc.nsmall - 1], page * 4 - page / 2); /* 28 KiB for 8 KiB pages */
}

static void test_netty_counts(void)
{
    check_counts(8192, (size_t)4 << 20, 68, 39, 32);
    check_counts(8192, (size_t)16 << 20, 76, 39, 40);
    check_counts(4096, (size_t)4 << 20, 68, 35, 36);
    check_counts(65536, (size_t)1 << 30, 100, 51, 52);
}

static void test_table_matches_formula(void)
{
    size_t pages[] = {4096, 8192, 16384, 65536};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        for (unsigned k = 1; k <= 14; k++) {
            bp_size_classes sc;
            size_t chunk = pages[i] << k;
            REQUIRE(bp_size_classes_init(&sc, pages[i], chunk) == 0);
            for (unsigned c = 0; c < sc.nclasses; c++) {
                CHECK_EQ(sc.size[c], formula_size(c));
                CHECK_EQ(c < sc.nsmall, sc.size[c] < pages[i] * 4);
                CHECK_EQ(sc.page_class[c] != BP_NO_PAGE_CLASS, sc.size[c] % pages[i] == 0);
                if (c >= sc.nsmall) {
                    CHECK_EQ(sc.run_pages[c] * pages[i], sc.size[c]);
                } else {
                    /* a subpage run: whole elements, within the chunk, <= page/16 of them */
                    CHECK(sc.run_elems[c] >= 1);
                    CHECK(sc.run_elems[c] <= pages[i] / 16);
                    CHECK((size_t)sc.run_elems[c] * sc.size[c] <= sc.run_pages[c] * pages[i]);
                    CHECK(sc.run_pages[c] <= sc.chunk_pages);
                }
            }
        }
    }
}

/* Netty's run sizes for 8 KiB pages: the smallest page multiple divisible by the element. */
static void test_subpage_runs(void)
{
    bp_size_classes sc;
    REQUIRE(bp_size_classes_init(&sc, 8192, (size_t)4 << 20) == 0);
    struct {
        size_t size, pages, elems;
    } expect[] = {
        {16, 1, 512},  {48, 3, 512},  {80, 5, 512},  {112, 7, 512}, {1024, 1, 8},
        {1280, 5, 32}, {5120, 5, 8},  {8192, 1, 1},  {10240, 5, 4}, {14336, 7, 4},
        {16384, 2, 1}, {20480, 5, 2}, {24576, 3, 1}, {28672, 7, 2},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        unsigned c = bp_size_to_class(&sc, expect[i].size);
        CHECK_EQ(sc.size[c], expect[i].size);
        CHECK_EQ(sc.run_pages[c], expect[i].pages);
        CHECK_EQ(sc.run_elems[c], expect[i].elems);
    }
    /* A chunk too small for the natural run falls back to the fewest pages for one element. */
    REQUIRE(bp_size_classes_init(&sc, 8192, 16384) == 0);
    unsigned c = bp_size_to_class(&sc, 10240);
    CHECK_EQ(sc.run_pages[c], 2);
    CHECK_EQ(sc.run_elems[c], 1);
}

static void check_round_trip(const bp_size_classes *sc, size_t size)
{
    unsigned c = bp_size_to_class(sc, size);
    CHECK(c < sc->nclasses);
    CHECK(sc->size[c] >= size);
    if (c > 0)
        CHECK(sc->size[c - 1] < size);
    CHECK_EQ(bp_size_to_class(sc, sc->size[c]), c);
    if (size > BP_QUANTUM)
        CHECK_EQ(bp_size_to_class_compute(sc, size), c); /* the table agrees with the formula */
}

static void test_size_round_trips(void)
{
    bp_size_classes sc;
    REQUIRE(bp_size_classes_init(&sc, 8192, (size_t)16 << 20) == 0);
    CHECK_EQ(bp_size_to_class(&sc, 0), 0);
    int before = test_failures;
    for (size_t size = 1; size <= 65536 && test_failures == before; size++)
        check_round_trip(&sc, size);
    test_rng rng = {test_seed(0x5eedc1a55)};
    for (int i = 0; i < 200000 && test_failures == before; i++)
        check_round_trip(&sc, 65537 + test_below(&rng, ((size_t)16 << 20) - 65536));
    for (unsigned c = 0; c < sc.nclasses; c++) {
        check_round_trip(&sc, sc.size[c]);
        check_round_trip(&sc, sc.size[c] + 1 <= (16u << 20) ? sc.size[c] + 1 : sc.size[c]);
    }
}

static void test_page_classes(void)
{
    bp_size_classes sc;
    REQUIRE(bp_size_classes_init(&sc, 8192, (size_t)4 << 20) == 0);
    for (unsigned pc = 0; pc < sc.npage_classes; pc++) {
        unsigned c = sc.page_class_to_class[pc];
        CHECK_EQ(sc.page_class[c], pc);
        CHECK_EQ((size_t)sc.page_class_pages[pc] * 8192, sc.size[c]);
        if (pc > 0)
            CHECK(sc.page_class_pages[pc] > sc.page_class_pages[pc - 1]);
    }
    for (size_t pages = 1; pages <= sc.chunk_pages; pages++) {
        unsigned ceil = bp_pages_to_page_class_ceil(&sc, pages);
        unsigned floor = bp_pages_to_page_class_floor(&sc, pages);
        CHECK(sc.page_class_pages[ceil] >= pages);
        CHECK(ceil == 0 || sc.page_class_pages[ceil - 1] < pages);
        CHECK(sc.page_class_pages[floor] <= pages);
        CHECK(floor + 1 == sc.npage_classes || sc.page_class_pages[floor + 1] > pages);
    }
    CHECK_EQ(sc.page_class_pages[bp_pages_to_page_class_ceil(&sc, 3)], 3);
    CHECK_EQ(sc.page_class_pages[bp_pages_to_page_class_ceil(&sc, 9)], 10);
    CHECK_EQ(sc.page_class_pages[bp_pages_to_page_class_floor(&sc, 9)], 8);
}

static void test_bad_geometry(void)
{
    bp_size_classes sc;
    CHECK_EQ(bp_size_classes_init(&sc, 5000, 1 << 20), EINVAL);
    CHECK_EQ(bp_size_classes_init(&sc, 2048, 1 << 20), EINVAL);
    CHECK_EQ(bp_size_classes_init(&sc, 8192, 8192), EINVAL);
    CHECK_EQ(bp_size_classes_init(&sc, 8192, (size_t)8192 << 15), EINVAL);
    CHECK_EQ(bp_size_classes_init(&sc, 8192, 3 << 20), EINVAL);
}

int main(void)
{
    RUN(test_netty_counts);
    RUN(test_table_matches_formula);
    RUN(test_subpage_runs);
    RUN(test_size_round_trips);
    RUN(test_page_classes);
    RUN(test_bad_geometry);
    return test_report();
}
