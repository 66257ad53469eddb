/* http_server.c — an HTTP/1.1 server on bp_buf: epoll, one worker thread per listening socket
 * (SO_REUSEPORT), keep-alive and pipelining, requests parsed with the line decoder and the
 * responses of each batch written with one gathering write.
 *   http_server PORT [THREADS]   PORT 0 picks a free one; THREADS defaults to the online
 *                                CPUs; it prints "listening on PORT" and serves 127.0.0.1
 *                                until SIGINT or SIGTERM, then exits 0 with every buffer
 *                                released.
 * Routes: GET /static answers a fixed 1 KiB body; POST /echo answers the request's body,
 * sent with Content-Length or Transfer-Encoding: chunked; any other path is 404 and a known
 * path with another method 405. A request that cannot be parsed is 400, one whose request
 * line and header lines pass HEADER_LIMIT bytes 431, one whose body passes BODY_LIMIT 413,
 * a transfer coding other than chunked 501; each of these answers closes the connection
 * (as does Connection: close, or HTTP/1.0 without Connection: keep-alive).
 *
 * Built twice from this file. By default the buffers are bp_bufs: the static body and the
 * echoed Content-Length body go out as views (no copy), a batch's responses are parts of one
 * composite written with bp_buf_writev_fd. With HTTP_PLAIN_BUFFERS (http_server_plain) they
 * are growable malloc'd byte arrays and bodies are memcpy'd into the output: the same server
 * on the buffers a C program would otherwise write, for the benchmark's http row.
 *
 * Per-connection memory: both variants give the input and output buffers back as soon as
 * they are drained, so a connection idle between requests holds only its `conn` record. */
#define _GNU_SOURCE
#ifndef HTTP_PLAIN_BUFFERS
#include "bufpool.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
    HEADER_LIMIT = 8192,    /* request line + header lines, and any one of them */
    BODY_LIMIT = 1 << 20,   /* a request body, either framing */
    INPUT_FIRST = 2048,     /* an input buffer's first capacity */
    INPUT_MIN_ROOM = 1024,  /* less writable room than this: compact or grow first */
    INPUT_MAX = 4 << 20,    /* above HEADER_LIMIT + BODY_LIMIT + one read */
    LINGER_LIMIT = 4 << 20, /* bytes drained from a peer after a closing answer */
    MAX_THREADS = 256,
    MAX_EVENTS = 64
};

/* 16 lines of 64 bytes: the body of GET /static */
#define STATIC_LINE "bufpool http_server: the static body: sixteen lines of 64 bytes\n"
static const char static_body[] = STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE
    STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE STATIC_LINE
        STATIC_LINE STATIC_LINE STATIC_LINE;
_Static_assert(sizeof static_body - 1 == 1024, "the static body is 1 KiB");

typedef struct worker worker;

/* Where a connection is in its byte stream. A request goes REQUEST_LINE, HEADERS, then the
 * body states its framing asks for, then back to REQUEST_LINE; CLOSING: an answer that
 * ends the connection is queued, no more input is parsed; DRAINING: that answer is written
 * and our side shut down, the peer's remaining bytes are read and dropped until it closes
 * (closing with unread bytes would reset the connection and could destroy the answer before
 * the peer reads it). */
enum conn_state {
    AT_REQUEST_LINE,
    AT_HEADERS,
    AT_BODY,       /* Content-Length bytes */
    AT_CHUNK_SIZE, /* a chunk-size line */
    AT_CHUNK_DATA,
    AT_CHUNK_END, /* the empty line after a chunk's data */
    AT_TRAILERS,
    CLOSING,
    DRAINING
};

enum route { ROUTE_NONE, ROUTE_STATIC, ROUTE_ECHO, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD };

/* The request being parsed. Invariants: header_bytes <= HEADER_LIMIT once the headers are
 * accepted; body_left is what AT_BODY or AT_CHUNK_DATA still expects; body_total <=
 * BODY_LIMIT. */
typedef struct request {
    enum route route;
    unsigned minor_version; /* HTTP/1.x */
    bool has_length, chunked, close_asked, keep_alive_asked, bad_coding;
    size_t length;       /* Content-Length, when has_length */
    size_t header_bytes; /* request line and header lines so far, with their line ends */
    size_t body_left;
    size_t body_total;
} request;

