package gitsource

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/crypto/ssh"
)

// httpConn is protocol v2 over smart HTTP: the capabilities come from one
// GET of info/refs (then cached by the Source), each command is a POST.
type httpConn struct {
	r *remote
	c *v2caps
}

func (h *httpConn) caps() *v2caps { return h.c }
func (h *httpConn) Close() error  { return nil }

func (r *remote) openHTTP(ctx context.Context, cached *v2caps) (v2conn, error) {
	if cached != nil {
		return &httpConn{r: r, c: cached}, nil
	}
	resp, err := r.do(ctx, http.MethodGet, "/info/refs?service=git-upload-pack", "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	c, err := parseCaps(newPktReader(resp.Body))
	if err != nil {
		return nil, err
	}
	return &httpConn{r: r, c: c}, nil
}

func (h *httpConn) command(ctx context.Context, req string) (*pktReader, io.Closer, error) {
	resp, err := h.r.do(ctx, http.MethodPost, "/git-upload-pack", req)
	if err != nil {
		return nil, nil, err
	}
	return newPktReader(resp.Body), resp.Body, nil
}

// do sends one request to the repository with the v2 header and the
// credentials, and maps HTTP failures to transport errors.
func (r *remote) do(ctx context.Context, method, suffix, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+suffix, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Git-Protocol", "version=2")
	req.Header.Set("User-Agent", agent)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
		req.Header.Set("Accept", "application/x-git-upload-pack-result")
	}
	m, err := r.authMethod()
	if err != nil {
		return nil, err
	}
	if a, ok := m.(githttp.AuthMethod); ok {
		a.SetAuth(req)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, transport.ErrAuthenticationRequired
	case http.StatusForbidden:
		return nil, transport.ErrAuthorizationFailed
	case http.StatusNotFound:
		return nil, transport.ErrRepositoryNotFound
	}
	return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
}

// sshConn is protocol v2 over SSH: one git-upload-pack run with
// GIT_PROTOCOL=version=2 in its environment; commands share its stream.
type sshConn struct {
	client *ssh.Client
	sess   *ssh.Session
	in     io.WriteCloser
	p      *pktReader
	c      *v2caps
	stop   func() bool
}

func (s *sshConn) caps() *v2caps { return s.c }

func (s *sshConn) Close() error {
	s.stop()
	_ = s.in.Close()
	_ = s.sess.Close()
	return s.client.Close()
}

func (s *sshConn) command(_ context.Context, req string) (*pktReader, io.Closer, error) {
	if _, err := io.WriteString(s.in, req); err != nil {
		return nil, nil, err
	}
	return s.p, io.NopCloser(nil), nil
}

// openSSH connects, starts upload-pack asking for v2 and reads its
// advertisement. The connection closes when ctx ends.
func (r *remote) openSSH(ctx context.Context, max int64) (v2conn, error) {
	m, err := r.authMethod()
	if err != nil {
		return nil, err
	}
	a, ok := m.(*sshAuth)
	if !ok {
		return nil, fmt.Errorf("SSH to %s with %s credentials", r.display, m.Name())
	}
	cfg, _ := a.ClientConfig()
	addr := net.JoinHostPort(r.endpoint.Host, fmt.Sprint(portOr(r.endpoint.Port, 22)))
	d := net.Dialer{Timeout: a.timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	client := ssh.NewClient(cc, chans, reqs)
	conn := &sshConn{client: client, stop: context.AfterFunc(ctx, func() { _ = client.Close() })}
	fail := func(err error) (v2conn, error) {
		conn.stop()
		_ = client.Close()
		return nil, err
	}
	if conn.sess, err = client.NewSession(); err != nil {
		return fail(err)
	}
	_ = conn.sess.Setenv("GIT_PROTOCOL", "version=2") // refused: the server answers in v0
	if conn.in, err = conn.sess.StdinPipe(); err != nil {
		return fail(err)
	}
	out, err := conn.sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := conn.sess.Start("git-upload-pack " + shellQuote(r.endpoint.Path)); err != nil {
		return fail(err)
	}
	conn.p = newPktReader(&cappedBody{rc: io.NopCloser(out), left: max})
	if conn.c, err = parseCaps(conn.p); err != nil {
		return fail(err)
	}
	return conn, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
