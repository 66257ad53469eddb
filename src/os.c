/* os.c — the OS interface: the default bp_os table (aligned anonymous mappings, unmap,
 * purge), the wrappers the engine maps and registers regions through, and messages that
 * never allocate. */
#define _GNU_SOURCE /* mremap */
#include "lock.h"
#include "os.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* mmap gives page alignment only: map size + align, then cut the unaligned head and the
 * tail away. Alignments up to the OS page need no trimming. At vm.max_map_count a cut that
 * splits a mapping (the span merged with a neighbour) is refused although the mmap itself
 * succeeded: then the whole span goes (cutting at a mapping's end splits nothing) and the
 * answer is NULL, as from a refused mmap. Returning the untrimmed span instead would cost
 * `align` bytes of address space per call and never let an allocation loop see ENOMEM. */
static void *default_map(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    size_t os_page = 4096;
    if (align <= os_page) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    if (size > SIZE_MAX - align)
        return NULL;
    size_t span = size + align - os_page;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *start = (char *)bp_align_up((uintptr_t)raw, align);
    size_t head = (size_t)(start - raw);
    size_t tail = span - head - size;
    if (head != 0 && munmap(raw, head) != 0) {
        munmap(raw, span);
        return NULL;
    }
    if (tail != 0 && munmap(start + size, tail) != 0) {
        munmap(start, size + tail); /* untouched: if this is refused too, address space only */
        return NULL;
    }
    return start;
}

static int default_unmap(void *addr, size_t size, void *ctx)
{
    (void)ctx;
    return munmap(addr, size) == 0 ? 0 : errno;
}

static int default_purge(void *addr, size_t size, void *ctx)
{
    (void)ctx;
    return madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

static const bp_os default_os = {
    .map = default_map,
    .unmap = default_unmap,
    .purge = default_purge,
    .ctx = NULL,
};

const bp_os *bp_os_default(void)
{
    return &default_os;
}

void *bp_os_map(const bp_os *os, size_t size, size_t align)
{
    bp_assert(size % 4096 == 0 && bp_is_pow2(align));
    void *p = os->map(size, align, os->ctx);
    if (p != NULL && ((uintptr_t)p & (align - 1)) != 0)
        bp_fatal("the OS layer returned %p for a mapping aligned to %zu", p, align);
    return p;
}

void *bp_os_map_memory(const bp_os *os, size_t size, size_t align, bp_map_kind kind)
{
    if (os->map_memory == NULL)
        return bp_os_map(os, size, align);
    bp_assert(size % 4096 == 0 && bp_is_pow2(align));
    void *p = os->map_memory(size, align, kind, os->ctx);
    if (p != NULL && ((uintptr_t)p & (align - 1)) != 0)
        bp_fatal("the OS layer returned %p for memory aligned to %zu", p, align);
    return p;
}

int bp_os_region_add(const bp_os *os, uintptr_t base, size_t size, bp_map_kind kind,
                     bp_os_region *out)
{
    out->known = false;
    if (os->region_add == NULL)
        return 0;
    bp_region id = {0, 0};
    int err = os->region_add((void *)base, size, kind, &id, os->ctx);
    if (err != 0)
        return err;
    out->id = id;
    out->known = true;
    return 0;
}

void bp_os_region_remove(const bp_os *os, uintptr_t base, size_t size, bp_os_region *region)
{
    if (!region->known)
        return;
    __atomic_store_n(&region->known, false, __ATOMIC_RELAXED);
    if (os->region_remove != NULL)
        os->region_remove((void *)base, size, &region->id, os->ctx);
}

int bp_os_unmap(const bp_os *os, void *addr, size_t size)
{
    int err = os->unmap(addr, size, os->ctx);
    if (err != 0 && os->purge != NULL)
        os->purge(addr, size, os->ctx); /* the range stays; at least its memory goes back */
    return err;
}

void *bp_os_scratch_grow(void *mem, size_t cap, size_t need, size_t keep, size_t *cap_out)
{
    size_t bytes = bp_align_up(BP_MAX(need, 1), 64 << 10);
    void *grown = bp_os_map(&default_os, bytes, 4096);
    if (grown == NULL)
        return NULL;
    if (keep > 0)
        memcpy(grown, mem, keep);
    bp_os_scratch_free(mem, cap);
    *cap_out = bytes;
    return grown;
}

void bp_os_scratch_free(void *mem, size_t cap)
{
    if (mem != NULL)
        bp_os_unmap(&default_os, mem, cap);
}

/* ---- counted memory --------------------------------------------------------------------- */

/* A stuck range's first bytes: written after the refused unmap purged the range (so its first
 * page is backed again; the rest stays purged). */
struct bp_os_stuck {
    bp_os_stuck *next;
    size_t size, counted;
};

bool bp_os_count(bp_os_memory *mem, size_t bytes)
{
    size_t now = __atomic_load_n(&mem->counted, __ATOMIC_RELAXED);
    do {
        if (mem->limit != 0 && (bytes > mem->limit || now > mem->limit - bytes))
            return false;
    } while (!__atomic_compare_exchange_n(&mem->counted, &now, now + bytes, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return true;
}

void bp_os_uncount(bp_os_memory *mem, size_t bytes)
{
    __atomic_sub_fetch(&mem->counted, bytes, __ATOMIC_RELAXED);
}

void *bp_os_map_counted(bp_os_memory *mem, size_t size, size_t align)
{
    if (!bp_os_count(mem, size))
        return NULL;
    void *p = bp_os_map(&mem->os, size, align);
    if (p == NULL)
        bp_os_uncount(mem, size);
    return p;
}

void *bp_os_map_memory_counted(bp_os_memory *mem, size_t size, size_t align, bp_map_kind kind)
{
    if (!bp_os_count(mem, size))
        return NULL;
    void *p = bp_os_map_memory(&mem->os, size, align, kind);
    if (p == NULL)
        bp_os_uncount(mem, size);
    return p;
}

static void push_stuck(bp_os_memory *mem, void *addr, size_t size, size_t counted)
{
    bp_os_stuck *r = addr;
    r->size = size;
    r->counted = counted;
    __atomic_add_fetch(&mem->stuck_bytes, counted, __ATOMIC_RELAXED);
    r->next = __atomic_load_n(&mem->stuck, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&mem->stuck, &r->next, r, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
        ;
}

size_t bp_os_unmap_counted(bp_os_memory *mem, void *addr, size_t size, size_t counted)
{
    if (bp_os_unmap(&mem->os, addr, size) != 0) {
        push_stuck(mem, addr, size, counted);
        return 0;
    }
    bp_os_uncount(mem, counted);
    return size;
}

size_t bp_os_retry_stuck(bp_os_memory *mem)
{
    if (__atomic_load_n(&mem->stuck, __ATOMIC_RELAXED) == NULL)
        return 0;
    bp_os_stuck *list = __atomic_exchange_n(&mem->stuck, NULL, __ATOMIC_ACQUIRE);
    size_t released = 0;
    while (list != NULL) {
        bp_os_stuck *r = list;
        list = r->next;
        size_t size = r->size, counted = r->counted; /* the node goes with the range */
        __atomic_sub_fetch(&mem->stuck_bytes, counted, __ATOMIC_RELAXED);
        released += bp_os_unmap_counted(mem, r, size, counted);
    }
    return released;
}

/* ---- resizing a mapping (the default layer only) ----------------------------------------
 * A custom layer has no call to resize a mapping; its blocks are reallocated by copy. So are
 * those of a layer with regions, whose callbacks were told of the mapping as it was. The
 * default layer's mappings are plain anonymous ones, which mremap resizes: in place where the
 * pages after the mapping are free, else by moving the pages themselves (page tables, not
 * bytes) into a range reserved beforehand, so that the new address keeps the alignment the
 * chunk map needs and is known before anything moves. */

bool bp_os_can_remap(const bp_os *os)
{
    return os->map == default_map && os->unmap == default_unmap && os->map_memory == NULL &&
           os->region_add == NULL;
}

bool bp_os_remap_in_place(void *addr, size_t old_size, size_t new_size)
{
    return mremap(addr, old_size, new_size, 0) != MAP_FAILED;
}

/* Inaccessible and without commit charge: it only holds the addresses until the move. */
void *bp_os_remap_reserve(size_t size, size_t align)
{
    if (size > SIZE_MAX - align)
        return NULL;
    size_t span = size + align - 4096;
    char *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *start = (char *)bp_align_up((uintptr_t)raw, align);
    size_t head = (size_t)(start - raw);
    size_t tail = span - head - size;
    if ((head != 0 && munmap(raw, head) != 0) || (tail != 0 && munmap(start + size, tail) != 0)) {
        munmap(raw, span); /* at vm.max_map_count: no range, rather than one we cannot trim */
        return NULL;
    }
    return start;
}

void bp_os_remap_release(void *reserved, size_t size)
{
    munmap(reserved, size);
}

/* A failed MREMAP_FIXED may already have unmapped the reservation (Linux unmaps the target
 * first and can fail after, at vm.max_map_count), and another thread may have mapped into the
 * hole since: the range is unmapped only when a probe shows it is a hole no one took (the
 * probe's own mapping then goes). A reservation the probe finds still there stays: address
 * space without memory, rather than a chance of unmapping another thread's memory. */
static void release_after_failed_move(void *reserved, size_t size)
{
    void *probe = mmap(reserved, size, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (probe == reserved)
        munmap(probe, size);
    else if (probe != MAP_FAILED) /* a kernel before 4.17 took the flag for a hint */
        munmap(probe, size);
}

bool bp_os_remap_move(void *addr, size_t old_size, size_t new_size, void *reserved)
{
    void *moved = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, reserved);
    if (moved == reserved)
        return true;
    release_after_failed_move(reserved, new_size);
    return false;
}

/* ---- bp_lock ---------------------------------------------------------------------------- */

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Spin a little (the holder is usually on another core and almost done), then mark the lock
 * contended and sleep until the holder's release wakes us. */
void bp_lock_wait(bp_lock *lock)
{
    for (int spin = 0; spin < 100; spin++) {
        cpu_relax();
        uint32_t expected = 0;
        if (__atomic_load_n(&lock->state, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
    }
    while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, &lock->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void bp_lock_wake(bp_lock *lock)
{
    syscall(SYS_futex, &lock->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- messages --------------------------------------------------------------------------- */

/* The program's name without its directory, set before main: glibc's and musl's, which
 * errno.h declares under _GNU_SOURCE (declared here instead, for this one use). */
extern char *program_invocation_short_name;

int bp_message_prefix(char *buf, size_t len)
{
    int n =
        snprintf(buf, len, "bufpool: %.64s[%ld]: ", program_invocation_short_name, (long)getpid());
    return n < 0 ? 0 : (int)BP_MIN((size_t)n, len - 1);
}

/* On the stack and with one write(2): a message may come from inside malloc, or from a
 * thread that holds a lock stdio would need. */
static void vmessage(const char *fmt, va_list ap)
{
    char buf[640];
    int n = bp_message_prefix(buf, sizeof buf);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : BP_MIN((size_t)m, sizeof buf - (size_t)n - 2));
    buf[len++] = '\n';
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, buf + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void bp_message(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void bp_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    abort();
}

void bp_assert_fail(const char *cond, const char *file, int line, const char *func)
{
    bp_fatal("assertion failed: %s (%s:%d, %s)", cond, file, line, func);
}
