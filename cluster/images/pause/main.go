// pause: the process that holds a pod's namespaces open while its containers come and go.
// It does nothing but wait; it exits on SIGINT/SIGTERM. Built here because no image can be
// pulled on machines in offline mode; same role as Kubernetes' own pause binary.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	// Reap children adopted by this PID 1 so they never linger as zombies.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	<-signals
}
