#!/usr/bin/env bash
# Builds the pinned Kubernetes from Go modules into a cache outside the repo:
#   ${PAGEWRIGHT_CACHE_DIR:-~/.cache/pagewright}/k8s-<version>-etcd-<version>/
# the control plane (kube-apiserver, etcd, kubectl) and a real node's components (kubelet,
# kube-scheduler, kube-controller-manager, kube-proxy), all from the one pinned k8s.io/kubernetes,
# plus the node's cluster DNS (coredns/, its own module), its pod sandbox process (pause/) and its
# NetworkPolicy enforcer, kube-router (kube-router/, its own module, its own stamp: a change to it
# rebuilds only it). kube-router v2.1.0 is flagged by the Go module index for reported security
# flaws: it is a test enforcer for the throwaway node on this machine, never shipped (no image, no
# deploy/ manifest carries it).
# Reuses them when present (a warm call returns at once); Go's module and build caches make a
# rebuild after a version bump fast. Prints the binaries' directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${PAGEWRIGHT_CACHE_DIR:-$HOME/.cache/pagewright}
out=$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
# the contents only: a second checkout (another path) reuses the same build
stamp="$K8S_VERSION $ETCD_VERSION $(cat "$here"/go.{mod,sum} "$here"/coredns/{go.mod,go.sum,main.go} "$here"/pause/main.go | sha256sum | cut -c1-16)"

# kube-router's version is the one its wrapper module requires (one place to bump it)
KUBE_ROUTER_VERSION=$(awk '$1 == "require" && $2 == "github.com/cloudnativelabs/kube-router/v2" { print $3 }' "$here/kube-router/go.mod")
[[ -n $KUBE_ROUTER_VERSION ]] || { echo "control plane: kube-router/go.mod requires no github.com/cloudnativelabs/kube-router/v2" >&2; exit 1; }
kube_router_stamp="$KUBE_ROUTER_VERSION $(cat "$here"/kube-router/{go.mod,go.sum,tools.go} | sha256sum | cut -c1-16)"

k8s_commands=(kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager kube-proxy)
binaries=("${k8s_commands[@]}" etcd coredns pause)
all_present() { local b; for b in "${binaries[@]}"; do [[ -x $out/$b ]] || return 1; done; }
k8s_current() { all_present && [[ -f $out/.stamp && "$(cat "$out/.stamp")" == "$stamp" ]]; }
kube_router_current() { [[ -x $out/kube-router && -f $out/.stamp-kube-router && "$(cat "$out/.stamp-kube-router")" == "$kube_router_stamp" ]]; }
if k8s_current && kube_router_current; then
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
# the module proxy is on the network: retry a failed download (finished modules stay cached)
download_modules() {
  local attempt
  for attempt in 1 2 3; do
    if go mod download 2>"$out/download.log"; then rm -f "$out/download.log"; return 0; fi
    if (( attempt == 3 )); then cat "$out/download.log" >&2; echo "control plane: go mod download failed 3 times in $PWD" >&2; exit 1; fi
    echo "control plane: go mod download failed (attempt $attempt of 3): $(tail -1 "$out/download.log"); retrying in $(( attempt * 15 )) s" >&2
    sleep $(( attempt * 15 ))
  done
}

# kube-router: the real node's NetworkPolicy enforcer (test/support/node/kube-router.ts), built
# from its module pinned in kube-router/go.mod. A TEST ENFORCER ON THIS MACHINE, NEVER SHIPPED:
# the Go module index flags reported security flaws in v2.1.0.
if ! kube_router_current; then
  kr_start=$(date +%s)
  echo "control plane: building kube-router $KUBE_ROUTER_VERSION (the node's NetworkPolicy enforcer; a test tool, never shipped)" >&2
  (cd kube-router && download_modules)
  (cd kube-router && go build -trimpath -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=$build_date" \
    -o "$out/kube-router.new" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  mv "$out/kube-router.new" "$out/kube-router"
  echo "$kube_router_stamp" > "$out/.stamp-kube-router"
  echo "control plane: kube-router built in $(( $(date +%s) - kr_start ))s" >&2
fi
if k8s_current; then
  echo "control plane: reusing $out" >&2
  echo "$out"
  exit 0
fi

echo "control plane: downloading modules (first time: ~800 MB into $(go env GOMODCACHE))" >&2
download_modules
(cd coredns && download_modules)
for cmd in "${k8s_commands[@]}"; do
  echo "control plane: building $cmd $K8S_VERSION (cold: the first takes many minutes on 2 cores)" >&2
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$out/$cmd.new" "k8s.io/kubernetes/cmd/$cmd"
done
echo "control plane: building etcd $ETCD_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$out/etcd.new" go.etcd.io/etcd/server/v3
echo "control plane: building coredns and pause (the real node's DNS and pod sandbox)" >&2
(cd coredns && go build -trimpath -ldflags "-s -w" -o "$out/coredns.new" .)
go build -trimpath -ldflags "-s -w" -o "$out/pause.new" ./pause
for b in "${binaries[@]}"; do mv "$out/$b.new" "$out/$b"; done
echo "$stamp" > "$out/.stamp"
echo "control plane: built in $(( $(date +%s) - start ))s: $("$out/kube-apiserver" --version), etcd $("$out/etcd" --version | head -1)" >&2
echo "$out"
