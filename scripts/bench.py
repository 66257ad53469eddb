#!/usr/bin/env python3
"""Runs the benchmark suite: bufpool against the allocators present, side by side.

Every workload of bench/bench.c runs through bufpool's API and through malloc under glibc
and, when installed, Debian's jemalloc, mimalloc and tcmalloc (LD_PRELOAD), and bufpool's
own malloc library when it is built. Prints a table of time per operation (the median of
--repeat runs) and memory figures with bufpool's ratio against each allocator and against the
best of them ("vs best other", naming it), and writes results.json, results.md and ratios.svg.
The http row is examples/http_server under wrk: on bp_buf in bufpool's column, built on
malloc'd byte arrays (http_server_plain) under each other allocator in theirs.

  scripts/bench.py [--quick] [--repeat N] [--build DIR] [--out DIR]
  scripts/bench.py --icount [--build DIR] [--out DIR]   # callgrind instructions per op
  scripts/bench.py --self-test                          # the table and chart code
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape, quoteattr

GROUPS = ["seeds", "pairs", "batches", "replace", "prodcons", "server", "churn", "buffers",
          "huge", "realloc", "threads", "memory", "http"]
# bufpool's own malloc library is bufpool, not one of the others it is measured against.
NOT_OTHERS = {"bufpool-malloc"}
ICOUNT_FIGURES = ["pair-16", "pair-64", "pair-256", "pair-1k", "pair-4k", "pair-32k",
                  "pair-256k", "pair-1m", "batch-1k", "batch-64k", "replace-1t", "buf-64-1t"]


def find_library(pattern):
    for d in ["/usr/lib/*-linux-gnu", "/usr/lib", "/usr/local/lib", "/lib/*-linux-gnu"]:
        hits = sorted(glob.glob(os.path.join(d, pattern)))
        if hits:
            return hits[0]
    return None


def allocators(build):
    """(name, api, preload) for every allocator present; says which are missing."""
    found = [("bufpool", "bp", None), ("glibc", "malloc", None)]
    missing = []
    shim = os.path.join(build, "libbufpool-malloc.so")
    if os.path.exists(shim):
        found.append(("bufpool-malloc", "malloc", shim))
    for name, pattern, package in [("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
                                   ("mimalloc", "libmimalloc.so.2*", "libmimalloc2.0"),
                                   ("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4")]:
        lib = find_library(pattern)
        if lib:
            found.append((name, "malloc", lib))
        else:
            missing.append(f"{name} ({package})")
    return found, missing


def run_bench(exe, api, preload, workload, scale, wrapper=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    cmd = (wrapper or []) + [exe, "--api", api, "--workload", workload, "--scale", str(scale)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        name, metric, value, unit, ops = line.split("\t")
        rows.append({"figure": name, "metric": metric, "value": float(value), "unit": unit,
                     "ops": float(ops)})
    return rows


def machine():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def better_is_lower(metric):
    return metric != "Mpairs/s"


def ratio(bufpool, other, metric):
    """How many times better bufpool is: > 1 means bufpool wins."""
    if bufpool is None or other is None or bufpool <= 0 or other <= 0:
        return None
    return other / bufpool if better_is_lower(metric) else bufpool / other


def best_other(values, names, metric):
    """(ratio, allocator): bufpool's figure against the best of the other allocators that have
    this figure (the lowest, for a lower-is-better metric), in ratio()'s sense; (None, None)
    when none has it, (None, name) when bufpool's figure gives no ratio."""
    others = [(values[n], n) for n in names[1:] if n not in NOT_OTHERS and values.get(n) is not None]
    if not others:
        return None, None
    lower = better_is_lower(metric)
    best_value, best = others[0]
    for v, n in others[1:]:  # ties go to the first listed
        if (v < best_value) if lower else (v > best_value):
            best_value, best = v, n
    return ratio(values.get(names[0]), best_value, metric), best


def row_values(results, names, fig, metric):
    values = {}
    for n in names:
        for r in results[n]:
            if r["figure"] == fig and r["metric"] == metric:
                values[n] = r["value"]
    return values


def best_other_cell(rt, best):
    if best is None:
        return "-"
    return f"{fmt(rt)} ({best})"


def annotate_best_other(results, names):
    """Puts "vs best other" on bufpool's rows for results.json: {"ratio", "allocator"}."""
    for r in results[names[0]]:
        rt, best = best_other(row_values(results, names, r["figure"], r["metric"]), names,
                              r["metric"])
        r["vs_best_other"] = {"ratio": rt, "allocator": best}


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


UNIT_WORDS = {"x": "ratio", "Ir": "instructions"}


