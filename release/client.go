package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// Defaults of where releases come from (docs/architecture.md, "Releases").
const (
	DefaultReleasesURL     = "https://api.github.com/repos/kubevirt/kubevirt/releases"
	DefaultManifestBaseURL = "https://github.com/kubevirt/kubevirt/releases/download"
	// GitHub redirects release downloads to a separate asset host.
	githubAssetHosts = "objects.githubusercontent.com,release-assets.githubusercontent.com"
)

// Caps on what the release client reads.
const (
	MaxManifestSize = 8 << 20
	maxCatalogPages = 20
	// maxCatalogBytes caps the release list across all its pages.
	maxCatalogBytes = 32 << 20
)

// Config says where releases come from. It is agent configuration,
// never part of the desired file.
type Config struct {
	ReleasesURL     string // GitHub REST "list releases"
	ManifestBaseURL string // <base>/<tag>/kubevirt-operator.yaml
	// Pins maps a tag to the sha256 (hex) of its kubevirt-operator.yaml;
	// a pinned tag whose download differs is refused.
	Pins map[string]string
	// Registries are where virt-operator images may come from (mirrors);
	// empty: the release's own registry (see [VetOptions]).
	Registries []string
	// Token authenticates to the releases API (rate limits); it is sent to
	// the API host only and never follows a redirect to another host.
	Token redact.Secret
	HTTP  HTTPConfig
}

// Client fetches the release catalog and manifests.
type Client struct {
	cfg       Config
	http      *safeClient
	list, dl  *url.URL
	apiHeader http.Header

	mu    sync.Mutex
	pages map[string]listPage // the last catalog's pages, by URL
}

// listPage is a page of the release list as last served: asked for again
// with its ETag, an unchanged page costs a 304 (which GitHub does not count
// against the rate limit) instead of its body.
type listPage struct {
	etag, next string
	body       []byte
}

// New validates cfg. Both URLs must be https; their hosts (and
// GitHub's asset hosts when the defaults are used) are added to the
// allow-list.
func New(cfg Config) (*Client, error) {
	if cfg.ReleasesURL == "" {
		cfg.ReleasesURL = DefaultReleasesURL
	}
	if cfg.ManifestBaseURL == "" {
		cfg.ManifestBaseURL = DefaultManifestBaseURL
	}
	list, err := parseBaseURL("releases URL", cfg.ReleasesURL)
	if err != nil {
		return nil, err
	}
	dl, err := parseBaseURL("manifest base URL", cfg.ManifestBaseURL)
	if err != nil {
		return nil, err
	}
	hosts := append([]string{list.Hostname(), dl.Hostname()}, cfg.HTTP.AllowedHosts...)
	if dl.Hostname() == "github.com" {
		hosts = append(hosts, strings.Split(githubAssetHosts, ",")...)
	}
	cfg.HTTP.AllowedHosts = hosts
	for tag, sum := range cfg.Pins {
		if !planner.ValidTag(tag) || len(sum) != 64 {
			return nil, fault.Stalled(ReasonManifestRejected, nil, "pin for %s: want a release tag and a 64-digit sha256", redact.Quote(tag))
		}
	}
	c := &Client{cfg: cfg, http: newSafeClient(cfg.HTTP), list: list, dl: dl, apiHeader: http.Header{}}
	c.apiHeader.Set("Accept", "application/vnd.github+json")
	if cfg.Token != "" {
		c.apiHeader.Set("Authorization", "Bearer "+string(cfg.Token))
	}
	return c, nil
}

func parseBaseURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fault.Stalled(ReasonHostNotAllowed, nil, "%s is not a URL", what)
	case u.Scheme != "https":
		return nil, fault.Stalled(ReasonHostNotAllowed, nil, "%s must be https, got %s", what, redact.Quote(u.Scheme))
	case u.User != nil:
		return nil, fault.Stalled(ReasonHostNotAllowed, nil, "%s must not carry credentials", what)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fault.Stalled(ReasonHostNotAllowed, nil, "%s must not carry a query or fragment", what)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// Catalog lists the releases, following the Link header's next page on the
