# Coffer's build. `make test` is the whole test suite, exactly what CI runs.

GO        ?= go
BUF_VER   := v1.75.0
BUF       := $(GO) run github.com/bufbuild/buf/cmd/buf@$(BUF_VER)
FUZZTIME  ?= 10s
# CI fuzzing is a smoke run: a long minimisation of a new input against
# fsync-bound targets can outlast -fuzztime, which Go reports as a failure.
FUZZMINIMIZE ?= 1x
BIN       := bin

.PHONY: all build build-pkcs11 test deps lint monitoring fmt-check vet breaking generate check-generated unit fuzz bench docker clean test-faults test-faults-if-docker up down

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## build-pkcs11: cofferd with the PKCS#11 seal (cgo, dynamically linked to
## libc and the token's module at run time: not for the scratch image).
build-pkcs11:
	CGO_ENABLED=1 $(GO) build -tags pkcs11 -trimpath -o $(BIN)/cofferd-pkcs11 ./cmd/cofferd

## test: everything CI checks — tools, lint, generated code, race tests, short fuzzing.
test: deps lint check-generated monitoring unit fuzz test-faults-if-docker

## deps: install what the tests need (apt-get where missing).
deps:
	./scripts/deps.sh

lint: fmt-check vet breaking
	$(BUF) lint

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags pkcs11 ./storage/kms ./cmd/cofferd
	# test/bench is its own module (it imports etcd's client): vetting it
	# keeps scripts/bench-vs-etcd.sh building as the main module grows.
	cd test/bench && $(GO) vet ./...

## breaking: fail when the .proto files in the working tree break wire or
## source compatibility (buf.yaml's FILE rules) with an earlier commit:
##  - on a branch, the commit where it left main (git merge-base with the
##    local main, else origin/main): the branch's whole change, whether
##    committed or not, so a worktree is checked as the lead will merge it;
##  - on main itself, or where no main is known (a fresh clone of another
##    branch without origin/main, CI's detached checkout), HEAD~1: the last
##    commit's change, a merge's first parent being main before it.
## buf reads that commit out of .git itself (a worktree's .git file works too).
## When neither commit is in the clone (a shallow clone, a tarball, a repo of
## one commit) there is nothing to compare against: the step says so and
## passes rather than fail on missing history.
breaking:
	@head=$$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null); \
	main=$$(git rev-parse -q --verify 'main^{commit}' 2>/dev/null || git rev-parse -q --verify 'origin/main^{commit}' 2>/dev/null); \
	base=; \
	if [ -n "$$head" ] && [ -n "$$main" ] && [ "$$main" != "$$head" ]; then base=$$(git merge-base HEAD "$$main" 2>/dev/null); fi; \
	if [ -z "$$base" ]; then base=$$(git rev-parse -q --verify 'HEAD~1^{commit}' 2>/dev/null); fi; \
	if [ -z "$$base" ]; then echo "breaking: no earlier commit in this clone to compare proto/ against; skipped"; exit 0; fi; \
	echo "breaking: proto/ against $$base"; \
	$(BUF) breaking --against ".git#ref=$$base"

## generate: regenerate the Go code beside the .proto files.
generate:
	$(BUF) generate

## check-generated: fail when regenerating changes anything.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code under proto/ is stale: run 'make generate' and commit"; \
		git status --porcelain -- proto; git diff --stat -- proto; exit 1; fi

## monitoring: the alert rules parse, and their unit tests pass (promtool).
monitoring:
	promtool check rules deploy/monitoring/coffer-alerts.yml
	cd deploy/monitoring && promtool test rules coffer-alerts.test.yml

unit:
	# One package at a time: the cluster, compat and e2e suites each start
	# real nodes, and sharing 2 cores under -race starves their heartbeats.
	$(GO) test -race -count=1 -timeout 25m -p 1 ./...
	# The PKCS#11 seal is built only with the pkcs11 tag (cgo); its tests
	# run against a SoftHSM2 token made in a temporary directory.
	$(GO) test -race -count=1 -tags pkcs11 -run PKCS11 ./storage/kms ./cmd/cofferd

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

## test-faults: the fault-injection suite (test/faults) on the two-region
## compose deployment: kill -9, pause, partitions, a full disk, a nemesis;
## about 10 minutes. COFFER_FAULTS_SOAK=1 adds the soak that measures the
## figures in docs/FAULTS.md (about an hour); COFFER_FAULTS_SEED replays a
## nemesis schedule.
test-faults:
	COFFER_FAULTS=1 $(GO) test -count=1 -timeout 90m -v ./test/faults

## test-faults-if-docker: test-faults where docker works (CI's machine), a
## note elsewhere.
test-faults-if-docker:
	@if docker info >/dev/null 2>&1; then $(MAKE) test-faults; else echo "docker info fails: test/faults skipped"; fi

## up, down: the two-region compose deployment (deploy/compose).
up:
	deploy/compose/up.sh
down:
	deploy/compose/down.sh

## bench: the performance figures quoted in notes and docs.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./storage ./storage/kms ./server ./server/password ./server/sigv4 ./server/awsjson

## docker: a FROM-scratch image of the static cofferd binary.
docker:
	CGO_ENABLED=0 $(GO) build -trimpath -o deploy/cofferd ./cmd/cofferd
	docker build -t coffer/cofferd:dev -f deploy/Dockerfile deploy

clean:
	rm -rf $(BIN) deploy/cofferd
