#!/usr/bin/env python3
"""A client for examples/http_server.c on 127.0.0.1, for test_http.sh and the benchmark.

  http_client.py check PORT      the protocol checks; "ok"/"FAILED" a line, exit 1 on a failure
  http_client.py idle PORT N     N keep-alive connections, one GET /static answered on each;
                                 prints "ready N" and holds them until stdin ends
Every socket has a timeout: a server that stops answering fails a check, it does not hang it.
The random bodies and split points come from a fixed seed, printed with any failure.
"""
import random
import resource
import socket
import sys

SEED = 18
TIMEOUT = 10.0
STATIC_LINE = b"bufpool http_server: the static body: sixteen lines of 64 bytes\n"
STATIC_BODY = STATIC_LINE * 16
HEADER_LIMIT = 8192
BODY_LIMIT = 1 << 20

failures = []


def check(cond, what):
    print(("ok      " if cond else "FAILED  ") + what, flush=True)
    if not cond:
        failures.append(what)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Responses off one socket: status, headers (lower-case names), body and the raw bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.held = b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.held += data

    def response(self):
        while b"\r\n\r\n" not in self.held:
            self._more()
        head, _, rest = self.held.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status, _ = lines[0].split(b" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers["content-length"])
        self.held = rest
        while len(self.held) < length:
            self._more()
        body, self.held = self.held[:length], self.held[length:]
        raw = head + b"\r\n\r\n" + body
        return int(status), headers, body, raw

    def closed(self):
        """Whether the server ends the stream here: no more bytes, then end of file (waits
        for it up to the socket's timeout)."""
        if self.held:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True  # a reset also ends it; the answer before it was read already
        except socket.timeout:
            return False

    def open(self):
        """Whether the connection still serves: another request on it is answered."""
        try:
            self.sock.sendall(get(b"/static"))
            return self.response()[0] == 200
        except (OSError, EOFError):
            return False


def exchange(port, request, expect_close):
    """One request on a fresh connection: (status, headers, body, raw, as expected), the last
    saying whether the server closed the connection after it (expect_close) or still answers
    on it (not expect_close)."""
    with connect(port) as s:
        s.sendall(request)
        r = Reader(s)
        status, headers, body, raw = r.response()
        return status, headers, body, raw, r.closed() if expect_close else r.open()


def get(path, extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n"


def post(body, extra=b""):
    return (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n" % len(body) +
            extra + b"\r\n" + body)


def chunked(chunks, trailer=b""):
    out = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i, c in enumerate(chunks):
        ext = b";name=value" if i % 3 == 1 else b""
        out += b"%x%s\r\n%s\r\n" % (len(c), ext, c)
    return out + b"0\r\n" + trailer + b"\r\n"


def send_split(sock, data, rng, pieces):
    """data in `pieces` sends cut at random points (each a segment of its own: TCP_NODELAY)."""
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, len(data) - 1)))
    at = 0
    for cut in cuts + [len(data)]:
        sock.sendall(data[at:cut])
        at = cut