/* ---- the two kinds of buffer ------------------------------------------------------------ */
/* Each variant defines its connection buffers and the same calls over them:
 *   in_fill       one read into the input (growing or compacting it first)
 *   in_line       the next line of the input, its delimiter stripped
 *   in_readable, in_skip
 *   body_take     moves the next n input bytes into the request's body
 *   out_head      printf into the output; out_static, out_body append the bodies
 *   out_room      whether another response fits the batch; out_flush writes the batch
 *   in_idle       gives the input back when it holds nothing */

enum line_result { LINE_OK, LINE_MORE, LINE_TOO_LONG };
enum flush_result { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_FAILED };
enum fill_result { FILL_READ, FILL_EOF, FILL_BLOCKED, FILL_FAILED };

#ifndef HTTP_PLAIN_BUFFERS

/* The responses of a batch: a header part and a body part each, at most one writev's worth
 * of extents (bp_buf_writev_fd gathers 64). */
enum { OUTPUT_PARTS = 64 };

/* Buffers of a connection on bp_buf. Invariants: in is NULL or holds the bytes read and not
 * yet parsed from its reader index on (the line decoder's state describes them); out is NULL
 * or a composite whose readable bytes are the answers not yet written, in order; body is
 * NULL or the request body received so far: a view of the input for a Content-Length body,
 * a buffer of its own gathering the chunks of a chunked one. */
typedef struct conn_buffers {
    bp_buf *in, *out, *body;
    bp_frame_decoder lines;
} conn_buffers;

typedef struct worker_buffers {
    bp_pool *pool;
    bp_buf *static_body; /* read-only, over static_body[]; each answer takes a view */
} worker_buffers;

#else /* HTTP_PLAIN_BUFFERS */

enum { OUTPUT_BYTES = 256 << 10 }; /* a batch is written once it holds this much */

/* A growable byte array. Invariant: start <= end <= cap; data is NULL exactly when cap is 0;
 * [start, end) are the bytes held. */
typedef struct bytes {
    char *data;
    size_t start, end, cap;
} bytes;

/* Buffers of a connection on malloc. Invariants: as for bp_buf, with scanned the input bytes
 * after start already searched for a line end; body_at and the request's body_total give a
 * Content-Length body in place in the input (it is copied out when answered, before the
 * input is next compacted), body gathers a chunked one. */
typedef struct conn_buffers {
    bytes in, out, body;
    size_t scanned;
    size_t body_at;
} conn_buffers;

typedef struct worker_buffers {
    char unused;
} worker_buffers;

#endif

/* One connection. Invariants: on the worker's list while open; events is the interest set
 * registered with epoll (EPOLLIN while reading, EPOLLOUT while an answer waits for room). */
typedef struct conn {
    int fd;
    enum conn_state state;
    uint32_t events;
    bool peer_closed; /* the peer's end of stream was read */
    size_t drained;   /* bytes dropped while DRAINING */
    request req;
    conn_buffers buf;
    worker *w;
    struct conn *prev, *next;
} conn;

/* A worker: its own listening socket and epoll set, the connections it accepted. */
struct worker {
    int listen_fd, epoll_fd, stop_fd;
    pthread_t thread;
    conn *conns;
    worker_buffers buf;
};

static char listen_tag, stop_tag; /* epoll data of the listening socket and the stop event */

#ifndef HTTP_PLAIN_BUFFERS

static bool buffers_init(worker *w)
{
    w->buf.pool = bp_pool_default();
    w->buf.static_body = bp_buf_wrap(w->buf.pool, (void *)static_body, sizeof static_body - 1,
                                     sizeof static_body - 1, NULL, NULL, BP_RDONLY);
    return w->buf.static_body != NULL;
}

static void buffers_fini(worker *w)
{
    bp_buf_release(w->buf.static_body);
}

static void conn_buffers_init(conn *c)
{
    c->buf.in = c->buf.out = c->buf.body = NULL;
    bp_frame_line_init(&c->buf.lines, HEADER_LIMIT, 0);
}

static void release_and_clear(bp_buf **b)
{
    if (*b != NULL)
        bp_buf_release(*b);
    *b = NULL;
}

static void conn_buffers_fini(conn *c)
{
    release_and_clear(&c->buf.in);
    release_and_clear(&c->buf.out);
    release_and_clear(&c->buf.body);
}

static size_t in_readable(const conn *c)
{
    return c->buf.in == NULL ? 0 : bp_buf_readable(c->buf.in);
}

