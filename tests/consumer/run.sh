#!/usr/bin/env bash
# Installs the build into a temporary prefix and uses it as a user would: builds
# tests/consumer/main.c with pkg-config (shared, shared with an rpath and no LD_LIBRARY_PATH,
# and --static) and with a separate CMake project using find_package (bufpool::bufpool,
# bufpool::bufpool_static, bufpool::bufpool_checked), runs each, includes the header from
# C++, and runs programs under the installed malloc libraries. The checked library
# (bufpool-checked.pc, bufpool::bufpool_checked) and the checked malloc library must stop a
# double free at the call with their report (tests/consumer/double_free.c).
#   tests/consumer/run.sh BUILD_DIR SOURCE_DIR SONAME CHECKED_SONAME
# SONAME and CHECKED_SONAME are what the build names libbufpool.so and libbufpool-checked.so's
# sonames (libbufpool.so.MAJOR, libbufpool-checked.so.MAJOR).
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
soname=$3
checked_soname=$4
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
cmake --install "$build" --prefix "$prefix" >/dev/null
# the library directory GNUInstallDirs chose (lib, or lib64 on some systems)
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
for f in include/bufpool.h "$libdir"/libbufpool.a "$libdir"/libbufpool-malloc.so \
         "$libdir"/libbufpool-malloc-checked.so "$libdir"/pkgconfig/bufpool.pc \
         "$libdir"/pkgconfig/bufpool-checked.pc "$libdir"/cmake/bufpool/bufpoolConfig.cmake \
         "$libdir"/cmake/bufpool/bufpoolConfigVersion.cmake; do
    [[ -e $prefix/$f ]] || fail "not installed: $f"
done
echo "ok installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

lib=$prefix/$libdir
for pair in "libbufpool.so $soname" "libbufpool-checked.so $checked_soname"; do
    read -r link name <<<"$pair"
    [[ $name == "$link".[0-9]* ]] || fail "$link: the build names its soname '$name', not $link.MAJOR"
    # (output captured first: grep -q ending a pipe early would fail it under pipefail)
    dynamic=$(readelf -d "$lib/$link")
    grep -qF "Library soname: [$name]" <<<"$dynamic" || fail "$link: no soname $name"
    [[ $(readlink "$lib/$link") == "$name" ]] || fail "$link is not a link to its soname $name"
    echo "ok soname $name"
done

expect_run() { # what command...: the program must print "installed 9"
    local what=$1 out
    shift
    out=$("$@") || fail "$what: exit status $?"
    [[ $out == "installed 9" ]] || fail "$what printed '$out'"
    echo "ok $what: $out"
}

export PKG_CONFIG_PATH=$lib/pkgconfig
[[ $(pkg-config --modversion bufpool) == 2.0.0 ]] || fail "pkg-config --modversion: $(pkg-config --modversion bufpool)"
flags="-std=c11 -Wall -Wextra -Wpedantic -Werror"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/with-pkg-config" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs bufpool)
expect_run "pkg-config" env LD_LIBRARY_PATH="$lib" "$prefix/with-pkg-config"
# The README's line for a prefix the loader does not search: the rpath from the .pc's libdir.
rpath="-Wl,-rpath,$(pkg-config --variable=libdir bufpool)"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/with-rpath" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs bufpool) "$rpath"
expect_run "pkg-config with -Wl,-rpath (no LD_LIBRARY_PATH)" env -u LD_LIBRARY_PATH "$prefix/with-rpath"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/with-pkg-config-static" "$src/tests/consumer/main.c" \
    $(pkg-config --cflags bufpool) $(pkg-config --static --libs bufpool | sed 's/-lbufpool\b/-l:libbufpool.a/')
! grep -q libbufpool <<<"$(ldd "$prefix/with-pkg-config-static")" || fail "the static build links libbufpool.so"
expect_run "pkg-config --static" "$prefix/with-pkg-config-static"

