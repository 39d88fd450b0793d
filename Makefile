# Every target delegates to a script or the go tool; see README.md.
.PHONY: dev test gen lint bench bench-quick bench-micro bench-target bench-signaling build

build:
	go build -o bin/causeway ./cmd/causeway

dev:
	@# ClickHouse is optional for dev: without it the rollup's analytics wait.
	@scripts/clickhouse.sh start || echo "make dev: ClickHouse did not start; running without analytics" >&2
	go run ./cmd/causeway dev

test:
	scripts/test.sh

gen:
	scripts/gen.sh

lint:
	gofmt -l . && go vet ./...

# The whole suite (fan-out ramp against the floor and Causeway, receipts,
# idle memory, recovery, signaling): under 15 min on 2 cores; results,
# tables and plots in benchmarks/results/latest/.
bench:
	benchmarks/run.sh -suite

# CI's smoke run, about a minute (numbers not judged).
bench-quick:
	benchmarks/run.sh -quick

# Go benchmarks of the per-message hot paths (frame decode, sequencing):
# CPU and allocations per operation, without Kafka or sockets.
bench-micro:
	mkdir -p benchmarks/results
	go test -run '^$$' -bench . -benchmem -count 5 ./benchmarks/micro | tee benchmarks/results/micro-latest.txt

# The target scenario alone (50,000 deliveries/s against causeway dev).
bench-target:
	benchmarks/run.sh -out benchmarks/results/latest.json

bench-signaling:
	go run ./benchmarks/cmd/callsetup -out benchmarks/results/call-latest.json
	go run ./benchmarks/cmd/callsetup -load -out benchmarks/results/call-load-latest.json
	go run ./benchmarks/cmd/callsetup -scenario presence -out benchmarks/results/presence-latest.json
