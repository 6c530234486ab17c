#!/usr/bin/env bash
# compare.sh — run the same workloads directly against a sink and through
# HAProxy (with and without splice), nginx (stream), a Go io.Copy relay and
# relayd, all on 127.0.0.1, in alternating order over ROUNDS rounds, and
# print one table of medians.
#
#   sudo loadtest/compare.sh            # from anywhere in the repo; runs as root
#
# SYSTEMS [direct haproxy haproxy-splice nginx gorelay relayd] picks the
# systems; REPORT [./relayd-compare.html] is where the one HTML report of
# every system's rr (every session recorded) and ka runs of the first round
# goes (`relayd load report`), beside the table printed at the end.
#
# Workloads per system and round (environment overrides in brackets):
#   idle  IDLE_SESSIONS [8000] held sessions (the Go relay: 3000 at most),
#         each proven by one echo, in the first round on a fresh process
#         -> RSS growth per session
#   rr    64-byte echo, 50 at once, a new connection each, RR_DUR [10s]
#         -> sessions/s, RTT p99, the proxy's CPU µs and context switches
#         per session
#   ka    64-byte ping-pong on 50 persistent connections, KA_DUR [5s]
#         -> requests/s, p99, context switches per request
#   bulk  1 and 4 streams up into a discard sink, BULK_DUR [5s] each
#         -> Gbit/s, CPU s per GB, max/min per-stream rate of the 4
#   sys   SYSCALL_SESSIONS [2000] rr sessions, 10 at once, under
#         strace -c -f, once after the rounds -> system calls per session
# CPU and context switches are read from /proc/PID/stat and
# /proc/PID/task/*/status of the system's processes (nginx: master and
# workers; the Go relay: both of its processes) before and after each run.
# Every process this script starts gets `ulimit -n 20000` (the per-process
# limit here).
#
# Peers: haproxy, nginx and its stream module, strace and jq are installed
# with apt-get when missing. Everything started here is stopped by PID on
# exit.
set -euo pipefail

RR_DUR=${RR_DUR:-10s}
KA_DUR=${KA_DUR:-5s}
BULK_DUR=${BULK_DUR:-5s}
IDLE_SESSIONS=${IDLE_SESSIONS:-8000}
ROUNDS=${ROUNDS:-2}
SYSCALL_SESSIONS=${SYSCALL_SESSIONS:-2000}
SYSTEMS=${SYSTEMS:-direct haproxy haproxy-splice nginx gorelay relayd}
REPORT=${REPORT:-$PWD/relayd-compare.html}
NOFILE=20000
# want NAME: NAME is one of the SYSTEMS.
want() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-compare.XXXXXX)
made_policy=""
. "$repo/loadtest/lib.sh"

