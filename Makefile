# Beacon — make demo runs the seed's system; make test runs every test
# against real Consul agents. Both build the pinned Consul agent when no
# consul binary is given ($CONSUL_BIN) or on PATH.

GO        ?= go
FUZZTIME  ?=
PATH_CONSUL := $(shell command -v consul 2>/dev/null)
CONSUL_BIN  ?= $(if $(PATH_CONSUL),$(PATH_CONSUL),$(CURDIR)/bin/consul)
export CONSUL_BIN

.PHONY: all test vet fuzz faults faults-stress bench-scale consul demo demo-federation build clean screenshot

all: build

build:
	$(GO) build -o bin/ ./cmd/...

consul: $(CONSUL_BIN)

# Built from the MPL-2.0 Consul v1.14.8 sources in tools/consul (a separate
# module, so the library's dependency graph stays clean).
$(CURDIR)/bin/consul: tools/consul/go.mod tools/consul/go.sum tools/consul/main.go
	@echo "building the Consul agent into bin/consul (cold: about 3-10 minutes and 3 GB of module and build cache)"
	cd tools/consul && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(CURDIR)/bin/consul .

vet:
	$(GO) vet ./...
	bash scripts/check-doc-snippets.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# After the whole tree, the two scenarios that once found duplicates run
# again beside a CPU hog (BEACON_STRESS=1, 5-second outages): about a
# minute.
test: consul vet
	$(GO) test -race -count=1 -timeout 15m ./...
	BEACON_STRESS=1 $(GO) test -race -count=1 -timeout 5m -run '^(TestAgentRestart|TestInstanceAgentKilled)$$' ./faults
	$(MAKE) fuzz

# Short runs of every fuzz target, one per go test (-fuzz takes one target),
# bounded by a count of inputs rather than a duration: a time-bounded run
# can end with a spurious "context deadline exceeded" failure. Counts keep
# the whole run near a minute on a 2-core machine. FUZZTIME=5m make fuzz for
# a longer, timed run of each.
FUZZ = $(GO) test -run '^$$' -fuzztime $(or $(FUZZTIME),$(2)) -fuzz '^$(1)$$' $(3)
fuzz:
	$(call FUZZ,FuzzDecodeHealth,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeHealthReusing,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeMeta,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeChecks,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeSummaries,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeAgentService,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeServices,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeOperator,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeDatacenters,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeNodeCoordinates,10000x,./consulhttp)
	$(call FUZZ,FuzzSortDatacentersByRTT,10000x,.)
	$(call FUZZ,FuzzDecodeQueries,10000x,./consulhttp)
	$(call FUZZ,FuzzDecodeExecute,10000x,./consulhttp)
	$(call FUZZ,FuzzValidateRegistration,30000x,.)
	$(call FUZZ,FuzzValidateCheck,20000x,.)
	$(call FUZZ,FuzzValidateQuery,10000x,.)
	$(call FUZZ,FuzzValidatePreparedQuery,10000x,.)
	$(call FUZZ,FuzzServicesQueryFilter,10000x,.)
	$(call FUZZ,FuzzValidateMaintenance,10000x,.)
	$(call FUZZ,FuzzValidateTaggedAddresses,10000x,.)
	$(call FUZZ,FuzzStartedAt,10000x,.)
	$(call FUZZ,FuzzParseAddress,10000x,./consul)
	$(call FUZZ,FuzzFromEnv,10000x,./consul)
	$(call FUZZ,FuzzDecodeSnapshots,10000x,./discovery)
	$(call FUZZ,FuzzParseTarget,4000x,./grpcresolver)
	$(call FUZZ,FuzzServiceNameParam,8000x,./cmd/sayhello)
	$(call FUZZ,FuzzFlagValues,8000x,./cmd/sayhello)
	$(call FUZZ,FuzzFlagValues,20000x,./cmd/beacon)
	$(call FUZZ,FuzzQueryFile,10000x,./cmd/beacon)
	$(call FUZZ,FuzzStatusAnswer,10000x,./cmd/beacon)
	$(call FUZZ,FuzzParseBench,10000x,./bench/plot)
	$(call FUZZ,FuzzRequest,5000x,./status)
	$(call FUZZ,FuzzParseHerd,10000x,./bench/plot)

