#!/usr/bin/env bash
# Installs or updates Pagewright on the current kubectl context:
#   deploy/apply.sh [KUSTOMIZATION]     default deploy/k8s; deploy/dev for a laptop cluster
# The internal Secret (storage admin token, runner-credential key, gateway-credential key, the
# gateway's report token) is created once with random values; a key an older install lacks is
# added. The LLM Secret is not part of any kustomization (re-applying one would put its
# placeholder back over a real key): it is created once, from KUSTOMIZATION/llm-secret.yaml
# (deploy/k8s: a placeholder; deploy/dev: the demo model), and only PAGEWRIGHT_LLM_KEY replaces
# its key, with PAGEWRIGHT_LLM_URL (default the OpenAI API); the gateway, its only reader, then
# restarts. Without PAGEWRIGHT_LLM_KEY an existing key is never touched. The review API's serving
# certificate (Secret pagewright-preview-tls) is made once, with a CA of its own, and that CA is
# set as the APIService's caBundle after every apply. Then it waits for the rollouts (WAIT=false
# skips that).
# KUBECTL overrides the kubectl binary; NAMESPACE must match the kustomization's (pagewright).
set -euo pipefail
cd "$(dirname "$0")/.."
kustomization=${1:-deploy/k8s}
ns=${NAMESPACE:-pagewright}
kubectl=${KUBECTL:-kubectl}
command -v "$kubectl" >/dev/null || { echo "deploy: '$kubectl' is not installed or not on PATH" >&2; exit 1; }
command -v openssl >/dev/null || { echo "deploy: 'openssl' is not installed (it makes the internal tokens)" >&2; exit 1; }

"$kubectl" apply -f deploy/k8s/namespace.yaml
# name=bytes of random hex for each internal key
internal_keys=(storage-admin-token=24 token-secret=32 gateway-secret=32 gateway-report-token=24)
if ! "$kubectl" -n "$ns" get secret pagewright-internal >/dev/null 2>&1; then
  args=()
  for key in "${internal_keys[@]}"; do args+=(--from-literal="${key%%=*}=$(openssl rand -hex "${key##*=}")"); done
  "$kubectl" -n "$ns" create secret generic pagewright-internal "${args[@]}"
else
  for key in "${internal_keys[@]}"; do
    name=${key%%=*}
    if [[ -z $("$kubectl" -n "$ns" get secret pagewright-internal -o "jsonpath={.data.$name}") ]]; then
      echo "adding $name to the pagewright-internal Secret"
      "$kubectl" -n "$ns" patch secret pagewright-internal --type=merge -p "{\"stringData\":{\"$name\":\"$(openssl rand -hex "${key##*=}")\"}}"
    fi
  done
fi
# the review API's serving certificate, made once: a CA of its own (the APIService trusts only
# it), a server certificate for the Service's name, both for ten years
if ! "$kubectl" -n "$ns" get secret pagewright-preview-tls >/dev/null 2>&1; then
  tls=$(mktemp -d)
  svc="pagewright-preview.$ns.svc"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=pagewright-preview-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$svc" -keyout "$tls/tls.key" -out "$tls/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$svc" "$svc" >"$tls/ext"
  openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 3650 -extfile "$tls/ext" \
    -out "$tls/tls.crt" 2>/dev/null
  "$kubectl" -n "$ns" create secret generic pagewright-preview-tls \
    --from-file=tls.crt="$tls/tls.crt" --from-file=tls.key="$tls/tls.key" --from-file=ca.crt="$tls/ca.crt"
  rm -rf "$tls"
fi
# before the kustomization, so the gateway finds its Secret when it first starts
llm_template=$kustomization/llm-secret.yaml
[[ -f $llm_template ]] || llm_template=deploy/k8s/llm-secret.yaml
if [[ -n ${PAGEWRIGHT_LLM_KEY:-} ]]; then
  echo "setting the LLM key of the pagewright-llm Secret from PAGEWRIGHT_LLM_KEY"
  "$kubectl" -n "$ns" create secret generic pagewright-llm --from-literal=api-key="$PAGEWRIGHT_LLM_KEY" \
    --from-literal=base-url="${PAGEWRIGHT_LLM_URL:-https://api.openai.com/v1}" --dry-run=client -o yaml | "$kubectl" apply -f -
elif ! "$kubectl" -n "$ns" get secret pagewright-llm >/dev/null 2>&1; then
  "$kubectl" -n "$ns" create -f "$llm_template"
else
  echo "keeping the pagewright-llm Secret as it is (PAGEWRIGHT_LLM_KEY is not set)"
fi
"$kubectl" apply -k "$kustomization"
# the apiserver trusts the review API's certificate through this, and only through this
ca_bundle=$("$kubectl" -n "$ns" get secret pagewright-preview-tls -o 'jsonpath={.data.ca\.crt}')
"$kubectl" patch apiservice v1alpha1.review.pagewright.dev --type=merge -p "{\"spec\":{\"caBundle\":\"$ca_bundle\"}}" >/dev/null
if [[ -n ${PAGEWRIGHT_LLM_KEY:-} ]]; then
  # the key reaches the gateway as env, read at start
  "$kubectl" -n "$ns" rollout restart deployment/pagewright-gateway
elif [[ $("$kubectl" -n "$ns" get secret pagewright-llm -o 'jsonpath={.data.api-key}' | base64 -d) == replace-me ]]; then
  echo "note: the LLM key is the placeholder; jobs will fail with LLMAuthFailed until you set it (PAGEWRIGHT_LLM_KEY=... make deploy, README)"
fi
if [[ ${WAIT:-true} != false ]]; then
  for deployment in $("$kubectl" -n "$ns" get deployments -o name); do
    "$kubectl" -n "$ns" rollout status "$deployment" --timeout=180s
  done
  # the review API answers through the apiserver once the aggregator has seen it healthy
  "$kubectl" wait --for=condition=Available apiservice/v1alpha1.review.pagewright.dev --timeout=120s
fi