static enum fill_result in_fill(conn *c)
{
    bp_buf *in = c->buf.in;
    if (in == NULL) {
        in = c->buf.in = bp_buf_new(c->w->buf.pool, INPUT_FIRST, INPUT_MAX);
        if (in == NULL)
            return FILL_FAILED;
        bp_frame_reset(&c->buf.lines);
    }
    if (bp_buf_writable(in) < INPUT_MIN_ROOM) {
        /* refused (BP_ESHARED) while an answer still holds views of these bytes: then grow */
        if (bp_buf_reader_index(in) > 0)
            bp_buf_discard_read(in);
        if (bp_buf_writable(in) < INPUT_MIN_ROOM &&
            bp_buf_ensure_writable(in, INPUT_MIN_ROOM) != BP_OK)
            return FILL_FAILED;
    }
    ssize_t r = bp_buf_readv_fd(in, c->fd, 0);
    if (r > 0)
        return FILL_READ;
    if (r == 0)
        return FILL_EOF;
    if (r == BP_EAGAIN)
        return FILL_BLOCKED;
    return FILL_FAILED;
}

static void in_idle(conn *c)
{
    if (c->buf.in != NULL && bp_buf_readable(c->buf.in) == 0)
        release_and_clear(&c->buf.in);
}

static enum line_result in_line(conn *c, const char **line, size_t *len)
{
    if (c->buf.in == NULL)
        return LINE_MORE;
    size_t at;
    int r = bp_frame_next_range(&c->buf.lines, c->buf.in, &at, len);
    if (r == BP_NEED_MORE)
        return LINE_MORE;
    if (r != BP_OK)
        return LINE_TOO_LONG; /* BP_ETOOLONG: the only failure of a line decoder */
    if (*len == 0) {
        *line = "";
        return LINE_OK;
    }
    /* the input is contiguous: one extent, read in place */
    struct iovec iov;
    bp_buf_iov(c->buf.in, at, *len, &iov, 1, NULL);
    *line = iov.iov_base;
    return LINE_OK;
}

static void in_skip(conn *c, size_t n)
{
    bp_buf_skip(c->buf.in, n);
    bp_frame_reset(&c->buf.lines);
}

/* A Content-Length body becomes a view of the input; chunks are copied into a body buffer
 * (a composite cannot take another composite as a part, and the answer's header, which
 * needs the total length, must come first). */
static bool body_take(conn *c, size_t n)
{
    if (!c->req.chunked) {
        c->buf.body = bp_buf_read_slice(c->buf.in, n);
        bp_frame_reset(&c->buf.lines);
        return c->buf.body != NULL;
    }
    if (c->buf.body == NULL) {
        c->buf.body = bp_buf_new(c->w->buf.pool, n, BODY_LIMIT);
        if (c->buf.body == NULL)
            return false;
    }
    struct iovec iov;
    bp_buf_iov(c->buf.in, bp_buf_reader_index(c->buf.in), n, &iov, 1, NULL);
    if (bp_buf_write_bytes(c->buf.body, iov.iov_base, n) != BP_OK)
        return false;
    in_skip(c, n);
    return true;
}

static size_t body_length(const conn *c)
{
    return c->buf.body == NULL ? 0 : bp_buf_readable(c->buf.body);
}

static bool out_ready(conn *c)
{
    if (c->buf.out == NULL) {
        c->buf.out = bp_buf_composite(c->w->buf.pool, OUTPUT_PARTS);
        if (c->buf.out != NULL) /* a batch's parts are sent as they are, never copied */
            bp_buf_set_consolidate_at(c->buf.out, 0);
    }
    return c->buf.out != NULL;
}

static bool out_append(conn *c, bp_buf *part)
{
    if (part == NULL)
        return false;
    if (bp_buf_append(c->buf.out, part) != BP_OK) {
        bp_buf_release(part);
        return false;
    }
    return true;
}

