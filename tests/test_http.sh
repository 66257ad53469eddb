#!/usr/bin/env bash
# test_http.sh SERVER: starts examples/http_server (either build of it) on a free port of
# 127.0.0.1 with 2 workers; drives it with wrk (-t2 -c64 -d2s against GET /static: no socket
# errors, no answer other than 2xx, some requests done), then with tests/http_client.py
# (pipelining, both echo framings, keep-alive, Connection: close, the error statuses), checks
# that 1,000 idle keep-alive connections cost it little memory, and ends it with SIGTERM,
# after which it must exit 0 having reported nothing. Every step has a time limit.
set -uo pipefail
server=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v wrk >/dev/null 2>&1; then
    echo "FAILED  wrk is not installed: scripts/deps.sh installs it (Debian's package wrk)"
    exit 1
fi
work=$(mktemp -d)
pid=
watchdog=
cleanup() {
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    [[ -n $watchdog ]] && kill "$watchdog" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
failed=0
ok() { echo "ok      $*"; }
fail() { echo "FAILED  $*"; failed=$((failed + 1)); }

# Not under timeout(1): that sends SIGTERM twice (to the server and to its process group),
# and an ASan build of the server hung at exit in 1 run of 4 that way. A watchdog bounds it.
"$server" 0 2 >"$work/out" 2>"$work/err" &
pid=$!
(sleep 100 && kill -KILL "$pid") >/dev/null 2>&1 &
watchdog=$!
port=
for _ in $(seq 100); do # up to 10 s for "listening on PORT"
    port=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$work/out")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $port ]]; then
    echo "FAILED  the server did not start"
    cat "$work/err"
    exit 1
fi
echo "server $(basename "$server") on port $port"

rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$pid/status"; }

# wrk: its summary has a "Socket errors" line only when there were some, and a "Non-2xx or
# 3xx responses" line only when there were some
if timeout -s KILL 30 wrk -t2 -c64 -d2s "http://127.0.0.1:$port/static" >"$work/wrk" 2>&1; then
    requests=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$work/wrk")
    errors=$(grep -E '^ *Socket errors:' "$work/wrk")
    non2xx=$(grep -E '^ *Non-2xx or 3xx responses:' "$work/wrk")
    if [[ -n $requests && $requests -gt 0 && -z $errors && -z $non2xx ]]; then
        ok "wrk -t2 -c64 -d2s: $requests requests, no socket errors, all 2xx" \
            "($(sed -n 's/^Requests\/sec: *//p' "$work/wrk") requests/s)"
    else
        fail "wrk: requests '${requests}' ${errors} ${non2xx}"
        cat "$work/wrk"
    fi
else
    fail "wrk did not finish"
    cat "$work/wrk"
fi

if timeout -s KILL 60 python3 "$here/http_client.py" check "$port" >"$work/client" 2>&1; then
    ok "http_client.py: $(grep -c '^ok' "$work/client") protocol checks"
else
    fail "http_client.py"
    cat "$work/client"
fi

# Idle connections hold no buffers: 1,000 of them, each after one answer, may add to the
# server's RSS their connection records (~0.3 KiB each), not an input buffer each (2 KiB:
# a server keeping them adds 2.7 KiB a connection).
conns=1000
before=$(rss_kib)
coproc idle { timeout -s KILL 60 python3 "$here/http_client.py" idle "$port" "$conns"; }
idle_pid=$idle_PID
read -r -t 60 ready <&"${idle[0]}"
after=$(rss_kib)
if [[ -z $before || -z $after ]]; then
    fail "no VmRSS in /proc/$pid/status"
elif [[ $ready == "ready $conns" ]]; then
    per=$(((after - before) * 1024 / conns))
    if [[ -n ${BP_SANITIZER:-} ]]; then # shadow memory: the figure says nothing there
        ok "$conns idle keep-alive connections answered (RSS not judged under $BP_SANITIZER)"
    elif [[ $per -le 1024 ]]; then
        ok "$conns idle keep-alive connections: RSS ${before} -> ${after} KiB ($per B each)"
    else
        fail "$conns idle keep-alive connections: RSS ${before} -> ${after} KiB ($per B each," \
            "over 1024)"
    fi
else
    fail "the idle client did not get its connections answered: '$ready'"
fi
[[ -n ${idle[1]:-} ]] && exec {idle[1]}>&- # its stdin ends: it closes them
wait "$idle_pid"

kill -TERM "$pid"
wait "$pid"
status=$?
pid=
kill "$watchdog" 2>/dev/null
watchdog=
if [[ $status -eq 0 && ! -s $work/err ]]; then
    ok "SIGTERM: exit 0, nothing on stderr"
else
    fail "SIGTERM: exit status $status"
    head -40 "$work/err"
fi
[[ $failed -eq 0 ]] && echo "all passed" || echo "$failed failed"
[[ $failed -eq 0 ]]