# shellcheck disable=SC2046
echo '#include <bufpool.h>' | g++ -std=c++11 -Wall -Wextra -Werror -fsyntax-only -x c++ - \
    $(pkg-config --cflags bufpool) || fail "bufpool.h does not compile as C++"
echo "ok bufpool.h compiles as C++"

expect_abort() { # what command...: a double free, stopped at the second free with the report
    # (naming the call that freed: bp_free, or free under the malloc library)
    local what=$1 out status=0
    shift
    out=$("$@" 2>"$prefix/stderr") || status=$?
    [[ $status -eq 134 ]] || fail "$what: exit status $status, not 134 (SIGABRT): $(cat "$prefix/stderr")"
    [[ $out == "freed once" ]] || fail "$what: the second free returned (stdout '$out')"
    grep -qE '^bufpool: [^ ]+\[[0-9]+\]: [a-z_]+\(0x[0-9a-f]+\): double free' "$prefix/stderr" ||
        fail "$what: no double-free report: $(cat "$prefix/stderr")"
    echo "ok $what: $(head -1 "$prefix/stderr")"
}

# The checked library through pkg-config: bufpool-checked.pc links libbufpool-checked.so.
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/checked" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs bufpool-checked) \
    "-Wl,-rpath,$(pkg-config --variable=libdir bufpool-checked)"
grep -q "$checked_soname => $lib" <<<"$(ldd "$prefix/checked")" ||
    fail "bufpool-checked.pc does not link $lib/$checked_soname"
expect_run "pkg-config bufpool-checked" "$prefix/checked"
# shellcheck disable=SC2046,SC2086
cc $flags -o "$prefix/double-free" "$src/tests/consumer/double_free.c" \
    $(pkg-config --cflags --libs bufpool-checked) "-Wl,-rpath,$(pkg-config --variable=libdir bufpool-checked)"
expect_abort "pkg-config bufpool-checked, double free" "$prefix/double-free"

for linkage in shared static checked; do
    dir=$prefix/consumer-$linkage
    target=bufpool::bufpool$([[ $linkage == shared ]] || echo "_$linkage")
    cmake -S "$src/tests/consumer" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DBUFPOOL_TARGET="$target" \
        >"$dir.log" 2>&1 || { cat "$dir.log"; fail "find_package(bufpool) configure ($target)"; }
    cmake --build "$dir" >>"$dir.log" 2>&1 || { cat "$dir.log"; fail "find_package build ($target)"; }
    linked=$(ldd "$dir/consumer")
    case $linkage in
    static) ! grep -q libbufpool <<<"$linked" || fail "$target links libbufpool.so" ;;
    shared) grep -q "$soname => $lib" <<<"$linked" || fail "$target does not link $lib/$soname" ;;
    checked) grep -q "$checked_soname => $lib" <<<"$linked" || fail "$target does not link $lib/$checked_soname" ;;
    esac
    expect_run "find_package(bufpool) $target" "$dir/consumer"
    if [[ $linkage == checked ]]; then
        expect_abort "find_package(bufpool) $target, double free" "$dir/double_free"
    fi
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

# The installed checked malloc library: the same program works, and a double free() is
# stopped at the call.
out=$(LD_PRELOAD=$lib/libbufpool-malloc-checked.so "$prefix/plain")
[[ $out == 112 ]] || fail "under LD_PRELOAD=libbufpool-malloc-checked.so malloc_usable_size(malloc(100)) = $out"
echo "ok LD_PRELOAD=libbufpool-malloc-checked.so: malloc_usable_size(malloc(100)) = $out"
cat >"$prefix/double-free-malloc.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    void *volatile p = malloc(100);
    free(p);
    printf("freed once\n");
    fflush(stdout);
    free(p);
    printf("freed twice\n");
    return 0;
}
EOF
cc -fno-builtin -o "$prefix/double-free-malloc" "$prefix/double-free-malloc.c"
expect_abort "LD_PRELOAD=libbufpool-malloc-checked.so, double free()" \
    env LD_PRELOAD="$lib/libbufpool-malloc-checked.so" "$prefix/double-free-malloc"
