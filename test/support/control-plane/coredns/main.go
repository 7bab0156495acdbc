// Command coredns is the cluster DNS of the real test node (test/support/node): CoreDNS built
// from its Go module with only the plugins a Kubernetes cluster's DNS uses, in the order of
// CoreDNS's own plugin.cfg. A full build pulls every cloud SDK its other plugins need; this one
// builds in a fraction of the time.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// the order in which plugins handle a query (CoreDNS's plugin.cfg order, filtered)
var directives = []string{"reload", "health", "ready", "log", "errors", "cache", "loop", "kubernetes", "forward"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
