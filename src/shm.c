/* shm.c — bp_shm: an OS layer whose chunks and huge blocks are carved from one memfd, so
 * that another process that maps the memfd sees their bytes; the metadata stays private. */
#define _GNU_SOURCE /* memfd_create, fallocate */
#include "fast.h"
#include "os.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHM_PAGE_SHIFT 12
#define SHM_PAGE       ((size_t)1 << SHM_PAGE_SHIFT)

/* The memfd's bytes and the process's view of them are laid out alike: page i of the memfd
 * is mapped, when a chunk or huge block holds it, at base + i * 4 KiB and nowhere else. So
 * an address in [base, base + size) is memory (everything else a layer call gets is
 * metadata), its memfd offset is addr - base, and finding room is finding free pages.
 *
 * Invariants (under lock): bit i of used is set exactly when page i is part of a mapping
 * map_memory returned and unmap has not taken back, or of a range whose hole punch failed
 * (kept out of use: its bytes may not read zero); used_bytes == bits set * 4 KiB; a page
 * whose bit is clear reads zero in the memfd and is mapped PROT_NONE (reserved) at base. */
struct bp_shm {
    bp_os os; /* ctx = this struct */
    int fd;
    uint32_t region_id;
    size_t size;
    char *base;      /* aligned to the chunk map's granule */
    size_t map_size; /* bytes of the mapping this struct lies in */
    pthread_mutex_t lock;
    size_t used_bytes;
    size_t npages;
    uint64_t used[]; /* [npages / 64] */
};

static bool page_used(const bp_shm *shm, size_t page)
{
    return (shm->used[page >> 6] >> (page & 63)) & 1;
}

static void mark_pages(bp_shm *shm, size_t first, size_t n, bool used)
{
    for (size_t page = first; page < first + n; page++) {
        uint64_t bit = (uint64_t)1 << (page & 63);
        shm->used[page >> 6] = used ? shm->used[page >> 6] | bit : shm->used[page >> 6] & ~bit;
    }
    if (used)
        shm->used_bytes += n << SHM_PAGE_SHIFT;
    else
        shm->used_bytes -= n << SHM_PAGE_SHIFT;
}

/* Under the lock: the first run of n free pages whose address is a multiple of align, or
 * npages. Linear in the pages (a chunk or huge block is mapped rarely). */
static size_t find_pages(const bp_shm *shm, size_t n, size_t align)
{
    size_t step = BP_MAX(align, SHM_PAGE) >> SHM_PAGE_SHIFT;
    size_t first =
        (bp_align_up((uintptr_t)shm->base, BP_MAX(align, SHM_PAGE)) - (uintptr_t)shm->base) >>
        SHM_PAGE_SHIFT;
    for (size_t start = first; start < shm->npages && n <= shm->npages - start;) {
        size_t page = start;
        while (page < start + n && !page_used(shm, page))
            page++;
        if (page == start + n)
            return start;
        start += bp_align_up(page + 1 - start, step); /* past the used page, aligned */
    }
    return shm->npages;
}

static bool is_memory(const bp_shm *shm, const void *addr)
{
    return (uintptr_t)addr >= (uintptr_t)shm->base &&
           (uintptr_t)addr - (uintptr_t)shm->base < shm->size;
}

static int punch_hole(bp_shm *shm, void *addr, size_t size)
{
    off_t offset = (off_t)((char *)addr - shm->base);
    return fallocate(shm->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, (off_t)size) == 0
               ? 0
               : errno;
}

static void *shm_map(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    return bp_os_default()->map(size, align, NULL);
}

static void *shm_map_memory(size_t size, size_t align, bp_map_kind kind, void *ctx)
{
    (void)kind;
    bp_shm *shm = ctx;
    pthread_mutex_lock(&shm->lock);
    size_t n = size >> SHM_PAGE_SHIFT;
    size_t first = find_pages(shm, n, align);
    void *p = NULL;
    if (first < shm->npages) {
        char *at = shm->base + (first << SHM_PAGE_SHIFT);
        /* over this layer's own reservation, so MAP_FIXED replaces nothing of anyone's */
        p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shm->fd,
                 (off_t)(first << SHM_PAGE_SHIFT));
        if (p == MAP_FAILED)
            p = NULL;
        else
            mark_pages(shm, first, n, true);
    }
    pthread_mutex_unlock(&shm->lock);
    return p; /* NULL when the memfd is full: the allocation fails with ENOMEM */
}