static bool out_head(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool out_head(conn *c, const char *fmt, ...)
{
    if (!out_ready(c))
        return false;
    bp_buf *head = bp_buf_new(c->w->buf.pool, 256, 0);
    if (head == NULL)
        return false;
    va_list ap;
    va_start(ap, fmt);
    int r = bp_buf_vprintf(head, fmt, ap);
    va_end(ap);
    if (r < 0) {
        bp_buf_release(head);
        return false;
    }
    return out_append(c, head);
}

static bool out_static(conn *c)
{
    return out_append(c, bp_buf_slice(c->w->buf.static_body, 0, sizeof static_body - 1, BP_RDONLY));
}

static bool out_body(conn *c)
{
    bp_buf *body = c->buf.body;
    c->buf.body = NULL;
    return body == NULL || out_append(c, body);
}

static bool out_room(const conn *c)
{
    return c->buf.out == NULL || bp_buf_part_count(c->buf.out) + 2 <= OUTPUT_PARTS;
}

static bool out_pending(const conn *c)
{
    return c->buf.out != NULL;
}

static enum flush_result out_flush(conn *c)
{
    bp_buf *out = c->buf.out;
    while (out != NULL && bp_buf_readable(out) > 0) {
        ssize_t w = bp_buf_writev_fd(out, c->fd, 0); /* releases the parts it wrote */
        if (w == BP_EAGAIN)
            return FLUSH_BLOCKED;
        if (w < 0)
            return FLUSH_FAILED;
    }
    release_and_clear(&c->buf.out);
    return FLUSH_DONE;
}

#else /* HTTP_PLAIN_BUFFERS */

static bool buffers_init(worker *w)
{
    (void)w;
    return true;
}

static void buffers_fini(worker *w)
{
    (void)w;
}

static void bytes_free(bytes *b)
{
    free(b->data);
    *b = (bytes){0};
}

/* Room for n more bytes at the end: the held bytes move to the front first, then the array
 * doubles (from `first`), never past max. */
static bool bytes_room(bytes *b, size_t n, size_t first, size_t max)
{
    if (b->cap - b->end >= n)
        return true;
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
        if (b->cap - b->end >= n)
            return true;
    }
    size_t cap = b->cap == 0 ? first : b->cap;
    while (cap - b->end < n && cap <= max / 2)
        cap *= 2;
    if (cap - b->end < n)
        return false;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return false;
    b->data = data;
    b->cap = cap;
    return true;
}

static bool bytes_append(bytes *b, const void *src, size_t n)
{
    if (n == 0)
        return true; /* src may be NULL then: an empty body */
    if (!bytes_room(b, n, 4096, SIZE_MAX / 2))
        return false;
    memcpy(b->data + b->end, src, n);
    b->end += n;
    return true;
}

static void conn_buffers_init(conn *c)
{
    c->buf = (conn_buffers){0};
}

static void conn_buffers_fini(conn *c)
{
    bytes_free(&c->buf.in);
    bytes_free(&c->buf.out);
    bytes_free(&c->buf.body);
}

static size_t in_readable(const conn *c)
{
    return c->buf.in.end - c->buf.in.start;
}

static enum fill_result in_fill(conn *c)
{
    bytes *in = &c->buf.in;
    if (!bytes_room(in, INPUT_MIN_ROOM, INPUT_FIRST, INPUT_MAX))
        return FILL_FAILED;
    ssize_t r = recv(c->fd, in->data + in->end, in->cap - in->end, 0);
    if (r > 0) {
        in->end += (size_t)r;
        return FILL_READ;
    }
    if (r == 0)
        return FILL_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return FILL_BLOCKED;
    return FILL_FAILED;
}

static void in_idle(conn *c)
{
    if (c->buf.in.cap > 0 && in_readable(c) == 0) {
        bytes_free(&c->buf.in);
        c->buf.scanned = 0;
    }
}

static enum line_result in_line(conn *c, const char **line, size_t *len)
{
    bytes *in = &c->buf.in;
    size_t held = in->end - in->start;
    if (held == 0)
        return LINE_MORE; /* data may be NULL */
    const char *from = in->data + in->start;
    const char *lf =
        held > c->buf.scanned ? memchr(from + c->buf.scanned, '\n', held - c->buf.scanned) : NULL;
    if (lf == NULL) {
        c->buf.scanned = held;
        return held > HEADER_LIMIT + 1 ? LINE_TOO_LONG : LINE_MORE;
    }
    size_t n = (size_t)(lf - from);
    c->buf.scanned = 0;
    in->start += n + 1;
    if (n > 0 && from[n - 1] == '\r')
        n--;
    if (n > HEADER_LIMIT)
        return LINE_TOO_LONG;
    *line = from;
    *len = n;
    return LINE_OK;
}

