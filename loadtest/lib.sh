# lib.sh — helpers the benchmark scripts in this folder share (compare.sh,
# scale.sh, workerkill.sh). Source it after setting tmp (a scratch folder)
# and NOFILE (the descriptor limit every started process gets).

pids=()

log() { printf '%s\n' "$*" >&2; }

# stop_started: SIGTERM to every process start() started, then SIGKILL to any
# still running after 10 s. Only our own PIDs.
stop_started() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
	shuf -i 20000-30000 -n 1; }

# start NAME CMD...: run CMD in the background with the descriptor limit,
# output in $tmp/NAME.out and .err; its PID is left in $last_pid (not
# printed: a command substitution would run this in a subshell and lose the
# PID list).
start() {
	local name=$1
	shift
	(ulimit -n "$NOFILE" && exec "$@") >"$tmp/$name.out" 2>"$tmp/$name.err" &
	last_pid=$!
	pids+=("$last_pid")
}

# stream_module: the path of nginx's stream module, "builtin", or nothing.
stream_module() {
	local m
	for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
		[ -f "$m" ] && { echo "$m"; return; }
	done
	# Built in (nginx -V lists --with-stream without =dynamic)?
	if command -v nginx >/dev/null && nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)'; then echo builtin; fi
}
