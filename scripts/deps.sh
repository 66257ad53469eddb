#!/usr/bin/env bash
# Installs, from Debian's archive, what bufpool's build, tests and benchmarks need and the
# machine lacks. Quiet and quick when everything is there.
#   scripts/deps.sh          build and test tools (wrk: the load generator that test_http
#                            and the benchmark's http row drive the example server with)
#   scripts/deps.sh bench    also jemalloc, mimalloc and tcmalloc for the comparisons, and
#                            strace for the churn figure's system-call counts
# Both install liburing-dev when they can: without it the build leaves io_uring support out
# (src/uring.c answers ENOSYS; test_uring and examples/uring_server are not built).
set -euo pipefail

tools=(cmake:cmake make:make gcc:gcc g++:g++ clang:clang valgrind:valgrind
       clang-format:clang-format python3:python3 git:git sqlite3:sqlite3 pkg-config:pkg-config
       wrk:wrk)
missing=()
for entry in "${tools[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
# clang's sanitizer and libFuzzer runtimes are only a Recommends of clang in Debian
for pkg in libclang-rt-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
optional=()
dpkg -s liburing-dev >/dev/null 2>&1 || optional+=(liburing-dev)
if [[ ${1:-} == bench ]]; then
    for pkg in libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 strace; do
        dpkg -s "$pkg" >/dev/null 2>&1 || optional+=("$pkg")
    done
fi
[[ ${#missing[@]} -eq 0 && ${#optional[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: cannot install (not root, or no apt-get): ${missing[*]} ${optional[*]}" >&2
    [[ ${#missing[@]} -eq 0 ]] || { echo "deps: install these first: ${missing[*]}" >&2; exit 1; }
    exit 0
fi
echo "deps: installing ${missing[*]} ${optional[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "deps: apt-get update failed; trying the cached lists" >&2
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for pkg in "${optional[@]}"; do # what cannot be had is left out: a comparison, io_uring
    apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 ||
        echo "deps: $pkg is not available; the build and benchmark go on without it" >&2
done
