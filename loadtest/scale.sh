#!/usr/bin/env bash
# scale.sh — SESSIONS [100000] concurrent relayed sessions on loopback, each
# proven by an echo and held HOLD [60s], through multi-process relayd
# (WORKERS [14] workers), then the same load through nginx (stream,
# NGINX_WORKERS [one per 4,000 sessions] worker processes), then what HAProxy
# (one process, 2 threads) reaches under the same open-file limit with
# HAPROXY_SESSIONS [12000].
#
#   loadtest/scale.sh                          # root: installs nginx, haproxy, jq if missing
#   SESSIONS=20000 WORKERS=4 loadtest/scale.sh # smaller
#
# Every process gets `ulimit -n 20000`, the per-process hard limit here: one
# relayed session holds 2 descriptors in the proxy, so 100,000 sessions need
# at least 11 proxy processes, and the load and sink sides need several too
# (relayd load --procs, relayd sink --procs). Clients come from SOURCES
# [127.0.0.2-127.0.7.255] (the master steers each source address to one
# worker); the proxies connect to the sink from UPSTREAM_SOURCES
# [127.0.1.1-127.0.1.8] (relayd: listeners[].source; nginx: proxy_bind
# through split_clients), since one (source, destination) pair has ~28,000
# ephemeral ports.
#
# Reported per system: time to establish, sessions proven, errors, the
# proxy's memory per session (PSS over all its processes: growth over the
# idle baseline, and the total while held / sessions, read at the end of
# the CPU window), CPU of all its processes over IDLE_CPU [15s] from the
# moment every session is held, and after the release: sessions left,
# descriptors back to baseline, and PSS at the release and once settled
# (the lowest over SETTLE [20] s).
# Everything started here is stopped by PID on exit; loads are bounded by
# `timeout`.
set -euo pipefail