static void in_skip(conn *c, size_t n)
{
    c->buf.in.start += n;
    c->buf.scanned = 0;
}

static bool body_take(conn *c, size_t n)
{
    if (!c->req.chunked) {
        c->buf.body_at = c->buf.in.start;
        in_skip(c, n);
        return true;
    }
    if (!bytes_append(&c->buf.body, c->buf.in.data + c->buf.in.start, n))
        return false;
    in_skip(c, n);
    return true;
}

static size_t body_length(const conn *c)
{
    return c->req.chunked ? c->buf.body.end : c->req.body_total;
}

static bool out_head(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool out_head(conn *c, const char *fmt, ...)
{
    bytes *out = &c->buf.out;
    for (size_t want = 256;; want *= 2) {
        if (!bytes_room(out, want, 4096, SIZE_MAX / 2))
            return false;
        va_list ap;
        va_start(ap, fmt);
        int r = vsnprintf(out->data + out->end, out->cap - out->end, fmt, ap);
        va_end(ap);
        if (r < 0)
            return false;
        if ((size_t)r < out->cap - out->end) {
            out->end += (size_t)r;
            return true;
        }
    }
}

static bool out_static(conn *c)
{
    return bytes_append(&c->buf.out, static_body, sizeof static_body - 1);
}

static bool out_body(conn *c)
{
    bool ok;
    if (c->req.chunked) {
        ok = bytes_append(&c->buf.out, c->buf.body.data, c->buf.body.end);
        bytes_free(&c->buf.body);
    } else {
        ok = bytes_append(&c->buf.out, c->buf.in.data + c->buf.body_at, c->req.body_total);
    }
    return ok;
}

static bool out_room(const conn *c)
{
    return c->buf.out.end - c->buf.out.start < OUTPUT_BYTES;
}

static bool out_pending(const conn *c)
{
    return c->buf.out.cap > 0;
}

static enum flush_result out_flush(conn *c)
{
    bytes *out = &c->buf.out;
    while (out->end > out->start) {
        ssize_t w = send(c->fd, out->data + out->start, out->end - out->start, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return FLUSH_BLOCKED;
        if (w < 0 && errno != EINTR)
            return FLUSH_FAILED;
        if (w > 0)
            out->start += (size_t)w;
    }
    bytes_free(out);
    return FLUSH_DONE;
}

#endif /* HTTP_PLAIN_BUFFERS */

/* ---- parsing and answering -------------------------------------------------------------- */

static bool is_token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool same_word(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
        (*n)--;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    default: return "Internal Server Error";
    }
}

static void start_request(conn *c)
{
    c->req = (request){0};
    c->state = AT_REQUEST_LINE;
}

/* Whether the connection stays open after this request's answer. */
static bool keeps_alive(const request *r)
{
    if (r->close_asked)
        return false;
    return r->minor_version >= 1 || r->keep_alive_asked;
}

static const char *connection_header(const conn *c, bool closing)
{
    if (closing)
        return "Connection: close\r\n";
    return c->req.minor_version == 0 ? "Connection: keep-alive\r\n" : "";
}

/* An answer whose body is its status line's words; statuses other than 404 and 405 close
 * the connection, whose stream cannot be trusted past the request. Returns false when the
 * connection must go (no memory for the answer). */
static bool answer_error(conn *c, int status)
{
    bool closing = !(status == 404 || status == 405) || !keeps_alive(&c->req);
    const char *allow = status == 405 ? "Allow: GET, POST\r\n" : "";
    bool ok = out_head(c,
                       "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "%s%s\r\n%d %s\n",
                       status, reason(status), strlen(reason(status)) + 5, allow,
                       connection_header(c, closing), status, reason(status));
#ifndef HTTP_PLAIN_BUFFERS
    release_and_clear(&c->buf.body);
#else
    bytes_free(&c->buf.body);
#endif
    if (closing)
        c->state = CLOSING;
    else
        start_request(c);
    return ok;
}

/* The answer to a whole request (headers and body read). */
static bool answer(conn *c)
{
    bool closing = !keeps_alive(&c->req);
    bool ok = true;
    switch (c->req.route) {
    case ROUTE_STATIC:
        ok = out_head(c,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                      "%s\r\n",
                      sizeof static_body - 1, connection_header(c, closing)) &&
             out_static(c);
        break;
    case ROUTE_ECHO:
        ok = out_head(c,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %zu\r\n%s\r\n",
                      body_length(c), connection_header(c, closing)) &&
             out_body(c);
        break;
    case ROUTE_NOT_FOUND: return answer_error(c, 404);
    case ROUTE_BAD_METHOD: return answer_error(c, 405);
    case ROUTE_NONE: return answer_error(c, 400);
    }
    if (closing)
        c->state = CLOSING;
    else
        start_request(c);
    return ok;
}

/* "METHOD SP target SP HTTP/1.x" */
static int parse_request_line(conn *c, const char *line, size_t n)
{
    const char *sp1 = memchr(line, ' ', n);
    if (sp1 == NULL || sp1 == line)
        return 400;
    for (const char *p = line; p < sp1; p++)
        if (!is_token_char(*p))
            return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', n - (size_t)(target - line));
    if (sp2 == NULL || sp2 == target)
        return 400;
    size_t target_len = (size_t)(sp2 - target);
    for (size_t i = 0; i < target_len; i++)
        if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
            return 400;
    const char *version = sp2 + 1;
    size_t version_len = n - (size_t)(version - line);
    if (version_len != 8 || memcmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' ||
        version[7] > '9')
        return 400;
    c->req.minor_version = (unsigned)(version[7] - '0');
    size_t method_len = (size_t)(sp1 - line);
    bool is_static = target_len == 7 && memcmp(target, "/static", 7) == 0;
    bool is_echo = target_len == 5 && memcmp(target, "/echo", 5) == 0;
    if (is_static)
        c->req.route =
            method_len == 3 && memcmp(line, "GET", 3) == 0 ? ROUTE_STATIC : ROUTE_BAD_METHOD;
    else if (is_echo)
        c->req.route =
            method_len == 4 && memcmp(line, "POST", 4) == 0 ? ROUTE_ECHO : ROUTE_BAD_METHOD;
    else
        c->req.route = ROUTE_NOT_FOUND;
    return 0;
}

/* "name: value"; 0, or the status that refuses the request. */
static int parse_header(conn *c, const char *line, size_t n)
{
    if (line[0] == ' ' || line[0] == '\t')
        return 400; /* obsolete line folding */
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line)
        return 400;
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++)
        if (!is_token_char(line[i]))
            return 400; /* spaces before the colon included */
    const char *value = colon + 1;
    size_t value_len = n - name_len - 1;
    trim(&value, &value_len);
    request *r = &c->req;
    if (same_word(line, name_len, "content-length")) {
        if (value_len == 0)
            return 400;
        size_t length = 0;
        for (size_t i = 0; i < value_len; i++) {
            if (value[i] < '0' || value[i] > '9')
                return 400;
            if (length <= BODY_LIMIT) /* past it the exact value no longer matters */
                length = length * 10 + (size_t)(value[i] - '0');
        }
        if (r->has_length && r->length != length)
            return 400;
        r->has_length = true;
        r->length = length;
    } else if (same_word(line, name_len, "transfer-encoding")) {
        if (same_word(value, value_len, "chunked") && !r->chunked)
            r->chunked = true;
        else
            r->bad_coding = true;
    } else if (same_word(line, name_len, "connection")) {
        while (value_len > 0) {
            const char *comma = memchr(value, ',', value_len);
            size_t token_len = comma ? (size_t)(comma - value) : value_len;
            const char *token = value;
            size_t len = token_len;
            trim(&token, &len);
            r->close_asked |= same_word(token, len, "close");
            r->keep_alive_asked |= same_word(token, len, "keep-alive");
            value += token_len + (comma != NULL);
            value_len -= token_len + (comma != NULL);
        }
    }
    return 0;
}

