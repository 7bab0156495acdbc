#!/usr/bin/env bash
# Installs and starts what the images and the real test node need, on a Debian machine, as root:
#   Debian packages: docker.io (dockerd, containerd, runc, ctr), containernetworking-plugins (the
#   CNI plugins), debootstrap (the local base image when no registry is reachable), iptables,
#   ipset and conntrack (kube-proxy, kube-router), openssl; chromium (the preview's browser tests,
#   test/integration/preview-browser.test.ts, drive it headless with playwright-core); nginx-light
#   and wrk (bench/preview.ts: nginx is the baseline, wrk the load);
#   a running Docker engine (started in the background when none answers).
# Idempotent and quick when all is there. `make test`, `make images` and `make dev-cluster` run it.
set -euo pipefail
cache=${PAGEWRIGHT_CACHE_DIR:-$HOME/.cache/pagewright}

declare -A package_of=(
  [dockerd]=docker.io [containerd]=containerd [runc]=runc [ctr]=containerd
  [debootstrap]=debootstrap [iptables]=iptables [ipset]=ipset [conntrack]=conntrack [openssl]=openssl
  [chromium]=chromium [nginx]=nginx-light [wrk]=wrk
)
missing=()
for cmd in "${!package_of[@]}"; do command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}"); done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback && -x /usr/lib/cni/portmap ]] || missing+=(containernetworking-plugins)
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -ne 0 ]]; then
    echo "prereqs: missing Debian packages: ${missing[*]}; install them as root (sudo apt-get install ${missing[*]}) or run this script as root" >&2
    exit 1
  fi
  echo "prereqs: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "prereqs: the Docker engine is not running; start it (sudo dockerd &, or your service manager)" >&2
    exit 1
  fi
  mkdir -p "$cache"
  echo "prereqs: starting dockerd in the background (log: $cache/dockerd.log)" >&2
  setsid nohup dockerd >>"$cache/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "prereqs: dockerd did not come up; see $cache/dockerd.log" >&2; tail -20 "$cache/dockerd.log" >&2; exit 1; }
fi
