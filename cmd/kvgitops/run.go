package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/agent"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// runConfig is everything `kvgitops run` is told, by flags or
// KVGITOPS_<FLAG> environment variables.
type runConfig struct {
	repoURL, branch, statusBranch, desiredPath, statusPath, clusterName string
	risksPath, fleetPath                                                string
	gitSecretDir, verifyPGP, verifySSH, authorName, authorEmail         string
	kubevirtNamespace, kubeconfig                                       string
	metricsAddr, healthAddr, webhookAddr, webhookSecretFile             string
	logLevel, logEncoding, failpoint                                    string
	interval, gitTimeout, catalogRefresh                                time.Duration
	followRewrites, leaderElect                                         bool
	leaseNamespace, leaseName                                           string
	statusSigning, signingSecretDir                                     string
	leaseDuration, renewDeadline, retryPeriod                           time.Duration
	rel                                                                 releaseFlags
}

func runFlags(c *runConfig, fs *flag.FlagSet) {
	fs.StringVar(&c.repoURL, "repo-url", "", "Git repository holding the desired file (https:// or ssh://; required)")
	fs.StringVar(&c.branch, "branch", "main", "branch to read the desired file from")
	fs.StringVar(&c.statusBranch, "status-branch", "", "branch to commit status to (default: --branch)")
	fs.StringVar(&c.desiredPath, "desired-path", "kubevirt.yaml", "path of the desired file in the repository")
	fs.StringVar(&c.fleetPath, "fleet-path", "", "path of a fleet file: this cluster follows its ring instead of --desired-path (status then goes to branch status/<cluster-name> unless --status-branch)")
	fs.StringVar(&c.risksPath, "risks-path", "", "path of the repository's upgrade-risks file (default: kubevirt-risks.yaml beside --desired-path; optional)")
	fs.StringVar(&c.statusPath, "status-path", "", "path of the status file (default status/<cluster-name>.yaml)")
	fs.StringVar(&c.clusterName, "cluster-name", "", "name of this cluster in the status file (required)")
	durationVar(fs, &c.interval, "interval", time.Minute, "how often to poll Git")
	fs.StringVar(&c.gitSecretDir, "git-secret-dir", "", "mounted Git Secret (Flux key names: username, password, bearerToken, identity, known_hosts, ca.crt)")
	fs.StringVar(&c.statusSigning, "status-signing", "", "sign status commits: openpgp (git.asc, passphrase) or ssh (identity, password), for branches that require signed commits")
	fs.StringVar(&c.signingSecretDir, "status-signing-secret-dir", "", "mounted Secret with the status-signing key (default --git-secret-dir)")
	durationVar(fs, &c.gitTimeout, "git-timeout", 30*time.Second, "deadline of each Git operation")
	fs.StringVar(&c.verifyPGP, "verify-pgp-keys", "", "armored OpenPGP public keys; when set, the commit that sets the desired file must be signed by one")
	fs.StringVar(&c.verifySSH, "verify-ssh-keys", "", "authorized_keys file of trusted SSH signing keys; when set, the commit that sets the desired file must be signed by one")
	fs.BoolVar(&c.followRewrites, "follow-rewrites", false, "accept a force-pushed branch instead of stalling on it")
	fs.StringVar(&c.authorName, "author-name", "kvgitops", "author of status commits")
	fs.StringVar(&c.authorEmail, "author-email", "kvgitops@noreply", "author email of status commits")
	fs.StringVar(&c.rel.releasesURL, "releases-url", release.DefaultReleasesURL, "release catalog: GitHub releases API URL, or a file (one tag per line or GitHub JSON)")
	c.rel.registerManifests(fs, release.DefaultManifestBaseURL)
	c.rel.registerTransport(fs)
	fs.StringVar(&c.rel.tokenFile, "release-token-file", "", "file with a GitHub token for the releases API")
	durationVar(fs, &c.catalogRefresh, "catalog-refresh", 15*time.Minute, "how long a fetched release catalog is reused")
	fs.StringVar(&c.kubevirtNamespace, "kubevirt-namespace", "kubevirt", "KubeVirt's namespace")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig for running outside the cluster")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":8080", "address of /metrics (0 disables)")
	fs.StringVar(&c.healthAddr, "health-addr", ":9440", "address of /healthz and /readyz (0 disables)")
	fs.StringVar(&c.webhookAddr, "webhook-addr", ":9292", "address of the webhook receiver at /hook (only with --webhook-secret-file)")
	fs.StringVar(&c.webhookSecretFile, "webhook-secret-file", "", "file with the HMAC secret of webhook requests")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "elect a leader on a Lease; only the leader acts")
	fs.StringVar(&c.leaseNamespace, "leader-elect-namespace", "", "namespace of the Lease and of the journal ConfigMap (default: the pod's namespace)")
	fs.StringVar(&c.leaseName, "leader-elect-name", "kvgitops", "name of the Lease")
	durationVar(fs, &c.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "lease duration")
	durationVar(fs, &c.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "renew deadline")
	durationVar(fs, &c.retryPeriod, "leader-elect-retry-period", 2*time.Second, "retry period")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logEncoding, "log-encoding", "json", "json or console")
	fs.StringVar(&c.failpoint, "failpoint", "", "testing only: exit at this executor point (e.g. applied-object-3), or stop there (applied-object-3:stop)")
}

// check validates every flag before anything is touched (the cluster, the
// network, the Secret), and says all that is wrong at once.
func (c *runConfig) check() error {
	errs := c.checkBasics()
	if c.fleetPath != "" {
		errs = append(errs, c.checkFleet()...)
		c.statusBranch = agent.PeerBranch(c.clusterName)
		c.desiredPath = c.fleetPath
	}
	if c.statusPath == "" {
		c.statusPath = agent.PeerStatusPath(c.clusterName)
	}
	if c.risksPath == "" {
		c.risksPath = agent.DefaultRisksPath(c.desiredPath)
	}
	errs = append(errs, c.checkPaths()...)
	return errors.Join(errs...)
}

