package releases

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdmissionPolicyRules: the rules deploy/admission-policy.yaml lets the
// agent write into KubeVirt's operator roles are exactly those the releases
// grant (from testdata/rbac.tsv); -update rewrites them.
func TestAdmissionPolicyRules(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "admission-policy.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "  # BEGIN release-rules", "  # END release-rules"
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q block", path, begin, end)
	}
	i += strings.Index(s[i:], "\n  # from ")
	i += strings.Index(s[i+1:], "\n") + 2 // after the two comment lines
	want := AdmissionRules()
	if got := s[i:j]; got != want {
		if !*update {
			t.Fatalf("the release rules in %s are not those of testdata/rbac.tsv; run go test ./test/releases -run TestAdmissionPolicyRules -update", path)
		}
		if err := os.WriteFile(path, []byte(s[:i]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, verb := range []string{"'escalate'", "'bind'", "'impersonate'"} {
		if strings.Contains(want, verb) {
			t.Errorf("a release grants %s to its roles: the policy would admit it", verb)
		}
	}
}
