//go:build tools

// Package tools pins the commands build.sh compiles, so `go mod tidy` keeps their dependencies:
// the control plane (kube-apiserver, etcd, kubectl) and the real node (kubelet, kube-scheduler,
// kube-controller-manager, kube-proxy), all from the same pinned k8s.io/kubernetes.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
