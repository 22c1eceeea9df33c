package gitsource

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// scpLike is git's scp-style address, user@host:path.
var scpLike = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):([^/].*)$`)

// ValidateURL checks a repository URL as New will, without building
// anything: for flags to fail before anything else is touched.
func ValidateURL(raw string) error {
	_, err := checkURL(raw)
	return err
}

// checkURL accepts https:// and ssh:// only, without credentials in the URL
// (they come from the Secret), before go-git is ever called.
func checkURL(raw string) (*url.URL, error) {
	if strings.HasPrefix(raw, "-") || strings.ContainsAny(raw, " \t\r\n\x00") {
		return nil, fmt.Errorf("repository URL must not start with '-' or contain whitespace")
	}
	if m := scpLike.FindStringSubmatch(raw); m != nil {
		return nil, fmt.Errorf("repository URL %q is scp-style, which kvgitops does not read: use ssh://%s@%s/%s", raw, m[1], m[2], m[3])
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("repository URL is not a URL")
	}
	return u, checkParsedURL(u)
}

// checkParsedURL: the scheme, host and parts a repository URL may have.
func checkParsedURL(u *url.URL) error {
	switch {
	case u.Scheme == "http":
		return fmt.Errorf("repository URL scheme \"http\" is not allowed: it sends credentials in the clear; use https://%s", strings.TrimPrefix(redacted(u), "http://"))
	case u.Scheme != "https" && u.Scheme != "ssh":
		return fmt.Errorf("repository URL scheme %q is not allowed: use https:// or ssh://", u.Scheme)
	case u.Host == "":
		return fmt.Errorf("repository URL has no host")
	case u.Scheme == "https" && u.User != nil:
		return fmt.Errorf("repository URL must not carry credentials; put them in the Git Secret")
	case u.Scheme == "ssh" && u.User != nil:
		if _, hasPassword := u.User.Password(); hasPassword {
			return fmt.Errorf("repository URL must not carry a password")
		}
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("repository URL must not carry a query or fragment")
	}
	return nil
}

// redacted is a URL for logs and errors: no userinfo.
func redacted(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// remote bundles the transport, endpoint and credentials of the
// repository.
type remote struct {
	http      *http.Client // https only, for protocol v2
	base      string       // https only: the repository URL
	endpoint  *transport.Endpoint
	transport transport.Transport
	creds     Credentials
	display   string

	mu       sync.Mutex
	last     Auth                 // the credentials method was built from
	method   transport.AuthMethod // nil: anonymous
	secrets  []string             // every credential seen, for the scrubber
	scrubber redact.Scrubber
}

// authMethod is the auth of the next request or connection, built from the
// credentials as they are now (rebuilt only when they changed).
func (r *remote) authMethod() (transport.AuthMethod, error) {
	a, err := r.creds.Auth()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.method != nil && sameAuth(a, r.last) {
		return r.method, nil
	}
	m, err := r.build(a)
	if err != nil {
		return nil, err
	}
	r.last, r.method = a, m
	r.secrets = append(r.secrets, a.secrets()...)
	r.scrubber = redact.NewScrubber(r.secrets...)
	return m, nil
}

func sameAuth(a, b Auth) bool {
	return a.Username == b.Username && a.Password == b.Password && a.BearerToken == b.BearerToken &&
		a.Identity == b.Identity && string(a.KnownHosts) == string(b.KnownHosts)
}

// build makes the go-git auth of one set of credentials.
func (r *remote) build(a Auth) (transport.AuthMethod, error) {
	switch r.endpoint.Protocol {
	case "https":
		switch {
		case a.BearerToken != "":
			return &githttp.TokenAuth{Token: string(a.BearerToken)}, nil
		case a.Username != "" || a.Password != "":
			return &githttp.BasicAuth{Username: a.Username, Password: string(a.Password)}, nil
		}
		return anonymous{}, nil
	case "ssh":
		if len(a.KnownHosts) == 0 {
			return nil, errors.New("SSH needs known_hosts in the Git secret")
		}
		hk, err := parseKnownHosts(a.KnownHosts)
		if err != nil {
			return nil, err
		}
		if a.Identity == "" {
			return nil, errors.New("SSH needs an identity (private key) in the Git secret")
		}
		signer, err := parseIdentity([]byte(a.Identity), []byte(a.Password))
		if err != nil {
			return nil, err
		}
		user := r.endpoint.User
		if user == "" {
			user = "git"
		}
		addr := net.JoinHostPort(r.endpoint.Host, fmt.Sprint(portOr(r.endpoint.Port, 22)))
		return &sshAuth{user: user, signer: signer, hosts: hk, algorithms: hk.algorithms(addr), timeout: 10 * time.Second}, nil
	}
	return nil, fmt.Errorf("no credentials for a %s remote", r.endpoint.Protocol)
}

// anonymous is HTTPS without credentials.
type anonymous struct{}

func (anonymous) Name() string          { return "anonymous" }
func (anonymous) String() string        { return "anonymous" }
func (anonymous) SetAuth(*http.Request) {}
func (r *remote) scrub(msg string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scrubber.Scrub(msg)
}

// byteCap limits every HTTP response body (advertisements and packs).
type byteCap struct {
	base http.RoundTripper
	max  int64
}

var errBodyTooLarge = errors.New("response over the byte cap")

func (b *byteCap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: b.max}
	return resp, nil
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }

func newRemote(u *url.URL, creds Credentials, cfg Config) (*remote, error) {
	ep, err := transport.NewEndpoint(u.String())
	if err != nil {
		return nil, fmt.Errorf("repository URL: %w", err)
	}
	a, err := creds.Auth()
	if err != nil {
		return nil, err
	}
	r := &remote{endpoint: ep, display: redacted(u), creds: creds}
	switch u.Scheme {
	case "https":
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: a.CA, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       5 * time.Minute, // the poll loop reuses one connection
		}
		client := &http.Client{
			Transport: &byteCap{base: tr, max: cfg.MaxPackSize},
			// Never follow a redirect: go-git would replay credentials
			// (CVE-2026-41506 class); a moved repository is a config change.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		r.transport = githttp.NewClient(client)
		r.http, r.base = client, strings.TrimSuffix(u.String(), "/")
	case "ssh":
		r.transport = gitssh.NewClient(nil)
	}
	// Credentials that cannot be used are a configuration error now, not
	// on the first poll.
	if _, err := r.authMethod(); err != nil {
		return nil, err
	}
	return r, nil
}

func portOr(p, d int) int {
	if p == 0 {
		return d
	}
	return p
}

func parseIdentity(pem, passphrase []byte) (ssh.Signer, error) {
	if len(passphrase) > 0 {
		s, err := ssh.ParsePrivateKeyWithPassphrase(pem, passphrase)
		if err != nil {
			return nil, errors.New("identity: cannot decrypt the private key with the given password")
		}
		return s, nil
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, errors.New("identity: not a valid unencrypted private key (set password for an encrypted one)")
	}
	return s, nil
}

// sshAuth is a go-git SSH auth method with everything the client config
// needs: the key, known_hosts checking, the host key algorithms to ask for,
// and a dial timeout.
type sshAuth struct {
	user       string
	signer     ssh.Signer
	hosts      *hostKeys
	algorithms []string
	timeout    time.Duration
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)

func (a *sshAuth) Name() string   { return "ssh-public-keys" }
func (a *sshAuth) String() string { return "user: " + a.user + ", name: ssh-public-keys" }
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback:   a.hosts.callback(),
		HostKeyAlgorithms: a.algorithms,
		Timeout:           a.timeout,
	}, nil
}

// classify maps a transport error to a reason.
func (s *Source) classify(ctx context.Context, err error, what string) error {
	var e *fault.Error
	if errors.As(err, &e) {
		return err
	}
	var hk *hostKeyError
	msg := err.Error()
	switch {
	case errors.As(err, &hk):
		return s.errorf(ReasonHostKeyUnknown, true, nil, "%s %s: %s", what, s.remote.display, hk.msg)
	case errors.Is(err, errBodyTooLarge):
		return s.errorf(ReasonRepoTooLarge, true, nil, "%s %s: the server sent more than %d bytes", what, s.remote.display, s.cfg.MaxPackSize)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "Permission denied"):
		return s.errorf(ReasonAuthenticationFailed, true, nil, "%s %s: the credentials were refused", what, s.remote.display)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return s.errorf(ReasonGitUnavailable, false, nil, "%s %s: repository not found", what, s.remote.display)
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return s.errorf(ReasonGitUnavailable, false, nil, "%s %s: timed out after %s", what, s.remote.display, s.cfg.Timeout)
	}
	return s.errorf(ReasonGitUnavailable, false, err, "%s %s", what, s.remote.display)
}

// packReader demultiplexes the pack when side-band was negotiated (progress
// messages on band 2 are dropped: no-progress is requested anyway).
func packReader(caps *capability.List, r io.Reader) io.Reader {
	switch {
	case caps.Supports(capability.Sideband64k):
		return sideband.NewDemuxer(sideband.Sideband64k, r)
	case caps.Supports(capability.Sideband):
		return sideband.NewDemuxer(sideband.Sideband, r)
	}
	return r
}
