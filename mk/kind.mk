# A local cluster with kind: images built with docker, loaded into the kind node, the base
# applied with kustomize. These targets need docker, kind and kubectl, and say which is missing.
KIND_CLUSTER ?= pagewright
VERSION ?= 0.1.0
RUNNER_IMAGE ?= pagewright-runner:$(VERSION)
MANAGER_IMAGE ?= pagewright-manager:$(VERSION)
STORAGE_IMAGE ?= pagewright-storage:$(VERSION)
GATEWAY_IMAGE ?= pagewright-gateway:$(VERSION)
PREVIEW_IMAGE ?= pagewright-preview:$(VERSION)
NAMESPACE ?= pagewright

require = @for tool in $(1); do command -v $$tool >/dev/null 2>&1 || { echo "error: '$$tool' is not installed or not on PATH (needed by make $@)" >&2; exit 1; }; done

.PHONY: kind-up kind-down deploy undeploy

# images: mk/images.mk. The same images, overlay and deploy steps as `make dev-cluster` (which
# the tests run on a real node here): only kind itself is not tested.
kind-up: images build
	$(call require,kind kubectl)
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --config deploy/kind/cluster.yaml --name $(KIND_CLUSTER)
	kind load docker-image --name $(KIND_CLUSTER) $(RUNNER_IMAGE) $(MANAGER_IMAGE) $(STORAGE_IMAGE) $(GATEWAY_IMAGE) $(PREVIEW_IMAGE)
	kubectl config use-context kind-$(KIND_CLUSTER)
	deploy/apply.sh deploy/dev
	node dist/cli/main.js sites push harbor-lane-bakery examples/site -n $(NAMESPACE)
	@echo
	@echo "Pagewright is running in namespace $(NAMESPACE), with site harbor-lane-bakery in storage. Next:"
	@echo "  kubectl -n $(NAMESPACE) apply -f examples/job.yaml && kubectl -n $(NAMESPACE) get pwj -w"

kind-down:
	$(call require,kind)
	kind delete cluster --name $(KIND_CLUSTER)

# Applies the base to the current kubectl context (deploy/apply.sh: the internal Secret once,
# the LLM Secret once, its key replaced only from PAGEWRIGHT_LLM_KEY (never reset without it),
# then the rollouts).
deploy:
	deploy/apply.sh deploy/k8s

# jobs first, while the manager runs: their finalizer cleans up pods and Secrets
undeploy:
	$(call require,kubectl)
	-kubectl -n $(NAMESPACE) delete pagewrightjobs --all --wait --timeout=120s
	kubectl delete -k deploy/k8s --ignore-not-found
