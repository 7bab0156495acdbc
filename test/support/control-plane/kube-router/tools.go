//go:build tools

// Package tools pins kube-router, the real test node's NetworkPolicy enforcer, so that `go mod
// tidy` keeps its dependencies; build.sh compiles github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
// from this module.
//
// A TEST ENFORCER ON THIS MACHINE, NEVER SHIPPED: the Go module index flags reported security
// flaws in kube-router v2.1.0. It runs only next to the throwaway node of the tests and
// `make dev-cluster` (test/support/node/kube-router.ts), is in no image and no deploy/ manifest.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