SESSIONS=${SESSIONS:-100000}
WORKERS=${WORKERS:-14}
LOAD_PROCS=${LOAD_PROCS:-6}
SINK_PROCS=${SINK_PROCS:-6}
HOLD=${HOLD:-60s}
IDLE_CPU=${IDLE_CPU:-15}
SOURCES=${SOURCES:-127.0.0.2-127.0.7.255}
UPSTREAM_SOURCES=${UPSTREAM_SOURCES:-127.0.1.1-127.0.1.8}
HAPROXY_SESSIONS=${HAPROXY_SESSIONS:-12000}
SYSTEMS=${SYSTEMS:-relayd nginx haproxy}
NOFILE=20000

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-scale.XXXXXX)
. "$repo/loadtest/lib.sh"
cleanup() {
	stop_started
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! command -v nginx >/dev/null || [ -z "$(stream_module)" ] || ! command -v haproxy >/dev/null || ! command -v jq >/dev/null; then
	log "installing nginx, its stream module, haproxy and jq with apt-get"
	apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream haproxy jq >/dev/null
fi

log "building relayd"
(cd "$repo" && go build -o "$tmp/relayd" ./cmd/relayd)
R="$tmp/relayd"
# children PID: PID and its direct children, comma-separated.
tree() { local c; c=$(pgrep -P "$1" | paste -sd, -); echo "$1${c:+,$c}"; }
cpu_ticks() { local s=0 p; for p in ${1//,/ }; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $s; }
# mem_kib PIDS: proportional set size summed (smaps_rollup Pss): pages shared
# by several processes (the binary's text, mapped by every worker) count once
# in all, where summing VmRSS would count them once per process.
mem_kib() { local s=0 p; for p in ${1//,/ }; do s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done; echo $s; }
fds() { local s=0 p; for p in ${1//,/ }; do s=$((s + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done; echo $s; }
sockets_established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
hz=$(getconf CLK_TCK)

sink_port=$(free_port)
start sink "$R" sink --listen "127.0.0.1:$sink_port" --procs "$SINK_PROCS"
for _ in $(seq 100); do grep -q "sink listening" "$tmp/sink.out" 2>/dev/null && break; sleep 0.1; done

# run NAME PORT PIDS SESSIONS: the idle load, with CPU sampled while
# every session is held; prints one JSON line of results.
run() {
	local name=$1 port=$2 procs=$3 n=$4
	local before_rss before_fds t0 c0 c1 loadpid open_s=0 held=0 i
	before_rss=$(mem_kib "$procs")
	before_fds=$(fds "$procs")
	log "$name: $n sessions (processes: $procs)"
	t0=$(date +%s.%N)
	(ulimit -n $NOFILE && exec timeout 600 "$R" load --target "127.0.0.1:$port" --mode idle --sessions "$n" \
		--procs "$LOAD_PROCS" --source-ips "$SOURCES" --duration "$HOLD" --json --progress off \
		--io-timeout 30s --max-errors -1 --pid "$procs" --held-fd 3) >"$tmp/$name.load" 2>"$tmp/$name.load.err" 3>"$tmp/$name.held" &
	loadpid=$!
	pids+=("$loadpid")
	# The load tool says "held" once every session is open (or has failed).
	for i in $(seq 6000); do
		grep -q held "$tmp/$name.held" 2>/dev/null && break
		kill -0 "$loadpid" 2>/dev/null || break
		sleep 0.1
	done
	open_s=$(echo "$(date +%s.%N) - $t0" | bc)
	held=$(sockets_established "$port")
	local held_rss held_fds
	c0=$(cpu_ticks "$procs")
	sleep "$IDLE_CPU"
	c1=$(cpu_ticks "$procs")
	# Memory once the burst of opening is over.
	held_rss=$(mem_kib "$procs")
	held_fds=$(fds "$procs")
	wait "$loadpid" || true
	# Released: every proxy descriptor back (bounded wait).
	for i in $(seq 300); do [ "$(fds "$procs")" -le "$before_fds" ] && break; sleep 0.1; done
	local after_fds after_rss settled_rss r
	after_fds=$(fds "$procs")
	after_rss=$(mem_kib "$procs")
	# And once the release has settled: the lowest PSS over SETTLE [20] s
	# (relayd returns the ended sessions' memory 5 s after the last close,
	# relay.trim_after).
	settled_rss=$after_rss
	for i in $(seq "${SETTLE:-20}"); do
		sleep 1
		r=$(mem_kib "$procs")
		[ "$r" -lt "$settled_rss" ] && settled_rss=$r
	done
	jq -c --arg name "$name" --argjson n "$n" --argjson held "$held" --argjson open "$open_s" \
		--argjson before_rss "$before_rss" --argjson held_rss "$held_rss" --argjson after_rss "$after_rss" --argjson settled_rss "$settled_rss" \
		--argjson before_fds "$before_fds" --argjson held_fds "$held_fds" --argjson after_fds "$after_fds" \
		--argjson cpu "$(echo "scale=4; ($c1 - $c0) / $hz / $IDLE_CPU * 100" | bc)" \
		--argjson nproc "$(echo "$procs" | tr , '\n' | wc -l)" \
		'{name: $name, asked: $n, held_seen: $held, sessions: .sessions, errors: .errors_total, error_kinds: (.errors | with_entries(select(.value > 0))),
		  establish_s: .idle_open_s, rtt_p99_ms: (.rtt.p99_us / 1000), processes: $nproc,
		  mem_growth_per_session_B: (if .sessions > 0 then (($held_rss - $before_rss) * 1024 / .sessions | floor) else null end),
		  mem_total_per_session_B: (if .sessions > 0 then ($held_rss * 1024 / .sessions | floor) else null end),
		  pss_before_MiB: ($before_rss / 1024 | floor), pss_held_MiB: ($held_rss / 1024 | floor), pss_after_MiB: ($after_rss / 1024 | floor), pss_settled_MiB: ($settled_rss / 1024 | floor),
		  idle_cpu_pct: $cpu, fds_before: $before_fds, fds_held: $held_fds, fds_after: $after_fds}' "$tmp/$name.load"
}

on() { [[ " $SYSTEMS " == *" $1 "* ]]; }
echo "sessions=$SESSIONS hold=$HOLD relayd processes=$WORKERS+1 load procs=$LOAD_PROCS sink procs=$SINK_PROCS nofile=$NOFILE systems=$SYSTEMS"

# --- relayd, multi-process -------------------------------------------------
if on relayd; then
rport=$(free_port)
aport=$(free_port)
cat >"$tmp/relayd.yaml" <<EOF
processes: $WORKERS
listeners:
  - name: scale
    listen: "127.0.0.1:$rport"
    upstreams: ["127.0.0.1:$sink_port"]
    source: "$UPSTREAM_SOURCES"
relay:
  loops: 1
connector:
  workers: 1
log:
  output: "$tmp/relayd.log"
admin:
  listen: "127.0.0.1:$aport"
EOF
start relayd "$R" serve -c "$tmp/relayd.yaml"
master=$last_pid
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$aport/readyz")" = 200 ] && break; sleep 0.1; done
rprocs=$(tree "$master")
run relayd "$rport" "$rprocs" "$SESSIONS" >"$tmp/relayd.json"
metrics_accepted=$(curl -s "127.0.0.1:$aport/metrics" | awk '$1 == "relayd_sessions_accepted_total" {print $2}')
metrics_active=$(curl -s "127.0.0.1:$aport/metrics" | awk '$1 == "relayd_sessions_active" {print $2}')
jq -c --arg acc "$metrics_accepted" --arg act "$metrics_active" '. + {metrics_accepted: ($acc|tonumber), metrics_active_after: ($act|tonumber)}' "$tmp/relayd.json" >"$tmp/relayd2.json"
kill -TERM "$master"
for _ in $(seq 300); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
echo "relayd $(cat "$tmp/relayd2.json")"
fi

# --- nginx stream: enough worker processes -----------------------------------
if on nginx; then
# worker_connections counts both sides of a session and the reuseport hash
# is uneven, so nginx gets a worker per 4,000 sessions.
NGINX_WORKERS=${NGINX_WORKERS:-$(( (SESSIONS + 3999) / 4000 ))}
mod=$(stream_module)
load_line="load_module $mod;"
[ "$mod" = builtin ] && load_line=""
nport=$(free_port)
mkdir -p "$tmp/nginx"
splits=""
IFS=- read -r lo hi <<<"$UPSTREAM_SOURCES"
k=$(( ${hi##*.} - ${lo##*.} + 1 ))
for i in $(seq 0 $((k - 2))); do splits+="        $(echo "scale=2; 100 / $k" | bc)% ${lo%.*}.$(( ${lo##*.} + i ));"$'\n'; done
splits+="        * ${lo%.*}.$(( ${lo##*.} + k - 1 ));"
cat >"$tmp/nginx.conf" <<EOF
$load_line
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile $NOFILE;
error_log $tmp/nginx/error.log error;
pid $tmp/nginx/nginx.pid;
events { worker_connections 9900; }
stream {
    split_clients "\$remote_addr\$remote_port" \$upstream_source {
$splits
    }
    server {
        listen 127.0.0.1:$nport reuseport;
        proxy_pass 127.0.0.1:$sink_port;
        proxy_bind \$upstream_source;
        proxy_timeout 10m;
    }
}
EOF
start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" -g 'daemon off;'
nginx_master=$last_pid
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.1; done
run nginx "$nport" "$(tree "$nginx_master")" "$SESSIONS" >"$tmp/nginx.json"
kill -TERM "$nginx_master"
echo "nginx (workers=$NGINX_WORKERS) $(cat "$tmp/nginx.json")"
fi

# --- HAProxy: one process, the same open-file limit ---------------------------
if on haproxy; then
hport=$(free_port)
cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 2
    log stderr format raw local0 emerg
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend fe
    bind 127.0.0.1:$hport
    default_backend be
backend be
    source $(echo "$UPSTREAM_SOURCES" | cut -d- -f1)
    server sink 127.0.0.1:$sink_port
EOF
start haproxy haproxy -db -f "$tmp/haproxy.cfg"
hpid=$last_pid
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break; sleep 0.1; done
run haproxy "$hport" "$hpid" "$HAPROXY_SESSIONS" >"$tmp/haproxy.json"
kill -TERM "$hpid"
echo "haproxy $(cat "$tmp/haproxy.json")"
fi
