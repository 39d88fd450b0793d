# Every target delegates to a script or the go tool; see README.md.
.PHONY: dev test gen lint bench bench-quick bench-signaling build

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

bench:
	benchmarks/run.sh -out benchmarks/results/latest.json

bench-quick:
	benchmarks/run.sh -quick -out test-output/bench-quick.json

bench-signaling:
	go run ./benchmarks/cmd/callsetup -out benchmarks/results/call-latest.json
	go run ./benchmarks/cmd/callsetup -load -out benchmarks/results/call-load-latest.json
	go run ./benchmarks/cmd/callsetup -scenario presence -out benchmarks/results/presence-latest.json
