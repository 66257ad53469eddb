#!/usr/bin/env bash
# The libraries define only their API: libbufpool.so and libbufpool-checked.so export bp_*
# alone (the same names), libbufpool-malloc.so and libbufpool-malloc-checked.so exactly the
# malloc family, and libbufpool.a's global symbols are all bp_* (a static link must not
# collide with a program's own names).
#   tests/check_symbols.sh LIBBUFPOOL_SO LIBBUFPOOL_MALLOC_SO LIBBUFPOOL_A \
#                          LIBBUFPOOL_CHECKED_SO LIBBUFPOOL_MALLOC_CHECKED_SO
set -uo pipefail
if [[ $# -ne 5 ]]; then
    sed -n 's/^#   //p' "$0" >&2
    exit 2
fi
status=0
exports() { nm -D --defined-only "$1" | awk '{print $3}' | sort; }

api_only() { # library: every exported symbol is bp_*
    local name api stray
    name=$(basename "$1")
    api=$(exports "$1")
    stray=$(grep -v '^bp_' <<<"$api")
    if [[ -n $stray ]]; then
        echo "$name exports more than bp_*:"; echo "$stray"; status=1
    fi
    echo "$name: $(wc -l <<<"$api") symbols, all bp_*"
}
api_only "$1"
api_only "$4"
if [[ $(exports "$1") != "$(exports "$4")" ]]; then
    echo "$(basename "$4") and $(basename "$1") export different names:"
    diff <(exports "$1") <(exports "$4"); status=1
fi

family="malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc pvalloc malloc_usable_size free_sized free_aligned_sized malloc_trim"
expected=$(tr ' ' '\n' <<<"$family" | sort)
malloc_family_only() { # library: it exports exactly the malloc family
    local name shim
    name=$(basename "$1")
    shim=$(exports "$1")
    if [[ $shim != "$expected" ]]; then
        echo "$name exports differ from the malloc family:"
        diff <(echo "$expected") <(echo "$shim"); status=1
    fi
    echo "$name: exactly the malloc family ($(wc -l <<<"$shim") symbols)"
}
malloc_family_only "$2"
malloc_family_only "$5"

globals=$(nm -g --defined-only "$3" | awk 'NF == 3 {print $3}')
stray=$(grep -v '^bp_' <<<"$globals")
if [[ -n $stray ]]; then
    echo "libbufpool.a defines global symbols outside bp_*:"; echo "$stray"; status=1
fi
echo "libbufpool.a: $(wc -l <<<"$globals") global symbols, all bp_*"
exit $status
