// Command pause is the pod sandbox image's process on the real test node: it holds the pod's
// namespaces and does nothing else, like Kubernetes' own pause (which is C and not in a Go
// module). It exits on SIGINT or SIGTERM so a sandbox stops at once, and reaps zombies, since it
// is PID 1 when a pod shares its process namespace.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
