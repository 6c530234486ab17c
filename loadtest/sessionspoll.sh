#!/usr/bin/env bash
# sessionspoll.sh — what asking relayd for its sessions costs the sessions:
# with HELD [9000] idle sessions open, rr load (64 B echo, a new connection
# each, concurrency 50, RR_DUR [10s]) runs ROUNDS [5] times while a poller
# fetches `GET /sessions?limit=LIMIT` [1000] POLL_HZ [1] times a second (a
# dashboard, or an operator's `watch relayd ctl sessions`), and ROUNDS
# times while the same poller fetches /healthz instead (so both runs pay
# for the poller's own curl processes on these shared cores), in
# alternating order; POLL_HZ=0 polls back to back (then the two pollers
# make different numbers of requests). It prints each run, the medians of
# rr sessions/s and rtt p99 with each poller, the median of the rounds'
# ratios (each round's pair ran back to back, so the machine's drift
# between rounds cancels), and the /sessions latencies.
#
#   loadtest/sessionspoll.sh
set -euo pipefail

HELD=${HELD:-9000}
RR_DUR=${RR_DUR:-10s}
ROUNDS=${ROUNDS:-5}
POLL_HZ=${POLL_HZ:-1}
LIMIT=${LIMIT:-1000}
NOFILE=20000

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-sessionspoll.XXXXXX)
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
start sink "$R" sink --listen "127.0.0.1:$sink_port" --mode echo
rport=$(free_port)
aport=$(free_port)
cat >"$tmp/relayd.yaml" <<EOF
listeners:
  - name: l0
    listen: "127.0.0.1:$rport"
    upstreams: ["127.0.0.1:$sink_port"]
log:
  access: false
admin:
  listen: "127.0.0.1:$aport"
EOF
start relayd "$R" serve -c "$tmp/relayd.yaml"
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$aport/readyz")" = 200 ] && break; sleep 0.1; done

# The held sessions, for every round and a little longer.
hold_s=$((ROUNDS * 2 * (${RR_DUR%s} + 5) + 60))
(ulimit -n $NOFILE && exec timeout $((hold_s + 60)) "$R" load --target "127.0.0.1:$rport" --mode idle --sessions "$HELD" \
	--duration "${hold_s}s" --json --progress off --held-fd 3) >"$tmp/idle.json" 2>"$tmp/idle.err" 3>"$tmp/held" &
pids+=("$!")
for _ in $(seq 1200); do grep -q held "$tmp/held" 2>/dev/null && break; sleep 0.1; done
grep -q held "$tmp/held" || { log "the $HELD idle sessions were not all held: $(tail -3 "$tmp/idle.err")"; exit 1; }
log "holding $HELD sessions; $(curl -s "127.0.0.1:$aport/sessions?limit=1" | jq -r .total) listed by /sessions"

# poll PATH FILE: fetch PATH at POLL_HZ until killed, one time_total (s) a line.
poll() {
	local gap=0
	[ "$POLL_HZ" != 0 ] && gap=$(awk -v hz="$POLL_HZ" 'BEGIN {print 1 / hz}')
	while :; do
		curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$aport$1" >>"$2"
		[ "$gap" != 0 ] && sleep "$gap"
	done
}

rr() { # rr NAME: one rr run into $tmp/NAME.json
	(ulimit -n $NOFILE && exec timeout 120 "$R" load --target "127.0.0.1:$rport" --mode rr --size 64 --concurrency 50 \
		--duration "$RR_DUR" --json --progress off) >"$tmp/$1.json" 2>"$tmp/$1.err" || log "$1: $(tail -1 "$tmp/$1.err")"
}

for i in $(seq "$ROUNDS"); do
	order="healthz sessions"
	[ $((i % 2)) = 0 ] && order="sessions healthz"
	for mode in $order; do
		path=/healthz
		[ "$mode" = sessions ] && path="/sessions?limit=$LIMIT"
		poll "$path" "$tmp/poll.$mode.$i.txt" &
		poller=$!
		rr "$mode.$i"
		kill "$poller" 2>/dev/null || true
		wait "$poller" 2>/dev/null || true
		printf 'round %d polling %-9s: %s sessions/s, rtt p99 %s ms\n' "$i" "$path" \
			"$(jq -r '.sessions_per_sec | floor' "$tmp/$mode.$i.json")" "$(jq -r '.rtt.p99_us / 1000' "$tmp/$mode.$i.json")"
	done
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
med() { for f in "$tmp/$1".*.json; do jq -r "$2" "$f"; done | median; }
rate_off=$(med healthz .sessions_per_sec)
rate_on=$(med sessions .sessions_per_sec)
p99_off=$(med healthz '.rtt.p99_us / 1000')
p99_on=$(med sessions '.rtt.p99_us / 1000')
polls=$(cat "$tmp"/poll.sessions.*.txt | wc -l)
# ratio EXPR: the median over the rounds of sessions/healthz for EXPR.
ratio() {
	for i in $(seq "$ROUNDS"); do
		awk -v a="$(jq -r "$1" "$tmp/sessions.$i.json")" -v b="$(jq -r "$1" "$tmp/healthz.$i.json")" 'BEGIN {print a / b}'
	done | median
}
printf '\n%s, %s CPUs; %d held sessions; rr 64 B x50 for %s; %d rounds, alternating; polling at %s/s\n' \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$HELD" "$RR_DUR" "$ROUNDS" "$POLL_HZ"
printf 'rr sessions/s: %.0f polling /healthz, %.0f polling /sessions?limit=%s; median ratio of the rounds %.3fx\n' \
	"$rate_off" "$rate_on" "$LIMIT" "$(ratio .sessions_per_sec)"
printf 'rr rtt p99:    %.2f ms polling /healthz, %.2f ms polling /sessions; median ratio of the rounds %.3fx\n' \
	"$p99_off" "$p99_on" "$(ratio .rtt.p99_us)"
printf '/sessions answers: %d, median %.1f ms, max %.1f ms\n' "$polls" \
	"$(cat "$tmp"/poll.sessions.*.txt | awk '{print $1 * 1000}' | median)" \
	"$(cat "$tmp"/poll.sessions.*.txt | awk '{print $1 * 1000}' | sort -g | tail -1)"
