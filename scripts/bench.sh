#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the benchmark suite
# (bufpool against glibc, jemalloc, mimalloc and tcmalloc). Arguments go to scripts/bench.py:
# --repeat N (runs per workload, the median reported; 5 by default, about 4.5 minutes on 2
# cores), --quick (a smoke run, after the chart code's self-test), --icount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
exec python3 scripts/bench.py --build build/release "$@"