def metric_label(metric, unit):
    """The metric with its unit, said once: "ns/op", "instructions/op", "retained-after-trim
    (MiB)", "peak-rss/requested (ratio)"."""
    word = UNIT_WORDS.get(unit, unit)
    if metric.split("/")[0] in (unit, word):
        return metric
    return f"{metric} ({word})"


def legend(repeat=None):
    """What the table's figures and its (x) mean, for every kind of row; with the runs each
    timed figure is the median of, when given."""
    text = ("every figure is lower-is-better (time, instructions, memory, system calls); "
            "(x) = that allocator's figure / bufpool's, so above 1 bufpool is better: "
            "faster, fewer instructions, less memory, fewer calls; "
            "vs best other = the best other allocator's figure / bufpool's, naming it "
            "(bufpool-malloc is bufpool, not an other)")
    if repeat is not None:
        text += f" (times: median of {repeat} runs)" if repeat > 1 else " (times: one run)"
    return text


def table(results, names):
    figures = []
    for r in results[names[0]]:
        figures.append((r["figure"], r["metric"], r["unit"]))
    head = (["figure", "metric"] + [names[0]] + [f"{n} (x)" for n in names[1:]] +
            ["vs best other"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    text = [f"{'figure':<12} {'metric':<30} " + " ".join(f"{h:>16}" for h in names) +
            f" {'vs best other':>18}"]
    for fig, metric, unit in figures:
        values = row_values(results, names, fig, metric)
        base = values.get(names[0])
        cells, tcells = [fmt(base)], [f"{fmt(base):>16}"]
        for n in names[1:]:
            v = values.get(n)
            rt = ratio(base, v, metric)
            cell = f"{fmt(v)} ({fmt(rt)})" if rt is not None else fmt(v)
            cells.append(cell)
            tcells.append(f"{cell:>16}")
        best = best_other_cell(*best_other(values, names, metric))
        cells.append(best)
        tcells.append(f"{best:>18}")
        label = metric_label(metric, unit)
        lines.append(f"| {fig} | {label} | " + " | ".join(cells) + " |")
        text.append(f"{fig:<12} {label:<30} " + " ".join(tcells))
    return "\n".join(text), "\n".join(lines)


# ---- the chart --------------------------------------------------------------------------
# Bars on a log axis of powers of two, fitted to the ratios but kept within these bounds; a
# ratio past them is drawn to the edge, cut by a break mark, and labelled with its value.
AXIS_MIN, AXIS_MAX = 1 / 16, 256
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2"]


def chart_rows(results, names):
    """The chart's rows: (label, metric, {allocator: ratio or None}) for the time panel and
    for the memory panel (every other metric), and (label, why) for rows not drawn."""
    time_rows, memory_rows, left_out = [], [], []
    for r in results[names[0]]:
        fig, metric = r["figure"], r["metric"]
        label = fig if metric.startswith("ns") else f"{fig} {metric}"
        ratios = {}
        for n in names[1:]:
            v = next((o["value"] for o in results[n]
                      if o["figure"] == fig and o["metric"] == metric), None)
            ratios[n] = ratio(r["value"], v, metric)
        if all(rt is None for rt in ratios.values()):
            why = (f"bufpool's figure is {fmt(r['value'])}: no ratio" if r["value"] <= 0
                   else "no other allocator has this figure")
            left_out.append((label, why))
            continue
        (time_rows if metric.startswith("ns") else memory_rows).append((label, metric, ratios))
    return time_rows, memory_rows, left_out


def axis_bounds(rows):
    ratios = [rt for _, _, rs in rows for rt in rs.values() if rt is not None]
    lo = min([0.5] + ratios)
    hi = max([2.0] + ratios)
    lo = max(AXIS_MIN, 2.0 ** math.floor(math.log2(lo)))
    hi = min(AXIS_MAX, 2.0 ** math.ceil(math.log2(hi)))
    return lo, hi


def tick_label(t):
    return f"{t:g}x" if t >= 1 else f"1/{round(1 / t)}x"


def svg_chart(results, names, path, title):
    """Horizontal bars, one per allocator and row: that allocator's figure over bufpool's on a
    log scale, every bar labelled with its value. Time rows and memory rows (memory, system
    calls) get a panel each; rows with no ratio are named at the bottom."""
    others = names[1:]
    time_rows, memory_rows, left_out = chart_rows(results, names)
    bar_h, gap, name_w, gutter, width = 11, 7, 190, 46, 520
    x0 = name_w + gutter
    out = []
    y = 24
    out.append(f'<text x="10" y="{y}" font-size="14" font-weight="bold">{escape(title)}</text>')
    y += 18
    out.append(f'<text x="10" y="{y}">Each bar: the other allocator\'s figure divided by '
               'bufpool\'s; right of 1x bufpool is better. Every figure is lower-is-better.</text>')
    y += 14
    out.append(f'<text x="10" y="{y}">A bar cut by a white break mark runs past the axis; its '
               'label gives its value.</text>')
    y += 12
    panels = [("Time per operation", "right of 1x: bufpool is faster", time_rows),
              ("Memory and system calls",
               "right of 1x: bufpool holds less memory or makes fewer calls", memory_rows)]
    for heading, sub, rows in panels:
        if not rows:
            continue
        y += 20
        out.append(f'<text x="10" y="{y}" font-size="12" font-weight="bold">{heading}</text>'
                   f'<text x="{x0}" y="{y}" fill="#555">({sub})</text>')
        y += 8
        y = panel(out, rows, others, y, x0, width, bar_h, gap)
    y += 22
    if left_out:
        what = "; ".join(f"{label} ({why})" for label, why in left_out)
        out.append(f'<text class="note" x="10" y="{y}">Not drawn: {escape(what)}.</text>')
    else:
        out.append(f'<text class="note" x="10" y="{y}">Every row of the table is drawn.</text>')
    y += 12
    lx = x0 + width + 60
    for i, n in enumerate(others):
        out.append(f'<rect x="{lx}" y="{60 + i * 16}" width="10" height="10" '
                   f'fill="{COLORS[i % len(COLORS)]}"/>')
        out.append(f'<text x="{lx + 15}" y="{69 + i * 16}">vs {escape(n)}</text>')
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{lx + 120}" height="{y}" '
            f'font-family="sans-serif" font-size="11">')
    with open(path, "w") as f:
        f.write("\n".join([head] + out + ["</svg>"]) + "\n")


def panel(out, rows, others, y, x0, width, bar_h, gap):
    """One panel of bars from y down; returns the y below it."""
    lo, hi = axis_bounds(rows)

    def x(v):
        v = min(max(v, lo), hi)
        return x0 + (math.log2(v) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * width

    top = y
    bottom = y + len(rows) * (len(others) * bar_h + gap) + 4
    out.append(f'<g class="panel" data-lo="{lo:g}" data-hi="{hi:g}" data-x0="{x0}" '
               f'data-width="{width}">')
    t = lo
    while t <= hi * 1.0001:
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{bottom}" '
                   f'stroke="{"#333" if t == 1 else "#ddd"}"/>')
        out.append(f'<text x="{x(t):.1f}" y="{bottom + 12}" text-anchor="middle">'
                   f'{tick_label(t)}</text>')
        t *= 2
    y += 4
    for label, _, ratios in rows:
        out.append(f'<text x="{x0 - gap - 40}" y="{y + len(others) * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(label)}</text>')
        for i, n in enumerate(others):
            rt = ratios.get(n)
            ids = f'data-row={quoteattr(label)} data-vs={quoteattr(n)}'
            if rt is None:
                out.append(f'<text class="value" {ids} x="{x(1) + 3:.1f}" y="{y + bar_h - 2}" '
                           f'font-size="9" fill="#777">no figure</text>')
                y += bar_h
                continue
            end = x(rt)
            x_a, x_b = sorted([x(1), end])
            out.append(f'<rect class="bar" {ids} data-ratio="{rt:.6g}" x="{x_a:.1f}" y="{y}" '
                       f'width="{max(x_b - x_a, 1):.1f}" height="{bar_h - 1}" '
                       f'fill="{COLORS[i % len(COLORS)]}"/>')
            if rt > hi or rt < lo:  # the break: two white slashes near the cut end
                inward = -1 if rt > hi else 1
                marks = "".join(
                    f'<line x1="{end + inward * d - 2:.1f}" y1="{y + bar_h}" '
                    f'x2="{end + inward * d + 2:.1f}" y2="{y - 1}" stroke="white" '
                    f'stroke-width="1.5"/>' for d in (5, 9))
                out.append(f'<g class="break" {ids}>{marks}</g>')
            right = rt >= 1
            out.append(f'<text class="value" {ids} x="{end + (3 if right else -3):.1f}" '
                       f'y="{y + bar_h - 2}" font-size="9" '
                       f'text-anchor="{"start" if right else "end"}">{fmt(rt)}x</text>')
            y += bar_h
        y += gap
    out.append("</g>")
    return bottom + 18


def syscall_counts(exe, api, preload, scale):
    """mmap + munmap + madvise calls the churn figure makes, counted by strace."""
    if not shutil.which("strace"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".strace") as tmp:
        wrapper = ["strace", "-f", "-qq", "-c", "-e", "trace=mmap,munmap,madvise", "-o", tmp.name]
        try:
            run_bench(exe, api, preload, "churn", scale, wrapper)
        except subprocess.CalledProcessError:
            return None
        with open(tmp.name) as f:
            text = f.read()
    calls = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("mmap", "munmap", "madvise"):
            calls += int(parts[3])
    return calls


# The http row: examples/http_server under wrk. bufpool's column is the server on bp_buf;
# every other column is the same server built on malloc'd byte arrays (http_server_plain)
# under that allocator. A time figure is 1e9 / wrk's requests per second; the memory figure
# is the server's RSS with HTTP_IDLE keep-alive connections open, each after one answer.
HTTP_WRK = ["-t2", "-c64"]
HTTP_THREADS = "2"
HTTP_IDLE = 1000
HTTP_RUNS = 3  # at most, of HTTP_SECONDS each: the row stays under a minute for 6 allocators
HTTP_SECONDS = 2


class HttpServer:
    """An http_server process on a free port of 127.0.0.1, ended with SIGTERM."""

    def __init__(self, exe, preload):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if preload:
            env["LD_PRELOAD"] = preload
        self.proc = subprocess.Popen([exe, "0", HTTP_THREADS], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"{exe} did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(line.split()[2])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode != 0:
            raise RuntimeError(f"http_server exit status {self.proc.returncode}: "
                               f"{self.proc.stderr.read()[-2000:]}")


def wrk_rate(port, seconds):
    """(requests per second, requests) of one wrk run against GET /static; wrk's summary must
    show no socket errors and no answer other than 2xx."""
    out = subprocess.run(["wrk"] + HTTP_WRK + [f"-d{seconds}s", f"http://127.0.0.1:{port}/static"],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    if "Socket errors" in out or "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = next(float(line.split()[1]) for line in out.splitlines()
                if line.startswith("Requests/sec:"))
    done = next(int(line.split()[0]) for line in out.splitlines() if " requests in " in line)
    return rate, done


def idle_rss_mib(server, client):
    """The server's RSS with HTTP_IDLE keep-alive connections open, each after one answer."""
    idle = subprocess.Popen([sys.executable, client, "idle", str(server.port), str(HTTP_IDLE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = idle.stdout.readline().strip()
        if ready != f"ready {HTTP_IDLE}":
            raise RuntimeError(f"the idle client says {ready!r}")
        return server.rss_kib() / 1024
    finally:
        idle.stdin.close()
        idle.wait(timeout=60)


def http_rows(args, allocs, rounds):
    """{allocator: rows} for the http row, or None (with the reason printed) when it cannot run.
    The allocators take turns within each round; the memory figure is taken once."""
    servers = {"bp": os.path.join(args.build, "http_server"),
               "malloc": os.path.join(args.build, "http_server_plain")}
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                          "http_client.py")
    if not shutil.which("wrk"):
        print("http: wrk is not installed, the row is left out (scripts/deps.sh installs it)",
              file=sys.stderr)
        return None
    missing = [exe for exe in servers.values() if not os.access(exe, os.X_OK)]
    if missing:
        print(f"http: {', '.join(missing)} not built, the row is left out", file=sys.stderr)
        return None
    seconds = 1 if args.quick else HTTP_SECONDS
    rates = {name: [] for name, _, _ in allocs}
    done = {name: 0 for name, _, _ in allocs}
    rss = {}
    for r in range(rounds):
        for name, api, preload in allocs:
            server = HttpServer(servers[api], preload)
            try:
                rate, n = wrk_rate(server.port, seconds)
                rates[name].append(rate)
                done[name] += n
                if r == 0:
                    rss[name] = idle_rss_mib(server, client)
            finally:
                server.stop()
    rows = {}
    for name, _, _ in allocs:
        per_request = [1e9 / rt for rt in rates[name]]
        row = {"figure": "http", "metric": "ns/request", "value": statistics.median(per_request),
               "unit": "ns", "ops": float(done[name]),
               "requests_per_s": statistics.median(rates[name])}
        if len(per_request) > 1:
            row["runs"] = per_request
        rows[name] = [row, {"figure": "http", "metric": f"rss-{HTTP_IDLE}-conns",
                            "value": rss[name], "unit": "MiB", "ops": float(HTTP_IDLE)}]
    return rows


# The echo row: examples/uring_server (io_uring: provided buffers, WRITE_FIXED) against
# examples/echo_server (epoll, readv/writev), both on bufpool, driven by uring_server --load:
# ECHO_CONNS connections each echoing ECHO_SIZE-byte messages one at a time. Requests per
# second are the median of the runs; system calls per request (every call the server makes,
# strace -c -f) come from one shorter run of each under strace. About 16 s in all.
ECHO_CONNS = 32
ECHO_SIZE = 64
ECHO_RUNS = 3
ECHO_SECONDS = 2


def echo_run(server, client, seconds, wrapper=()):
    """(requests, seconds) of one load run against a fresh server that exits when the load's
    connections close."""
    proc = subprocess.Popen(list(wrapper) + [server, "0", str(ECHO_CONNS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{server} did not start: {line!r}")
        out = subprocess.run([client, "--load", line.split()[2], str(ECHO_CONNS), str(seconds),
                              str(ECHO_SIZE)], check=True, capture_output=True, text=True,
                             timeout=seconds + 30).stdout.split()
        if proc.wait(timeout=30) != 0:
            raise RuntimeError(f"{server} exit status {proc.returncode}: {proc.stderr.read()}")
        return int(out[1]), float(out[3])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def echo_uring_row(args):
    """{"epoll": {...}, "io_uring": {...}} for the echo row, or None (reason printed)."""
    servers = {"epoll": os.path.join(args.build, "echo_server"),
               "io_uring": os.path.join(args.build, "uring_server")}
    client = servers["io_uring"]
    if not os.access(client, os.X_OK):
        print("echo: uring_server is not built (no liburing: scripts/deps.sh installs it), "
              "the row is left out", file=sys.stderr)
        return None
    if subprocess.run([client, "--probe"], capture_output=True).returncode != 0:
        print("echo: io_uring cannot be used on this machine, the row is left out",
              file=sys.stderr)
        return None
    seconds = 1 if args.quick else ECHO_SECONDS
    rates = {name: [] for name in servers}
    for _ in range(1 if args.quick else ECHO_RUNS):
        for name, exe in servers.items():
            n, took = echo_run(exe, client, seconds)
            rates[name].append(n / took)
    row = {}
    for name, exe in servers.items():
        row[name] = {"requests_per_s": statistics.median(rates[name]), "runs": rates[name]}
        if shutil.which("strace"):
            with tempfile.NamedTemporaryFile(suffix=".strace") as tmp:
                n, _ = echo_run(exe, client, 1, ["strace", "-f", "-qq", "-c", "-o", tmp.name])
                with open(tmp.name) as f:
                    total = [line.split() for line in f if line.rstrip().endswith(" total")]
            row[name]["syscalls_per_request"] = int(total[-1][3]) / n if total and n else None
    return row


def echo_uring_text(row):
    """The echo row as a line of text."""
    def cell(r):
        calls = r.get("syscalls_per_request")
        return f"{r['requests_per_s']:,.0f} requests/s" + (
            f", {calls:.2f} system calls per request" if calls is not None else "")
    ratio = row["io_uring"]["requests_per_s"] / row["epoll"]["requests_per_s"]
    return (f"echo, {ECHO_CONNS} connections x {ECHO_SIZE}-byte requests: io_uring "
            f"{cell(row['io_uring'])}; epoll {cell(row['epoll'])}; io_uring/epoll "
            f"{ratio:.2f}x the requests/s")


def median_rows(runs):
    """One row list from the rows of several runs of a workload: each figure's median, with
    every run's value kept under "runs" (a figure's spread shows how noisy it was)."""
    rows = [dict(r) for r in runs[0]]
    if len(runs) > 1:
        for i, row in enumerate(rows):
            values = [run[i]["value"] for run in runs]
            row["value"] = statistics.median(values)
            row["runs"] = values
    return rows


def timing(args, exe, allocs):
    """Every group run `repeat` times per allocator (memory once: it measures sizes, not
    time), the allocators taking turns within each round so that a burst of load on the
    machine falls on all of them rather than on one; medians reported."""
    names = [a[0] for a in allocs]
    scale = 0.05 if args.quick else 1.0
    repeat = 1 if args.quick else args.repeat
    results = {n: [] for n in names}
    for gi, group in enumerate(GROUPS):
        reps = 1 if group == "memory" else min(repeat, HTTP_RUNS) if group == "http" else repeat
        print(f"[{gi + 1}/{len(GROUPS)}] {group} ({reps} run{'s' if reps > 1 else ''}): " +
              " ".join(names), file=sys.stderr, flush=True)
        if group == "http":
            rows = http_rows(args, allocs, reps)
            for name in names:
                results[name].extend(rows[name] if rows else [])
            continue
        runs = {n: [] for n in names}
        for _ in range(reps):
            for name, api, preload in allocs:
                runs[name].append(run_bench(exe, api, preload, group, scale))
        for name, api, preload in allocs:
            rows = median_rows(runs[name])
            results[name].extend(rows)
            if group == "churn":
                calls = syscall_counts(exe, api, preload, scale)
                if calls is not None:
                    results[name].append({"figure": "churn", "metric": "mmap+munmap+madvise",
                                          "value": float(calls), "unit": "calls",
                                          "ops": rows[0]["ops"]})
    return results


def icount(args, exe, allocs):
    """Instructions per operation: callgrind runs at two scales, difference over ops."""
    names = [a[0] for a in allocs]
    results = {n: [] for n in names}
    scales = (0.01, 0.02)
    for fi, fig in enumerate(ICOUNT_FIGURES):
        print(f"[{fi + 1}/{len(ICOUNT_FIGURES)}] {fig}: " + " ".join(names), file=sys.stderr,
              flush=True)
        for name, api, preload in allocs:
            irs, ops = [], []
            for s in scales:
                with tempfile.NamedTemporaryFile(suffix=".cg") as tmp:
                    wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + tmp.name]
                    rows = run_bench(exe, api, preload, fig, s, wrapper)
                    with open(tmp.name) as f:
                        ir = next(int(line.split()[1]) for line in f if line.startswith("summary:"))
                irs.append(ir)
                ops.append(rows[0]["ops"])
            per_op = (irs[1] - irs[0]) / (ops[1] - ops[0])
            results[name].append({"figure": fig, "metric": "instructions/op", "value": per_op,
                                  "unit": "Ir", "ops": ops[1]})
    return results


def self_test():
    """The table and chart from synthetic figures: ratios far past the axis both ways, one
    exactly even, memory rows, a row with no ratio. Returns the failures (none: [])."""
    import xml.etree.ElementTree as ET

    fails = []

    def check(cond, what):
        if not cond:
            fails.append(what)

    def ns(fig, v):
        return {"figure": fig, "metric": "ns/op", "value": v, "unit": "ns", "ops": 1e6}

    def mem(metric, unit, v):
        return {"figure": "memory", "metric": metric, "value": v, "unit": unit, "ops": 1e5}

    names = ["bufpool", "glibc", "tcmalloc"]
    results = {  # bufpool's figures, then the others' as multiples of them
        "bufpool": [ns("far-ahead", 10), ns("far-behind", 100), ns("even", 50), ns("double", 10),
                    mem("peak-rss/requested", "x", 1.25), mem("retained-after-trim", "MiB", 0.0),
                    {"figure": "churn", "metric": "mmap+munmap+madvise", "value": 20.0,
                     "unit": "calls", "ops": 1e4}],
        "glibc": [ns("far-ahead", 10000), ns("far-behind", 1), ns("even", 50), ns("double", 20),
                  mem("peak-rss/requested", "x", 1.0), mem("retained-after-trim", "MiB", 2.0),
                  {"figure": "churn", "metric": "mmap+munmap+madvise", "value": 40.0,
                   "unit": "calls", "ops": 1e4}],
        "tcmalloc": [ns("far-ahead", 1250), ns("far-behind", 14), ns("even", 50),
                     ns("double", 20), mem("peak-rss/requested", "x", 2.5),
                     mem("retained-after-trim", "MiB", 50.0)],
    }
    expected = {  # (row label, allocator): ratio; every one of them must be drawn
        ("far-ahead", "glibc"): 1000, ("far-ahead", "tcmalloc"): 125,
        ("far-behind", "glibc"): 0.01, ("far-behind", "tcmalloc"): 0.14,
        ("even", "glibc"): 1, ("even", "tcmalloc"): 1,
        ("double", "glibc"): 2, ("double", "tcmalloc"): 2,
        ("memory peak-rss/requested", "glibc"): 0.8,
        ("memory peak-rss/requested", "tcmalloc"): 2,
        ("churn mmap+munmap+madvise", "glibc"): 2,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ratios.svg")
        svg_chart(results, names, path, "self-test")
        with open(path) as f:
            svg = f.read()
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as e:
        return [f"the chart is not well-formed SVG: {e}"]
    ns_svg = "{http://www.w3.org/2000/svg}"
    everything = list(root.iter())

    def of_class(cls):
        return [e for e in everything if e.get("class") == cls]

    bars = {(e.get("data-row"), e.get("data-vs")): e for e in of_class("bar")}
    labels = {(e.get("data-row"), e.get("data-vs")): "".join(e.itertext())
              for e in of_class("value")}
    breaks = {(e.get("data-row"), e.get("data-vs")) for e in of_class("break")}
    for key, rt in expected.items():
        check(key in bars, f"no bar for {key}")
        check(labels.get(key) == f"{fmt(rt)}x",
              f"{key}: label {labels.get(key)!r}, expected {fmt(rt)}x")
    check(labels.get(("churn mmap+munmap+madvise", "tcmalloc")) == "no figure",
          "a row an allocator lacks is not labelled 'no figure'")
    for e in of_class("panel"):
        lo, hi = float(e.get("data-lo")), float(e.get("data-hi"))
        x0, width = float(e.get("data-x0")), float(e.get("data-width"))
        check(AXIS_MIN <= lo <= 0.5 and 2 <= hi <= AXIS_MAX, f"axis {lo}..{hi} out of bounds")
        for bar in e.iter(ns_svg + "rect"):
            if bar.get("class") != "bar":
                continue
            key = (bar.get("data-row"), bar.get("data-vs"))
            rt = float(bar.get("data-ratio"))
            a, w = float(bar.get("x")), float(bar.get("width"))
            check(x0 - 0.1 <= a and a + w <= x0 + width + 0.1, f"{key}: bar outside the axis")
            clipped = rt > hi or rt < lo
            check((key in breaks) == clipped,
                  f"{key}: ratio {rt} on axis {lo:g}..{hi:g}, break mark {key in breaks}")
            want = min(max(rt, lo), hi)
            one = x0 + (0 - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * width
            end = x0 + (math.log2(want) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * width
            got = a + w if rt >= 1 else a
            check(abs(got - end) <= 0.2 or abs(end - one) < 1,
                  f"{key}: bar ends at {got:.1f}, expected {end:.1f} (ratio {rt})")
    check(("far-ahead", "glibc") in breaks and ("far-behind", "glibc") in breaks,
          "the ratios past the axis (1000x, 0.01x) carry no break mark")
    check(("far-ahead", "tcmalloc") not in breaks and ("far-behind", "tcmalloc") not in breaks,
          "125x and 0.14x are cut although the axis can show them")
    notes = " ".join("".join(e.itertext()) for e in of_class("note"))
    check("memory retained-after-trim" in notes and "bufpool's figure is 0" in notes,
          f"the rows not drawn are not named with the reason: {notes!r}")
    check("break mark" in svg and "right of 1x" in svg, "the chart's legend is missing")

    text, md = table(results, names)
    for kind, t in (("text", text), ("markdown", md)):
        check("ns/op (ns)" not in t, f"the {kind} table doubles the unit: ns/op (ns)")
        check("peak-rss/requested (ratio)" in t and "retained-after-trim (MiB)" in t,
              f"the {kind} table's memory rows lack their units")
    md_rows = {line.split(" | ")[1]: line for line in md.splitlines()[2:]}
    check("40.0 (2.00)" in md_rows.get("mmap+munmap+madvise (calls)", ""),
          "the system-call row has no ratio")
    check("1.00 (0.80)" in md_rows.get("peak-rss/requested (ratio)", ""),
          "the memory rows have no ratio")
    check(md.splitlines()[0].rstrip().endswith("| vs best other |"),
          "the table has no 'vs best other' column")
    check(text.splitlines()[0].rstrip().endswith("vs best other"),
          "the printed table has no 'vs best other' column")
    best_cells = {line.split(" | ")[0][2:]: line.split(" | ")[-1].rstrip(" |")
                  for line in md.splitlines()[2:]}
    best_cells_by_metric = {line.split(" | ")[1]: line.split(" | ")[-1].rstrip(" |")
                            for line in md.splitlines()[2:]}
    for fig, want in (("far-ahead", "125 (tcmalloc)"), ("far-behind", "0.01 (glibc)"),
                      ("even", "1.00 (glibc)"), ("double", "2.00 (glibc)")):
        check(best_cells.get(fig) == want,
              f"{fig}: vs best other {best_cells.get(fig)!r}, expected {want!r}")
    for metric, want in (("peak-rss/requested (ratio)", "0.80 (glibc)"),
                         ("mmap+munmap+madvise (calls)", "2.00 (glibc)"),
                         ("retained-after-trim (MiB)", "- (glibc)")):
        check(best_cells_by_metric.get(metric) == want,
              f"{metric}: vs best other {best_cells_by_metric.get(metric)!r}, expected {want!r}")
    check(best_other({"bufpool": 10, "glibc": 20, "fast": 5}, ["bufpool", "glibc", "fast"],
                     "Mpairs/s") == (0.5, "glibc"),
          "vs best other picks the lowest of a higher-is-better metric")
    check(best_other({"bufpool": 10}, ["bufpool", "glibc"], "ns/op") == (None, None),
          "vs best other with no other figure is not empty")
    with_shim = {n: [dict(r) for r in rs] for n, rs in results.items()}
    with_shim["bufpool-malloc"] = [ns("far-ahead", 1)]
    shim_names = ["bufpool", "glibc", "bufpool-malloc", "tcmalloc"]
    annotate_best_other(with_shim, shim_names)
    far = next(r for r in with_shim["bufpool"] if r["figure"] == "far-ahead")
    check(far.get("vs_best_other") == {"ratio": 125, "allocator": "tcmalloc"},
          f"results.json's vs best other counts bufpool-malloc as an other: {far}")
    check("lower-is-better" in legend(5) and "median of 5 runs" in legend(5) and
          "one run" in legend(1) and "run" not in legend(),
          "the legend does not say that lower is better and how figures were taken")
    check("times faster" not in legend(1), "the legend speaks of time for every row")
    med = median_rows([[ns("a", 3)], [ns("a", 1)], [ns("a", 2)]])
    check(med[0]["value"] == 2 and med[0]["runs"] == [3, 1, 2], f"median of 3, 1, 2: {med}")
    return fails


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Single runs of a workload on a shared machine differ by up to 2x; the median "
               "of --repeat runs (the allocators taking turns) is what the table reports, and "
               "results.json keeps every run's figure.")
    ap.add_argument("--quick", action="store_true",
                    help="every workload briefly, once (a smoke test: figures are not "
                         "measurements); runs --self-test first")
    ap.add_argument("--icount", action="store_true", help="callgrind instruction counts")
    ap.add_argument("--repeat", type=int, default=5, metavar="N",
                    help="runs of each workload per allocator; the table shows their median "
                         "(default 5; the memory figures run once)")
    ap.add_argument("--self-test", action="store_true",
                    help="check the table and chart code on synthetic figures, and exit")
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: at least 1")
    if args.self_test or args.quick:
        fails = self_test()
        for f in fails:
            print(f"self-test: {f}", file=sys.stderr)
        if fails:
            sys.exit(f"self-test: {len(fails)} failed")
        print("self-test: table and chart ok", file=sys.stderr)
        if args.self_test:
            return
    exe = os.path.join(args.build, "bench")
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe} is not built (make bench builds it)")
    out = args.out or os.path.join(args.build, "bench-results")
    os.makedirs(out, exist_ok=True)
    allocs, missing = allocators(args.build)
    if missing:
        print("not installed, left out: " + ", ".join(missing) +
              " (scripts/deps.sh bench installs them)", file=sys.stderr)
    names = [a[0] for a in allocs]
    echo = None
    if args.icount:
        results = icount(args, exe, allocs)
        kind = "instructions per operation (callgrind)"
    else:
        results = timing(args, exe, allocs)
        print("[echo] io_uring against epoll", file=sys.stderr, flush=True)
        echo = echo_uring_row(args)
        kind = "time per operation" + (" (quick run: not a measurement)" if args.quick else "")
    info = machine()
    command = "scripts/bench.py " + " ".join(sys.argv[1:])
    repeat = None if args.icount else 1 if args.quick else args.repeat
    annotate_best_other(results, names)
    text, md = table(results, names)
    print()
    print(f"bufpool benchmark: {kind}; {legend(repeat)}")
    print(f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, {info['date']}")
    print(text)
    if not args.icount and echo is not None:
        print(echo_uring_text(echo))
    base = "icount" if args.icount else "results"
    with open(os.path.join(out, base + ".json"), "w") as f:
        json.dump({"kind": kind, "machine": info, "command": command, "allocators": names,
                   "missing": missing, "results": results,
                   "echo_uring": None if args.icount else echo}, f, indent=1)
    with open(os.path.join(out, base + ".md"), "w") as f:
        f.write(f"{kind}; {legend(repeat)}. {info['cpu']}, "
                f"{info['cores']} cores, {info['date']}. `{command}`\n\n{md}\n")
        if not args.icount and echo is not None:
            f.write(f"\n{echo_uring_text(echo)}\n")
    if not args.icount:
        svg_chart(results, names, os.path.join(out, "ratios.svg"),
                  "bufpool against " + ", ".join(names[1:]) + ", per workload (log scale)")
    print(f"\nwritten: {out}/{base}.json, {base}.md" + ("" if args.icount else ", ratios.svg"))


if __name__ == "__main__":
    main()
