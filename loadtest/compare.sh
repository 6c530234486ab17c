#!/usr/bin/env bash
# compare.sh — run the same workloads directly against a sink and through
# HAProxy, nginx (stream) and relayd, all on 127.0.0.1, and print one table.
#
#   sudo loadtest/compare.sh            # from anywhere in the repo; runs as root
#
# Workloads, in this order per system (environment overrides in brackets):
#   idle  IDLE_SESSIONS [8000] held sessions, each proven by one echo
#         -> RSS growth of the system under test per session (all its processes)
#   rr    64-byte echo, 50 at once, for RR_DUR [10s]      -> sessions/s, RTT p99
#   bulk  BULK_STREAMS [2] streams both ways through an echo sink, BULK_DUR [5s]
#         -> Gbit/s counted in both directions (client sent + received)
# Every process this script starts gets `ulimit -n 20000` (the per-process
# limit here); 8000 idle sessions need 16,000 descriptors in a one-process
# relay, so 10,000 would not fit HAProxy or relayd.
#
# Peers: haproxy and nginx + its stream module are installed with apt-get when
# missing. Everything started here is stopped by PID on exit.
set -euo pipefail

RR_DUR=${RR_DUR:-10s}
BULK_DUR=${BULK_DUR:-5s}
BULK_STREAMS=${BULK_STREAMS:-2}
IDLE_SESSIONS=${IDLE_SESSIONS:-8000}
NOFILE=20000

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-compare.XXXXXX)
pids=()
made_policy=""

cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

# --- peers ---------------------------------------------------------------
stream_module() {
	local m
	for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
		[ -f "$m" ] && { echo "$m"; return; }
	done
	# Built in (nginx -V lists --with-stream without =dynamic)?
	if command -v nginx >/dev/null && nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)'; then echo builtin; fi
}

if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null || [ -z "$(stream_module)" ]; then
	log "installing haproxy, nginx and its stream module with apt-get"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Keep the packages from starting their system services: we start
		# our own instances and would not own those.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends haproxy nginx libnginx-mod-stream >/dev/null
fi
mod=$(stream_module)
[ -n "$mod" ] || { log "nginx stream module not found"; exit 1; }

# --- relayd ----------------------------------------------------------------
log "building relayd"
(cd "$repo" && go build -o "$tmp/relayd" ./cmd/relayd)
R="$tmp/relayd"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
	shuf -i 20000-30000 -n 1; }

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# start NAME CMD...: run CMD in the background with the descriptor limit;
# its PID is left in $last_pid (not printed: a command substitution would
# run this in a subshell and lose the PID list).
start() {
	local name=$1
	shift
	(ulimit -n $NOFILE && exec "$@") >"$tmp/$name.out" 2>"$tmp/$name.err" &
	last_pid=$!
	pids+=("$last_pid")
}

sink_port=$(free_port)
start sink "$R" sink --listen "127.0.0.1:$sink_port" --mode echo
sink_pid=$last_pid
wait_port "$sink_port" || { log "sink did not start: $(cat "$tmp/sink.err")"; exit 1; }

hap_port=$(free_port)
cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 9900
    log stderr format raw local0 emerg
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    maxconn 9900
frontend fe
    bind 127.0.0.1:$hap_port
    default_backend be
backend be
    server sink 127.0.0.1:$sink_port
EOF
start haproxy haproxy -db -f "$tmp/haproxy.cfg"
hap_pid=$last_pid

ngx_port=$(free_port)
load_line="load_module $mod;"
[ "$mod" = builtin ] && load_line=""
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
$load_line
worker_processes 2;
worker_rlimit_nofile $NOFILE;
error_log $tmp/nginx/error.log error;
pid $tmp/nginx/nginx.pid;
events { worker_connections 19000; multi_accept on; }
stream {
    upstream sink { server 127.0.0.1:$sink_port; }
    server {
        listen 127.0.0.1:$ngx_port reuseport;
        proxy_pass sink;
        proxy_connect_timeout 5s;
        proxy_timeout 10m;
    }
}
EOF
start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" -g 'daemon off;'
ngx_pid=$last_pid

rly_port=$(free_port)
start relayd "$R" serve --listen "127.0.0.1:$rly_port" --upstream "127.0.0.1:$sink_port"
rly_pid=$last_pid

for sys in haproxy:$hap_port nginx:$ngx_port relayd:$rly_port; do
	wait_port "${sys#*:}" || log "${sys%%:*} is not accepting on ${sys#*:}: $(tail -3 "$tmp/${sys%%:*}.err")"
done

