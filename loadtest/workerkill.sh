#!/usr/bin/env bash
# workerkill.sh — kill -9 one of WORKERS [4] relayd workers while they hold
# HELD [20000] sessions (about 5,000 each) and new sessions arrive at RATE
# [1000]/s; report what ended, what failed, and how soon the replacement
# served.
#
#   loadtest/workerkill.sh
#
# The held sessions come from `relayd load --mode idle`; the new ones from
# `relayd load --mode rr --connect-rate RATE` for RR_DUR [10s], each a fresh
# connection with a 64-byte echo, all from SOURCES (steered to every
# worker). Worker 1 is killed KILL_AFTER [3s] into the rr run. Expected:
# only worker 1's held sessions end (established count drops by its share),
# the rr run has 0 errors (connects that arrive meanwhile wait in the kernel
# queue of worker 1's socket, which the master holds), and the master logs
# the replacement ready well within a second.
set -euo pipefail

WORKERS=${WORKERS:-4}
HELD=${HELD:-20000}
RATE=${RATE:-1000}
RR_DUR=${RR_DUR:-10s}
KILL_AFTER=${KILL_AFTER:-3}
SOURCES=${SOURCES:-127.0.0.2-127.0.1.250}
NOFILE=20000

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-workerkill.XXXXXX)
. "$repo/loadtest/lib.sh"
cleanup() {
	stop_started
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$repo" && go build -o "$tmp/relayd" ./cmd/relayd)
R="$tmp/relayd"
sink_port=$(free_port)
start sink "$R" sink --listen "127.0.0.1:$sink_port" --procs 2
rport=$(free_port)
aport=$(free_port)
cat >"$tmp/relayd.yaml" <<EOF
processes: $WORKERS
listeners:
  - name: l0
    listen: "127.0.0.1:$rport"
    upstreams: ["127.0.0.1:$sink_port"]
    source: "127.0.1.1-127.0.1.4"
log:
  access: false
admin:
  listen: "127.0.0.1:$aport"
EOF
start relayd "$R" serve -c "$tmp/relayd.yaml"
master=$last_pid
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$aport/readyz")" = 200 ] && break; sleep 0.1; done

(ulimit -n $NOFILE && exec timeout 300 "$R" load --target "127.0.0.1:$rport" --mode idle --sessions "$HELD" --procs 2 \
	--source-ips "$SOURCES" --duration 60s --json --progress off --max-errors -1 --held-fd 3) >"$tmp/idle.json" 2>"$tmp/idle.err" 3>"$tmp/held" &
idle=$!
pids+=("$idle")
for _ in $(seq 1200); do grep -q held "$tmp/held" 2>/dev/null && break; sleep 0.1; done
est() { ss -Htn state established "( sport = :$rport )" | wc -l; }
before=$(est)
victim=$(grep '"msg":"worker ready","worker":1,' "$tmp/relayd.err" | tail -1 | sed 's/.*"pid":\([0-9]*\).*/\1/')
share=$(curl -s "127.0.0.1:$aport/metrics" | awk '/^relayd_loop_sessions_active/ && /worker="1"/ {s += $2} END {print s}')

(ulimit -n $NOFILE && exec timeout 120 "$R" load --target "127.0.0.1:$rport" --mode rr --connect-rate "$RATE" \
	--concurrency 200 --duration "$RR_DUR" --source-ips "$SOURCES" --json --progress off --max-errors -1) >"$tmp/rr.json" 2>"$tmp/rr.err" &
rr=$!
pids+=("$rr")
sleep "$KILL_AFTER"
kill -KILL "$victim"
killed_at=$(date +%s.%N)
for _ in $(seq 100); do
	grep '"msg":"worker ready","worker":1,' "$tmp/relayd.err" | grep -vq "\"pid\":$victim}" && break
	sleep 0.05
done
ready_line=$(grep '"msg":"worker ready","worker":1,' "$tmp/relayd.err" | tail -1)
ready_ts=$(echo "$ready_line" | sed 's/.*"ts":"\([^"]*\)".*/\1/')
back_ms=$(echo "($(date -d "$ready_ts" +%s.%N) - $killed_at) * 1000" | bc)
after=$(est)
wait "$rr" || true
echo "workers=$WORKERS held=$HELD (worker 1 held $share) rr rate=$RATE/s for $RR_DUR, kill -9 of worker 1 (pid $victim) after ${KILL_AFTER}s"
echo "established client sessions: $before before the kill, $after after (ended: $((before - after)))"
printf 'replacement ready %.0f ms after the kill\n' "$back_ms"
jq -c '{rr_sessions: .sessions, rr_errors: .errors_total, rr_error_kinds: (.errors | with_entries(select(.value > 0))), connect_p99_ms: (.connect.p99_us/1000), connect_max_ms: (.connect.max_us/1000), rtt_p99_ms: (.rtt.p99_us/1000), rtt_max_ms: (.rtt.max_us/1000)}' "$tmp/rr.json"
curl -s "127.0.0.1:$aport/metrics" | grep -E '^relayd_worker_restarts_total|^relayd_workers'
