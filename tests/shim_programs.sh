#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libbufpool-malloc.so, each output compared with the same run
# without it: python3, sqlite3, git, gcc, sort, a C++ program mixing new/delete with
# malloc/free, and the project building itself. Ends with "N passed, N failed".
#   tests/shim_programs.sh LIBRARY SOURCE_DIR
set -uo pipefail
lib=$(realpath "$1")
src=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# check NAME COMMAND...: runs the command plain and preloaded in fresh directories; the
# outputs (stdout and exit status) must match.
check() {
    local name=$1
    shift
    mkdir -p "$work/plain-$name" "$work/preload-$name"
    local a b
    a=$(cd "$work/plain-$name" && "$@" 2>"$work/plain-$name.err"; echo "exit $?")
    b=$(cd "$work/preload-$name" && LD_PRELOAD=$lib "$@" 2>"$work/preload-$name.err"; echo "exit $?")
    if [[ $a == "$b" && $b == *"exit 0" ]]; then
        echo "ok      $name ($(printf '%s' "$b" | wc -c) bytes of output match)"
        passed=$((passed + 1))
    else
        echo "FAILED  $name"
        diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -20
        tail -20 "$work/preload-$name.err"
        failed=$((failed + 1))
    fi
}

# the preload is in effect: bufpool's 112-byte class for a 100-byte request (glibc says 104)
usable=$(LD_PRELOAD=$lib python3 -c "import ctypes; c = ctypes.CDLL(None); c.malloc.restype = ctypes.c_void_p; c.malloc_usable_size.argtypes = [ctypes.c_void_p]; print(c.malloc_usable_size(c.malloc(100)))")
if [[ $usable == 112 ]]; then
    echo "ok      preload active (python3's malloc_usable_size(malloc(100)) = 112)"
    passed=$((passed + 1))
else
    echo "FAILED  preload active: malloc_usable_size(malloc(100)) = $usable"
    failed=$((failed + 1))
fi

cat >"$work/heavy.py" <<'PY'
import hashlib
d = {}
for i in range(200000):
    d["key%d" % i] = [str(i) * (i % 7), {"n": i, "s": "x" * (i % 50)}]
for i in range(0, 200000, 3):
    del d["key%d" % i]
words = " ".join(k for k in d if len(k) % 3 == 0).split()
words.sort(key=lambda w: (len(w), w[::-1]))
h = hashlib.sha256("".join(words[:50000]).encode()).hexdigest()
print(len(d), len(words), h)
PY
check python3 python3 "$work/heavy.py"

check sqlite3 sqlite3 :memory: "
  create table t(id integer primary key, name text, v real);
  with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000)
  insert into t select x, 'name' || (x * 7919 % 100000), x * 1.5 from c;
  create index t_name on t(name);
  select count(*), sum(v), min(name), max(name) from t;
  select name from t where name like 'name99%' order by name limit 5;
  select count(distinct substr(name, 5, 2)) from t;"

git_session() {
    export GIT_AUTHOR_NAME=bufpool GIT_AUTHOR_EMAIL=ci@localhost GIT_COMMITTER_NAME=bufpool \
        GIT_COMMITTER_EMAIL=ci@localhost GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' \
        GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' HOME=$PWD GIT_CONFIG_NOSYSTEM=1
    git init -q -b main repo && cd repo || return 1
    for i in $(seq 1 30); do
        seq "$i" 3000 >"file$((i % 7)).txt"
        git add . && git commit -q -m "commit $i" || return 1
    done
    git log --format='%H %s' | head -40
    git gc -q --aggressive && git count-objects -v | grep -E '^(count|in-pack)'
    git fsck --no-dangling >/dev/null 2>&1 && echo fsck ok
}
check git git_session

cat >"$work/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    unsigned long h = 5381;
    for (int i = 0; i < 100000; i++) {
        char *s = malloc(32);
        snprintf(s, 32, "%d", i * 31);
        for (char *c = s; *c; c++) h = h * 33 + (unsigned char)*c;
        free(s);
    }
    printf("%lu\n", h);
    return 0;
}
C
check gcc sh -c "gcc -O2 -Wall -o prog '$work/prog.c' && ./prog"

seq 1 400000 | shuf --random-source=<(yes) >"$work/numbers.txt"
check sort sh -c "sort -n '$work/numbers.txt' | sha256sum; sort '$work/numbers.txt' | tail -3"

if command -v g++ >/dev/null; then
    cat >"$work/mix.cc" <<'CC'
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>
int main() {
    // new and delete reach malloc and free: memory from one is given back through the other.
    for (int i = 0; i < 1000; i++) {
        char *a = new char[100 + i];
        std::free(a);
        void *b = std::malloc(64 + i);
        ::operator delete(b);
    }
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 50000; i++) m[std::to_string(i % 997)].push_back(i);
    std::printf("%zu %zu\n", m.size(), m["5"].size());
    return 0;
}
CC
    check c++ sh -c "g++ -O1 -fno-builtin -o mix '$work/mix.cc' && ./mix"
fi

self_host() {
    cmake -S "$src" -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        cmake --build build -j2 >/dev/null && ./build/hello | tail -1
}
check self-host self_host

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
