#!/usr/bin/env python3
"""Runs the benchmark suite: bufpool against the allocators present, side by side.

Every workload of bench/bench.c runs through bufpool's API and through malloc under glibc
and, when installed, Debian's jemalloc, mimalloc and tcmalloc (LD_PRELOAD), and bufpool's
own malloc library when it is built. Prints a table of time per operation with bufpool's
ratio against each allocator, and writes results.json, table.md and ratios.svg.

  scripts/bench.py [--quick] [--repeat N] [--build DIR] [--out DIR]
  scripts/bench.py --icount [--build DIR] [--out DIR]   # callgrind instructions per op
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile

GROUPS = ["seeds", "pairs", "batches", "replace", "prodcons", "server", "churn", "buffers",
          "memory"]
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
    if bufpool <= 0 or other <= 0:
        return None
    return other / bufpool if better_is_lower(metric) else bufpool / other


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(results, names, unit_label):
    figures = []
    for r in results[names[0]]:
        figures.append((r["figure"], r["metric"], r["unit"]))
    head = ["figure", "metric"] + [names[0]] + [f"{n} (x)" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    text = [f"{'figure':<12} {'metric':<22} " + " ".join(f"{h:>16}" for h in names)]
    for fig, metric, unit in figures:
        values = {}
        for n in names:
            for r in results[n]:
                if r["figure"] == fig and r["metric"] == metric:
                    values[n] = r["value"]
        base = values.get(names[0])
        cells, tcells = [fmt(base)], [f"{fmt(base):>16}"]
        for n in names[1:]:
            v = values.get(n)
            comparable = metric.startswith("ns") or metric.startswith("instructions")
            rt = ratio(base, v, metric) if (v is not None and base is not None and
                                              comparable) else None
            cell = f"{fmt(v)} ({fmt(rt)})" if rt is not None else fmt(v)
            cells.append(cell)
            tcells.append(f"{cell:>16}")
        lines.append(f"| {fig} | {metric} {unit_label(unit)} | " + " | ".join(cells) + " |")
        text.append(f"{fig:<12} {metric + ' ' + unit_label(unit):<22} " + " ".join(tcells))
    return "\n".join(text), "\n".join(lines)


def svg_chart(results, names, path, title):
    """Horizontal bars: bufpool's speed-up against each allocator per figure (log scale)."""
    figs = [r["figure"] for r in results[names[0]] if r["metric"].startswith("ns")]
    others = names[1:]
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2"]
    bar_h, gap, left, width = 9, 8, 110, 520
    height = 60 + len(figs) * (len(others) * bar_h + gap) + 30
    lo, hi = math.log10(0.25), math.log10(64)

    def x(v):
        v = min(max(v, 0.25), 64)
        return left + (math.log10(v) - lo) / (hi - lo) * width

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 150}" '
           f'height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{title}</text>']
    for tick in [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]:
        out.append(f'<line x1="{x(tick):.1f}" y1="30" x2="{x(tick):.1f}" y2="{height - 25}" '
                   f'stroke="{"#333" if tick == 1 else "#ddd"}"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 10}" text-anchor="middle">{tick}x</text>')
    y = 40
    for fig in figs:
        out.append(f'<text x="{left - 6}" y="{y + len(others) * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{fig}</text>')
        base = next(r["value"] for r in results[names[0]] if r["figure"] == fig)
        for i, n in enumerate(others):
            v = next((r["value"] for r in results[n] if r["figure"] == fig), None)
            rt = ratio(base, v, "ns/op") if v else None
            if rt:
                x0, x1 = sorted([x(1), x(rt)])
                out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" '
                           f'height="{bar_h - 1}" fill="{colors[i % len(colors)]}"/>')
            y += bar_h
        y += gap
    for i, n in enumerate(others):
        out.append(f'<rect x="{left + width + 15}" y="{40 + i * 16}" width="10" height="10" '
                   f'fill="{colors[i % len(colors)]}"/>')
        out.append(f'<text x="{left + width + 30}" y="{49 + i * 16}">vs {n}</text>')
    out.append(f'<text x="{left + width + 15}" y="{60 + len(others) * 16}">right of 1x:</text>')
    out.append(f'<text x="{left + width + 15}" y="{74 + len(others) * 16}">bufpool faster</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


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


def timing(args, exe, allocs):
    names = [a[0] for a in allocs]
    scale = 0.05 if args.quick else 1.0
    repeat = 1 if args.quick else args.repeat
    results = {n: [] for n in names}
    for gi, group in enumerate(GROUPS):
        reps = 1 if group == "memory" else repeat
        print(f"[{gi + 1}/{len(GROUPS)}] {group}: " + " ".join(names), file=sys.stderr,
              flush=True)
        for name, api, preload in allocs:
            best = None
            for _ in range(reps):
                rows = run_bench(exe, api, preload, group, scale)
                if best is None:
                    best = rows
                else:  # keep the faster of the repetitions (less noise from the machine)
                    for b, r in zip(best, rows):
                        if r["metric"].startswith("ns") and r["value"] < b["value"]:
                            b["value"] = r["value"]
            results[name].extend(best)
            if group == "churn":
                calls = syscall_counts(exe, api, preload, scale)
                if calls is not None:
                    results[name].append({"figure": "churn", "metric": "mmap+munmap+madvise",
                                          "value": float(calls), "unit": "calls",
                                          "ops": best[0]["ops"]})
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every workload briefly (smoke test)")
    ap.add_argument("--icount", action="store_true", help="callgrind instruction counts")
    ap.add_argument("--repeat", type=int, default=2, help="runs per figure, the best is kept")
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
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
    if args.icount:
        results = icount(args, exe, allocs)
        kind = "instructions per operation (callgrind)"
    else:
        results = timing(args, exe, allocs)
        kind = "time per operation" + (" (quick run: not a measurement)" if args.quick else "")
    info = machine()
    command = "scripts/bench.py " + " ".join(sys.argv[1:])
    text, md = table(results, names, lambda u: f"({u})")
    print()
    print(f"bufpool benchmark: {kind}; (x) = how many times faster bufpool is")
    print(f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, {info['date']}")
    print(text)
    base = "icount" if args.icount else "results"
    with open(os.path.join(out, base + ".json"), "w") as f:
        json.dump({"kind": kind, "machine": info, "command": command, "allocators": names,
                   "missing": missing, "results": results}, f, indent=1)
    with open(os.path.join(out, base + ".md"), "w") as f:
        f.write(f"{kind}; (x) = how many times faster bufpool is. {info['cpu']}, "
                f"{info['cores']} cores, {info['date']}. `{command}`\n\n{md}\n")
    if not args.icount:
        svg_chart(results, names, os.path.join(out, "ratios.svg"),
                  "bufpool's speed-up per workload (time per operation, log scale)")
    print(f"\nwritten: {out}/{base}.json, {base}.md" + ("" if args.icount else ", ratios.svg"))


if __name__ == "__main__":
    main()
