# A local cluster with kind: images built with docker, loaded into the kind node, the base
# applied with kustomize. These targets need docker, kind and kubectl, and say which is missing.
KIND_CLUSTER ?= pagewright
VERSION ?= 0.1.0
RUNNER_IMAGE ?= pagewright-runner:$(VERSION)
MANAGER_IMAGE ?= pagewright-manager:$(VERSION)
STORAGE_IMAGE ?= pagewright-storage:$(VERSION)
NAMESPACE ?= pagewright

require = @for tool in $(1); do command -v $$tool >/dev/null 2>&1 || { echo "error: '$$tool' is not installed or not on PATH (needed by make $@)" >&2; exit 1; }; done

.PHONY: kind-up kind-down deploy undeploy

# images: mk/images.mk
kind-up: images
	$(call require,kind kubectl)
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --config deploy/kind/cluster.yaml --name $(KIND_CLUSTER)
	kind load docker-image --name $(KIND_CLUSTER) $(RUNNER_IMAGE) $(MANAGER_IMAGE) $(STORAGE_IMAGE)
	kubectl config use-context kind-$(KIND_CLUSTER)
	$(MAKE) --no-print-directory deploy
	@echo
	@echo "Pagewright is running in namespace $(NAMESPACE). Next:"
	@echo "  upload a site:   kubectl -n $(NAMESPACE) port-forward svc/pagewright-storage 8080:8080 &"
	@echo "                   tar czf - -C examples/site . | curl -T - -H \"Authorization: Bearer \$$(kubectl -n $(NAMESPACE) get secret pagewright-internal -o jsonpath='{.data.storage-admin-token}' | base64 -d)\" http://127.0.0.1:8080/sites/harbor-lane-bakery/artifact"
	@echo "  submit a job:    kubectl -n $(NAMESPACE) apply -f examples/job.yaml && kubectl -n $(NAMESPACE) get pwj -w"
	@echo "  runner /status:  kubectl -n $(NAMESPACE) port-forward pod/<pod name from 'kubectl get pods'> 8082:8082 & curl -s http://127.0.0.1:8082/status"

kind-down:
	$(call require,kind)
	kind delete cluster --name $(KIND_CLUSTER)

# Applies the base to the current kubectl context: the internal Secret is created once (random
# tokens), the LLM key is set from PAGEWRIGHT_LLM_KEY when given, then the rollouts are awaited.
deploy:
	$(call require,kubectl openssl)
	kubectl apply -f deploy/k8s/namespace.yaml
	@kubectl -n $(NAMESPACE) get secret pagewright-internal >/dev/null 2>&1 || \
	  kubectl -n $(NAMESPACE) create secret generic pagewright-internal \
	    --from-literal=storage-admin-token="$$(openssl rand -hex 24)" --from-literal=token-secret="$$(openssl rand -hex 32)"
	kubectl apply -k deploy/k8s
	@if [ -n "$${PAGEWRIGHT_LLM_KEY:-}" ]; then \
	  kubectl -n $(NAMESPACE) create secret generic pagewright-llm --from-literal=api-key="$$PAGEWRIGHT_LLM_KEY" \
	    --from-literal=base-url="$${PAGEWRIGHT_LLM_URL:-https://api.openai.com/v1}" --dry-run=client -o yaml | kubectl apply -f -; \
	else echo "note: PAGEWRIGHT_LLM_KEY is not set; jobs will fail with LLMAuthFailed until you set the pagewright-llm Secret (README)"; fi
	kubectl -n $(NAMESPACE) rollout status deployment/pagewright-storage --timeout=180s
	kubectl -n $(NAMESPACE) rollout status deployment/pagewright-manager --timeout=180s

# jobs first, while the manager runs: their finalizer cleans up pods and Secrets
undeploy:
	$(call require,kubectl)
	-kubectl -n $(NAMESPACE) delete pagewrightjobs --all --wait --timeout=120s
	kubectl delete -k deploy/k8s --ignore-not-found