# --- measurements ------------------------------------------------------------
# jget FILE EXPR: a number from the one-object JSON written by relayd load.
jget() { jq -r "$2 // 0" "$1" 2>/dev/null || echo 0; }
if ! command -v jq >/dev/null; then
	# No jq: pull "key":number (first match of the last path element).
	jget() {
		local key=${2##*.}
		grep -o "\"$key\":[0-9.e+-]*" "$1" 2>/dev/null | head -1 | cut -d: -f2 || echo 0
	}
fi

# load NAME MODE ARGS...: one `relayd load --json` run into $tmp/NAME.MODE.json.
load() {
	local name=$1 mode=$2
	shift 2
	(ulimit -n $NOFILE && "$R" load --mode "$mode" --json --max-errors -1 "$@") >"$tmp/$name.$mode.json" 2>>"$tmp/$name.load.err"
}

# pids_of PID: PID and its children (nginx workers).
pids_of() { echo "$1$(pgrep -P "$1" | sed 's/^/,/' | tr -d '\n')"; }

declare -A sps p99 gbps rss ok
run_system() {
	local name=$1 port=$2 pid=$3 e
	if ! kill -0 "$pid" 2>/dev/null || ! wait_port "$port"; then
		ok[$name]=0
		return
	fi
	log "measuring $name (127.0.0.1:$port)"
	ok[$name]=1
	# idle first, while the system's heap is still small: after rr and bulk
	# a garbage-collected process reuses freed memory and would show ~0 B.
	load "$name" idle --target "127.0.0.1:$port" --sessions "$IDLE_SESSIONS" --pid "$(pids_of "$pid")" || true
	load "$name" rr --target "127.0.0.1:$port" --size 64 --concurrency 50 --duration "$RR_DUR" || true
	load "$name" bulk --target "127.0.0.1:$port" --streams "$BULK_STREAMS" --direction both --duration "$BULK_DUR" || true
	sps[$name]=$(jget "$tmp/$name.rr.json" .sessions_per_sec)
	p99[$name]=$(jget "$tmp/$name.rr.json" .rtt.p99_us)
	gbps[$name]=$(jget "$tmp/$name.bulk.json" .bits_per_sec)
	rss[$name]=$(jget "$tmp/$name.idle.json" .target_rss_per_session_bytes)
	for m in rr bulk idle; do
		e=$(jget "$tmp/$name.$m.json" .errors_total)
		if [ "${e:-0}" != 0 ] || [ ! -s "$tmp/$name.$m.json" ]; then
			log "  $name $m: ${e:-?} errors $(jq -c '.errors' "$tmp/$name.$m.json" 2>/dev/null) $(tail -1 "$tmp/$name.load.err" 2>/dev/null)"
			[ "$m" = idle ] && [ ! -s "$tmp/$name.$m.json" ] && rss[$name]=""
		fi
	done
}

start_time=$(date +%s)
run_system direct "$sink_port" "$sink_pid"
run_system haproxy "$hap_port" "$hap_pid"
run_system nginx "$ngx_port" "$ngx_pid"
run_system relayd "$rly_port" "$rly_pid"

# --- table -----------------------------------------------------------------
printf '\n%s, %s, %s CPUs, kernel %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" "$(uname -r)"
printf 'haproxy %s; nginx %s; rr 64 B x50 for %s; bulk %s streams both ways for %s; idle %s sessions\n\n' \
	"$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')" "$(nginx -v 2>&1 | cut -d/ -f2)" \
	"$RR_DUR" "$BULK_STREAMS" "$BULK_DUR" "$IDLE_SESSIONS"
printf '%-8s | %10s | %9s | %11s | %20s | %s\n' system sessions/s "p99 (ms)" "bulk Gbit/s" "RSS per idle session" "ratio vs direct (rr / bulk)"
printf '%s\n' "---------|------------|-----------|-------------|----------------------|----------------------------"
for name in direct haproxy nginx relayd; do
	if [ "${ok[$name]:-0}" != 1 ]; then
		printf '%-8s | %10s | %9s | %11s | %20s | %s\n' "$name" n/a n/a n/a n/a n/a
		continue
	fi
	awk -v n="$name" -v s="${sps[$name]:-0}" -v p="${p99[$name]:-0}" -v g="${gbps[$name]:-0}" -v r="${rss[$name]}" \
		-v ds="${sps[direct]:-0}" -v dg="${gbps[direct]:-0}" 'BEGIN {
		rs = (r == "") ? "n/a" : sprintf("%.0f B", r)
		ratio = (ds > 0 && dg > 0) ? sprintf("%.2f / %.2f", s / ds, g / dg) : "n/a"
		if (n == "direct") ratio = "1.00 / 1.00"
		printf "%-8s | %10.0f | %9.2f | %11.2f | %20s | %s\n", n, s, p / 1000, g / 1e9, rs, ratio
	}'
done
printf '\n(direct = the sink itself: RSS column is the sink'"'"'s; %ss total)\n' "$(($(date +%s) - start_time))"
