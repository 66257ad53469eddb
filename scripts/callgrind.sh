#!/usr/bin/env bash
# Instructions per alloc+free pair, loop included, counted by callgrind (deterministic).
# Runs the pair loop twice (N and 2N pairs) and divides the difference by N, so start-up and
# exit cancel out. Usage: scripts/callgrind.sh [SIZE...]   (default: 64 32768)
# Environment: BP_BUILD (build dir, default build/release), BP_CALLGRIND_LIBS (extra
# LD_PRELOAD libraries to compare, e.g. "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2").
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BP_BUILD:-build/release}
exe=$build/fastpath
if [[ ! -x $exe ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$(nproc)" --target fastpath >/dev/null
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (scripts/deps.sh installs it)"; exit 1; }
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(64 32768)
n=100000

instructions() { # preload api size iterations -> total Ir
    local out
    out=$(mktemp)
    env ${1:+LD_PRELOAD=$1} valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$exe" "$2" "$3" "$4" >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out"
    rm -f "$out"
}

per_pair() { # preload api size
    local a b
    a=$(instructions "$1" "$2" "$3" "$n")
    b=$(instructions "$1" "$2" "$3" $((2 * n)))
    awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
}

printf '%-28s %10s %s\n' allocator size "instructions per alloc+free pair"
for size in "${sizes[@]}"; do
    printf '%-28s %10s %s\n' bufpool "$size" "$(per_pair "" bp "$size")"
    printf '%-28s %10s %s\n' "glibc malloc" "$size" "$(per_pair "" malloc "$size")"
    for lib in ${BP_CALLGRIND_LIBS:-}; do
        [[ -e $lib ]] && printf '%-28s %10s %s\n' "$(basename "$lib")" "$size" "$(per_pair "$lib" malloc "$size")"
    done
done
