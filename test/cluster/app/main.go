//go:build realnode

// Command app is the one binary of the test images: "pause" (the sandbox)
// waits for SIGTERM; "serve" answers /ready on :8080 with its tag.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

var tag = "dev"

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		http.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, tag) })
		go func() { _ = http.ListenAndServe(":8080", nil) }()
	}
	<-stop
}
