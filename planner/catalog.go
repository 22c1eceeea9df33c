package planner

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/kvgitops/kvgitops/redact"
)

// Size caps of catalog sources.
const (
	MaxCatalogTextSize = 1 << 20
	MaxCatalogPageSize = 16 << 20
)

// OperatorAsset is the release asset a usable release must carry.
const OperatorAsset = "kubevirt-operator.yaml"

// Release is one entry of the catalog.
type Release struct {
	Tag        string
	Prerelease bool
}

// Catalog is the set of KubeVirt releases the planner may choose from,
// ordered by semver precedence, with a digest of its contents.
type Catalog struct {
	releases []release
	digest   string
}

type release struct {
	v          version
	prerelease bool
}

// NewCatalog builds a catalog. Duplicate tags collapse (a tag is a
// pre-release if any entry says so); every tag must be valid. A tag with an
// -alpha, -beta or -rc suffix is a pre-release whatever the flag says.
func NewCatalog(rs []Release) (*Catalog, error) {
	byTag := make(map[string]release, len(rs))
	for _, r := range rs {
		v, err := parseTag(r.Tag)
		if err != nil {
			return nil, fmt.Errorf("%w: tag %s: %v", ErrInvalidCatalog, redact.Quote(r.Tag), err)
		}
		pre := r.Prerelease || v.prerelease()
		if old, ok := byTag[r.Tag]; ok {
			pre = pre || old.prerelease
		}
		byTag[r.Tag] = release{v: v, prerelease: pre}
	}
	c := &Catalog{releases: make([]release, 0, len(byTag))}
	for _, r := range byTag {
		c.releases = append(c.releases, r)
	}
	sort.Slice(c.releases, func(i, j int) bool { return c.releases[i].v.compare(c.releases[j].v) < 0 })
	h := sha256.New()
	for _, r := range c.releases {
		fmt.Fprintf(h, "%s %t\n", r.v.tag, r.prerelease)
	}
	c.digest = hex.EncodeToString(h.Sum(nil))[:16]
	return c, nil
}

// ParseCatalogText reads one tag per line. Blank lines and lines starting
// with # are skipped; any other line must be a valid tag.
func ParseCatalogText(data []byte) (*Catalog, error) {
	if len(data) > MaxCatalogTextSize {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrInvalidCatalog, len(data), MaxCatalogTextSize)
	}
	var rs []Release
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if !ValidTag(s) {
			return nil, fmt.Errorf("%w: line %d: %s is not a release tag", ErrInvalidCatalog, n, redact.Quote(s))
		}
		rs = append(rs, Release{Tag: s})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCatalog, err)
	}
	return NewCatalog(rs)
}

// GitHubRelease is the part of a GitHub REST "list releases" item the
// catalog reads.
type GitHubRelease struct {
	TagName    string        `json:"tag_name"`
	Draft      bool          `json:"draft"`
	Prerelease bool          `json:"prerelease"`
	Assets     []GitHubAsset `json:"assets"`
}

// GitHubAsset is a release asset.
type GitHubAsset struct {
	Name               string `json:"name"`
	BrowserDownloadURL string `json:"browser_download_url"`
}

// ParseGitHubPage decodes one page of the GitHub REST releases list.
func ParseGitHubPage(page []byte) ([]GitHubRelease, error) {
	if len(page) > MaxCatalogPageSize {
		return nil, fmt.Errorf("%w: page of %d bytes, over the %d-byte limit", ErrInvalidCatalog, len(page), MaxCatalogPageSize)
	}
	var items []GitHubRelease
	if err := json.Unmarshal(page, &items); err != nil {
		return nil, fmt.Errorf("%w: not a GitHub releases list: %v", ErrInvalidCatalog, jsonProblem(err))
	}
	return items, nil
}

// CatalogFromGitHub keeps the usable releases of a GitHub listing: drafts,
// tags that are not release tags (older naming schemes such as
// v0.6.4-cnv-1.1) and releases without the operator manifest asset are left
// out, as KubeVirt's own upgrade tests do. It reports how many were skipped.
func CatalogFromGitHub(items []GitHubRelease) (*Catalog, int, error) {
	var rs []Release
	skipped := 0
	for _, it := range items {
		if it.Draft || !ValidTag(it.TagName) || !hasAsset(it.Assets, OperatorAsset) {
			skipped++
			continue
		}
		rs = append(rs, Release{Tag: it.TagName, Prerelease: it.Prerelease})
	}
	c, err := NewCatalog(rs)
	return c, skipped, err
}

// ParseCatalog reads either format: a JSON array (GitHub REST) or text.
func ParseCatalog(data []byte) (*Catalog, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		items, err := ParseGitHubPage(data)
		if err != nil {
			return nil, err
		}
		c, _, err := CatalogFromGitHub(items)
		return c, err
	}
	return ParseCatalogText(data)
}

func hasAsset(as []GitHubAsset, name string) bool {
	for _, a := range as {
		if a.Name == name {
			return true
		}
	}
	return false
}

func jsonProblem(err error) string {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return msg
}

// Digest identifies the catalog's contents (tags and pre-release flags).
func (c *Catalog) Digest() string { return c.digest }

// Len is the number of releases.
func (c *Catalog) Len() int { return len(c.releases) }

// Has reports whether tag is in the catalog.
func (c *Catalog) Has(tag string) bool {
	_, ok := c.find(tag)
	return ok
}

func (c *Catalog) find(tag string) (release, bool) {
	v, err := parseTag(tag)
	if err != nil {
		return release{}, false
	}
	i := sort.Search(len(c.releases), func(i int) bool { return c.releases[i].v.compare(v) >= 0 })
	if i < len(c.releases) && c.releases[i].v.tag == tag {
		return c.releases[i], true
	}
	return release{}, false
}

// stable yields the stable releases in ascending order.
func (c *Catalog) stable() []version {
	out := make([]version, 0, len(c.releases))
	for _, r := range c.releases {
		if !r.prerelease {
			out = append(out, r.v)
		}
	}
	return out
}

// Latest is the highest stable release, "" for a catalog without one.
func (c *Catalog) Latest() string {
	for i := len(c.releases) - 1; i >= 0; i-- {
		if !c.releases[i].prerelease {
			return c.releases[i].v.tag
		}
	}
	return ""
}
