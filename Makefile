# Every target delegates to a script or the go tool; see README.md.
.PHONY: dev test gen lint bench bench-quick build

build:
	go build -o bin/causeway ./cmd/causeway

dev:
	go run ./cmd/causeway dev

test:
	scripts/test.sh

gen:
	scripts/gen.sh

lint:
	gofmt -l . && go vet ./...

bench:
	go run ./benchmarks/cmd/loadgen -groups 10 -members 100 -rate 50 -duration 20s

bench-quick:
	go run ./benchmarks/cmd/loadgen -groups 2 -members 10 -rate 20 -duration 5s -warmup 1s -out test-output/bench-quick.json
