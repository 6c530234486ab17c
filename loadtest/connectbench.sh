#!/usr/bin/env bash
# connectbench.sh — the connector benchmark (loadtest/BENCHMARK.md,
# "Connector"): relayd's connect stage against HAProxy and direct connects
# in one run, all on 127.0.0.1.
#
#   loadtest/connectbench.sh                      # every scenario
#   loadtest/connectbench.sh -scenario storm -rounds 3 -storm-span 1s
#
# Arguments go to the harness (go run ./loadtest/connectbench -h lists
# them). HAProxy is used if installed (apt-get install haproxy); otherwise
# its rows are skipped. Every process the harness starts is its own and is
# stopped by it; the descriptor limit is raised to the hard limit (storm
# clients, the upstream's accepted sockets and relayd's two per session).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/relayd-connectbench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
(cd "$repo" && go build -o "$tmp/relayd" ./cmd/relayd && go build -o "$tmp/connectbench" ./loadtest/connectbench)
ulimit -n "$(ulimit -Hn)"
"$tmp/connectbench" -relayd "$tmp/relayd" "$@"
