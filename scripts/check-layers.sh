#!/usr/bin/env bash
# Checks the layering of src/: every header compiles alone, and no file includes a header
# of a layer above its own (the rank tables below). Usage: scripts/check-layers.sh [--root DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
while [[ $# -gt 0 ]]; do
    case $1 in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    *) echo "usage: $0 [--root DIR]" >&2; exit 2 ;;
    esac
done
cd "$root"
exec python3 - "${CC:-gcc}" <<'EOF'
import fnmatch, os, re, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

# Internal headers, by path under src/: rank (lower = lower layer). A header may include
# internal headers of a lower rank only. include/bufpool.h is public: anything may include it.
HEADERS = {
    "base.h": 0,                                  # build variants, asserts, helpers
    "track.h": 1, "lock.h": 1, "fast.h": 1,
    "os.h": 2,                                    # pages from the OS
    "size_classes.h": 3,
    "chunk_map.h": 4,
    "subpage.h": 5, "engine.h": 5,
    "chunk.h": 6,
    "chunk_list.h": 7,
    "arena.h": 8,
    "front.h": 9,                                 # pools, thread caches, the API
    "pool_hooks.h": 9,                            # what bp_buf may ask of a pool
    "buf/buf_internal.h": 10,                     # buffers, on top of everything
}
# .c files under src/ (name or glob): the rank of the highest header each one owns.
# A .c may include headers of its own rank or lower.
SOURCES = [
    ("os.c", 2), ("shm.c", 2),
    ("size_classes.c", 3),
    ("chunk_map.c", 4),
    ("subpage.c", 5),
    ("chunk.c", 6), ("region.c", 6),
    ("chunk_list.c", 7),
    ("arena.c", 8),
    ("thread_cache.c", 9), ("pool.c", 9), ("alloc.c", 9), ("options.c", 9),
    ("background.c", 9), ("stats.c", 9),
    ("buf/*.c", 10), ("uring.c", 10), ("malloc/*.c", 10),
]

cc = shlex.split(sys.argv[1])
problems = []
files = sorted(os.path.relpath(os.path.join(d, f))
               for d, _, names in os.walk("src") for f in names if f.endswith((".c", ".h")))

def rank(path):  # path under the root -> rank, or None when the tables lack it
    name = os.path.relpath(path, "src")
    if name.endswith(".h"):
        return HEADERS.get(name)
    return next((r for pat, r in SOURCES if fnmatch.fnmatch(name, pat)), None)

# 1. Every header compiles alone, with and without the internal checks.
headers = [f for f in files if f.endswith(".h")] + ["include/bufpool.h"]
def compile_alone(h):
    fails = []
    for flags in ([], ["-DBP_CHECKED=1"]):
        r = subprocess.run(cc + ["-std=gnu11", "-Wall", "-Wextra", "-Wundef", "-Werror",
                                 "-fsyntax-only", "-Iinclude", "-Isrc", *flags, "-x", "c", h],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            fails.append((" ".join(flags) or "plain", r.stdout + r.stderr))
    return fails
with ThreadPoolExecutor(os.cpu_count() or 4) as pool:
    for h, fails in zip(headers, pool.map(compile_alone, headers)):
        if fails:
            lines = fails[0][1].rstrip().splitlines()
            more = ["    ..."] if len(lines) > 12 else []
            problems.append(f"{h} does not compile alone ({', '.join(f for f, _ in fails)}):\n"
                            + "\n".join("    " + l for l in lines[:12] + more))

# 2. Each src file has a layer and includes nothing above it.
include = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
for f in files:
    own = rank(f)
    if own is None:
        problems.append(f"{f} has no layer in scripts/check-layers.sh")
    with open(f, errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            m = include.match(line)
            if not m:
                continue
            name = m.group(1)
            found = next((p for p in (os.path.normpath(os.path.join(d, name))
                                      for d in (os.path.dirname(f), "src", "include"))
                          if os.path.isfile(p)), None)
            if found is None:
                problems.append(f'{f}:{n}: includes "{name}", which is not found')
            elif found.startswith("include/"):
                continue                          # the public header: always allowed
            elif not found.startswith("src/"):
                problems.append(f'{f}:{n}: includes "{name}" ({found}), outside src/ and include/')
            elif own is None or (target := rank(found)) is None:
                continue                          # an unranked file is reported on its own
            elif target > own or (target == own and f.endswith(".h")):
                rule = f"a layer-{own} header includes layers < {own}" if f.endswith(".h") \
                    else f"a layer-{own} .c includes layers <= {own}"
                problems.append(f'{f}:{n}: includes "{name}" (layer {target}); {rule} only')

for p in problems:
    print(p)
print(f"layers: {len(problems)} problems")
if problems:
    sys.exit(1)
print(f"layers: ok ({len(headers)} headers alone, {len(files)} files)")
EOF
