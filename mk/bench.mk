# Benchmarks: each prints a table and a HEADLINE line, and appends its figures to
# bench/results/*.jsonl. BENCH_RUNS (default 5) sets the repetitions. make test runs each once in
# smoke mode (BENCH_SMOKE=1, smallest sizes, nothing recorded; bench/lib.ts), so a bench that no
# longer starts or whose checks fail fails the suite; bench-smoke runs only those tests (e2e's on
# the real node: root, images).
.PHONY: bench bench-smoke bench-storage bench-s3 bench-runner bench-admission bench-admission-index bench-gateway bench-preview bench-diff bench-site-git bench-checks bench-memory bench-e2e

bench-smoke: build control-plane seaweedfs images
	mocha test/integration/bench-smoke.test.ts test/node/bench-e2e-smoke.test.ts

bench: build control-plane seaweedfs
	tsx bench/storage-throughput.ts
	tsx bench/storage-s3.ts
	tsx bench/runner-artifacts.ts
	tsx bench/manager-admission.ts
	tsx bench/admission-index.ts
	tsx bench/gateway.ts
	tsx bench/preview.ts
	tsx bench/diff.ts
	tsx bench/manager-memory.ts
	tsx bench/site-git.ts
	tsx bench/site-checks.ts
	tsx bench/e2e.ts

bench-storage: build
	tsx bench/storage-throughput.ts

# storage on its s3 backend against the AWS SDK straight to SeaweedFS (make seaweedfs: the cached weed)
bench-s3: build seaweedfs
	tsx bench/storage-s3.ts

bench-runner: build
	tsx bench/runner-artifacts.ts

bench-admission: build control-plane
	tsx bench/manager-admission.ts

# in process, no apiserver: only the pinned Node (deps)
bench-admission-index: deps
	tsx bench/admission-index.ts

# in process and two local processes (a fast upstream, the gateway): no apiserver
bench-gateway: deps
	tsx bench/gateway.ts

# in process (storage) and three local processes (the preview, nginx, a bare Node server) under wrk:
# needs Debian's nginx-light and wrk (test/support/node/prereqs.sh installs them)
bench-preview: build
	tsx bench/preview.ts

# diff.patch (runner/diff.ts) against git diff --no-index on a generated 50 MiB site (BENCH_DIFF_MIB)
bench-diff: deps
	tsx bench/diff.ts

# GitClient publish/import (manager/sites/git-client.ts) against plain git over the same git http-backend, and a
# site push (packDirectory + storage, in process) against a raw PUT, on a generated 1,000-file site
# (BENCH_SITE_GIT_FILES); needs only the system git
bench-site-git: deps
	tsx bench/site-git.ts

# the runner's HTML and link checks (runner/checks/) against a read + parse5.parse of every page, on a
# generated 1,000-page site (BENCH_CHECKS_PAGES), 5% of its pages modified and one deleted; in process
bench-checks: deps
	tsx bench/site-checks.ts

bench-memory: build control-plane
	tsx bench/manager-memory.ts

bench-e2e: build control-plane
	tsx bench/e2e.ts
