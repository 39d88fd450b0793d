#!/usr/bin/env bash
# Runs the fan-out benchmark the way it is reported in RESULTS.md:
# `causeway dev` (broker, sequencer, 2 edges) in its own process, the load
# generator in another, both on this machine.
#
#   benchmarks/run.sh                 the target scenario (10 x 100 at 50 msgs/s, 20 s)
#   benchmarks/run.sh -quick          the CI smoke run (seconds; exits 1 on loss),
#                                     then a few seconds of the call-setup
#                                     benchmark (benchmarks/cmd/callsetup -quick,
#                                     its own `causeway dev --edges 3`; exits 1
#                                     if a call is not set up; numbers not judged)
#   benchmarks/run.sh -rate 80 ...    any loadgen flags
#   EDGES=3 benchmarks/run.sh ...     `causeway dev --edges 3` (default 2)
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

go build -o "$tmp/causeway" ./cmd/causeway
go build -o "$tmp/loadgen" ./benchmarks/cmd/loadgen

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

"$tmp/loadgen" -url "$urls" -secret "$secret" "$@"

quick=0
for a in "$@"; do
	case "$a" in -quick | --quick | -quick=true | --quick=true) quick=1 ;; esac
done
if [ "$quick" = 1 ]; then
	kill -INT "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" 2>/dev/null || true
	dev_pid=""
	go build -o "$tmp/callsetup" ./benchmarks/cmd/callsetup
	"$tmp/callsetup" -quick -causeway "$tmp/causeway" -out test-output/callsetup-quick.json
fi