func (c *runConfig) checkBasics() []error {
	var errs []error
	if c.repoURL == "" {
		errs = append(errs, errors.New("--repo-url is required"))
	} else if err := gitsource.ValidateURL(c.repoURL); err != nil {
		errs = append(errs, fmt.Errorf("--repo-url: %w", err))
	}
	if c.clusterName == "" {
		errs = append(errs, errors.New("--cluster-name is required"))
	}
	if c.interval < time.Second {
		errs = append(errs, fmt.Errorf("--interval must be at least 1s, got %s", c.interval))
	}
	if c.logEncoding != "json" && c.logEncoding != "console" {
		errs = append(errs, fmt.Errorf("--log-encoding must be json or console, got %q", c.logEncoding))
	}
	if c.statusSigning != "" && c.statusSigning != "openpgp" && c.statusSigning != "ssh" {
		errs = append(errs, fmt.Errorf("--status-signing must be openpgp or ssh, got %q", c.statusSigning))
	}
	return errs
}

// checkFleet: a fleet reads its peers at status/<cluster>.yaml at the head
// of their own branch status/<cluster>, which each signs with the key the
// fleet file lists for it.
func (c *runConfig) checkFleet() []error {
	var errs []error
	if c.statusPath != "" && c.statusPath != agent.PeerStatusPath(c.clusterName) {
		errs = append(errs, fmt.Errorf("--status-path %q: with --fleet-path the status file is %s, where the other clusters read it", c.statusPath, agent.PeerStatusPath(c.clusterName)))
	}
	if c.statusBranch != "" && c.statusBranch != agent.PeerBranch(c.clusterName) {
		errs = append(errs, fmt.Errorf("--status-branch %q: with --fleet-path status goes to branch %s, where the other clusters read it", c.statusBranch, agent.PeerBranch(c.clusterName)))
	}
	if c.statusSigning == "" {
		errs = append(errs, errors.New("--fleet-path needs --status-signing: the other clusters count this cluster's status only when its commits are signed by the key the fleet file lists for it (spec.statusKeys)"))
	}
	return errs
}

// checkPaths: the agent never writes a file it reads.
func (c *runConfig) checkPaths() []error {
	var errs []error
	if overlaps(c.statusPath, c.risksPath) || c.risksPath == c.desiredPath {
		errs = append(errs, fmt.Errorf("--risks-path %q must differ from --desired-path and lie outside --status-path %q", c.risksPath, c.statusPath))
	}
	if overlaps(c.statusPath, c.desiredPath) {
		errs = append(errs, fmt.Errorf("--status-path %q must not be, or be inside, --desired-path %q: the agent would overwrite the file it reads", c.statusPath, c.desiredPath))
	}
	return errs
}

func runCommand(ctx context.Context, args []string, _, stderr io.Writer) int {
	var c runConfig
	fs := flag.NewFlagSet("kvgitops run", flag.ContinueOnError)
	runFlags(&c, fs)
	if code, stop := parseCommand(fs, args, os.LookupEnv, stderr, c.check); stop {
		return code
	}
	log, err := newLogger(stderr, c.logLevel, c.logEncoding)
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops run:", err)
		return exitUsage
	}
	if err := run(ctx, c, log); err != nil {
		log.Error("Agent stopped", "error", err)
		return exitRefused
	}
	return exitOK
}

func newLogger(w io.Writer, level, encoding string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if encoding == "console" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// newSource builds the Git source from the secret and verification keys.
func newSource(c runConfig) (*gitsource.Source, error) {
	cfg := gitsource.Config{
		URL: c.repoURL, Branch: c.branch, StatusBranch: c.statusBranch, Credentials: gitsource.SecretDir(c.gitSecretDir), Timeout: c.gitTimeout,
		AuthorName: c.authorName, AuthorEmail: c.authorEmail,
	}
	if c.verifyPGP != "" || c.verifySSH != "" {
		v := &gitsource.VerifyConfig{}
		if c.verifyPGP != "" {
			b, err := os.ReadFile(c.verifyPGP)
			if err != nil {
				return nil, err
			}
			v.PGPKeyRings = []string{string(b)}
		}
		if c.verifySSH != "" {
			b, err := os.ReadFile(c.verifySSH)
			if err != nil {
				return nil, err
			}
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					v.SSHKeys = append(v.SSHKeys, line)
				}
			}
		}
		cfg.Verify = v
	}
	if c.statusSigning != "" {
		dir := c.signingSecretDir
		if dir == "" {
			dir = c.gitSecretDir
		}
		signer, err := gitsource.LoadCommitSigner(dir, c.statusSigning)
		if err != nil {
			return nil, err
		}
		cfg.Signer = signer
	}
	return gitsource.New(cfg)
}

// catalogFunc reads the catalog from the releases API or a file.
func catalogFunc(c runConfig) agent.CatalogFunc {
	return func(ctx context.Context) (*planner.Catalog, error) { return loadCatalog(ctx, c.rel) }
}

// overlaps reports whether status is desired or lies inside it (or the
// other way round), comparing cleaned slash paths.
func overlaps(status, desired string) bool {
	s, d := path.Clean(strings.TrimPrefix(status, "./")), path.Clean(strings.TrimPrefix(desired, "./"))
	return s == d || strings.HasPrefix(s, d+"/") || strings.HasPrefix(d, s+"/")
}
