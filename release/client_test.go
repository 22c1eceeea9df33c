package release_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/releases"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func releaseClient(t *testing.T, srv *releases.Server, mod func(*release.Config)) *release.Client {
	t.Helper()
	cfg := release.Config{
		ReleasesURL:     srv.ReleasesURL(),
		ManifestBaseURL: srv.DownloadBaseURL(),
		HTTP:            release.HTTPConfig{AllowedNetworks: loopback, RootCAs: srv.CertPool(), IdleTimeout: 5 * time.Second, Timeout: 8 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := release.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantReason(t *testing.T, err error, want fault.Reason) {
	t.Helper()
	if got := fault.ReasonOf(err); got != want {
		t.Fatalf("error %v: reason %q, want %q", err, got, want)
	}
}

func TestCatalogFromThePaginatedReleaseList(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	cat, err := releaseClient(t, srv, nil).Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// 256 real tags on 3 pages of 100; the draft is left out.
	if cat.Len() != 256 || cat.Has(releases.DraftTag) || cat.Latest() != "v1.9.0" {
		t.Errorf("catalog: %d releases, draft present %t, latest %s", cat.Len(), cat.Has(releases.DraftTag), cat.Latest())
	}
}

func TestOperatorManifestIsVetted(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	m, err := releaseClient(t, srv, nil).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) != 10 || len(m.SHA256) != 64 {
		t.Errorf("v1.8.4 manifest: %d objects, sha256 %q", len(m.Objects), m.SHA256)
	}
	for _, tag := range []string{"v0.17.0", "v0.26.0", "v0.35.0", "v0.58.1", "v1.9.0"} {
		m, err := releaseClient(t, srv, nil).OperatorManifest(t.Context(), tag, "kubevirt")
		if err != nil {
			t.Errorf("real-shaped manifest of %s refused: %v", tag, err)
		} else if m.Version != tag {
			t.Errorf("manifest of %s runs %q", tag, m.Version)
		}
	}
}

func TestManifestThatIsNotYAMLIsRefused(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	srv.Mutate("v1.8.4/kubevirt-operator.yaml", func([]byte) []byte { return []byte("\t{{{") })
	_, err := releaseClient(t, srv, nil).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	wantReason(t, err, release.ReasonManifestRejected)
	if !strings.Contains(err.Error(), "not valid YAML") || !fault.Stalls(err) {
		t.Errorf("error %q (terminal %t) does not say the file is not YAML", err, fault.Stalls(err))
	}
}

func TestDigestPins(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	good, err := releaseClient(t, srv, nil).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	if err != nil {
		t.Fatal(err)
	}
	pinned := func(sum string) func(*release.Config) {
		return func(c *release.Config) { c.Pins = map[string]string{"v1.8.4": sum} }
	}
	if _, err := releaseClient(t, srv, pinned(good.SHA256)).OperatorManifest(t.Context(), "v1.8.4", "kubevirt"); err != nil {
		t.Errorf("matching pin refused: %v", err)
	}
	srv.Mutate("v1.8.4/kubevirt-operator.yaml", func(b []byte) []byte { return append(b, "# tampered\n"...) })
	_, err = releaseClient(t, srv, pinned(good.SHA256)).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	wantReason(t, err, release.ReasonDigestMismatch)
}

func TestHostileServers(t *testing.T) {
	tests := []struct {
		name    string
		handler func(srv *releases.Server) http.Handler
		reason  fault.Reason
	}{
		{"oversized body", func(*releases.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(bytes.Repeat([]byte("a"), release.MaxManifestSize+10))
			})
		}, release.ReasonTooLarge},
		{"endless body", func(*releases.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := bytes.Repeat([]byte("# endless\n"), 1000)
				for r.Context().Err() == nil {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
		}, release.ReasonTooLarge},
		{"redirect loop", func(*releases.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
			})
		}, release.ReasonMirrorUnavailable},
		{"redirect to another host", func(*releases.Server) http.Handler {
			return http.RedirectHandler("https://evil.example.com/kubevirt-operator.yaml", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"redirect to plain http", func(srv *releases.Server) http.Handler {
			u, _ := url.Parse(srv.URL())
			return http.RedirectHandler("http://"+u.Host+"/x", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"redirect to a metadata address", func(*releases.Server) http.Handler {
			return http.RedirectHandler("https://169.254.169.254/latest/meta-data/", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"redirect to shared address space (CGNAT)", func(*releases.Server) http.Handler {
			return http.RedirectHandler("https://100.64.0.1/kubevirt-operator.yaml", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"redirect to a benchmarking address", func(*releases.Server) http.Handler {
			return http.RedirectHandler("https://198.18.0.1/kubevirt-operator.yaml", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"redirect to the metadata address through NAT64", func(*releases.Server) http.Handler {
			return http.RedirectHandler("https://[64:ff9b::a9fe:a9fe]/latest/meta-data/", http.StatusFound)
		}, release.ReasonHostNotAllowed},
		{"unauthorized", func(*releases.Server) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "secret-token-echo", http.StatusUnauthorized)
			})
		}, release.ReasonAuthenticationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := releases.NewServer(nil)
			defer srv.Close()
			srv.Handle(tt.handler(srv))
			start := time.Now()
			_, err := releaseClient(t, srv, func(c *release.Config) {
				c.HTTP.AllowedHosts = []string{"169.254.169.254", "100.64.0.1", "198.18.0.1", "64:ff9b::a9fe:a9fe"}
			}).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
			wantReason(t, err, tt.reason)
			if strings.Contains(err.Error(), "secret-token-echo") {
				t.Errorf("error echoes the response body: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s; the deadlines should have ended it", d)
			}
		})
	}
}

// TestASlowServerTimesOut: a server that sends one byte now and then is cut
// off at the idle timeout between two reads, not at the request's end.
func TestASlowServerTimesOut(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for r.Context().Err() == nil {
			_, _ = w.Write([]byte("#"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}
	}))
	_, err := releaseClient(t, srv, func(c *release.Config) {
		c.HTTP.IdleTimeout = 500 * time.Millisecond
		c.HTTP.Timeout = time.Minute
	}).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	wantReason(t, err, release.ReasonMirrorTimeout)
	if !strings.Contains(err.Error(), "sent nothing for 500ms") {
		t.Errorf("not the idle timeout: %v", err)
	}
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "42")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	_, err := releaseClient(t, srv, nil).Catalog(t.Context())
	var e *fault.Error
	if !errors.As(err, &e) || e.Reason != release.ReasonRateLimited || e.RetryAfter != 42*time.Second || e.Stall {
		t.Fatalf("rate limited: %#v, want a transient RateLimited retrying after 42s", err)
	}
}

func TestTokenIsNotForwardedAcrossHosts(t *testing.T) {
	var leaked []string
	reached := 0
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, a)
		}
		_, _ = w.Write([]byte("[]"))
	}))
	cert, certPEM := localhostCert(t)
	other.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	other.StartTLS()
	defer other.Close()
	srv := releases.NewServer(nil)
	defer srv.Close()
	otherURL, _ := url.Parse(other.URL)
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer gh-canary-token" {
			t.Errorf("the API host did not get the token")
		}
		// "localhost" is another host name for the same loopback machine.
		http.Redirect(w, r, fmt.Sprintf("https://localhost:%s/page", otherURL.Port()), http.StatusFound)
	}))
	pool := srv.CertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := releaseClient(t, srv, func(c *release.Config) {
		c.Token = "gh-canary-token"
		c.HTTP.AllowedHosts = []string{"localhost"}
		c.HTTP.RootCAs = pool
	})
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatalf("catalog through the redirect: %v", err)
	}
	if reached != 1 {
		t.Fatalf("the redirect target was reached %d times, want 1", reached)
	}
	if len(leaked) > 0 {
		t.Errorf("the token reached another host: %v", leaked)
	}
	if s := fmt.Sprint(redact.Secret("gh-canary-token")); strings.Contains(s, "canary") {
		t.Errorf("a redact.Secret prints as %q", s)
	}
}

