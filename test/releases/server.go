package releases

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/Masterminds/semver/v3"
)

// Paths of the server, shaped like GitHub's.
const (
	ListPath     = "/repos/kubevirt/kubevirt/releases"
	DownloadPath = "/kubevirt/kubevirt/releases/download"
)

// DraftTag is a draft release the list always carries; consumers must
// ignore it.
const DraftTag = "v9.0.0"

// Server serves a GitHub-REST-shaped release list and generated manifests
// over HTTPS on 127.0.0.1.
type Server struct {
	srv  *httptest.Server
	tags []string

	mu      sync.Mutex
	mutate  map[string]func([]byte) []byte
	handler http.Handler // overrides everything when set

	requests    atomic.Int64
	listHits    atomic.Int64
	notModified atomic.Int64 // list pages answered 304
}

// NewServer starts a release server for tags (nil: the real catalog). Stop
// it with Close.
func NewServer(tags []string) *Server {
	if tags == nil {
		tags = Tags()
	}
	s := &Server{tags: slices.Clone(tags), mutate: map[string]func([]byte) []byte{}}
	// GitHub lists newest first.
	slices.SortFunc(s.tags, func(a, b string) int { return semver.MustParse(b).Compare(semver.MustParse(a)) })
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Handler serves the list and the manifests (URLs in the list follow the
// request's host): for a second listener.
func (s *Server) Handler() http.Handler { return s.srv.Config.Handler }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// ReleasesURL is the releases list endpoint.
func (s *Server) ReleasesURL() string { return s.srv.URL + ListPath }

// DownloadBaseURL is the base under which <tag>/<asset> is served.
func (s *Server) DownloadBaseURL() string { return s.srv.URL + DownloadPath }

// CertPool trusts the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return pool
}

// CAPEM is the PEM of the server's certificate, for a CA file.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// TLSConfig trusts the server.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
}

// Requests counts every request served.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Mutate rewrites an asset before it is served (tampering, mirrors gone
// stale). name is "<tag>/<asset>".
func (s *Server) Mutate(name string, f func([]byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutate[name] = f
}

// Withdraw takes tag and its assets off the server (a release pulled after
// publication).
func (s *Server) Withdraw(tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags = slices.DeleteFunc(s.tags, func(t string) bool { return t == tag })
}

// Handle replaces the whole server with h (hostile-server tests); nil
// restores the default.
func (s *Server) Handle(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

// Asset returns what the server serves for tag/name before mutation.
func Asset(tag, name string) ([]byte, bool) {
	switch name {
	case "kubevirt-operator.yaml":
		return OperatorManifest(tag), true
	case "kubevirt-cr.yaml":
		return CRManifest(tag), true
	}
	return nil, false
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	h := s.handler
	s.mu.Unlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	switch {
	case r.URL.Path == ListPath:
		s.serveList(w, r)
	case strings.HasPrefix(r.URL.Path, DownloadPath+"/"):
		s.serveAsset(w, r)
	default:
		http.NotFound(w, r)
	}
}

type asset struct {
	Name               string `json:"name"`
	BrowserDownloadURL string `json:"browser_download_url"`
	Size               int    `json:"size"`
}

type release struct {
	TagName    string  `json:"tag_name"`
	Name       string  `json:"name"`
	Draft      bool    `json:"draft"`
	Prerelease bool    `json:"prerelease"`
	Assets     []asset `json:"assets"`
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	s.listHits.Add(1)
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 || perPage > 100 {
		perPage = 30
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page <= 0 {
		page = 1
	}
	s.mu.Lock()
	all := append([]string{DraftTag}, s.tags...)
	s.mu.Unlock()
	last := (len(all) + perPage - 1) / perPage
	lo, hi := min((page-1)*perPage, len(all)), min(page*perPage, len(all))
	items := make([]release, 0, hi-lo)
	for _, tag := range all[lo:hi] {
		items = append(items, s.release(tag))
	}
	link := func(p int, rel string) string {
		u := url.URL{Scheme: "https", Host: r.Host, Path: ListPath, RawQuery: fmt.Sprintf("per_page=%d&page=%d", perPage, p)}
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	// As GitHub: a weak ETag per page; a request naming it gets 304, which
	// GitHub does not count against the rate limit.
	body, _ := json.Marshal(items)
	sum := sha256.Sum256(body)
	etag := `W/"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		s.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(body)
}

// ListPages counts the list's pages served in full and answered 304 Not
// Modified.
func (s *Server) ListPages() (full, notModified int64) {
	return s.listHits.Load() - s.notModified.Load(), s.notModified.Load()
}

func (s *Server) release(tag string) release {
	pre := strings.Contains(tag, "-")
	r := release{TagName: tag, Name: tag, Draft: tag == DraftTag, Prerelease: pre}
	for _, name := range []string{"kubevirt-operator.yaml", "kubevirt-cr.yaml"} {
		r.Assets = append(r.Assets, asset{Name: name, BrowserDownloadURL: s.DownloadBaseURL() + "/" + tag + "/" + name})
	}
	return r
}

func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, DownloadPath+"/")
	tag, name, ok := strings.Cut(rest, "/")
	s.mu.Lock()
	listed := slices.Contains(s.tags, tag)
	s.mu.Unlock()
	if !ok || !listed {
		http.NotFound(w, r)
		return
	}
	data, ok := Asset(tag, name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	f := s.mutate[tag+"/"+name]
	s.mu.Unlock()
	if f != nil {
		data = f(data)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(data)
}
