# Coffer's build. `make test` is the whole test suite, exactly what CI runs.

GO        ?= go
BUF_VER   := v1.75.0
BUF       := $(GO) run github.com/bufbuild/buf/cmd/buf@$(BUF_VER)
FUZZTIME  ?= 10s
# CI fuzzing is a smoke run: a long minimisation of a new input against
# fsync-bound targets can outlast -fuzztime, which Go reports as a failure.
FUZZMINIMIZE ?= 1x
BIN       := bin

.PHONY: all build test deps lint fmt-check vet generate check-generated unit fuzz bench docker clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## test: everything CI checks — tools, lint, generated code, race tests, short fuzzing.
test: deps lint check-generated unit fuzz

## deps: install what the tests need (apt-get where missing).
deps:
	./scripts/deps.sh

lint: fmt-check vet
	$(BUF) lint

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## generate: regenerate the Go code beside the .proto files.
generate:
	$(BUF) generate

## check-generated: fail when regenerating changes anything.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code under proto/ is stale: run 'make generate' and commit"; \
		git status --porcelain -- proto; git diff --stat -- proto; exit 1; fi

unit:
	# One package at a time: the cluster, compat and e2e suites each start
	# real nodes, and sharing 2 cores under -race starves their heartbeats.
	$(GO) test -race -count=1 -timeout 25m -p 1 ./...

## fuzz: a short run of every fuzz target (the seeds also run in `unit`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRequests$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server
	$(GO) test -run '^$$' -fuzz '^FuzzCreateSecret$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server/policy
	$(GO) test -run '^$$' -fuzz '^FuzzEvaluate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server/policy
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server/sigv4
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server/awsjson
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./server/audit
	$(GO) test -run '^$$' -fuzz '^FuzzApplyReplicaChanges$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./storage

## bench: the performance figures quoted in notes and docs.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./storage ./storage/kms ./server ./server/password ./server/sigv4 ./server/awsjson

## docker: a FROM-scratch image of the static cofferd binary.
docker:
	CGO_ENABLED=0 $(GO) build -trimpath -o deploy/cofferd ./cmd/cofferd
	docker build -t coffer/cofferd:dev -f deploy/Dockerfile deploy

clean:
	rm -rf $(BIN) deploy/cofferd
