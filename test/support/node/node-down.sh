#!/usr/bin/env bash
# Tears down the real test node (test/support/node/cluster.ts) completely, whatever state it is
# in: after a clean stop, after its owner was SIGKILLed, or half set up. Idempotent; safe when
# nothing is there. Leaves no process, mount, cgroup, network namespace, link, iptables rule or
# ipset of the node behind, and touches nothing else (docker's own chains and bridge stay).
#   node-down.sh RUN_DIR
# RUN_DIR is the node's state directory: every process of the node has it in its command line,
# every mount of the node is under it (but the network namespaces, see below).
set -uo pipefail
run_dir=${1:?usage: node-down.sh RUN_DIR}
[[ $run_dir == /* && ${#run_dir} -gt 8 ]] || { echo "node-down: refusing RUN_DIR '$run_dir'" >&2; exit 2; }
bridge=${PAGEWRIGHT_NODE_BRIDGE:-pw0}

pids_matching() { # PIDs whose command line contains $1 (never this script or its subshells)
  # the needle goes in through the environment: in awk's arguments it would match awk itself
  ps -eo pid=,args= | NEEDLE=$1 awk 'index($0, ENVIRON["NEEDLE"]) && $0 !~ /node-down\.sh/ { print $1 }'
}
kill_matching() { local pids; pids=$(pids_matching "$1"); [[ -n $pids ]] && kill -9 $pids 2>/dev/null; true; }

# 1. what starts containers (kubelet) and what programs the network, first
for component in kubelet kube-proxy kube-router kube-scheduler kube-controller-manager; do
  pids=$(ps -eo pid=,args= | D=$run_dir C="/$component " awk 'index($0, ENVIRON["D"]) && index($0, ENVIRON["C"]) { print $1 }')
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null
done

# 2. every container process: they live under the node's own cgroup root (the kubelet's
# cgroupRoot, so no other kubelet's pods are touched), in every v1 hierarchy or in the v2 tree
cgroup_name=${PAGEWRIGHT_NODE_CGROUP:-pagewright-node}
kill_cgroup_tree() {
  local root=$1 i procs
  for i in 1 2 3 4 5 6 7 8 9 10; do
    procs=$(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z $procs ]] && return 0
    kill -9 $procs 2>/dev/null
    sleep 0.2
  done
}
cgroup_roots=()
for hierarchy in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do [[ -d ${hierarchy}$cgroup_name ]] && cgroup_roots+=("${hierarchy}$cgroup_name"); done
for root in "${cgroup_roots[@]}"; do kill_cgroup_tree "$root"; done

# 3. containerd and its shims (a shim's -address names the node's socket under RUN_DIR), then the
# control plane processes started for the node (their flags name files under RUN_DIR)
kill_matching "$run_dir"
sleep 0.3
kill_matching "$run_dir"

# 4. mounts: everything under RUN_DIR (kubelet volumes, container rootfs, sandbox shm), deepest first
for attempt in 1 2 3; do
  mounts=$(awk -v d="$run_dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  [[ -z $mounts ]] && break
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done <<<"$mounts"
done

# 5. network namespaces: containerd's CRI keeps them in /var/run/netns/cni-*; remove the ones no
# process uses any more (a namespace of another runtime on this machine has its pause process)
for ns in /var/run/netns/cni-*; do
  [[ -e $ns ]] || continue
  if [[ -z $(ip netns pids "$(basename "$ns")" 2>/dev/null) ]]; then
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null
    rm -f "$ns"
  fi
done

# 6. links: the node's bridge (its veths went with the namespaces)
ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"

# 7. iptables, IPv4 and IPv6: the jumps into the node's chains from the built-in chains, then the
# chains themselves. KUBE-* are kube-proxy's, the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY)
# and kube-router's (KUBE-ROUTER-INPUT/FORWARD/OUTPUT, KUBE-POD-FW-*, KUBE-NWPLCY-*: every name it
# makes starts with KUBE-; its own --cleanup-config panicked in v2.1.0); CNI-* the bridge, portmap
# and firewall plugins'. docker's chains are left alone.
ours='^(KUBE-|CNI-)'
for tool in iptables ip6tables; do
  command -v "$tool" >/dev/null || continue
  for table in filter nat mangle raw; do
    rules=$("$tool-save" -t "$table" 2>/dev/null) || continue
    # -A CHAIN ... -j TARGET where CHAIN is not ours and TARGET is: delete the rule
    grep -E '^-A ' <<<"$rules" | while read -r line; do
      chain=$(awk '{ print $2 }' <<<"$line")
      target=$(grep -oE ' -j [^ ]+' <<<"$line" | awk '{ print $2 }')
      [[ $chain =~ $ours ]] && continue
      if [[ $target =~ $ours ]]; then
        eval "$tool -w -t $table -D ${line#-A }" 2>/dev/null
      fi
    done
    chains=$(grep -oE '^:[^ ]+' <<<"$rules" | cut -c2- | grep -E "$ours")
    for c in $chains; do "$tool" -w -t "$table" -F "$c" 2>/dev/null; done
    for c in $chains; do "$tool" -w -t "$table" -X "$c" 2>/dev/null; done
  done
done

# 8. ipsets: kube-router's NetworkPolicy sets (KUBE-SRC-*, KUBE-DST-*), free once no rule names them
ours_sets='^(KUBE-|kube-router)'
if command -v ipset >/dev/null; then
  for set in $(ipset list -n 2>/dev/null | grep -E "$ours_sets"); do ipset destroy "$set" 2>/dev/null; done
fi

# 9. the pod cgroups themselves, leaves first
for root in "${cgroup_roots[@]}"; do
  find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 10. the state, and the dev overlay's storage volume (deploy/dev/storage-volume.yaml)
rm -rf "$run_dir" /var/lib/pagewright-dev

# what is left, if anything, is an error worth seeing
left=""
[[ -n $(pids_matching "$run_dir") ]] && left+=" processes"
grep -qF " $run_dir" /proc/self/mountinfo && left+=" mounts"
ip link show "$bridge" >/dev/null 2>&1 && left+=" link:$bridge"
iptables-save 2>/dev/null | grep -qE "^:(KUBE-|CNI-)|-j (KUBE-|CNI-)" && left+=" iptables"
command -v ipset >/dev/null && ipset list -n 2>/dev/null | grep -qE "$ours_sets" && left+=" ipsets"
if [[ -n $left ]]; then echo "node-down: could not remove:$left" >&2; exit 1; fi
exit 0
