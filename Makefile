# ferry's build and test entry points. `make test` installs what the tests
# need (a MinIO server, Centrifugo, nats-server, Chromium, docker-compose),
# cached between runs.

GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
MINIO   := $(GOBIN)/minio
CENTRIFUGO := $(GOBIN)/centrifugo
NATS_SERVER := $(GOBIN)/nats-server

.PHONY: all build test test-deps vet fmt-check fuzz bench clean

all: build

build:
	$(GO) build -o bin/ferry ./cmd/ferry

test: test-deps fmt-check vet
	FERRY_MINIO_BIN=$(MINIO) FERRY_CENTRIFUGO=$(CENTRIFUGO) FERRY_NATS_SERVER=$(NATS_SERVER) $(GO) test -race -timeout 9m ./...

test-deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Runs each fuzzer for a while (their corpora live in testdata/fuzz): the
# protocol's request decoder, and the server's WebSocket frame reader against
# gorilla's.
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime 60s
	$(GO) test ./server -run '^$$' -fuzz '^FuzzReader$$' -fuzztime 60s

bench: build
	./bin/ferry bench idle
	./bin/ferry bench fanout

clean:
	rm -rf bin