cleanup() {
	stop_started
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- peers ---------------------------------------------------------------

pkgs=()
command -v jq >/dev/null || pkgs+=(jq)
[ "$SYSCALL_SESSIONS" -gt 0 ] && ! command -v strace >/dev/null && pkgs+=(strace)
{ want haproxy || want haproxy-splice; } && ! command -v haproxy >/dev/null && pkgs+=(haproxy)
want nginx && { ! command -v nginx >/dev/null || [ -z "$(stream_module)" ]; } && pkgs+=(nginx libnginx-mod-stream)
if [ ${#pkgs[@]} -gt 0 ]; then
	log "installing ${pkgs[*]} with apt-get"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Keep the packages from starting their system services: we start
		# our own instances and would not own those.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
mod=""
if want nginx; then
	mod=$(stream_module)
	[ -n "$mod" ] || { log "nginx stream module not found"; exit 1; }
fi

# --- relayd ----------------------------------------------------------------
log "building relayd and the Go reference relay"
(cd "$repo" && go build -o "$tmp/relayd" ./cmd/relayd && go build -o "$tmp/gorelay" ./loadtest/gorelay)
R="$tmp/relayd"


# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}


sink_port=$(free_port)
start sink "$R" sink --listen "127.0.0.1:$sink_port" --mode echo
sink_pid=$last_pid
dsink_port=$(free_port)
# --balance: the 4 bulk streams land on different sink loops, so their
# spread is the proxy's, not the kernel's hash onto the sink's loops.
start dsink "$R" sink --listen "127.0.0.1:$dsink_port" --mode discard --balance
dsink_pid=$last_pid
if ! wait_port "$sink_port" || ! wait_port "$dsink_port"; then
	log "the sinks did not start: $(cat "$tmp/sink.err" "$tmp/dsink.err")"
	exit 1
fi

# Every system has two frontends: port[NAME] to the echo sink (idle, rr, ka,
# sys) and bport[NAME] to the discard sink (bulk).
declare -A port bport pid

# haproxy_start NAME SPLICE: HAProxy 2 threads, splice-auto when SPLICE is 1.
haproxy_start() {
	local name=$1 splice=$2 g="" d=""
	port[$name]=$(free_port)
	bport[$name]=$(free_port)
	if [ "$splice" = 1 ]; then
		g="    maxpipes 64"           # as many as relayd's pool on 2 loops
		d="    option splice-auto"
	fi
	cat >"$tmp/$name.cfg" <<EOF
global
    nbthread 2
    maxconn 9000
$g
    log stderr format raw local0 emerg
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    maxconn 9000
$d
frontend fe
    bind 127.0.0.1:${port[$name]}
    default_backend be
backend be
    server sink 127.0.0.1:$sink_port
frontend feb
    bind 127.0.0.1:${bport[$name]}
    default_backend bb
backend bb
    server sink 127.0.0.1:$dsink_port
EOF
	start "$name" haproxy -db -f "$tmp/$name.cfg"
	pid[$name]=$last_pid
}
want haproxy && haproxy_start haproxy 0
want haproxy-splice && haproxy_start haproxy-splice 1

nginx_start() {
port[nginx]=$(free_port)
bport[nginx]=$(free_port)
load_line="load_module $mod;"
[ "$mod" = builtin ] && load_line=""
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
$load_line
worker_processes 2;
worker_rlimit_nofile $NOFILE;
error_log $tmp/nginx/error.log error;
pid $tmp/nginx/nginx.pid;
events { worker_connections 9000; multi_accept on; }
stream {
    server {
        listen 127.0.0.1:${port[nginx]} reuseport;
        proxy_pass 127.0.0.1:$sink_port;
        proxy_connect_timeout 5s;
        proxy_timeout 10m;
    }
    server {
        listen 127.0.0.1:${bport[nginx]} reuseport;
        proxy_pass 127.0.0.1:$dsink_port;
        proxy_timeout 10m;
    }
}
EOF
start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" -g 'daemon off;'
pid[nginx]=$last_pid
}
want nginx && nginx_start

# The Go io.Copy relay (splice underneath): one process per frontend.
if want gorelay; then
	port[gorelay]=$(free_port)
	bport[gorelay]=$(free_port)
	start gorelay "$tmp/gorelay" "127.0.0.1:${port[gorelay]}" "127.0.0.1:$sink_port"
	pid[gorelay]=$last_pid
	start gorelay-b "$tmp/gorelay" "127.0.0.1:${bport[gorelay]}" "127.0.0.1:$dsink_port"
	gorelay_b=$last_pid
fi

# relayd on its defaults (the access log on, to stdout: a file here).
port[relayd]=$(free_port)
bport[relayd]=$(free_port)
cat >"$tmp/relayd.yaml" <<EOF
listeners:
  - name: echo
    listen: "127.0.0.1:${port[relayd]}"
    upstreams: ["127.0.0.1:$sink_port"]
  - name: bulk
    listen: "127.0.0.1:${bport[relayd]}"
    upstreams: ["127.0.0.1:$dsink_port"]
admin:
  listen: ""
EOF
start relayd "$R" serve -c "$tmp/relayd.yaml"
pid[relayd]=$last_pid

port[direct]=$sink_port
bport[direct]=$dsink_port
pid[direct]=$sink_pid

for name in $SYSTEMS; do
	if ! wait_port "${port[$name]}" || ! wait_port "${bport[$name]}"; then
		log "$name is not accepting: $(tail -3 "$tmp/$name.err")"
	fi
done

# --- measurements ------------------------------------------------------------
# jget FILE EXPR: a number from a JSON result.
jget() { jq -r "$2 // 0" "$1" 2>/dev/null || echo 0; }

# pids_of NAME: the system's PIDs, comma-separated.
pids_of() {
	local p=${pid[$1]}
	case $1 in
	gorelay) echo "$p,$gorelay_b" ;;
	direct) echo "$p,$dsink_pid" ;;
	*) echo "$p$(pgrep -P "$p" | sed 's/^/,/' | tr -d '\n')" ;;
	esac
}
# cpu_ticks PIDS, ctx_switches PIDS: summed over the processes and threads.
cpu_ticks() {
	local p s=0
	for p in ${1//,/ }; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo $s
}
ctx_switches() {
	local p s=0
	for p in ${1//,/ }; do
		s=$((s + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}')))
	done
	echo $s
}
HZ=$(getconf CLK_TCK)

# measure NAME TAG LOAD-ARGS...: one `relayd load --json` run into
# $tmp/NAME.TAG.ROUND.json, with the system's CPU seconds and context
# switches over the run added as .cpu_s and .ctx.
measure() {
	local name=$1 tag=$2 procs c0 x0 c1 x1 out e
	shift 2
	procs=$(pids_of "$name")
	out="$tmp/$name.$tag.$round.json"
	c0=$(cpu_ticks "$procs")
	x0=$(ctx_switches "$procs")
	# Bounded: a system that stops answering costs at most 5 minutes.
	(ulimit -n $NOFILE && timeout -k 5 300 "$R" load --json --max-errors -1 --progress off "$@") >"$out.raw" 2>>"$tmp/$name.load.err" || true
	c1=$(cpu_ticks "$procs")
	x1=$(ctx_switches "$procs")
	jq --argjson cpu "$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN {print (b - a) / hz}')" \
		--argjson ctx "$((x1 - x0))" '. + {cpu_s: $cpu, ctx: $ctx}' "$out.raw" >"$out" 2>/dev/null || cp "$out.raw" "$out"
	e=$(jget "$out" .errors_total)
	if [ "${e:-0}" != 0 ]; then
		log "  $name $tag: $e errors $(jq -c '.errors | with_entries(select(.value > 0))' "$out" 2>/dev/null)"
	fi
}

run_system() {
	local name=$1 t="127.0.0.1:${port[$1]}" b="127.0.0.1:${bport[$1]}"
	if ! kill -0 "${pid[$name]}" 2>/dev/null; then
		log "$name is not running"
		return
	fi
	log "round $round: $name"
	if [ "$round" = 1 ]; then
		# idle first, while the heap is small: after rr and bulk a
		# garbage-collected process reuses freed memory and shows ~0 B.
		# The Go relay holds 6 fds per idle session (two splice pipes wait
		# in its io.Copy calls), so at most 3000 fit its 20,000 fds.
		n=$IDLE_SESSIONS
		[ "$name" = gorelay ] && n=$((n < 3000 ? n : 3000))
		measure "$name" idle --mode idle --target "$t" --sessions "$n" --pid "$(pids_of "$name")"
	fi
	rec=()
	[ "$round" = 1 ] && rec=(--record "$tmp/$name.rr.rec")
	measure "$name" rr --mode rr --target "$t" --size 64 --concurrency 50 --duration "$RR_DUR" "${rec[@]}"
	measure "$name" ka --mode rr --target "$t" --size 64 --concurrency 50 --duration "$KA_DUR" --requests 100000000
	measure "$name" bulk1 --mode bulk --target "$b" --streams 1 --direction up --duration "$BULK_DUR"
	measure "$name" bulk4 --mode bulk --target "$b" --streams 4 --direction up --duration "$BULK_DUR"
}

start_time=$(date +%s)
for round in $(seq "$ROUNDS"); do
	order=$SYSTEMS
	[ $((round % 2)) = 0 ] && order=$(echo "$SYSTEMS" | tr ' ' '\n' | tac | tr '\n' ' ')
	for name in $order; do run_system "$name"; done
done

# System calls per short session: strace -c -f on every process of the
# system over a fixed rr run. strace slows the system down; the count is
# what is read.
declare -A sysc
for name in $SYSTEMS; do
	[ "$name" = direct ] || [ "$SYSCALL_SESSIONS" = 0 ] && continue
	kill -0 "${pid[$name]}" 2>/dev/null || continue
	args=()
	for p in $(pids_of "$name" | tr , ' '); do args+=(-p "$p"); done
	strace -c -f -o "$tmp/$name.strace" "${args[@]}" 2>/dev/null &
	sp=$!
	sleep 1 # let strace attach to every thread
	(ulimit -n $NOFILE && timeout -k 5 300 "$R" load --mode rr --target "127.0.0.1:${port[$name]}" --size 64 --concurrency 10 \
		--sessions "$SYSCALL_SESSIONS" --json --max-errors -1 --progress off) >"$tmp/$name.sys.json" 2>/dev/null || true
	kill -INT "$sp" 2>/dev/null || true
	wait "$sp" 2>/dev/null || true
	# The summary's last line: "100.00 seconds usecs/call calls errors total".
	total=$(awk '$NF == "total" {print $4}' "$tmp/$name.strace" 2>/dev/null | tail -1)
	sysc[$name]=$(awk -v t="${total:-0}" -v n="$SYSCALL_SESSIONS" 'BEGIN {printf "%.1f", t / n}')
done

# --- report ----------------------------------------------------------------
# One page of every system: rr from its records, ka from its JSON result.
runs=()
for name in $SYSTEMS; do
	[ -s "$tmp/$name.rr.rec" ] && runs+=("$name-rr=$tmp/$name.rr.rec")
done
for name in $SYSTEMS; do
	[ -s "$tmp/$name.ka.1.json" ] && runs+=("$name-ka=$tmp/$name.ka.1.json")
done
if [ ${#runs[@]} -gt 0 ]; then
	if "$R" load report -o "$REPORT" --title "relayd compare.sh $(date -u +%Y-%m-%dT%H:%MZ): $SYSTEMS" "${runs[@]}" 2>"$tmp/report.err"; then
		log "report: $REPORT"
	else
		log "report failed: $(cat "$tmp/report.err")"
	fi
fi

# --- table -----------------------------------------------------------------
# med NAME TAG EXPR: the median over the rounds of a jq expression.
med() {
	local f vals
	vals=$(for f in "$tmp/$1.$2".*.json; do [ -s "$f" ] && jq -r "$3" "$f" 2>/dev/null; done | sort -g)
	if [ -z "$vals" ]; then
		echo 0
		return
	fi
	echo "$vals" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
printf '\n%s, %s, %s CPUs, kernel %s; %s rounds, medians; relayd %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" "$(uname -r)" "$ROUNDS" \
	"$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf 'haproxy %s; nginx %s; rr 64 B x50 for %s; ka 64 B x50 for %s; bulk for %s; idle %s sessions\n\n' \
	"$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')" "$(nginx -v 2>&1 | cut -d/ -f2)" \
	"$RR_DUR" "$KA_DUR" "$BULK_DUR" "$IDLE_SESSIONS"
printf '| %-14s | %7s | %6s | %6s | %5s | %5s | %7s | %6s | %5s | %5s | %5s | %5s | %6s | %6s |\n' \
	system "rr s/s" "p99 ms" "CPU us" ctx sysc "ka r/s" "p99 ms" ctx bulk1 "s/GB" bulk4 spread "RSS B"
printf '|%s|\n' "----------------|--------:|-------:|-------:|------:|------:|--------:|-------:|------:|------:|------:|------:|-------:|-------:"
for name in $SYSTEMS; do
	printf '| %-14s | %7.0f | %6.2f | %6.1f | %5.2f | %5s | %7.0f | %6.2f | %5.3f | %5.2f | %5.3f | %5.2f | %6.2f | %6.0f |\n' "$name" \
		"$(med "$name" rr .sessions_per_sec)" "$(med "$name" rr '.rtt.p99_us / 1000')" \
		"$(med "$name" rr 'if .sessions > 0 then .cpu_s * 1e6 / .sessions else 0 end')" \
		"$(med "$name" rr 'if .sessions > 0 then .ctx / .sessions else 0 end')" "${sysc[$name]:-n/a}" \
		"$(med "$name" ka .requests_per_sec)" "$(med "$name" ka '.rtt.p99_us / 1000')" \
		"$(med "$name" ka 'if .requests > 0 then .ctx / .requests else 0 end')" \
		"$(med "$name" bulk1 '.bits_per_sec / 1e9')" \
		"$(med "$name" bulk1 'if .bytes_sent > 0 then .cpu_s / (.bytes_sent / 1e9) else 0 end')" \
		"$(med "$name" bulk4 '.bits_per_sec / 1e9')" \
		"$(med "$name" bulk4 '[.streams[].bits_per_sec] | if min > 0 then max / min else 0 end')" \
		"$(med "$name" idle '.target_rss_per_session_bytes // 0')"
done
cat <<EOF

rr: a new connection per 64 B echo; CPU us and ctx: the system's CPU time
and context switches per session; sysc: system calls per session (strace
-c -f, $SYSCALL_SESSIONS sessions); ka: 64 B round trips on persistent
connections, ctx per request; bulk1/bulk4: Gbit/s up into a discard sink,
s/GB: CPU seconds per GB (1 stream), spread: max/min per-stream rate of the
4 streams; RSS B: per idle session (gorelay: at most 3000 sessions, it
holds 6 fds each). direct = the sinks themselves.
$(($(date +%s) - start_time)) s in all.
EOF
