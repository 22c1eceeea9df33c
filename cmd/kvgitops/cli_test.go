package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvgitops-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "kvgitops")
	if bin := os.Getenv("KVGITOPS_TEST_BINARY"); bin != "" { // built once by hack/test.sh
		binary = bin
	} else if out, err := buildStamped(binary); err != nil {
		fmt.Fprintf(os.Stderr, "build kvgitops: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildStamped builds kvgitops as make build stamps it with its commit.
func buildStamped(binary string) ([]byte, error) {
	return exec.Command("go", "build", "-ldflags", "-X main.commit="+headCommit(), "-o", binary, ".").CombinedOutput()
}

// headCommit is the checkout's commit as make stamps it ("" outside Git).
func headCommit() string {
	rev, _ := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	return strings.TrimSpace(string(rev))
}

type result struct {
	stdout, stderr string
	code           int
}

func kvgitops(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func desired(t *testing.T, spec string) string {
	return writeFile(t, "kubevirt.yaml", "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n"+spec)
}

func catalogFile(t *testing.T) string { return writeFile(t, "releases.txt", string(releases.Text)) }

func TestPlanTextGolden(t *testing.T) {
	for _, tt := range []struct {
		name, spec, installed string
		extra                 []string
	}{
		{"strict", "  version: v0.23.0\n", "v0.20.1", nil},
		{"latest-patch", "  version: v0.23.0\n  pathPolicy: LatestPatch\n", "v0.20.1", nil},
		{"install", "  version: \"~1.1\"\n", "none", []string{"--kubernetes-version", "1.37.2"}},
		{"teardown", "  state: Absent\n", "v1.9.0", nil},
		{"none", "  version: v1.8.4\n", "v1.8.4", nil},
		{"pinned-into-the-bug", "  version: v1.7.4\n", "v1.5.3", []string{"--mode", "ImageTag", "--kubernetes-version", "v1.33.1"}},
		// A path crossing a known risk (planned around), risky hops and a
		// Kubernetes range boundary, with gates in every state.
		{"risks-and-kubernetes", "  version: v1.8.4\n", "v1.5.2", []string{"--kubernetes-version", "1.31.4",
			"--feature-gates", "Passt,DisableMDEVConfiguration,VMPersistentState", "--risks", "RISKS"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i, a := range tt.extra {
				if a == "RISKS" {
					tt.extra[i] = writeFile(t, "kubevirt-risks.yaml", "apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtUpgradeRisks\nrisks:\n"+
						"- id: ACME-7\n  to: {tags: [v1.6.6]}\n  severity: Blocks\n  summary: our CSI driver breaks on v1.6.6\n  url: https://wiki.example.com/acme-7\n")
				}
			}
			r := kvgitops(t, append([]string{"plan", "--desired", desired(t, tt.spec), "--releases", catalogFile(t), "--installed", tt.installed}, tt.extra...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			golden := filepath.Join("testdata", "plan-"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if r.stdout != string(want) {
				t.Errorf("plan -o text differs from %s:\n--- got\n%s--- want\n%s", golden, r.stdout, want)
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	r := kvgitops(t, "plan", "--desired", desired(t, "  version: v1.8.4\n"), "--releases", catalogFile(t), "--installed", "v1.7.3", "--mode", "ImageTag", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var p struct {
		ID, Action, From, To string
		Steps                []map[string]string
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("more than one JSON value on stdout")
	}
	if len(p.ID) != 8 || p.Action != "Upgrade" || p.From != "v1.7.3" || p.To != "v1.8.4" || len(p.Steps) != 2 ||
		p.Steps[0]["to"] != "v1.7.4" || p.Steps[1]["method"] != "OperatorThenImageTag" {
		t.Errorf("plan %+v", p)
	}
}

func TestPlanExitCodes(t *testing.T) {
	d := desired(t, "  version: v1.7.4\n")
	cat := catalogFile(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		reason string // with -o json
	}{
		{"no command", nil, 2, ""},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"no flags", []string{"plan"}, 2, ""},
		{"unknown flag", []string{"plan", "--frob"}, 2, ""},
		{"bad output", []string{"plan", "--desired", d, "--releases", cat, "--installed", "none", "-o", "yaml"}, 2, ""},
		{"both sources", []string{"plan", "--desired", d, "--releases", cat, "--installed", "none", "--kubeconfig", "/x"}, 2, ""},
		{"bad installed", []string{"plan", "--desired", d, "--releases", cat, "--installed", "1.2"}, 2, ""},
		{"bad mode", []string{"plan", "--desired", d, "--releases", cat, "--installed", "v1.0.0", "--mode", "Pinned"}, 2, ""},
		{"downgrade", []string{"plan", "--desired", d, "--releases", cat, "--installed", "v1.8.4", "-o", "json"}, 1, "DowngradeNotSupported"},
		{"unknown version", []string{"plan", "--desired", desired(t, "  version: v7.0.0\n"), "--releases", cat, "--installed", "none", "-o", "json"}, 1, "UnknownVersion"},
		{"invalid desired", []string{"plan", "--desired", desired(t, "  version: 1.10\n"), "--releases", cat, "--installed", "none", "-o", "json"}, 1, "InvalidDesiredState"},
		{"missing catalog", []string{"plan", "--desired", d, "--releases", "/nonexistent", "--installed", "none", "-o", "json"}, 1, "CatalogUnavailable"},
		{"plan found", []string{"plan", "--desired", d, "--releases", cat, "--installed", "v1.6.6"}, 0, ""},
		{"a v1beta1 CRD on 1.37", []string{"plan", "--desired", desired(t, "  version: v0.39.2\n"), "--releases", cat, "--installed", "none", "--kubernetes-version", "1.37.2", "-o", "json"}, 1, "APIVersionNotServed"},
		{"imageTag under a buggy operator", []string{"plan", "--desired", desired(t, "  version: v1.8.4\n  method: ImageTag\n"), "--releases", cat, "--installed", "v1.7.4", "--operator-version", "v1.6.6", "-o", "json"}, 1, "ImageTagStrategyBug"},
		{"bad kubernetes version", []string{"plan", "--desired", d, "--releases", cat, "--installed", "v1.6.6", "--kubernetes-version", "new"}, 2, ""},
		{"bad operator version", []string{"plan", "--desired", d, "--releases", cat, "--installed", "v1.6.6", "--operator-version", "1.6"}, 2, ""},
		{"version", []string{"version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kvgitops(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("kvgitops %v: exit %d, want %d\nstdout: %s\nstderr: %s", tt.args, r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.reason == "" {
				return
			}
			var body struct {
				Error struct{ Reason, Message string }
			}
			if err := json.Unmarshal([]byte(r.stdout), &body); err != nil || body.Error.Reason != tt.reason || body.Error.Message == "" {
				t.Errorf("stdout %q: want one JSON error with reason %s", r.stdout, tt.reason)
			}
		})
	}
}

func TestPlanInvalidDesiredNamesFieldAndValue(t *testing.T) {
	r := kvgitops(t, "plan", "--desired", desired(t, "  version: v1.8.4\n  hopTimeout: -5m\n"), "--releases", catalogFile(t), "--installed", "none")
	if r.code != 1 || !strings.Contains(r.stderr, `spec.hopTimeout (line 5): must be at least 1s, got "-5m"`) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPlanFromTheReleasesAPI(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	ca := writeFile(t, "ca.crt", string(srv.CAPEM()))
	r := kvgitops(t, "plan", "--desired", desired(t, "  version: latest\n"), "--releases", srv.ReleasesURL(),
		"--release-ca-file", ca, "--release-allowed-networks", "127.0.0.0/8", "--installed", "v1.8.4", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"to":"v1.9.0"`) {
		t.Errorf("exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}
	// Without the network allowance the loopback address is refused.
	r = kvgitops(t, "plan", "--desired", desired(t, "  version: latest\n"), "--releases", srv.ReleasesURL(), "--release-ca-file", ca, "--installed", "v1.8.4", "-o", "json")
	if r.code != 1 || !strings.Contains(r.stdout, "non-public address") {
		t.Errorf("loopback without allowance: exit %d, stdout %s", r.code, r.stdout)
	}
}

func TestPlanAgainstALiveCluster(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	if err := simulator.Wipe(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	sim, err := simulator.New(env.Config, simulator.Options{RolloutDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	if err := testenv.Apply(ctx, env.Config, releases.OperatorManifest("v1.6.6")); err != nil {
		t.Fatal(err)
	}
	cr := strings.Replace(string(releases.CRManifest("v1.6.6")), "spec:\n", "spec:\n  imageTag: v1.6.6\n", 1)
	if err := testenv.Apply(ctx, env.Config, []byte(cr)); err != nil {
		t.Fatal(err)
	}
	if err := sim.WaitFor(ctx, simulator.Has(simulator.HopCompleted, "v1.6.6")); err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, env)
	r := kvgitops(t, "plan", "--desired", desired(t, "  version: v1.8.4\n"), "--releases", catalogFile(t), "--kubeconfig", kubeconfig, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"from":"v1.6.6"`) || !strings.Contains(r.stdout, `"method":"OperatorThenImageTag"`) {
		t.Errorf("plan against the cluster: exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}
}

func writeKubeconfig(t *testing.T, env *testenv.Env) string {
	t.Helper()
	c := env.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVersionSaysReleaseCommitAndGo: `kvgitops version` names the release,
// the commit it was built from and the Go toolchain, as an issue report
// needs them.
func TestVersionSaysReleaseCommitAndGo(t *testing.T) {
	r := kvgitops(t, "version")
	line := regexp.MustCompile(`^kvgitops \S+ \(commit ([0-9a-f]{12}|unknown)(, modified)?; go1\.\d+\S*, linux/amd64\)\n$`)
	if r.code != 0 || !line.MatchString(r.stdout) {
		t.Errorf("kvgitops version: exit %d, %q", r.code, r.stdout)
	}
	if head := headCommit(); head != "" && !strings.Contains(r.stdout, "commit "+head) {
		t.Errorf("kvgitops version: %q does not name the checkout's commit %s", r.stdout, head)
	}
}

// TestHelpHidesTestHooks: `run -h` lists the flags a user sets, with their
// defaults, and not the test hooks (--failpoint), which still parse.
func TestHelpHidesTestHooks(t *testing.T) {
	r := kvgitops(t, "run", "-h")
	if r.code != 0 || strings.Contains(r.stderr, "failpoint") || !strings.Contains(r.stderr, "how often to poll Git (default 1m0s)") {
		t.Errorf("run -h: exit %d, %q", r.code, r.stderr)
	}
	r = kvgitops(t, "run", "--failpoint", "x", "--repo-url", "http://github.com/org/repo", "--cluster-name", "c")
	if strings.Contains(r.stderr, "flag provided but not defined") {
		t.Errorf("--failpoint no longer parses: %q", r.stderr)
	}
}
