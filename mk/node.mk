# The real node (test/support/node): a single-node Kubernetes cluster on this machine, from the
# pinned modules (make control-plane) and the images (make images). Needs root, and installs
# what it lacks from Debian packages (test/support/node/prereqs.sh).
.PHONY: node-prereqs test-node dev-cluster dev-cluster-down

node-prereqs:
	@test/support/node/prereqs.sh

# the suites that run on the real node: the manager, deploy/k8s and the README end to end
test-node: typecheck build control-plane images
	mocha 'test/node/**/*.test.ts' 'test/e2e/**/*.test.ts'

# build: the example is pushed with the CLI (dist/cli/main.js), as the README does
dev-cluster: deps build control-plane images
	tsx test/support/dev-cluster.ts up

dev-cluster-down: deps
	tsx test/support/dev-cluster.ts down
