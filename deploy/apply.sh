#!/usr/bin/env bash
# Installs or updates Pagewright on the current kubectl context:
#   deploy/apply.sh [KUSTOMIZATION]     default deploy/k8s; deploy/dev for a laptop cluster
# The internal Secret (storage admin token, job-token key) is created once with random values.
# With PAGEWRIGHT_LLM_KEY set, the LLM Secret gets that key and PAGEWRIGHT_LLM_URL (default the
# OpenAI API), and the manager restarts to read it. Then it waits for the rollouts.
# KUBECTL overrides the kubectl binary; NAMESPACE must match the kustomization's (pagewright).
set -euo pipefail
cd "$(dirname "$0")/.."
kustomization=${1:-deploy/k8s}
ns=${NAMESPACE:-pagewright}
kubectl=${KUBECTL:-kubectl}
command -v "$kubectl" >/dev/null || { echo "deploy: '$kubectl' is not installed or not on PATH" >&2; exit 1; }
command -v openssl >/dev/null || { echo "deploy: 'openssl' is not installed (it makes the internal tokens)" >&2; exit 1; }

"$kubectl" apply -f deploy/k8s/namespace.yaml
if ! "$kubectl" -n "$ns" get secret pagewright-internal >/dev/null 2>&1; then
  "$kubectl" -n "$ns" create secret generic pagewright-internal \
    --from-literal=storage-admin-token="$(openssl rand -hex 24)" --from-literal=token-secret="$(openssl rand -hex 32)"
fi
"$kubectl" apply -k "$kustomization"
if [[ -n ${PAGEWRIGHT_LLM_KEY:-} ]]; then
  # re-applying the kustomization put the placeholder (or the demo model) back: set the real key
  "$kubectl" -n "$ns" create secret generic pagewright-llm --from-literal=api-key="$PAGEWRIGHT_LLM_KEY" \
    --from-literal=base-url="${PAGEWRIGHT_LLM_URL:-https://api.openai.com/v1}" --dry-run=client -o yaml | "$kubectl" apply -f -
  # the key reaches the manager as env, read at start
  "$kubectl" -n "$ns" rollout restart deployment/pagewright-manager
elif [[ $kustomization == deploy/k8s ]]; then
  echo "note: PAGEWRIGHT_LLM_KEY is not set; jobs will fail with LLMAuthFailed until you set the pagewright-llm Secret (README)"
fi
for deployment in $("$kubectl" -n "$ns" get deployments -o name); do
  "$kubectl" -n "$ns" rollout status "$deployment" --timeout=180s
done
