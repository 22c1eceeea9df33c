package release

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvgitops/kvgitops/fault"
)

// HTTPConfig hardens an HTTP client for fetching from the Internet.
type HTTPConfig struct {
	// AllowedHosts are the host names requests and redirects may reach,
	// compared exactly (no subdomains, no userinfo).
	AllowedHosts []string
	// AllowedNetworks lets dials reach addresses that are otherwise refused
	// (loopback, private, link-local, metadata): tests allow 127.0.0.0/8, an
	// internal mirror might allow 10.0.0.0/8.
	AllowedNetworks []netip.Prefix
	RootCAs         *x509.CertPool // nil: the system roots
	Timeout         time.Duration  // whole request including the body; default 60s
	IdleTimeout     time.Duration  // between two reads of the body; default 15s
	MaxRedirects    int            // default 5
	HeaderTimeout   time.Duration  // until the response headers; default 20s
	// Resolver resolves host names; nil is the system's. Every address it
	// returns is checked at dial time all the same.
	Resolver *net.Resolver
}

// refusedNetworks are not on the public Internet, beyond what netip's
// predicates know: shared address space (CGNAT, RFC 6598), benchmarking
// (RFC 2544), NAT64 (RFC 6052, 6146: it reaches IPv4 addresses, private
// ones included), "this network", IETF protocol assignments, reserved.
var refusedNetworks = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// metadataAddrs are cloud metadata endpoints, refused unless listed.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// safeClient is an http.Client that checks the host on every request and
// redirect and the address on every dial (after DNS, so DNS rebinding is
// caught), with header, idle and total deadlines.
type safeClient struct {
	cfg    HTTPConfig
	client *http.Client
	hosts  map[string]bool
}

func newSafeClient(cfg HTTPConfig) *safeClient {
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Second
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = 5
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = 20 * time.Second
	}
	s := &safeClient{cfg: cfg, hosts: map[string]bool{}}
	for _, h := range cfg.AllowedHosts {
		s.hosts[strings.ToLower(h)] = true
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: s.controlDial, Resolver: cfg.Resolver}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would hide the address we check
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	s.client = &http.Client{Transport: transport, Timeout: cfg.Timeout, CheckRedirect: s.checkRedirect}
	return s
}

// checkURL refuses anything but https to an allowed host without userinfo.
func (s *safeClient) checkURL(u *url.URL) error {
	switch {
	case u.Scheme != "https":
		return fault.Stalled(ReasonHostNotAllowed, nil, "refusing %s URL to %s: only https is allowed", u.Scheme, u.Hostname())
	case u.User != nil:
		return fault.Stalled(ReasonHostNotAllowed, nil, "refusing URL with credentials in it (host %s)", u.Hostname())
	case !s.hosts[strings.ToLower(u.Hostname())]:
		return fault.Stalled(ReasonHostNotAllowed, nil, "host %s is not on the allow-list", u.Hostname())
	}
	return nil
}

func (s *safeClient) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > s.cfg.MaxRedirects {
		return fault.Stalled(ReasonMirrorUnavailable, nil, "more than %d redirects from %s", s.cfg.MaxRedirects, via[0].URL.Hostname())
	}
	if err := s.checkURL(req.URL); err != nil {
		return err
	}
	if !strings.EqualFold(req.URL.Hostname(), via[0].URL.Hostname()) {
		req.Header.Del("Authorization")
	}
	return nil
}

// controlDial runs after DNS resolution, for every connection.
func (s *safeClient) controlDial(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dial %s: not an IP address", address)
	}
	ip = ip.Unmap()
	for _, p := range s.cfg.AllowedNetworks {
		if p.Contains(ip) {
			return nil
		}
	}
	if why := notPublic(ip); why != "" {
		return fault.Stalled(ReasonHostNotAllowed, nil, "refusing to dial %s", why)
	}
	return nil
}

