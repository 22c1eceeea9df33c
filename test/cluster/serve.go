//go:build realnode

package cluster

import (
	"crypto/tls"
	"net/http"
	"os"
	"time"
)

// Serve serves h over HTTPS on the node's address, inside the namespace,
// with a certificate of the cluster's CA (CAPEM): what pods reach (a git
// server, a release server). It returns the base URL and a stop function.
func (c *Cluster) Serve(h http.Handler) (string, func(), error) {
	cert, err := tls.LoadX509KeyPair(c.pki.path("apiserver.crt"), c.pki.path("apiserver.key"))
	if err != nil {
		return "", nil, err
	}
	l, err := c.ns.Listen("tcp", NodeIP+":0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return "https://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// CAPEM is the cluster CA's certificate: what trusts Serve's servers.
func (c *Cluster) CAPEM() ([]byte, error) { return os.ReadFile(c.pki.path("ca.crt")) }