/* The headers are in: on to the body, or the answer. */
static bool headers_done(conn *c)
{
    request *r = &c->req;
    if (r->bad_coding)
        return answer_error(c, 501);
    if (r->chunked && r->has_length)
        return answer_error(c, 400); /* framing a proxy could read either way */
    if (r->has_length && r->length > BODY_LIMIT)
        return answer_error(c, 413);
    if (r->chunked) {
        c->state = AT_CHUNK_SIZE;
        return true;
    }
    if (r->has_length && r->length > 0) {
        r->body_left = r->length;
        c->state = AT_BODY;
        return true;
    }
    return answer(c);
}

/* A chunk-size line: hex digits, then nothing or ";extensions". */
static bool chunk_size_line(conn *c, const char *line, size_t n)
{
    size_t size = 0, i = 0;
    for (; i < n; i++) {
        char ch = line[i];
        int digit = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
        if (digit < 0)
            break;
        if (size <= BODY_LIMIT)
            size = size * 16 + (size_t)digit;
    }
    if (i == 0 || (i < n && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
        return answer_error(c, 400);
    if (size > BODY_LIMIT - c->req.body_total)
        return answer_error(c, 413);
    if (size == 0) {
        c->state = AT_TRAILERS;
        return true;
    }
    c->req.body_left = size;
    c->state = AT_CHUNK_DATA;
    return true;
}

static bool on_line(conn *c, const char *line, size_t n)
{
    if (c->state == AT_REQUEST_LINE || c->state == AT_HEADERS || c->state == AT_TRAILERS)
        c->req.header_bytes += n + 2; /* a line end is 1 or 2 bytes: counted as 2 */
    switch (c->state) {
    case AT_REQUEST_LINE: {
        if (c->req.header_bytes > HEADER_LIMIT)
            return answer_error(c, 431);
        if (n == 0)
            return true; /* an empty line before a request is tolerated (RFC 9112, 2.2) */
        int status = parse_request_line(c, line, n);
        if (status != 0)
            return answer_error(c, status);
        c->state = AT_HEADERS;
        return true;
    }
    case AT_HEADERS: {
        if (n == 0)
            return headers_done(c);
        if (c->req.header_bytes > HEADER_LIMIT)
            return answer_error(c, 431);
        int status = parse_header(c, line, n);
        return status == 0 ? true : answer_error(c, status);
    }
    case AT_CHUNK_SIZE: return chunk_size_line(c, line, n);
    case AT_CHUNK_END:
        if (n != 0)
            return answer_error(c, 400);
        c->state = AT_CHUNK_SIZE;
        return true;
    case AT_TRAILERS:
        /* trailer fields are read and dropped; HEADER_LIMIT covers them with the headers */
        if (n == 0)
            return answer(c);
        return c->req.header_bytes > HEADER_LIMIT ? answer_error(c, 431) : true;
    default: return true;
    }
}

/* Body bytes: a Content-Length body is taken whole (an echo answers it as one view), a
 * chunk as its bytes arrive; a route that does not answer with the body drops them. */
static bool on_body_bytes(conn *c, bool *progress)
{
    request *r = &c->req;
    size_t held = in_readable(c);
    bool keep = r->route == ROUTE_ECHO;
    size_t n = held < r->body_left ? held : r->body_left;
    if (n == 0 || (keep && !r->chunked && n < r->body_left)) {
        *progress = false;
        return true;
    }
    *progress = true;
    if (keep) {
        if (!body_take(c, n))
            return false;
    } else {
        in_skip(c, n);
    }
    r->body_left -= n;
    r->body_total += n;
    if (r->body_left > 0)
        return true;
    if (r->chunked) {
        c->state = AT_CHUNK_END;
        return true;
    }
    return answer(c);
}

/* Parses what the input holds and queues the answers, flushing whenever a batch is full.
 * Returns false when the connection must go; stops early, with input left, when an answer
 * waits for the peer to read. */
static bool serve_input(conn *c)
{
    while (c->state < CLOSING) {
        if (!out_room(c)) {
            enum flush_result f = out_flush(c);
            if (f == FLUSH_FAILED)
                return false;
            if (f == FLUSH_BLOCKED)
                return true;
        }
        bool progress = true;
        if (c->state == AT_BODY || c->state == AT_CHUNK_DATA) {
            if (!on_body_bytes(c, &progress))
                return false;
        } else {
            const char *line;
            size_t n;
            enum line_result r = in_line(c, &line, &n);
            if (r == LINE_MORE)
                progress = false;
            else if (r == LINE_TOO_LONG) {
                if (!answer_error(c, c->state <= AT_HEADERS ? 431 : 400))
                    return false;
            } else if (!on_line(c, line, n)) {
                return false;
            }
        }
        if (!progress)
            break;
    }
    return true;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_close(conn *c)
{
    worker *w = c->w;
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conn_buffers_fini(c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

static void want_events(conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* Reads and drops what the peer still sends after a closing answer; true while it may send
 * more. */
static bool drain(conn *c)
{
    char sink[16384];
    for (;;) {
        ssize_t r = recv(c->fd, sink, sizeof sink, 0);
        if (r > 0) {
            c->drained += (size_t)r;
            if (c->drained > LINGER_LIMIT)
                return false;
            continue;
        }
        return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
}

/* One epoll event of a connection; returns false when it is to be closed. */
static bool on_event(conn *c, uint32_t events)
{
    if (events & EPOLLERR)
        return false;
    if (c->state == DRAINING)
        return drain(c);
    if (events & EPOLLOUT) {
        enum flush_result f = out_flush(c);
        if (f == FLUSH_FAILED)
            return false;
        if (f == FLUSH_BLOCKED)
            return true;
    } else if (events & (EPOLLIN | EPOLLHUP)) {
        switch (in_fill(c)) {
        case FILL_READ: break;
        case FILL_EOF: c->peer_closed = true; break;
        case FILL_BLOCKED: return true;
        case FILL_FAILED: return false;
        }
    }
    if (!serve_input(c))
        return false;
    if (out_pending(c)) {
        enum flush_result f = out_flush(c);
        if (f == FLUSH_FAILED)
            return false;
        if (f == FLUSH_BLOCKED) {
            want_events(c, EPOLLOUT);
            return true;
        }
    }
    if (c->state == CLOSING) {
        conn_buffers_fini(c);
        if (c->peer_closed || shutdown(c->fd, SHUT_WR) != 0)
            return false;
        c->state = DRAINING;
        want_events(c, EPOLLIN);
        return drain(c);
    }
    if (c->peer_closed)
        return false; /* every whole request it sent is answered */
    in_idle(c);
    want_events(c, EPOLLIN);
    return true;
}

static void accept_all(worker *w)
{
    for (;;) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            return; /* EAGAIN: all taken; EMFILE and others: the next event retries */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->w = w;
        c->events = EPOLLIN;
        conn_buffers_init(c);
        start_request(c);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_buffers_fini(c);
            free(c);
            close(fd);
            continue;
        }
        c->next = w->conns;
        if (w->conns != NULL)
            w->conns->prev = c;
        w->conns = c;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->epoll_fd, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &stop_tag)
                goto stop;
            if (tag == &listen_tag)
                accept_all(w);
            else if (!on_event(tag, events[i].events))
                conn_close(tag);
        }
    }
stop:
    while (w->conns != NULL)
        conn_close(w->conns);
    return NULL;
}

/* A listening socket on 127.0.0.1:port shared by the workers (SO_REUSEPORT: the kernel
 * spreads connections over them); port 0 takes a free one, returned in *port. */
static int listen_on(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 4096) != 0) {
        perror("http_server: listen");
        exit(1);
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* As many descriptors as the hard limit allows: every connection is one. */
static void raise_fd_limit(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    char *end;
    long port_arg = strtol(argv[1], &end, 10);
    long threads = argc > 2 ? strtol(argv[2], &end, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (*end != '\0' || port_arg < 0 || port_arg > 65535 || threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "%s: PORT is 0..65535, THREADS 1..%d\n", argv[0], MAX_THREADS);
        return 2;
    }
    raise_fd_limit();
    /* SIGINT and SIGTERM are taken by sigwait below, never delivered to a worker */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    static worker workers[MAX_THREADS];
    int port = (int)port_arg;
    int stop_fd = eventfd(0, EFD_NONBLOCK);
    for (long i = 0; i < threads; i++) {
        worker *w = &workers[i];
        w->listen_fd = listen_on(&port); /* the first fixes the port the others share */
        w->epoll_fd = epoll_create1(0);
        w->stop_fd = stop_fd;
        if (w->epoll_fd < 0 || stop_fd < 0 || !buffers_init(w)) {
            perror("http_server: setup");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev);
        struct epoll_event stop = {.events = EPOLLIN, .data.ptr = &stop_tag};
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, stop_fd, &stop);
    }
    printf("listening on %d\n", port);
    fflush(stdout);
    for (long i = 0; i < threads; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            perror("http_server: pthread_create");
            return 1;
        }
    int sig;
    sigwait(&stop_signals, &sig);
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof one) != sizeof one) /* readable for every worker at once */
        perror("http_server: stop");
    for (long i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        buffers_fini(&workers[i]);
        close(workers[i].epoll_fd);
        close(workers[i].listen_fd);
    }
    close(stop_fd);
    return 0;
}
