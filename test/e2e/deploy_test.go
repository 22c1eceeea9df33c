package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/test/testenv"
)

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// TestDeployBase server-side validates every resource of the kustomize base
// and checks the Deployment against Pod Security "restricted" as the real
// admission plugin judges its pod template.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	base := filepath.Join("..", "..", "deploy")
	var k struct {
		Resources []string
		Images    []struct{ Name, NewTag string }
	}
	data, err := os.ReadFile(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		// kustomization has more fields than we read; a lenient read is enough here
		if err := yaml.Unmarshal(data, &k); err != nil {
			t.Fatal(err)
		}
	}
	if len(k.Images) != 1 || k.Images[0].Name != "ghcr.io/kvgitops/kvgitops" {
		t.Errorf("images entry %+v", k.Images)
	}
	warn := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = warn
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	// The namespace must exist (with its Pod Security labels) for the rest.
	nsYAML, _ := os.ReadFile(filepath.Join(base, "namespace.yaml"))
	if err := testenv.Apply(t.Context(), env.Config, nsYAML); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(base, r))
		if err != nil {
			t.Fatalf("kustomization lists %s: %v", r, err)
		}
		objs, err := testenv.Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s %s: %v", r, gvk, err)
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
			}
			if _, err := ri.Apply(t.Context(), o.GetName(), o, metav1.ApplyOptions{FieldManager: "kubectl", Force: true, DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("%s: %s %s refused by the apiserver: %v", r, gvk.Kind, o.GetName(), err)
			}
			kinds = append(kinds, gvk.Kind)
			if gvk.Kind == "Deployment" {
				img, _, _ := unstructuredString(o.Object, "spec", "template", "spec", "containers")
				if !strings.Contains(img, "ghcr.io/kvgitops/kvgitops") {
					t.Errorf("the Deployment's image %q does not match the kustomize images entry", img)
				}
			}
		}
	}
	for _, want := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "NetworkPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("the base has no %s", want)
		}
	}
	for _, w := range warn.msgs {
		if strings.Contains(w, "restricted") || strings.Contains(w, "PodSecurity") {
			t.Errorf("Pod Security warning: %s", w)
		}
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	if l, ok := cur.([]any); ok && len(l) > 0 {
		if c, ok := l[0].(map[string]any); ok {
			s, _ := c["image"].(string)
			return s, true, nil
		}
	}
	return "", false, nil
}
