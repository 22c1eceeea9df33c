//go:build realnode

// Command app is the one binary of the test images: "pause" (the sandbox)
// waits for SIGTERM; "serve" answers /ready on :8080 with its tag once it
// reaches the apiserver through the kubernetes Service with its projected
// token (kube-proxy, the Service and the token all work). Installed as
// virt-operator (the crash-looping release's image), it exits at once
// with status 1, whatever its arguments.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

var tag = "dev"

const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if filepath.Base(os.Args[0]) == "virt-operator" {
		fmt.Fprintln(os.Stderr, "virt-operator: this image exits at start (a crash-looping release)")
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		http.HandleFunc("/ready", ready)
		go func() { _ = http.ListenAndServe(":8080", nil) }()
	}
	<-stop
}

// ready: the apiserver answers /version through the Service, authenticated
// with the pod's token.
func ready(w http.ResponseWriter, _ *http.Request) {
	ca, err := os.ReadFile(sa + "ca.crt")
	token, err2 := os.ReadFile(sa + "token")
	if err != nil || err2 != nil {
		http.Error(w, fmt.Sprint(err, err2), http.StatusServiceUnavailable)
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + "/version"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, resp.Status, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, tag)
}