func TestDialRefusesNonPublicAddressesAfterDNS(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	u, _ := url.Parse(srv.URL())
	// "localhost" is allowed as a host name but resolves to loopback, which
	// this client does not allow: the dial-time check refuses it.
	c, err := release.New(release.Config{
		ReleasesURL:     "https://localhost:" + u.Port() + releases.ListPath,
		ManifestBaseURL: "https://localhost:" + u.Port() + releases.DownloadPath,
		HTTP:            release.HTTPConfig{RootCAs: srv.CertPool()},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Catalog(t.Context())
	wantReason(t, err, release.ReasonHostNotAllowed)
}

func TestReleaseConfigIsValidated(t *testing.T) {
	for _, cfg := range []release.Config{
		{ReleasesURL: "http://example.com/releases"},
		{ReleasesURL: "https://user:pass@example.com/releases"},
		{ManifestBaseURL: "file:///etc/passwd"},
		{ManifestBaseURL: "ftp://example.com/x"},
		{Pins: map[string]string{"v1.2": strings.Repeat("a", 64)}},
	} {
		if _, err := release.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestAnUnchangedCatalogCostsOnly304s: the catalog asked for again names
// each page's ETag; unchanged pages come back 304 Not Modified (free on
// GitHub's rate limit) and the catalog is the same; a changed list is read
// again in full.
func TestAnUnchangedCatalogCostsOnly304s(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	c := releaseClient(t, srv, nil)
	first, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if full, notModified := srv.ListPages(); full != 3 || notModified != 0 {
		t.Fatalf("first catalog: %d pages in full, %d not modified; want 3, 0", full, notModified)
	}
	again, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if full, notModified := srv.ListPages(); full != 3 || notModified != 3 {
		t.Errorf("unchanged catalog: %d pages in full, %d not modified; want 3, 3 (all 304)", full, notModified)
	}
	if again.Digest() != first.Digest() || again.Len() != first.Len() {
		t.Errorf("catalog from 304s: %d releases (%s), want %d (%s)", again.Len(), again.Digest(), first.Len(), first.Digest())
	}
	srv.Withdraw("v1.9.0")
	changed, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if changed.Has("v1.9.0") || changed.Len() != first.Len()-1 {
		t.Errorf("after a release was withdrawn: %d releases, v1.9.0 listed %t", changed.Len(), changed.Has("v1.9.0"))
	}
}

// TestCatalogBytesAreCappedAcrossPages: pages each under the per-page cap
// but endless in sum stop at the total cap.
func TestCatalogBytesAreCappedAcrossPages(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	pages := 0
	pad := strings.Repeat(" ", 6<<20)
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pages++
		w.Header().Set("Link", fmt.Sprintf(`<https://%s%s?per_page=100&page=%d>; rel="next"`, r.Host, r.URL.Path, pages+1))
		_, _ = io.WriteString(w, "["+pad+"]")
	}))
	_, err := releaseClient(t, srv, nil).Catalog(t.Context())
	if fault.ReasonOf(err) != release.ReasonTooLarge || !strings.Contains(err.Error(), "across its pages") {
		t.Fatalf("endless 6 MiB pages: %v", err)
	}
	if pages > 6 {
		t.Errorf("fetched %d pages of 6 MiB, want at most 6 under the 32 MiB cap", pages)
	}
}

// TestDNSRebindingIsCaughtAtDial (RELIABILITY B17): the release host first
// resolves to an allowed address, then (on the next connection) to one that
// is not: the second dial is refused, after DNS, before a byte is sent.
func TestDNSRebindingIsCaughtAtDial(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	u, _ := url.Parse(srv.URL())
	dns := newFakeDNS(t, func(name string, n int) (netip.Addr, bool) {
		if name != "example.com" {
			return netip.Addr{}, false
		}
		if n == 1 {
			return netip.MustParseAddr("127.0.0.1"), true
		}
		return netip.MustParseAddr("127.0.0.2"), true // rebound
	})
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every request dials again
		_, _ = w.Write([]byte("[]"))
	}))
	c, err := release.New(release.Config{
		ReleasesURL: "https://example.com:" + u.Port() + releases.ListPath, ManifestBaseURL: "https://example.com:" + u.Port() + releases.DownloadPath,
		HTTP: release.HTTPConfig{RootCAs: srv.CertPool(), Resolver: dns.resolver(), AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Catalog(t.Context()); err != nil {
		t.Fatalf("the first resolution is allowed: %v", err)
	}
	before := srv.Requests()
	_, err = c.OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
	wantReason(t, err, release.ReasonHostNotAllowed)
	if !strings.Contains(err.Error(), "127.0.0.2") || srv.Requests() != before {
		t.Errorf("rebound: %v (requests %d → %d)", err, before, srv.Requests())
	}
}

// TestLookalikeHostsAreNeverResolved (B18): redirects to typosquats,
// suffix tricks and userinfo tricks are refused by name, before DNS.
func TestLookalikeHostsAreNeverResolved(t *testing.T) {
	dns := newFakeDNS(t, func(string, int) (netip.Addr, bool) { return netip.MustParseAddr("127.0.0.1"), true })
	for _, target := range []string{"https://githvb.com/x", "https://github.com.evil.io/x", "https://github.com@evil.io/x", "https://objects.githubusercontent.com.evil.io/x"} {
		srv := releases.NewServer(nil)
		srv.Handle(http.RedirectHandler(target, http.StatusFound))
		_, err := releaseClient(t, srv, func(c *release.Config) {
			c.HTTP.Resolver = dns.resolver()
			c.HTTP.AllowedHosts = []string{"github.com", "objects.githubusercontent.com"}
		}).OperatorManifest(t.Context(), "v1.8.4", "kubevirt")
		srv.Close()
		wantReason(t, err, release.ReasonHostNotAllowed)
	}
	for _, name := range []string{"githvb.com", "github.com.evil.io", "evil.io", "objects.githubusercontent.com.evil.io"} {
		if n := dns.count(name); n != 0 {
			t.Errorf("%s was resolved %d times", name, n)
		}
	}
}

// TestHeadersNeverSent (B27): a server that accepts and never answers is a
// MirrorTimeout at the header deadline.
func TestHeadersNeverSent(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	start := time.Now()
	_, err := releaseClient(t, srv, func(c *release.Config) { c.HTTP.HeaderTimeout = 500 * time.Millisecond }).Catalog(t.Context())
	wantReason(t, err, release.ReasonMirrorTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s past a 500 ms header deadline", d)
	}
}

// TestAPageThatPointsToItself (B41): the release list's next link loops;
// the client stops at the first repeat.
func TestAPageThatPointsToItself(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	srv.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", fmt.Sprintf(`<https://%s%s?%s>; rel="next"`, r.Host, r.URL.Path, r.URL.RawQuery))
		_, _ = w.Write([]byte("[]"))
	}))
	_, err := releaseClient(t, srv, nil).Catalog(t.Context())
	if fault.ReasonOf(err) != release.ReasonMirrorUnavailable || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("a self-referencing page: %v", err)
	}
	if n := srv.Requests(); n != 1 {
		t.Errorf("%d requests for a page that points to itself, want 1", n)
	}
}
