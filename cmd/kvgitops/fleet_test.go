package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/agent"
)

const testFleet = `apiVersion: kvgitops.dev/v1alpha1
kind: KubeVirtFleet
spec:
  kubevirt: {version: v1.8.4}
  rings:
  - {name: canary, clusters: [lab-1], soak: 1h}
  - {name: staging, clusters: [eu-2, us-3], soak: 24h}
  - {name: prod, clusters: [ap-1]}
  overrides:
    us-3: {version: v1.7.4}
`

// fleetCheckout is a local checkout as a fleet leaves it: the canary's
// status on its own branch, the others' on main, prod's missing; the
// fleet file committed two hours ago.
func fleetCheckout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	git := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(path string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte(testFleet))
	digest := hex.EncodeToString(sum[:])[:16]
	since := time.Now().Add(-2 * time.Hour).UTC()
	status := func(cluster string, phase agent.Phase, reason, observed string) []byte {
		st := agent.Status{APIVersion: agent.StatusAPIVersion, Kind: agent.StatusKind, Cluster: cluster, Phase: phase, Reason: reason,
			Desired:    &agent.DesiredSummary{State: "Present", Version: "v1.8.4", Digest: digest},
			Observed:   agent.ObservedSummary{Version: observed, Available: true},
			Conditions: []agent.Condition{{Type: "Ready", Status: "True", Reason: reason, LastTransitionTime: agent.NewTimestamp(since.Add(time.Hour))}}}
		data, err := agent.Render(st)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	git(nil, "init", "-q", "-b", "main")
	write("fleet.yaml", []byte(testFleet))
	date := []string{"GIT_COMMITTER_DATE=" + since.Format(time.RFC3339), "GIT_AUTHOR_DATE=" + since.Format(time.RFC3339)}
	git(date, "add", ".")
	git(date, "commit", "-q", "-m", "fleet v1.8.4")
	git(nil, "checkout", "-q", "-b", "status/lab-1")
	write(agent.PeerStatusPath("lab-1"), status("lab-1", agent.PhaseSucceeded, "UpToDate", "v1.8.4"))
	git(nil, "add", ".")
	git(nil, "commit", "-q", "-m", "status(lab-1)")
	git(nil, "checkout", "-q", "main")
	write(agent.PeerStatusPath("eu-2"), status("eu-2", agent.PhaseProgressing, "HopInProgress", "v1.7.4"))
	write(agent.PeerStatusPath("us-3"), status("us-3", agent.PhaseSucceeded, "UpToDate", "v1.7.4"))
	return dir
}

func TestFleetStatusTableAndExitCode(t *testing.T) {
	dir := fleetCheckout(t)
	r := kvgitops(t, "fleet", "status", "--dir", dir)
	if r.code != 1 {
		t.Errorf("exit %d with prod's status missing for 2h, want %d\n%s%s", r.code, 1, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"lab-1    canary   v1.8.4",
		"us-3     staging  v1.7.4 (pinned)",
		"ap-1     prod     v1.8.4",
		"NoStatus (stale)",
		"canary   Done        1/1   1h",
		"staging  InProgress  1/2   24h",
		"prod     Waiting     0/1   -",
		"1 problem(s): ap-1 is stale (NoStatus)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	// Within the limit, a missing status is not yet stale.
	if r := kvgitops(t, "fleet", "status", "--dir", dir, "--stale-after", "3h"); r.code != 0 {
		t.Errorf("exit %d with --stale-after 3h:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestFleetStatusJSONAndMarkdown(t *testing.T) {
	dir := fleetCheckout(t)
	r := kvgitops(t, "fleet", "status", "--dir", dir, "-o", "json", "--stale-after", "3h")
	var rep struct {
		Healthy bool
		Version string
		Cluster []struct{ Phase string } `json:"clusters"`
		Rings   []struct{ State string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if !rep.Healthy || rep.Version != "v1.8.4" || len(rep.Cluster) != 4 || rep.Cluster[0].Phase != "Succeeded" || rep.Rings[1].State != "InProgress" {
		t.Errorf("report %+v", rep)
	}
	md := kvgitops(t, "fleet", "status", "--dir", dir, "-o", "markdown", "--stale-after", "3h").stdout
	for _, want := range []string{"# KubeVirt fleet: v1.8.4", "```mermaid", `subgraph r0["canary: Done 1/1"]`, "r0 --> r1", `c0["lab-1<br/>v1.8.4 Succeeded"]:::ok`,
		"## Ring staging: InProgress (1/2 done, soak 24h)", "| eu-2 | v1.8.4 | v1.7.4 | Progressing | HopInProgress |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestFleetStatusRefusesABadFleetFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(strings.Replace(testFleet, "soak: 1h", "soak: soon", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := kvgitops(t, "fleet", "status", "--dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, `spec.rings[0].soak (line 6): not a duration`) || !strings.Contains(r.stderr, `"soon"`) {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	if r := kvgitops(t, "fleet", "status"); r.code != 2 || !strings.Contains(r.stderr, "give exactly one of --repo-url and --dir") {
		t.Errorf("no source: exit %d: %s", r.code, r.stderr)
	}
}