# The fault suite (faults/) with 30-second outages on real clusters: prints
# the table of figures and writes it into docs/reliability.md with the
# machine and the date. `make test` runs the same scenarios with 5-second
# outages.
faults: consul
	@mkdir -p bin; rc=0; \
	BEACON_FAULTS=1 BEACON_FAULTS_DOC=$(CURDIR)/docs/reliability.md \
		$(GO) test -race -count=1 -timeout 20m -v -run '^Test' ./faults > bin/faults.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL|PASS)|^\s+(faults|harness|dup)_test.go:[0-9]+:|^\||^Run of|^goleak|^faults report|^duplicate windows' bin/faults.log | grep -v 'timeline'; \
	if [ $$rc -ne 0 ]; then echo "make faults: failed; the full log (agent logs included) is in bin/faults.log"; fi; \
	exit $$rc

# make faults beside a CPU hog (BEACON_STRESS=1: one busy process per
# core, started by each scenario once its cluster is up, killed when it
# ends); its table goes into docs/reliability.md next to make faults' one.
faults-stress: consul
	@mkdir -p bin; rc=0; \
	BEACON_STRESS=1 BEACON_FAULTS=1 BEACON_FAULTS_DOC=$(CURDIR)/docs/reliability.md \
		$(GO) test -race -count=1 -timeout 30m -v -run '^Test' ./faults > bin/faults-stress.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL|PASS)|^\s+(faults|harness|dup)_test.go:[0-9]+:|^\||^Run of|^goleak|^faults report|^duplicate windows' bin/faults-stress.log | grep -v 'timeline'; \
	if [ $$rc -ne 0 ]; then echo "make faults-stress: failed; the full log (agent logs and timelines included) is in bin/faults-stress.log"; fi; \
	exit $$rc

# The fleet-scale benchmarks at full size (BEACON_SCALE=full: 1,000, 10,000
# and 100,000 watched instances, 1,000 and 10,000 services of one; a 60 s
# idle window each), then the time the scale fixture takes to load 100,000
# instances: several minutes to half an hour. The whole output is in
# bin/bench-scale.log, heap profiles in bin/watchmany-*.pprof (go tool
# pprof -top), BenchmarkFleet's herd histogram (200 hosts, BEACON_FLEET_CACHES)
# in bin/herd.tsv (BEACON_BENCH_DIR); the benchmark
# lines and the load time are printed. Then bench/plot draws the charts
# (docs/img/*.svg) and rewrites the generated section of
# docs/performance.md, failed sizes shown as failed.
bench-scale: consul
	@mkdir -p bin; rc=0; rm -f bin/herd.tsv; \
	echo "loadavg before: $$(cat /proc/loadavg 2>/dev/null)" > bin/bench-scale.log; \
	BEACON_SCALE=full BEACON_IDLE=$(or $(BEACON_IDLE),60s) BEACON_HEAPPROFILE=$(CURDIR)/bin/watchmany BEACON_BENCH_DIR=$(or $(BEACON_BENCH_DIR),$(CURDIR)/bin) \
		$(GO) test -count=1 -run '^$$' -bench 'WatchMany|LargeService|Fleet' -benchtime 1x -timeout 90m ./bench/ >> bin/bench-scale.log 2>&1 || rc=$$?; \
	BEACON_SCALE=full $(GO) test -count=1 -v -run '^TestPopulateScale$$' -timeout 15m ./consultest >> bin/bench-scale.log 2>&1 || rc=$$?; \
	echo "loadavg after: $$(cat /proc/loadavg 2>/dev/null)" >> bin/bench-scale.log; \
	grep -E '^(Benchmark|ok|FAIL|PASS|--- )|loaded [0-9]+ instances' bin/bench-scale.log; \
	$(GO) run ./bench/plot -bench bin/bench-scale.log -herd bin/herd.tsv -doc docs/performance.md -img docs/img || rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "make bench-scale: failed; the full log is in bin/bench-scale.log"; fi; \
	exit $$rc

# The README's picture of the status page (docs/img/status-page.png):
# TestStatusPageInBrowser in headless Chromium on a real agent writes a
# full-page PNG; it waits for four samples of the page's picture, about
# 45 s. Needs chromium (apt-get install chromium).
screenshot: consul
	BEACON_REQUIRE_BROWSER=1 BEACON_SCREENSHOT=$(CURDIR)/docs/img/status-page.png \
		$(GO) test -count=1 -run '^TestStatusPageInBrowser$$' ./cmd/sayhello

demo: consul
	@CONSUL_BIN=$(CONSUL_BIN) bash scripts/demo.sh

# Two federated datacenters, SayHello in both, a caller in dc1 failing over
# to dc2 when dc1's instances are killed (the command is printed).
demo-federation: consul
	@CONSUL_BIN=$(CONSUL_BIN) bash scripts/demo-federation.sh

clean:
	rm -rf bin
