#!/usr/bin/env bash
# The libraries define only their API: libbufpool.so exports bp_* alone, libbufpool-malloc.so
# exactly the malloc family, and libbufpool.a's global symbols are all bp_* (a static link
# must not collide with a program's own names).
#   tests/check_symbols.sh LIBBUFPOOL_SO LIBBUFPOOL_MALLOC_SO LIBBUFPOOL_A
set -uo pipefail
status=0
api=$(nm -D --defined-only "$1" | awk '{print $3}')
stray=$(grep -v '^bp_' <<<"$api")
if [[ -n $stray ]]; then
    echo "libbufpool.so exports more than bp_*:"; echo "$stray"; status=1
fi
echo "libbufpool.so: $(wc -l <<<"$api") symbols, all bp_*"
family="malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc pvalloc malloc_usable_size free_sized free_aligned_sized malloc_trim"
shim=$(nm -D --defined-only "$2" | awk '{print $3}' | sort)
expected=$(tr ' ' '\n' <<<"$family" | sort)
if [[ $shim != "$expected" ]]; then
    echo "libbufpool-malloc.so exports differ from the malloc family:"
    diff <(echo "$expected") <(echo "$shim"); status=1
fi
echo "libbufpool-malloc.so: exactly the malloc family ($(wc -l <<<"$shim") symbols)"
globals=$(nm -g --defined-only "$3" | awk 'NF == 3 {print $3}')
stray=$(grep -v '^bp_' <<<"$globals")
if [[ -n $stray ]]; then
    echo "libbufpool.a defines global symbols outside bp_*:"; echo "$stray"; status=1
fi
echo "libbufpool.a: $(wc -l <<<"$globals") global symbols, all bp_*"
exit $status
