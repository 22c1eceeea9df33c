package executor_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// requests records what an executor asked the apiserver, as RBAC sees it.
type requests struct {
	mu   sync.Mutex
	seen []string // "verb group/resource name"
}

func (r *requests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		if a, ok := attributes(req); ok {
			r.mu.Lock()
			r.seen = append(r.seen, a)
			if strings.HasPrefix(req.Header.Get("Content-Type"), "application/apply-patch") {
				// A server-side apply of a missing object is authorized as a create.
				r.seen = append(r.seen, "create"+strings.TrimPrefix(a, "patch"))
			}
			r.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// attributes turns a request into RBAC's verb, group/resource and name.
func attributes(r *http.Request) (string, bool) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	default:
		return "", false
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return "", false
	}
	resource, name := parts[0], ""
	if len(parts) > 1 {
		name = parts[1]
	}
	verb := map[string]string{http.MethodGet: "get", http.MethodPatch: "patch", http.MethodPut: "update", http.MethodDelete: "delete", http.MethodPost: "create"}[r.Method]
	if r.Method == http.MethodGet && name == "" {
		verb = "list"
		if r.URL.Query().Get("watch") == "true" {
			verb = "watch"
		}
	}
	return verb + " " + group + "/" + resource + " " + name, true
}

// manifestKinds are what the operator manifest holds; the installer rules
// over them must all be used by applying and removing genuine releases.
var manifestKinds = []string{"/namespaces", "apiextensions.k8s.io/customresourcedefinitions", "scheduling.k8s.io/priorityclasses",
	"rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/clusterrolebindings", "rbac.authorization.k8s.io/roles",
	"rbac.authorization.k8s.io/rolebindings", "/serviceaccounts", "apps/deployments"}

// TestInstallerRBACOnGenuineManifests applies every genuine manifest the
// cluster can serve, and removes it, as the deploy/ ServiceAccount with
// exactly deploy/'s RBAC: a missing permission fails the apply or the
// teardown; a rule over the manifest's kinds that neither ever uses is
// excess and fails the test.
func TestInstallerRBACOnGenuineManifests(t *testing.T) {
	files := realmanifests.Require(t)
	h := start(t, harnessOptions{})
	env := testenv.Get(t)
	rec := &requests{}
	cfg := env.Impersonate("kvgitops", "kvgitops")
	cfg.WrapTransport = rec.wrap
	rc, err := release.New(release.Config{ReleasesURL: h.rel.ReleasesURL(), ManifestBaseURL: h.rel.DownloadBaseURL(),
		HTTP: release.HTTPConfig{AllowedNetworks: loopback, RootCAs: h.rel.CertPool()}})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := executor.New(cfg, executor.Config{Releases: rc})
	if err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, f := range files {
		if f.Edited || !planner.TagAtLeast(f.Tag, "v0.40.0-rc.0") {
			continue // v1beta1 CRDs: not servable on this apiserver
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := release.Vet(data, f.Tag, release.VetOptions{}).Manifest()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := ex.ApplyManifest(ctx, m); err != nil {
			cancel()
			t.Fatalf("%s: apply as the deploy/ ServiceAccount: %v", f.Tag, err)
		}
		if _, err := ex.Run(ctx, planner.Step{Type: planner.StepDeleteOperator, From: f.Tag}, executor.StepOptions{Deadline: time.Now().Add(time.Minute)}); err != nil {
			cancel()
			t.Fatalf("%s: tear down as the deploy/ ServiceAccount: %v", f.Tag, err)
		}
		cancel()
		applied++
	}
	if applied < 15 {
		t.Fatalf("applied %d genuine manifests, want every one from v0.40 on", applied)
	}
	data, err := os.ReadFile("../deploy/rbac-installer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal([]byte(strings.Split(string(data), "\n---")[0]), &role); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, rule := range role.Rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				if !slices.Contains(manifestKinds, g+"/"+res) {
					continue
				}
				for _, verb := range rule.Verbs {
					if verb == "escalate" || verb == "bind" || verb == "list" || verb == "watch" {
						continue // escalate, bind: checked on create, never requested; list, watch: the waits of a hop
					}
					if why, ok := usedOnlyBeyondReleases[verb+" "+g+"/"+res+" "+strings.Join(rule.ResourceNames, ",")]; ok {
						t.Logf("%s %s %v: %s", verb, g+"/"+res, rule.ResourceNames, why)
						continue
					}
					if !usedBy(rec.seen, verb, g+"/"+res, rule.ResourceNames) {
						t.Errorf("deploy/rbac-installer.yaml grants %s on %s %v, which installing and removing genuine releases never uses", verb, g+"/"+res, rule.ResourceNames)
					}
				}
			}
		}
	}
}

// usedOnlyBeyondReleases: installer rules over the manifest's kinds that
// installing and removing a release never reaches, each with the test that
// uses it under deploy/'s RBAC.
var usedOnlyBeyondReleases = map[string]string{
	"get apps/deployments virt-controller": "whether virt-controller still runs, asked only of a teardown with VMs held by finalizers (test/e2e TestTeardownReleasesVMsHeldByFinalizers)",
}

func usedBy(seen []string, verb, resource string, names []string) bool {
	for _, s := range seen {
		f := strings.SplitN(s, " ", 3)
		if f[0] == verb && f[1] == resource && (len(names) == 0 || slices.Contains(names, f[2])) {
			return true
		}
	}
	return false
}
