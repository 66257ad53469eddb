#!/usr/bin/env bash
# The README's test command: every configuration below is built and its ctest suite run;
# ends with a line "N passed, N failed" and fails when anything failed.
#   checked  gcc, internal checks on         asan   gcc, ASan + UBSan, checks on
#   tsan     clang, ThreadSanitizer          clang  clang release build, checks off
#   format   clang-format over every source  bench  the benchmark suite, --quick (smoke)
#   valgrind the single-threaded tests under memcheck, in a build announcing blocks to it
#   fuzz     each libFuzzer target: its corpus as regression tests, then 30 s of fuzzing
#   layers   scripts/check-layers.sh: each header compiles alone, no include of a higher layer
# BP_TEST_CONFIGS selects a subset, e.g. BP_TEST_CONFIGS="checked format".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
configs=${BP_TEST_CONFIGS:-checked asan tsan clang valgrind fuzz format layers bench}
jobs=$(nproc)
passed=0
failed=0
failures=()

record() { # name status
    if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

run_ctest() { # name build-dir sanitizer-name cmake-args...
    local name=$1 dir=$2 san=$3
    shift 3
    echo "=== $name: configure and build ($*)"
    if ! cmake -S . -B "$dir" "$@" >"$dir.log" 2>&1 || ! cmake --build "$dir" -j"$jobs" >>"$dir.log" 2>&1; then
        tail -40 "$dir.log"
        record "$name: build" 1
        return
    fi
    echo "=== $name: ctest"
    local out
    out=$(cd "$dir" && BP_SANITIZER=$san ctest --output-on-failure -j2 2>&1)
    echo "$out" | tail -n 60
    local summary total bad
    summary=$(echo "$out" | grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' | tail -1)
    if [[ -z $summary ]]; then
        record "$name: ctest did not finish" 1
        return
    fi
    bad=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    total=$(echo "$summary" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
    passed=$((passed + total - bad))
    failed=$((failed + bad))
    [[ $bad -eq 0 ]] || failures+=("$name: $bad of $total")
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
mkdir -p build
for c in $configs; do
    case $c in
    checked) run_ctest checked build/checked "" -DCMAKE_C_COMPILER=gcc -DBP_CHECKED=ON ;;
    asan) run_ctest asan build/asan address -DCMAKE_C_COMPILER=gcc -DBP_CHECKED=ON \
        -DBP_SANITIZE=address,undefined ;;
    tsan) run_ctest tsan build/tsan thread -DCMAKE_C_COMPILER=clang -DBP_CHECKED=ON \
        -DBP_SANITIZE=thread ;;
    clang) run_ctest clang build/clang "" -DCMAKE_C_COMPILER=clang ;;
    valgrind)
        echo "=== valgrind: memcheck (--error-exitcode=1) over a build that announces blocks"
        if ! cmake -S . -B build/valgrind -DCMAKE_C_COMPILER=gcc -DBP_CHECKED=ON -DBP_VALGRIND=ON \
                >build/valgrind.log 2>&1 ||
            ! cmake --build build/valgrind -j"$jobs" >>build/valgrind.log 2>&1; then
            tail -30 build/valgrind.log
            record "valgrind: build" 1
        else
            for t in test_size_classes test_chunk test_api test_os_failure test_model test_buf \
                     test_buf_model test_leak test_stats test_memory test_valgrind_visibility; do
                if (cd build/valgrind && BP_SANITIZER=valgrind valgrind -q --error-exitcode=1 \
                        --leak-check=no "./$t" >"../valgrind-$t.log" 2>&1); then
                    echo "ok      valgrind $t"
                    record "valgrind $t" 0
                else
                    echo "FAILED  valgrind $t (build/valgrind-$t.log)"
                    tail -20 "build/valgrind-$t.log"
                    record "valgrind $t" 1
                fi
            done
        fi ;;
    fuzz)
        echo "=== fuzz: libFuzzer targets (clang, ASan + UBSan)"
        if ! cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DBP_FUZZ=ON -DBP_CHECKED=ON \
                >build/fuzz.log 2>&1 ||
            ! cmake --build build/fuzz -j"$jobs" --target fuzz_engine fuzz_buf fuzz_conf fuzz_frame \
                >>build/fuzz.log 2>&1; then
            tail -30 build/fuzz.log
            record "fuzz: build" 1
        else
            for target in engine buf conf frame; do
                exe=build/fuzz/fuzz_$target
                if "$exe" -close_fd_mask=2 -artifact_prefix=build/ fuzz/corpus/$target/* \
                        >"build/fuzz-$target-corpus.log" 2>&1; then
                    record "fuzz $target corpus" 0
                    echo "ok      fuzz_$target: corpus replayed"
                else
                    record "fuzz $target corpus" 1
                    tail -30 "build/fuzz-$target-corpus.log"
                fi
                work=build/fuzz-corpus-$target
                rm -rf "$work" && mkdir -p "$work" && cp fuzz/corpus/$target/* "$work"/
                if "$exe" -close_fd_mask=2 -artifact_prefix=build/ \
                        -max_total_time="${BP_FUZZ_SECONDS:-30}" \
                        -print_final_stats=1 "$work" >"build/fuzz-$target.log" 2>&1; then
                    record "fuzz $target" 0
                    echo "ok      fuzz_$target: $(grep -o 'number_of_executed_units: [0-9]*' \
                        "build/fuzz-$target.log" | grep -o '[0-9]*') runs," \
                        "$(grep -o 'cov: [0-9]*' "build/fuzz-$target.log" | tail -1)"
                else
                    record "fuzz $target" 1
                    tail -40 "build/fuzz-$target.log"
                fi
            done
        fi ;;
    format)
        echo "=== format"
        bash scripts/format-check.sh
        record format $? ;;
    layers)
        echo "=== layers"
        bash scripts/check-layers.sh
        record layers $? ;;
    bench)
        echo "=== bench --quick (smoke run: figures are not measurements)"
        bash scripts/bench.sh --quick --out build/bench-quick
        record "bench --quick" $? ;;
    *) echo "unknown configuration '$c'"; record "$c" 1 ;;
    esac
done
echo
[[ ${#failures[@]} -eq 0 ]] || printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