def checks(port):
    rng = random.Random(SEED)

    status, headers, body, _, kept = exchange(port, get(b"/static"), False)
    check(status == 200 and body == STATIC_BODY and kept,
          f"GET /static: 200 with the 1 KiB body, kept open (got {status}, {len(body)} bytes)")

    # keep-alive: many requests, one connection, every kind of answer
    with connect(port) as s:
        r = Reader(s)
        ok = True
        for i in range(200):
            kind = i % 3
            s.sendall([get(b"/static"), post(b"x" * i), get(b"/missing")][kind])
            status, _, body, _ = r.response()
            ok &= (status, body) == [(200, STATIC_BODY), (200, b"x" * i),
                                     (404, b"404 Not Found\n")][kind]
        check(ok, "keep-alive: 200 requests on one connection, every kind of answer")

    # pipelining: 3 requests in one send come back in order, byte for byte what each gets alone
    requests = [get(b"/static"), post(b"pipelined body"), get(b"/nothing-here")]
    alone = b"".join(exchange(port, q, False)[3] for q in requests)
    with connect(port) as s:
        s.sendall(b"".join(requests))
        r = Reader(s)
        answers = [r.response() for _ in requests]
        together = b"".join(a[3] for a in answers)
        check([a[0] for a in answers] == [200, 200, 404] and together == alone and
              answers[1][2] == b"pipelined body",
              "pipelining: 3 requests in one send answered in order, byte for byte")

    # a long pipeline, past what one batch of answers holds, sent at once
    with connect(port) as s:
        many = 300
        s.sendall(b"".join(post(b"%d" % i) for i in range(many)))
        r = Reader(s)
        got = [r.response()[2] for _ in range(many)]
        check(got == [b"%d" % i for i in range(many)],
              f"pipelining: {many} requests in one send answered in order")

    # Content-Length echo: a large body sent in random pieces
    payload = bytes(rng.getrandbits(8) for _ in range(300_000))
    with connect(port) as s:
        send_split(s, post(payload), rng, 40)
        status, headers, body, _ = Reader(s).response()
        check(status == 200 and body == payload,
              f"Content-Length echo: 300,000 bytes in 40 pieces (seed {SEED})")

    # a request cut into single bytes
    with connect(port) as s:
        for b in post(b"byte by byte"):
            s.sendall(bytes([b]))
        status, _, body, _ = Reader(s).response()
        check(status == 200 and body == b"byte by byte", "a request sent one byte a segment")

    # chunked echo: chunks of many sizes, extensions, a trailer, random splits
    chunks = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (1, 15, 16, 255, 4096, 70000, 3)]
    with connect(port) as s:
        send_split(s, chunked(chunks, b"X-Trailer: yes\r\n"), rng, 60)
        r = Reader(s)
        status, headers, body, _ = r.response()
        check(status == 200 and body == b"".join(chunks) and
              headers.get("content-length") == str(len(body)),
              f"chunked echo: 7 chunks with extensions and a trailer, 60 pieces (seed {SEED})")
        s.sendall(chunked([]))  # an empty chunked body, on the same connection
        status, _, body, _ = r.response()
        check(status == 200 and body == b"", "chunked echo: an empty body")

    # HTTP/1.0 and Connection
    status, headers, _, _, closed = exchange(port, b"GET /static HTTP/1.0\r\n\r\n", True)
    check(status == 200 and closed and headers.get("connection") == "close",
          "HTTP/1.0: answered and closed")
    with connect(port) as s:
        s.sendall(b"GET /static HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        r = Reader(s)
        a, b = r.response(), r.response()
        check(a[0] == b[0] == 200 and a[1].get("connection") == "keep-alive",
              "HTTP/1.0 with Connection: keep-alive stays open")
    status, headers, _, _, closed = exchange(port, get(b"/static", b"Connection: close\r\n"), True)
    check(status == 200 and closed and headers.get("connection") == "close",
          "Connection: close: answered, then closed")
    with connect(port) as s:  # requests after the closing one are not answered
        s.sendall(get(b"/static", b"Connection: keep-alive, close\r\n") + get(b"/static"))
        r = Reader(s)
        status = r.response()[0]
        check(status == 200 and r.closed(), "Connection: close among tokens ends a pipeline")
    with connect(port) as s:  # the peer ends its stream: what it sent is still answered
        s.sendall(get(b"/static") + post(b"last"))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        a, b = r.response(), r.response()
        check(a[0] == b[0] == 200 and b[2] == b"last" and r.closed(),
              "requests before the client's end of stream are answered, then closed")

    # errors
    status, _, _, _, kept = exchange(port, get(b"/nope"), False)
    check(status == 404 and kept, "404 for an unknown path, kept open")
    status, headers, _, _, kept = exchange(port, b"POST /static HTTP/1.1\r\n"
                                           b"Content-Length: 3\r\n\r\nabc", False)
    check(status == 405 and headers.get("allow") == "GET, POST" and kept,
          "405 for POST /static, with Allow")
    for name, bad in [("no version", b"GET /static\r\n\r\n"),
                      ("garbage", b"\x01\x02 hello\r\n\r\n"),
                      ("HTTP/2.0", b"GET /static HTTP/2.0\r\n\r\n"),
                      ("a header without a colon", get(b"/static", b"Broken header\r\n")),
                      ("a space before the colon", get(b"/static", b"Host : x\r\n")),
                      ("line folding", get(b"/static", b"X-A: 1\r\n  folded\r\n")),
                      ("a bad Content-Length", b"POST /echo HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
                      ("two Content-Lengths", b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n"
                                             b"Content-Length: 2\r\n\r\nab"),
                      ("Content-Length and chunked", b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n"
                                                     b"Transfer-Encoding: chunked\r\n\r\n"),
                      ("a bad chunk size", b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked"
                                          b"\r\n\r\nzz\r\n"),
                      ("chunk data longer than its size", b"POST /echo HTTP/1.1\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n")]:
        status, headers, _, _, closed = exchange(port, bad, True)
        check(status == 400 and closed and headers.get("connection") == "close",
              f"400 and close for a malformed request: {name}")
    status, _, _, _, closed = exchange(port, b"POST /echo HTTP/1.1\r\n"
                                       b"Transfer-Encoding: gzip\r\n\r\n", True)
    check(status == 501 and closed, "501 for a transfer coding other than chunked")

    big = b"X-Big: " + b"a" * (HEADER_LIMIT + 100) + b"\r\n"
    status, _, _, _, closed = exchange(port, get(b"/static", big), True)
    check(status == 431 and closed, "431 and close for a header line over 8 KiB")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(100))
    status, _, _, _, closed = exchange(port, get(b"/static", many), True)
    check(status == 431 and closed, "431 and close for 100 headers of 100 bytes (over 8 KiB)")
    fits = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(70))
    status, _, _, _, kept = exchange(port, get(b"/static", fits), False)
    check(status == 200 and kept, "70 headers of 100 bytes (under 8 KiB) are fine")

    status, _, _, _, closed = exchange(port, b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                                       % (BODY_LIMIT + 1) + b"z" * 100000, True)
    check(status == 413 and closed, "413 and close for a Content-Length over 1 MiB")
    status, _, body, _, kept = exchange(port, post(b"q" * BODY_LIMIT), False)
    check(status == 200 and body == b"q" * BODY_LIMIT and kept, "a body of exactly 1 MiB is echoed")
    with connect(port) as s:  # the server answers while the client is still sending
        s.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        r = Reader(s)
        try:
            for _ in range(20):
                s.sendall(b"10000\r\n" + b"c" * 0x10000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer came first; it is read below
        status = r.response()[0]
        check(status == 413 and r.closed(), "413 and close for a chunked body over 1 MiB")


def idle(port, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(get(b"/static"))
        socks.append(s)
    for s in socks:
        status, _, body, _ = Reader(s).response()
        if status != 200 or body != STATIC_BODY:
            sys.exit(f"idle: a connection got {status}")
    print(f"ready {n}", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        try:
            checks(int(sys.argv[2]))
        except (OSError, EOFError, ValueError, KeyError) as e:
            failures.append(repr(e))
            print(f"FAILED  the checks stopped: {e!r}")
        if failures:
            print(f"{len(failures)} failed (seed {SEED})")
            sys.exit(1)
        print("all passed")
    elif len(sys.argv) == 4 and sys.argv[1] == "idle":
        idle(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
