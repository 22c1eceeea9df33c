package main

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestASlowBodyDoesNotHoldAConnection: a client that sends a webhook's
// headers and then trickles its body is cut off at the read timeout, and
// an idle keep-alive at the idle timeout; neither holds a goroutine and a
// file descriptor for ever.
func TestASlowBodyDoesNotHoldAConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
	}), timeouts{header: 300 * time.Millisecond, read: 500 * time.Millisecond, write: 500 * time.Millisecond, idle: 500 * time.Millisecond})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	for _, tt := range []struct{ name, send string }{
		{"a body trickled", "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab"},
		{"headers never finished", "POST /hook HTTP/1.1\r\nHost: x\r\n"},
		{"an idle keep-alive", "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			// The server must close the connection well before this deadline.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server still held the connection after 10 s")
			}
		})
	}
}
