#!/usr/bin/env bash
# The test command (README: `make test`; CI's .ci/run calls this).
# Installs what the tests need, checks formatting, vet and generated code,
# then runs every test with the race detector against real servers (the
# embedded Kafka-protocol broker over TCP, and separate causeway processes).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== generated code"
scripts/gen.sh --check

echo "== benchmark smoke (numbers are not judged here; it fails on any loss)"
make -s bench-quick

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

echo "== fuzz (short runs over the committed corpus and beyond)"
for target in FuzzDecodeClientFrame FuzzDecodeFast FuzzGroupEventDecode FuzzDeliveryDecode FuzzVerifyToken; do
	log="test-output/fuzz-${target}.log"
	mkdir -p test-output
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "${CAUSEWAY_FUZZTIME:-10s}" ./edge/ >"$log" 2>&1; then
		cat "$log"; exit 1
	fi
	echo "$target: ok"
done
