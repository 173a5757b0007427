# camvault: `make run` sets up and starts the server, `make test` runs the tests.
GO      ?= go
DATA    ?= ./data
BIN     := bin/camvault
export CGO_ENABLED := 1
# versitygw (the tests' S3 server) is built here by scripts/deps.sh.
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all deps test-deps build run test bench bench-short vet fmt clean

all: build

deps:
	@./scripts/deps.sh

test-deps:
	@./scripts/deps.sh test

build: deps
	$(GO) build -o $(BIN) ./cmd/camvault

run: build
	./$(BIN) serve --data $(DATA)

test: test-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./stages/... ./pipeline/... ./storage/... ./bench/...

bench-short: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 15m ./bench/...

fmt:
	gofmt -l -w .

clean:
	rm -rf bin