// same host, at most maxCatalogPages pages, never the same page twice.
func (c *Client) Catalog(ctx context.Context) (*planner.Catalog, error) {
	next := *c.list
	next.RawQuery = "per_page=100"
	seen := map[string]bool{}
	pages := map[string]listPage{}
	var items []planner.GitHubRelease
	left := int64(maxCatalogBytes)
	for page := 0; ; page++ {
		if page == maxCatalogPages {
			return nil, fault.Stalled(ReasonMirrorUnavailable, nil, "the release list has more than %d pages", maxCatalogPages)
		}
		if left <= 0 {
			return nil, fault.Stalled(ReasonMirrorUnavailable, nil, "the release list is over %d bytes across its pages", maxCatalogBytes)
		}
		seen[next.String()] = true
		pg, err := c.listPage(ctx, &next, min(planner.MaxCatalogPageSize, left))
		if fault.ReasonOf(err) == ReasonTooLarge && left < planner.MaxCatalogPageSize {
			return nil, fault.Stalled(ReasonTooLarge, nil, "the release list is over %d bytes across its pages", maxCatalogBytes)
		}
		if err != nil {
			return nil, err
		}
		pages[next.String()] = pg
		left -= int64(len(pg.body))
		got, err := planner.ParseGitHubPage(pg.body)
		if err != nil {
			return nil, fault.Stalled(ReasonMirrorUnavailable, err, "%s: %v", next.Hostname(), err)
		}
		items = append(items, got...)
		link := pg.next
		if link == "" {
			break
		}
		u, err := next.Parse(link)
		if err != nil || u.Hostname() != c.list.Hostname() || u.Scheme != "https" {
			return nil, fault.Stalled(ReasonHostNotAllowed, nil, "the release list's next page leaves %s", c.list.Hostname())
		}
		if seen[u.String()] {
			return nil, fault.Stalled(ReasonMirrorUnavailable, nil, "the release list's pages loop")
		}
		next = *u
	}
	cat, _, err := planner.CatalogFromGitHub(items)
	if err == nil {
		c.mu.Lock()
		c.pages = pages
		c.mu.Unlock()
	}
	return cat, err
}

// Authenticated reports whether the client sends a token to the releases
// API.
func (c *Client) Authenticated() bool { return c.cfg.Token != "" }

// listPage fetches a page of the release list, conditionally when the last
// catalog had it: on 304 Not Modified the page is what it was.
func (c *Client) listPage(ctx context.Context, u *url.URL, max int64) (listPage, error) {
	c.mu.Lock()
	old, cached := c.pages[u.String()]
	c.mu.Unlock()
	header := c.headerFor(u)
	if cached && old.etag != "" {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("If-None-Match", old.etag)
	}
	data, h, err := c.http.get(ctx, u, header, max)
	switch {
	case errors.Is(err, errNotModified) && cached:
		return old, nil
	case errors.Is(err, errNotModified):
		return listPage{}, fault.Transient(ReasonMirrorUnavailable, nil, "%s answered 304 to a request without a validator", u.Hostname())
	case err != nil:
		return listPage{}, err
	}
	return listPage{etag: h.Get("ETag"), next: nextLink(h.Get("Link")), body: data}, nil
}

func (c *Client) headerFor(u *url.URL) http.Header {
	if u.Hostname() == c.list.Hostname() {
		return c.apiHeader
	}
	return nil
}

// nextLink extracts rel="next" from an RFC 8288 Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		segs := strings.Split(part, ";")
		if len(segs) < 2 {
			continue
		}
		target := strings.TrimSpace(segs[0])
		for _, p := range segs[1:] {
			if strings.TrimSpace(p) == `rel="next"` && strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
				return target[1 : len(target)-1]
			}
		}
	}
	return ""
}

// asset downloads <base>/<tag>/<name>, built from a fixed template (the tag
// is validated, so no path can be smuggled in).
func (c *Client) asset(ctx context.Context, tag, name string) ([]byte, error) {
	if !planner.ValidTag(tag) {
		return nil, fault.Stalled(ReasonManifestRejected, nil, "%s is not a release tag", redact.Quote(tag))
	}
	u := *c.dl
	u.Path = c.dl.Path + "/" + tag + "/" + name
	u.RawPath = ""
	data, _, err := c.http.get(ctx, &u, nil, MaxManifestSize)
	return data, err
}

