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
  - {name: prod, clusters: [ap-1, ap-2]}
  overrides:
    us-3: {version: v1.7.4}
`

// fleetCheckout is a local checkout as a fleet leaves it, each status on
// its cluster's branch: the canary's signed by its key; staging's eu-2
// signed, with a message full of terminal escapes and Markdown; us-3's
// signed by somebody else's key (forged); prod's ap-1 missing, ap-2's over
// the size cap. The fleet file was committed two hours ago.
func fleetCheckout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	keys := t.TempDir()
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
	pub := map[string]string{}
	for _, c := range []string{"lab-1", "eu-2", "us-3", "ap-1", "ap-2", "mallory"} {
		key := filepath.Join(keys, c)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", c, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		b, _ := os.ReadFile(key + ".pub")
		pub[c] = strings.TrimSpace(string(b))
	}
	fleet := testFleet + "  statusKeys:\n"
	for _, c := range []string{"lab-1", "eu-2", "us-3", "ap-1", "ap-2"} {
		fleet += "    " + c + ": " + pub[c] + "\n"
	}
	sum := sha256.Sum256([]byte(fleet))
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
	write("fleet.yaml", []byte(fleet))
	date := []string{"GIT_COMMITTER_DATE=" + since.Format(time.RFC3339), "GIT_AUTHOR_DATE=" + since.Format(time.RFC3339)}
	git(date, "add", ".")
	git(date, "commit", "-q", "-m", "fleet v1.8.4")
	branch := func(cluster, signer string, data []byte) {
		t.Helper()
		git(nil, "checkout", "-q", "-b", "status/"+cluster, "main")
		write(agent.PeerStatusPath(cluster), data)
		git(nil, "add", ".")
		git(nil, "-c", "gpg.format=ssh", "-c", "user.signingkey="+filepath.Join(keys, signer), "commit", "-q", "-S", "-m", "status("+cluster+")")
		git(nil, "checkout", "-q", "main")
	}
	branch("lab-1", "lab-1", status("lab-1", agent.PhaseSucceeded, "UpToDate", "v1.8.4"))
	// A signed status is still untrusted text: a compromised cluster signs
	// what it likes, with bytes Render would never write.
	hostile := strings.Replace(string(status("eu-2", agent.PhaseProgressing, "HopInProgress", "v1.7.4")), "reason: HopInProgress",
		"reason: HopInProgress\nmessage: \"\\e[2J\\e[31mowned\\e[0m ![x](https://evil.example/p.png) [click](https://evil.example) </table> | # H1 `code`\"", 1)
	branch("eu-2", "eu-2", []byte(hostile))
	branch("us-3", "mallory", status("us-3", agent.PhaseFailed, "HopFailed", "v1.7.4"))
	branch("ap-2", "ap-2", append(status("ap-2", agent.PhaseSucceeded, "UpToDate", "v1.8.4"), []byte("# "+strings.Repeat("x", agent.MaxStatusSize)+"\n")...))
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
		"us-3     staging  v1.7.4 (pinned)  -         Unverified (stale)",
		"ap-1     prod     v1.8.4",
		"NoStatus (stale)",
		"ap-2     prod     v1.8.4           -         Unverified (stale)",
		"canary   Done        1/1   1h",
		"staging  InProgress  0/2   24h",
		"prod     Waiting     0/2   -",
		"us-3 is stale (Unverified)",
		"ap-1 is stale (NoStatus)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.ContainsAny(r.stdout, "\x1b") || strings.Contains(r.stdout, "HopFailed") {
		t.Errorf("the table shows raw or unverified peer text:\n%q", r.stdout)
	}
}

func TestFleetStatusJSONAndMarkdown(t *testing.T) {
	dir := fleetCheckout(t)
	r := kvgitops(t, "fleet", "status", "--dir", dir, "-o", "json", "--stale-after", "3h")
	var rep struct {
		Healthy bool
		Version string
		Cluster []struct{ Name, Phase, Reason, Message string } `json:"clusters"`
		Rings   []struct{ State string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if rep.Healthy || rep.Version != "v1.8.4" || len(rep.Cluster) != 5 || rep.Cluster[0].Phase != "Succeeded" || rep.Rings[1].State != "InProgress" {
		t.Errorf("report %+v", rep)
	}
	why := map[string]string{}
	for _, c := range rep.Cluster {
		why[c.Name] = c.Phase + " " + c.Message
	}
	for c, want := range map[string]string{
		"us-3": "Unverified SignatureInvalid: status/us-3.yaml on status/us-3: commit",
		"ap-2": "Unverified TooLarge: status/ap-2.yaml on status/ap-2 is",
		"eu-2": "Progressing ",
	} {
		if !strings.HasPrefix(why[c], want) {
			t.Errorf("%s: %q, want it to start with %q", c, why[c], want)
		}
	}
	if !strings.Contains(why["us-3"], "not trusted") {
		t.Errorf("us-3 (forged) should name the untrusted key: %q", why["us-3"])
	}
	if strings.Contains(r.stdout, `\u001b`) {
		t.Errorf("the JSON carries terminal escapes: %s", r.stdout)
	}
	md := kvgitops(t, "fleet", "status", "--dir", dir, "-o", "markdown", "--stale-after", "3h").stdout
	for _, want := range []string{"# KubeVirt fleet: v1.8.4", "```mermaid", `subgraph r0["canary: Done 1/1"]`, "r0 --> r1", `c0["lab-1<br/>v1.8.4 Succeeded"]:::ok`,
		"## Ring staging: InProgress (0/2 done, soak 24h)", "| eu-2 | v1.8.4 | v1.7.4 | Progressing | HopInProgress |",
		"owned \\[0m \\!\\[x\\]\\(https://evil.example/p.png\\) \\[click\\]\\(https://evil.example\\) \\</table\\> \\| \\# H1 \\`code\\`"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for _, bad := range []string{"\x1b", "![x](", "[click](", "</table>"} {
		if strings.Contains(md, bad) {
			t.Errorf("markdown carries %q from a peer:\n%s", bad, md)
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

// TestFleetStatusShowsRingControls: each ring's maxParallel, promotion
// (and whether it is promoted) and maxFailures, and a paused rollout, in
// the table and the JSON.
func TestFleetStatusShowsRingControls(t *testing.T) {
	dir := t.TempDir()
	fleet := `apiVersion: kvgitops.dev/v1alpha1
kind: KubeVirtFleet
spec:
  kubevirt: {version: v1.8.4}
  paused: true
  rings:
  - {name: canary, clusters: [lab-1, lab-2], maxFailures: 1}
  - {name: prod, clusters: [p1, p2, p3], maxParallel: 34%, promotion: Manual}
  - {name: late, clusters: [l1], promotion: Manual}
  promotions: {late: v1.8.3}
`
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(fleet), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	r := kvgitops(t, "fleet", "status", "--dir", dir)
	for _, want := range []string{"maxFailures 1", "maxParallel 34%, promotion Manual (not promoted)", "promotion Manual (promoted to v1.8.3)", "paused (spec.paused)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	r = kvgitops(t, "fleet", "status", "--dir", dir, "-o", "json")
	var rep struct {
		Paused bool
		Rings  []struct{ Name, Controls string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Paused || len(rep.Rings) != 3 || rep.Rings[1].Controls != "maxParallel 34%, promotion Manual (not promoted)" {
		t.Errorf("json %+v (%v):\n%s", rep, err, r.stdout)
	}
}
