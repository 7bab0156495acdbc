#!/usr/bin/env bash
# Builds the pinned kube-apiserver and etcd from Go modules into a cache outside the repo:
#   ${PAGEWRIGHT_CACHE_DIR:-~/.cache/pagewright}/k8s-<version>-etcd-<version>/{kube-apiserver,etcd,kubectl}
# Reuses them when present (a warm call returns at once); Go's module and build caches make a
# rebuild after a version bump fast. Prints the binaries' directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${PAGEWRIGHT_CACHE_DIR:-$HOME/.cache/pagewright}
out=$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
# the contents only: a second checkout (another path) reuses the same build
stamp="$K8S_VERSION $ETCD_VERSION $(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"

if [[ -x $out/kube-apiserver && -x $out/etcd && -x $out/kubectl && -f $out/.stamp && "$(cat "$out/.stamp")" == "$stamp" ]]; then
  echo "control plane: reusing $out" >&2
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "control plane: Go is not installed (need go >= 1.24 with the module proxy)" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
mkdir -p "$out"
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
# stamp the real release version, as Kubernetes' own build does (hack/lib/golang.sh);
# an unstamped apiserver reports v0.0.0 and fails its emulation-version checks
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

cd "$here"
start=$(date +%s)
echo "control plane: downloading modules (first time: ~700 MB into $(go env GOMODCACHE))" >&2
# the module proxy is on the network: retry a failed download (finished modules stay cached)
for attempt in 1 2 3; do
  if go mod download 2>"$out/download.log"; then break; fi
  if (( attempt == 3 )); then cat "$out/download.log" >&2; echo "control plane: go mod download failed 3 times" >&2; exit 1; fi
  echo "control plane: go mod download failed (attempt $attempt of 3): $(tail -1 "$out/download.log"); retrying in $(( attempt * 15 )) s" >&2
  sleep $(( attempt * 15 ))
done
rm -f "$out/download.log"
echo "control plane: building kube-apiserver $K8S_VERSION (cold: many minutes on 2 cores)" >&2
go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$out/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver
echo "control plane: building kubectl $K8S_VERSION" >&2
go build -trimpath -ldflags "$ldflags" -o "$out/kubectl.new" k8s.io/kubernetes/cmd/kubectl
echo "control plane: building etcd $ETCD_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$out/etcd.new" go.etcd.io/etcd/server/v3
mv "$out/kube-apiserver.new" "$out/kube-apiserver"
mv "$out/etcd.new" "$out/etcd"
mv "$out/kubectl.new" "$out/kubectl"
echo "$stamp" > "$out/.stamp"
echo "control plane: built in $(( $(date +%s) - start ))s: $("$out/kube-apiserver" --version), etcd $("$out/etcd" --version | head -1)" >&2
echo "$out"