// OperatorManifest downloads, verifies and vets kubevirt-operator.yaml of
// tag: the sha256 pin when there is one (DigestMismatch), then [Vet]
// (ManifestRejected, listing every violation).
func (c *Client) OperatorManifest(ctx context.Context, tag, namespace string) (*Manifest, error) {
	_, m, err := c.OperatorManifestData(ctx, tag, namespace)
	return m, err
}

// OperatorManifestData is [Client.OperatorManifest] with the file's bytes
// (what `kvgitops mirror` rewrites).
func (c *Client) OperatorManifestData(ctx context.Context, tag, namespace string) ([]byte, *Manifest, error) {
	data, err := c.asset(ctx, tag, "kubevirt-operator.yaml")
	if err != nil {
		return nil, nil, err
	}
	if msg := c.pinMismatch(tag, data); msg != "" {
		return nil, nil, fault.Stalled(ReasonDigestMismatch, nil, "%s", msg)
	}
	m, err := c.Vet(data, tag, namespace).Manifest()
	return data, m, err
}

// CheckOperatorManifest downloads kubevirt-operator.yaml of tag and vets it
// exactly as OperatorManifest does, returning the whole verdict (what
// `kvgitops release check` prints). Only a failed download is an error.
func (c *Client) CheckOperatorManifest(ctx context.Context, tag, namespace string) (*Vetting, error) {
	data, err := c.asset(ctx, tag, "kubevirt-operator.yaml")
	if err != nil {
		return nil, err
	}
	return c.Vet(data, tag, namespace), nil
}

// Vet vets manifest bytes of tag with this client's registries and pins.
func (c *Client) Vet(data []byte, tag, namespace string) *Vetting {
	return VetRelease(data, tag, VetOptions{Namespace: namespace, Registries: c.cfg.Registries}, c.cfg.Pins)
}

// VetRelease is [Vet] with sha256 pins: a pin mismatch is reported as a
// violation of the file's sha256. The agent and `kvgitops release check`
// both come here.
func VetRelease(data []byte, tag string, o VetOptions, pins map[string]string) *Vetting {
	v := Vet(data, tag, o)
	if msg := pinMismatch(pins, tag, data); msg != "" {
		v.Violations = append([]Violation{{Object: "kubevirt-operator.yaml", Field: "sha256", Message: msg}}, v.Violations...)
	}
	return v
}

func (c *Client) pinMismatch(tag string, data []byte) string {
	return pinMismatch(c.cfg.Pins, tag, data)
}

func pinMismatch(pins map[string]string, tag string, data []byte) string {
	pin, ok := pins[tag]
	if !ok {
		return ""
	}
	sum := sha256.Sum256(data)
	if digest := hex.EncodeToString(sum[:]); !strings.EqualFold(pin, digest) {
		return fmt.Sprintf("kubevirt-operator.yaml of %s has sha256 %s, pinned %s", tag, digest, strings.ToLower(pin))
	}
	return ""
}

// CRManifest downloads and vets kubevirt-cr.yaml of tag.
func (c *Client) CRManifest(ctx context.Context, tag, namespace string) (*Manifest, error) {
	_, m, err := c.CRManifestData(ctx, tag, namespace)
	return m, err
}

// CRManifestData is [Client.CRManifest] with the file's bytes.
func (c *Client) CRManifestData(ctx context.Context, tag, namespace string) ([]byte, *Manifest, error) {
	data, err := c.asset(ctx, tag, "kubevirt-cr.yaml")
	if err != nil {
		return nil, nil, err
	}
	m, err := parseCRManifest(data, tag, namespace)
	return data, m, err
}

// Mirror reports whether registry is one the client is configured to take
// images from (however Docker Hub is spelt): what drift correction may put
// back into spec.imageRegistry.
func (c *Client) Mirror(registry string) bool {
	want := canonicalRepository(strings.TrimSuffix(registry, "/"))
	return slices.ContainsFunc(c.cfg.Registries, func(r string) bool {
		return canonicalRepository(strings.TrimSuffix(r, "/")) == want
	})
}
