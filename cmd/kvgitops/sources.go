package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

// releaseFlags say where releases come from (agent configuration, never the
// desired file).
type releaseFlags struct {
	releasesURL, manifestBase, caFile, networks, pins, tokenFile, registries string
}

// registerTransport adds how release hosts are reached: --release-ca-file
// and --release-allowed-networks (run, plan, release check, mirror).
func (f *releaseFlags) registerTransport(fs *flag.FlagSet) {
	fs.StringVar(&f.caFile, "release-ca-file", "", "PEM bundle to trust for release hosts (default: system roots)")
	fs.StringVar(&f.networks, "release-allowed-networks", "", "comma-separated CIDRs release hosts may resolve to (private, loopback and metadata addresses are refused otherwise)")
}

// registerManifests adds where kubevirt-operator.yaml comes from (base its
// default) and what it must be: --manifest-base-url, --release-pins,
// --release-image-registry (run, release check, mirror).
func (f *releaseFlags) registerManifests(fs *flag.FlagSet, base string) {
	fs.StringVar(&f.manifestBase, "manifest-base-url", base, "base URL of <tag>/kubevirt-operator.yaml (GitHub's release downloads unless set)")
	fs.StringVar(&f.pins, "release-pins", "", "comma-separated TAG=SHA256 pins of kubevirt-operator.yaml")
	fs.StringVar(&f.registries, "release-image-registry", "", "comma-separated registries (or repositories) virt-operator images may come from, e.g. a mirror (default: the release's own)")
}

// releaseClient builds the hardened release client from flags.
func (f releaseFlags) releaseClient() (*release.Client, error) {
	cfg := release.Config{ReleasesURL: f.releasesURL, ManifestBaseURL: f.manifestBase, Registries: splitList(f.registries)}
	if !strings.HasPrefix(f.releasesURL, "https://") {
		cfg.ReleasesURL = "" // a local catalog file; manifests still come over https
	}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("release CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("release CA file %s holds no PEM certificate", f.caFile)
		}
		cfg.HTTP.RootCAs = pool
	}
	for _, n := range splitList(f.networks) {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("allowed network %q: %w", n, err)
		}
		cfg.HTTP.AllowedNetworks = append(cfg.HTTP.AllowedNetworks, p)
	}
	pins, err := f.parsePins()
	if err != nil {
		return nil, err
	}
	cfg.Pins = pins
	tok, err := f.token()
	if err != nil {
		return nil, err
	}
	cfg.Token = tok
	return release.New(cfg)
}

// token reads --release-token-file; none when the flag is unset or the file
// missing (deploy/ mounts the token's Secret as optional). An empty file is
// an error: the Secret exists, so a token was meant.
func (f releaseFlags) token() (redact.Secret, error) {
	if f.tokenFile == "" {
		return "", nil
	}
	data, err := os.ReadFile(f.tokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("release token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("release token file %s is empty (delete the Secret to query the releases API without a token)", f.tokenFile)
	}
	return redact.Secret(tok), nil
}

// parsePins reads --release-pins: TAG=SHA256,…
func (f releaseFlags) parsePins() (map[string]string, error) {
	if f.pins == "" {
		return nil, nil
	}
	pins := map[string]string{}
	for _, p := range splitList(f.pins) {
		tag, sum, ok := strings.Cut(p, "=")
		if !ok || !planner.ValidTag(tag) || len(sum) != 64 {
			return nil, fmt.Errorf("--release-pins: %q is not TAG=SHA256 (a release tag and 64 hex digits)", p)
		}
		pins[tag] = sum
	}
	return pins, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loadCatalog reads the catalog from an https URL (GitHub releases API) or a
// local file (one tag per line, or GitHub JSON).
func loadCatalog(ctx context.Context, f releaseFlags) (*planner.Catalog, error) {
	if strings.HasPrefix(f.releasesURL, "https://") {
		rc, err := f.releaseClient()
		if err != nil {
			return nil, err
		}
		return rc.Catalog(ctx)
	}
	if strings.Contains(f.releasesURL, "://") {
		return nil, fmt.Errorf("releases source %q: want an https URL or a file path", f.releasesURL)
	}
	data, err := readCapped(f.releasesURL, planner.MaxCatalogPageSize)
	if err != nil {
		return nil, err
	}
	return planner.ParseCatalog(data)
}

// observeCluster reads the live cluster behind a kubeconfig.
func observeCluster(ctx context.Context, kubeconfig, namespace string) (planner.Observed, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return planner.Observed{}, err
	}
	ex, err := executor.New(cfg, executor.Config{Namespace: namespace})
	if err != nil {
		return planner.Observed{}, err
	}
	o, err := ex.Observe(ctx)
	if err != nil {
		return planner.Observed{}, err
	}
	if err := ex.ObserveWorkloads(ctx, o); err != nil {
		return planner.Observed{}, err
	}
	return o.Observed, nil
}
