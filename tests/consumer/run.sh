#!/usr/bin/env bash
# Installs the build into a temporary prefix and uses it as a user would: builds
# tests/consumer/main.c with pkg-config (shared and --static) and with a separate CMake
# project using find_package (bufpool::bufpool and bufpool::bufpool_static), runs each,
# includes the header from C++, and runs a program under the installed malloc library.
#   tests/consumer/run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
cmake --install "$build" --prefix "$prefix" >/dev/null
# the library directory GNUInstallDirs chose (lib, or lib64 on some systems)
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
for f in include/bufpool.h "$libdir"/libbufpool.a "$libdir"/libbufpool-malloc.so \
         "$libdir"/pkgconfig/bufpool.pc "$libdir"/cmake/bufpool/bufpoolConfig.cmake \
         "$libdir"/cmake/bufpool/bufpoolConfigVersion.cmake; do
    [[ -e $prefix/$f ]] || fail "not installed: $f"
done
echo "ok installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

lib=$prefix/$libdir
# (output captured first: grep -q ending a pipe early would fail it under pipefail)
dynamic=$(readelf -d "$lib/libbufpool.so")
grep -q 'SONAME.*\[libbufpool\.so\.0\]' <<<"$dynamic" || fail "no versioned soname"
[[ $(readlink "$lib/libbufpool.so") == libbufpool.so.0 ]] || fail "libbufpool.so is not a link to the soname"
echo "ok soname libbufpool.so.0"

expect_run() { # what command...: the program must print "installed 9"
    local what=$1 out
    shift
    out=$("$@") || fail "$what: exit status $?"
    [[ $out == "installed 9" ]] || fail "$what printed '$out'"
    echo "ok $what: $out"
}

export PKG_CONFIG_PATH=$lib/pkgconfig
[[ $(pkg-config --modversion bufpool) == 0.1.0 ]] || fail "pkg-config --modversion: $(pkg-config --modversion bufpool)"
flags="-std=c11 -Wall -Wextra -Wpedantic -Werror"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/with-pkg-config" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs bufpool)
expect_run "pkg-config" env LD_LIBRARY_PATH="$lib" "$prefix/with-pkg-config"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/with-pkg-config-static" "$src/tests/consumer/main.c" \
    $(pkg-config --cflags bufpool) $(pkg-config --static --libs bufpool | sed 's/-lbufpool\b/-l:libbufpool.a/')
! grep -q libbufpool <<<"$(ldd "$prefix/with-pkg-config-static")" || fail "the static build links libbufpool.so"
expect_run "pkg-config --static" "$prefix/with-pkg-config-static"

# shellcheck disable=SC2046
echo '#include <bufpool.h>' | g++ -std=c++11 -Wall -Wextra -Werror -fsyntax-only -x c++ - \
    $(pkg-config --cflags bufpool) || fail "bufpool.h does not compile as C++"
echo "ok bufpool.h compiles as C++"

for linkage in shared static; do
    dir=$prefix/consumer-$linkage
    cmake -S "$src/tests/consumer" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" \
        -DBUFPOOL_STATIC=$([[ $linkage == static ]] && echo ON || echo OFF) >"$dir.log" 2>&1 ||
        { cat "$dir.log"; fail "find_package(bufpool) configure ($linkage)"; }
    cmake --build "$dir" >>"$dir.log" 2>&1 || { cat "$dir.log"; fail "find_package build ($linkage)"; }
    if [[ $linkage == static ]]; then
        ! grep -q libbufpool <<<"$(ldd "$dir/consumer")" || fail "bufpool::bufpool_static links libbufpool.so"
    else
        grep -q "libbufpool.so.0 => $lib" <<<"$(ldd "$dir/consumer")" ||
            fail "bufpool::bufpool does not link $lib/libbufpool.so.0"
    fi
    expect_run "find_package(bufpool) $linkage" "$dir/consumer"
done

# The installed malloc library under LD_PRELOAD: malloc_usable_size(malloc(100)) is
# bufpool's size class (112), not glibc's 104, and stats_print reports the default pool.
cat >"$prefix/plain.c" <<'EOF'
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    void *p = malloc(100);
    printf("%zu\n", malloc_usable_size(p));
    free(p);
    return 0;
}
EOF
cc -o "$prefix/plain" "$prefix/plain.c"
out=$(BUFPOOL_CONF=stats_print:1 LD_PRELOAD=$lib/libbufpool-malloc.so "$prefix/plain" 2>"$prefix/stats")
[[ $out == 112 ]] || fail "under LD_PRELOAD malloc_usable_size(malloc(100)) = $out, not bufpool's 112"
grep -q '^bufpool stats' "$prefix/stats" || fail "no statistics at exit under LD_PRELOAD: $(cat "$prefix/stats")"
echo "ok LD_PRELOAD=libbufpool-malloc.so: malloc_usable_size(malloc(100)) = $out, statistics at exit"