// notPublic says why ip is not an address of the public Internet ("" when
// it is).
func notPublic(ip netip.Addr) string {
	for _, m := range metadataAddrs {
		if ip == m {
			return "the metadata address " + ip.String()
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return "the non-public address " + ip.String()
	}
	for _, p := range refusedNetworks {
		if p.Contains(ip) {
			return fmt.Sprintf("%s, in %s, which is not on the public Internet", ip, p)
		}
	}
	return ""
}

// errNotModified is get's answer to 304 Not Modified (a conditional
// request whose validator still holds).
var errNotModified = errors.New("not modified")

// get fetches u with the caps and deadlines; the body is at most max bytes.
// Response bodies never reach errors.
func (s *safeClient) get(ctx context.Context, u *url.URL, header http.Header, max int64) ([]byte, http.Header, error) {
	if err := s.checkURL(u); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, fault.Stalled(ReasonMirrorUnavailable, err, "bad URL for host %s", u.Hostname())
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, s.classify(u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return nil, resp.Header, errNotModified
	}
	if err := statusError(u, resp); err != nil {
		return nil, resp.Header, err
	}
	// The idle timer cancels the request; how a cancelled body read ends
	// differs between HTTP/1.1 and HTTP/2, so the timer records that it fired.
	var stalled atomic.Bool
	idle := time.AfterFunc(s.cfg.IdleTimeout, func() {
		stalled.Store(true)
		cancel()
	})
	defer idle.Stop()
	body := io.LimitReader(&idleReader{r: resp.Body, timer: idle, idle: s.cfg.IdleTimeout}, max+1)
	data, err := io.ReadAll(body)
	if stalled.Load() {
		return nil, nil, fault.Transient(ReasonMirrorTimeout, err, "%s sent nothing for %s", u.Hostname(), s.cfg.IdleTimeout)
	}
	if err != nil {
		return nil, nil, s.classify(u, err)
	}
	if int64(len(data)) > max {
		return nil, nil, fault.Stalled(ReasonTooLarge, nil, "response from %s is over the %d-byte limit", u.Hostname(), max)
	}
	return data, resp.Header, nil
}

func (s *safeClient) classify(u *url.URL, err error) error {
	var e *fault.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fault.Transient(ReasonMirrorTimeout, err, "request to %s timed out", u.Hostname())
	}
	return fault.Transient(ReasonMirrorUnavailable, err, "request to %s failed", u.Hostname())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusError maps HTTP statuses to reasons, honouring Retry-After.
func statusError(u *url.URL, resp *http.Response) error {
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusUnauthorized:
		return fault.Stalled(ReasonAuthenticationFailed, nil, "%s answered 401: the credentials were refused", u.Hostname())
	case code == http.StatusTooManyRequests || code == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0":
		e := fault.Transient(ReasonRateLimited, nil, "%s is rate limiting (HTTP %d)", u.Hostname(), code)
		e.RetryAfter = retryAfter(resp.Header)
		return e
	case code == http.StatusForbidden:
		return fault.Stalled(ReasonAuthenticationFailed, nil, "%s answered 403: access denied", u.Hostname())
	case code == http.StatusNotFound:
		return fault.Stalled(ReasonMirrorUnavailable, nil, "%s answered 404 for %s", u.Hostname(), u.EscapedPath())
	default:
		return fault.Transient(ReasonMirrorUnavailable, nil, "%s answered HTTP %d", u.Hostname(), code)
	}
}

func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		if reset := h.Get("X-RateLimit-Reset"); reset != "" {
			var epoch int64
			if _, err := fmt.Sscan(reset, &epoch); err == nil {
				if d := time.Until(time.Unix(epoch, 0)); d > 0 {
					return min(d, time.Hour)
				}
			}
		}
		return time.Minute
	}
	var secs int64
	if _, err := fmt.Sscan(v, &secs); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), time.Hour)
	}
	return time.Minute
}

// idleReader cancels the request when no byte arrives for idle.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.timer.Reset(i.idle)
	}
	return n, err
}