static int shm_unmap(void *addr, size_t size, void *ctx)
{
    bp_shm *shm = ctx;
    if (!is_memory(shm, addr))
        return bp_os_default()->unmap(addr, size, NULL);
    /* The range goes back to the reservation first: refused (at vm.max_map_count), the
     * memory stays mapped as it was, which the contract asks. */
    void *r =
        mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED)
        return errno;
    int err = punch_hole(shm, addr, size);
    pthread_mutex_lock(&shm->lock);
    if (err == 0)
        mark_pages(shm, (size_t)((char *)addr - shm->base) >> SHM_PAGE_SHIFT,
                   size >> SHM_PAGE_SHIFT, false);
    pthread_mutex_unlock(&shm->lock);
    if (err != 0) /* the pages may hold old bytes: never handed out again */
        bp_message("shm: cannot free %zu bytes of the memfd at offset %zu (errno %d)", size,
                   (size_t)((char *)addr - shm->base), err);
    return 0;
}

/* The memfd's pages themselves go: madvise would only drop this process's view of them. */
static int shm_purge(void *addr, size_t size, void *ctx)
{
    bp_shm *shm = ctx;
    if (!is_memory(shm, addr))
        return bp_os_default()->purge(addr, size, NULL);
    return punch_hole(shm, addr, size);
}

static int shm_region_add(void *addr, size_t size, bp_map_kind kind, bp_region *out, void *ctx)
{
    (void)size;
    (void)kind;
    bp_shm *shm = ctx;
    if (!is_memory(shm, addr))
        return EINVAL;
    out->id = shm->region_id;
    out->offset = (uint64_t)((char *)addr - shm->base);
    return 0;
}

bp_shm *bp_shm_new(size_t size, uint32_t region_id)
{
    if (size < BP_MAP_GRANULE || size % BP_MAP_GRANULE != 0 || size > ((size_t)1 << 40)) {
        errno = EINVAL;
        return NULL;
    }
    size_t npages = size >> SHM_PAGE_SHIFT;
    size_t map_size = bp_align_up(sizeof(bp_shm) + npages / 64 * sizeof(uint64_t), 4096);
    bp_shm *shm = bp_os_default()->map(map_size, 4096, NULL);
    if (shm == NULL)
        return NULL; /* errno from mmap */
    shm->map_size = map_size;
    shm->size = size;
    shm->npages = npages;
    shm->region_id = region_id;
    pthread_mutex_init(&shm->lock, NULL);
    shm->fd = memfd_create("bufpool", MFD_CLOEXEC);
    int err = shm->fd < 0 ? errno : ftruncate(shm->fd, (off_t)size) != 0 ? errno : 0;
    if (err == 0) {
        /* address space for all of it, aligned as chunks need (size is a granule multiple,
         * so mmap's own slack is enough: map size + granule, trim both ends) */
        size_t span = size + BP_MAP_GRANULE;
        char *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED) {
            err = errno;
        } else {
            shm->base = (char *)bp_align_up((uintptr_t)raw, BP_MAP_GRANULE);
            size_t head = (size_t)(shm->base - raw), tail = span - head - size;
            if (head != 0)
                munmap(raw, head); /* a refused trim keeps slack address space, nothing else */
            if (tail != 0)
                munmap(shm->base + size, tail);
        }
    }
    if (err != 0) {
        if (shm->fd >= 0)
            close(shm->fd);
        pthread_mutex_destroy(&shm->lock);
        bp_os_default()->unmap(shm, map_size, NULL);
        errno = err;
        return NULL;
    }
    shm->os = (bp_os){
        .map = shm_map,
        .unmap = shm_unmap,
        .purge = shm_purge,
        .ctx = shm,
        .map_memory = shm_map_memory,
        .region_add = shm_region_add,
        .region_remove = NULL,
    };
    return shm;
}

const bp_os *bp_shm_os(bp_shm *shm)
{
    return &shm->os;
}

int bp_shm_fd(const bp_shm *shm)
{
    return shm->fd;
}

size_t bp_shm_size(const bp_shm *shm)
{
    return shm->size;
}

size_t bp_shm_used(const bp_shm *shm)
{
    bp_shm *s = (bp_shm *)shm; /* the lock only: what is read is a snapshot */
    pthread_mutex_lock(&s->lock);
    size_t used = s->used_bytes;
    pthread_mutex_unlock(&s->lock);
    return used;
}

void bp_shm_destroy(bp_shm *shm)
{
    if (shm == NULL)
        return;
    if (bp_shm_used(shm) != 0)
        bp_fatal("bp_shm_destroy(%p): %zu bytes still in use (destroy its pools first)",
                 (void *)shm, bp_shm_used(shm));
    close(shm->fd);
    munmap(shm->base, shm->size);
    pthread_mutex_destroy(&shm->lock);
    bp_os_default()->unmap(shm, shm->map_size, NULL);
}
