#!/usr/bin/env bash
# Runs the benchmarks the way they are reported in RESULTS.md: every server
# in its own process, the load generators in others, all on this machine.
#
#   benchmarks/run.sh                 the target scenario: loadgen, 10 x 100 at 50 msgs/s
#                                     (50,000 deliveries/s), 20 s, against `causeway dev --edges 2`
#   TARGET=floor benchmarks/run.sh    the same against the floor server (benchmarks/cmd/floor)
#   benchmarks/run.sh -rate 80 ...    any loadgen flags
#   EDGES=3 benchmarks/run.sh ...     `causeway dev --edges 3` (default 2)
#   benchmarks/run.sh -suite [...]    the whole suite (make bench, under 15 min on 2 cores):
#                                     benchmarks/cmd/suite, fan-out ramp against the floor and
#                                     Causeway (and group sizes 2, 10, 1000), scaling (split
#                                     processes: 1-4 edges, 1-4 sequencers, Kafka records per
#                                     message), receipts, idle memory, recovery and signaling
#                                     (each against the floor, then Causeway);
#                                     results, tables and plots in benchmarks/results/latest/
#   benchmarks/run.sh -quick [...]    the CI smoke run (make bench-quick, about a minute): suite
#                                     -quick (floor and Causeway fan-out, one small scaling point,
#                                     receipts for 2 and 10 members, 500 idle connections), then a few seconds of call
#                                     setup (callsetup -quick) against Causeway and against the
#                                     floor; exits 1 on loss or failure,
#                                     numbers not judged; results in test-output/
#
# CAUSEWAY_BIN=path uses a prebuilt causeway binary instead of building
# ./cmd/causeway (the tree may not build while others edit it).
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
dev_pid=""
cleanup() {
	if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
		kill -INT "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# Every benchmark client comes from 127.0.0.1: the edge's per-IP and
# per-connection abuse limits are off for every cluster started from here
# (the programs pass their environment on), and so are the rollup's
# ClickHouse analytics. Keys an older binary does not know are ignored.
export CAUSEWAY_EDGE_MAX_CONNS_PER_IP=0 CAUSEWAY_EDGE_CONN_RATE_PER_IP=0 \
	CAUSEWAY_EDGE_CONN_FRAMES_PER_SEC=0 CAUSEWAY_EDGE_CONN_BYTES_PER_SEC=0 \
	CAUSEWAY_EDGE_USER_FRAMES_PER_SEC=0 CAUSEWAY_EDGE_USER_BYTES_PER_SEC=0 \
	CAUSEWAY_ROLLUP_CLICKHOUSE=false

mode=loadgen
case "${1:-}" in
-suite | --suite) mode=suite; shift ;;
-quick | --quick) mode=quick; shift ;;
esac

if [ -n "${CAUSEWAY_BIN:-}" ]; then
	cp "$CAUSEWAY_BIN" "$tmp/causeway"
else
	go build -o "$tmp/causeway" ./cmd/causeway
fi

if [ "$mode" != loadgen ]; then
	# One go command builds every program the suite runs (links in parallel).
	go build -o "$tmp/" ./benchmarks/cmd/suite ./benchmarks/cmd/loadgen ./benchmarks/cmd/floor \
		./benchmarks/cmd/receipts ./benchmarks/cmd/idle ./benchmarks/cmd/edgehost \
		./benchmarks/cmd/recovery ./benchmarks/cmd/callsetup
	if [ "$mode" = suite ]; then
		"$tmp/suite" -bin "$tmp" -scenarios "${SCENARIOS:-fanout,scaling,receipts,idle,recovery,signaling}" "$@"
	else
		"$tmp/suite" -quick -bin "$tmp" "$@"
		"$tmp/callsetup" -quick -causeway "$tmp/causeway" -out test-output/callsetup-quick.json
		"$tmp/callsetup" -quick -target floor -floor "$tmp/floor" -out test-output/callsetup-floor-quick.json
	fi
	exit 0
fi

go build -o "$tmp/loadgen" ./benchmarks/cmd/loadgen

if [ "${TARGET:-causeway}" = floor ]; then
	go build -o "$tmp/floor" ./benchmarks/cmd/floor
	"$tmp/floor" -addr 127.0.0.1:0 >"$tmp/floor.out" 2>"$tmp/floor.err" &
	dev_pid=$!
	url=""
	for _ in $(seq 1 100); do
		url=$(sed -n 's/^floor: //p' "$tmp/floor.out")
		[ -n "$url" ] && break
		sleep 0.1
	done
	[ -n "$url" ] || { echo "the floor server did not start" >&2; cat "$tmp/floor.err" >&2; exit 1; }
	"$tmp/loadgen" -url "$url" -secret floor -pid "$dev_pid" -label floor "$@"
	exit 0
fi

secret="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
CAUSEWAY_AUTH_SECRET="$secret" CAUSEWAY_LOG_LEVEL=warn \
	"$tmp/causeway" dev --edges "${EDGES:-2}" --http-addr 127.0.0.1:0 --broker-listen 127.0.0.1:0 \
	--data-dir "$tmp/dev" >"$tmp/dev.out" 2>"$tmp/dev.err" &
dev_pid=$!

urls=""
for _ in $(seq 1 300); do
	urls=$(sed -n 's/^edge edge-[0-9]*: \(ws:[^ ]*\).*/\1/p' "$tmp/dev.out" | paste -sd, -)
	[ "$(echo "$urls" | tr ',' '\n' | grep -c ws:)" -ge "${EDGES:-2}" ] && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$tmp/dev.err" >&2; exit 1; }
	sleep 0.1
done
[ -n "$urls" ] || { echo "causeway dev did not start" >&2; cat "$tmp/dev.err" >&2; exit 1; }

"$tmp/loadgen" -url "$urls" -secret "$secret" -pid "$dev_pid" -label causeway "$@"
