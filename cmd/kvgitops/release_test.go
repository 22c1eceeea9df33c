package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/releases"
)

type checkReport struct {
	Accepted   bool   `json:"accepted"`
	Tag        string `json:"tag"`
	Version    string `json:"version"`
	SHA256     string `json:"sha256"`
	Objects    []struct{ Kind, Name, Namespace string }
	Violations []struct{ Object, Field, Message string }
}

func releaseCheck(t *testing.T, args ...string) (checkReport, result) {
	t.Helper()
	r := kvgitops(t, append([]string{"release", "check", "-o", "json"}, args...)...)
	var rep checkReport
	if r.code < 2 {
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("stdout %q: %v", r.stdout, err)
		}
	}
	return rep, r
}

// TestReleaseCheckAgreesWithTheConformanceTest: every genuine manifest is
// accepted with its version and the sha256 of SHA256SUMS, as the agent
// accepts it (the same code path).
func TestReleaseCheckAgreesWithTheConformanceTest(t *testing.T) {
	files := realmanifests.Require(t)
	sums, err := os.ReadFile(filepath.Join(filepath.Dir(files[0].Path), "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Edited {
			continue
		}
		rep, r := releaseCheck(t, "--tag", f.Tag, "--file", f.Path)
		if r.code != 0 || !rep.Accepted || rep.Version != f.Tag || len(rep.Violations) != 0 || len(rep.Objects) < 7 {
			t.Errorf("%s: exit %d, report %+v", f.Tag, r.code, rep)
		}
		if !strings.Contains(string(sums), rep.SHA256+"  "+f.Tag+".yaml") {
			t.Errorf("%s: sha256 %s is not the one SHA256SUMS lists", f.Tag, rep.SHA256)
		}
	}
}

func TestReleaseCheckRefusesAndExplains(t *testing.T) {
	data := strings.Replace(string(releases.OperatorManifest("v1.4.0")), "serviceAccountName: kubevirt-operator", "serviceAccountName: default", 1)
	rep, r := releaseCheck(t, "--tag", "v1.4.0", "--file", writeFile(t, "op.yaml", data))
	if r.code != 1 || rep.Accepted || len(rep.Violations) == 0 || rep.Violations[0].Field != "spec.template.spec.serviceAccountName" {
		t.Errorf("exit %d, report %+v: want refused naming serviceAccountName", r.code, rep)
	}
	text := kvgitops(t, "release", "check", "--tag", "v1.4.0", "--file", writeFile(t, "op.yaml", data))
	if text.code != 1 || !strings.Contains(text.stdout, `refused, 1 violation(s)`) || !strings.Contains(text.stdout, `got "default"`) {
		t.Errorf("text output %q", text.stdout)
	}
	pinned := kvgitops(t, "release", "check", "--tag", "v1.4.0", "--file", writeFile(t, "op.yaml", string(releases.OperatorManifest("v1.4.0"))),
		"--release-pins", "v1.4.0="+strings.Repeat("0", 64))
	if pinned.code != 1 || !strings.Contains(pinned.stdout, "sha256") {
		t.Errorf("a wrong pin: exit %d %q", pinned.code, pinned.stdout)
	}
	for _, args := range [][]string{
		{"release", "check", "--tag", "1.4", "--file", "x"},
		{"release", "check", "--tag", "v1.4.0", "--file", "/nonexistent"},
		{"release"},
	} {
		if r := kvgitops(t, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
}

func TestReleaseCheckFetchesFromTheManifestBase(t *testing.T) {
	srv := releases.NewServer(nil)
	defer srv.Close()
	ca := writeFile(t, "ca.pem", string(srv.CAPEM()))
	rep, r := releaseCheck(t, "--tag", "v1.8.4", "--manifest-base-url", srv.DownloadBaseURL(), "--release-ca-file", ca, "--release-allowed-networks", "127.0.0.0/8")
	if r.code != 0 || !rep.Accepted || rep.Version != "v1.8.4" {
		t.Errorf("exit %d %s, report %+v", r.code, r.stderr, rep)
	}
	if _, r := releaseCheck(t, "--tag", "v1.8.4", "--manifest-base-url", srv.DownloadBaseURL()); r.code != 2 {
		t.Errorf("an untrusted loopback server: exit %d, want 2 (fetch error)", r.code)
	}
}

// TestRunValidatesFlagsFirst: flags are checked before the cluster is
// touched, with messages a new user can act on.
func TestRunValidatesFlagsFirst(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"run", "--repo-url", "git@github.com:org/repo", "--cluster-name", "c"}, "use ssh://git@github.com/org/repo"},
		{[]string{"run", "--repo-url", "http://github.com/org/repo", "--cluster-name", "c"}, "use https://github.com/org/repo"},
		{[]string{"run", "--repo-url", "https://github.com/org/repo", "--cluster-name", "c", "--interval", "5"}, `"5" needs a unit, e.g. 5s or 5m`},
		{[]string{"run", "--repo-url", "https://github.com/org/repo", "--cluster-name", "c", "--git-timeout", "soon"}, `"soon" is not a duration`},
		{[]string{"run", "--repo-url", "https://github.com/org/repo", "--cluster-name", "c", "--status-path", "./kubevirt.yaml"},
			`--status-path "./kubevirt.yaml" must not be, or be inside, --desired-path "kubevirt.yaml"`},
		{[]string{"run", "--repo-url", "https://github.com/org/repo", "--cluster-name", "c", "--desired-path", "clusters/a", "--status-path", "clusters/a/status.yaml"},
			`must not be, or be inside, --desired-path "clusters/a"`},
	}
	for _, tt := range tests {
		r := kvgitops(t, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.says) || strings.Contains(r.stderr, "in-cluster") || strings.Contains(r.stderr, "Usage of") {
			t.Errorf("%v: exit %d, stderr %q: want exit 2 saying %q, before anything else", tt.args, r.code, r.stderr, tt.says)
		}
	}
}

// TestTheReleaseTokenIsOptional: deploy/ mounts the token's Secret as
// optional; without the file the agent goes on unauthenticated; an empty
// file (the Secret exists, holding nothing) is refused.
func TestTheReleaseTokenIsOptional(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(token string) []string {
		return []string{"run", "--repo-url", "https://github.com/org/repo", "--cluster-name", "c",
			"--release-token-file", token, "--kubeconfig", filepath.Join(dir, "no-kubeconfig")}
	}
	r := kvgitops(t, args(filepath.Join(dir, "missing"))...)
	// It goes on to the cluster (whose kubeconfig is missing here); the
	// real node's test sees the log line "Release token off".
	if strings.Contains(r.stderr, "release token file") || !strings.Contains(r.stderr, "no-kubeconfig") {
		t.Errorf("without the token file: exit %d, stderr %q; want the run to go on to the cluster", r.code, r.stderr)
	}
	r = kvgitops(t, args(empty)...)
	if r.code == 0 || !strings.Contains(r.stderr, "release token file "+empty+" is empty") {
		t.Errorf("an empty token file: exit %d, stderr %q", r.code, r.stderr)
	}
}
