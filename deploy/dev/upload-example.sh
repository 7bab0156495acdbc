#!/usr/bin/env bash
# Uploads examples/site as the site harbor-lane-bakery to Pagewright's storage in the current
# kubectl context, the way the README does it: kubectl port-forward to the storage Service and
# a PUT with the storage admin token. Prints the stored version (the artifact's sha256).
# KUBECTL overrides the kubectl binary; NAMESPACE defaults to pagewright.
set -euo pipefail
cd "$(dirname "$0")/../.."
ns=${NAMESPACE:-pagewright}
kubectl=${KUBECTL:-kubectl}
site=${SITE_ID:-harbor-lane-bakery}
for tool in "$kubectl" curl tar base64; do
  command -v "$tool" >/dev/null || { echo "upload-example: '$tool' is not installed or not on PATH" >&2; exit 1; }
done

token=$("$kubectl" -n "$ns" get secret pagewright-internal -o jsonpath='{.data.storage-admin-token}' | base64 -d)
log=$(mktemp)
"$kubectl" -n "$ns" port-forward svc/pagewright-storage :8080 >"$log" 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" | head -1)
  [[ -n $port ]] && break
  kill -0 "$forward" 2>/dev/null || { echo "upload-example: kubectl port-forward failed: $(cat "$log")" >&2; exit 1; }
  sleep 0.2
done
[[ -n $port ]] || { echo "upload-example: kubectl port-forward did not start: $(cat "$log")" >&2; exit 1; }
tar czf - -C examples/site . | curl -sSf -T - -H "Authorization: Bearer $token" "http://127.0.0.1:$port/sites/$site/artifact"
echo
