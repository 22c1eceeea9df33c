package release_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/realmanifests"
	"github.com/kvgitops/kvgitops/test/releases"
)

// genuine reads the genuine manifest of tag, skipping (or failing in CI)
// without the folder.
func genuine(t *testing.T, tag string) []byte {
	t.Helper()
	for _, f := range realmanifests.Require(t) {
		if f.Tag == tag && !f.Edited {
			data, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
	t.Fatalf("no genuine manifest of %s", tag)
	return nil
}

// mutate decodes a manifest, lets f change its objects and encodes it again.
func mutate(t *testing.T, data []byte, f func(objs []map[string]any) []map[string]any) []byte {
	t.Helper()
	var objs []map[string]any
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			objs = append(objs, m)
		}
	}
	var b bytes.Buffer
	for _, o := range f(objs) {
		out, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(out)
	}
	return b.Bytes()
}

func find(objs []map[string]any, kind, name string) map[string]any {
	for _, o := range objs {
		u := unstructured.Unstructured{Object: o}
		if u.GetKind() == kind && u.GetName() == name {
			return o
		}
	}
	return nil
}

func podSpec(objs []map[string]any) map[string]any {
	d := find(objs, "Deployment", "virt-operator")
	return d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func container(objs []map[string]any) map[string]any {
	return podSpec(objs)["containers"].([]any)[0].(map[string]any)
}

func setEnv(c map[string]any, name, value string) {
	for _, e := range c["env"].([]any) {
		if m := e.(map[string]any); m["name"] == name {
			m["value"] = value
			return
		}
	}
	c["env"] = append(c["env"].([]any), map[string]any{"name": name, "value": value})
}

func addRule(objs []map[string]any, role string, rule map[string]any) {
	r := find(objs, "ClusterRole", role)
	r["rules"] = append(r["rules"].([]any), rule)
}

// TestHostileVariantsOfGenuineManifestsAreRefused mutates a genuine
// manifest the ways an attacker with write access to a mirror or a release
// asset would, and checks each is refused with the object, the field and
// the value named.
func TestHostileVariantsOfGenuineManifestsAreRefused(t *testing.T) {
	const tag = "v1.4.0"
	base := genuine(t, tag)
	type objs = []map[string]any
	tests := []struct {
		name   string
		mutate func(objs) objs
		object string
		field  string
		says   string
	}{
		{"image from another registry", func(o objs) objs {
			c := container(o)
			c["image"] = "evil.example/x/virt-operator:" + tag
			setEnv(c, "VIRT_OPERATOR_IMAGE", "evil.example/x/virt-operator:"+tag)
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].image", `"evil.example/x/virt-operator:v1.4.0" is not from quay.io/kubevirt`},
		{"another repository of the release's registry", func(o objs) objs {
			c := container(o)
			c["image"] = "quay.io/kubevirt/virt-handler:" + tag
			setEnv(c, "VIRT_OPERATOR_IMAGE", c["image"].(string))
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].image", "is not from quay.io/kubevirt"},
		{"ServiceAccount default", func(o objs) objs {
			podSpec(o)["serviceAccountName"] = "default"
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.serviceAccountName", `got "default"`},
		{"SYS_ADMIN added", func(o objs) objs {
			container(o)["securityContext"].(map[string]any)["capabilities"].(map[string]any)["add"] = []any{"SYS_ADMIN"}
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].securityContext.capabilities.add", `"SYS_ADMIN"`},
		{"privileged", func(o objs) objs {
			container(o)["securityContext"].(map[string]any)["privileged"] = true
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].securityContext.privileged", "must not be true"},
		{"hostNetwork", func(o objs) objs {
			podSpec(o)["hostNetwork"] = true
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.hostNetwork", "host access"},
		{"hostPath volume", func(o objs) objs {
			p := podSpec(o)
			p["volumes"] = append(p["volumes"].([]any), map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}})
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.volumes[2]", "hostPath"},
		{"extra container", func(o objs) objs {
			p := podSpec(o)
			p["containers"] = append(p["containers"].([]any), map[string]any{"name": "miner", "image": "quay.io/kubevirt/virt-operator:" + tag})
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[1].name", `"miner"`},
		{"init container", func(o objs) objs {
			podSpec(o)["initContainers"] = []any{map[string]any{"name": "x", "image": "busybox"}}
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.initContainers", "must be empty"},
		{"another command", func(o objs) objs {
			container(o)["command"] = []any{"/bin/sh", "-c"}
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].command", `"/bin/sh -c --port 8443 -v 2"`},
		{"an extra variable", func(o objs) objs {
			setEnv(container(o), "LD_PRELOAD", "/tmp/x.so")
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].env[3]", `"LD_PRELOAD"`},
		{"another release's image", func(o objs) objs {
			c := container(o)
			c["image"] = "quay.io/kubevirt/virt-operator:v1.9.0"
			setEnv(c, "VIRT_OPERATOR_IMAGE", "quay.io/kubevirt/virt-operator:v1.9.0")
			return o
		}, "Deployment kubevirt/virt-operator", "spec.template.spec.containers[0].image", `runs version "v1.9.0"`},
		{"Deployment in kube-system", func(o objs) objs {
			find(o, "Deployment", "virt-operator")["metadata"].(map[string]any)["namespace"] = "kube-system"
			return o
		}, "Deployment kube-system/virt-operator", "metadata.namespace", `got "kube-system"`},
		{"a redact.Secret", func(o objs) objs {
			return append(o, map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "x", "namespace": "kubevirt"}})
		}, "Secret kubevirt/x", "kind", "is not part of a KubeVirt operator manifest"},
		{"a ClusterRoleBinding to cluster-admin", func(o objs) objs {
			return append(o, map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
				"metadata": map[string]any{"name": "kubevirt-operator-admin"},
				"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
				"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "kubevirt-operator", "namespace": "kubevirt"}}})
		}, "ClusterRoleBinding kubevirt-operator-admin", "kind", "is not part of a KubeVirt operator manifest"},
		{"the binding names another subject", func(o objs) objs {
			b := find(o, "ClusterRoleBinding", "kubevirt-operator")
			b["subjects"] = append(b["subjects"].([]any), map[string]any{"kind": "Group", "name": "system:authenticated"})
			return o
		}, "ClusterRoleBinding kubevirt-operator", "subjects[1]", `"Group"`},
		{"a rule over every group", func(o objs) objs {
			addRule(o, "kubevirt-operator", map[string]any{"apiGroups": []any{"*"}, "resources": []any{"secrets"}, "verbs": []any{"get"}})
			return o
		}, "ClusterRole kubevirt-operator", ".apiGroups", `must not be "*"`},
		{"escalate", func(o objs) objs {
			addRule(o, "kubevirt-operator", map[string]any{"apiGroups": []any{"rbac.authorization.k8s.io"}, "resources": []any{"clusterroles"}, "verbs": []any{"escalate"}})
			return o
		}, "ClusterRole kubevirt-operator", ".verbs", `"escalate"`},
		{"impersonate", func(o objs) objs {
			addRule(o, "kubevirt-operator", map[string]any{"apiGroups": []any{""}, "resources": []any{"users"}, "verbs": []any{"impersonate"}})
			return o
		}, "ClusterRole kubevirt-operator", ".verbs", `"impersonate"`},
		{"wildcard verbs outside KubeVirt's groups", func(o objs) objs {
			addRule(o, "kubevirt-operator", map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"*"}})
			return o
		}, "ClusterRole kubevirt-operator", "rules[", `grants "*" in ""`},
		{"non-resource URLs beyond /metrics", func(o objs) objs {
			addRule(o, "kubevirt-operator", map[string]any{"nonResourceURLs": []any{"*"}, "verbs": []any{"*"}})
			return o
		}, "ClusterRole kubevirt-operator", ".nonResourceURLs", "only get on /metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := mutate(t, base, tt.mutate)
			v := release.Vet(data, tag, release.VetOptions{})
			if v.Accepted() {
				t.Fatal("accepted")
			}
			found := false
			for _, x := range v.Violations {
				found = found || x.Object == tt.object && strings.Contains(x.Field, tt.field) && strings.Contains(x.Message, tt.says)
			}
			if !found {
				t.Errorf("violations %v: want one of %s, field %s, saying %q", v.Violations, tt.object, tt.field, tt.says)
			}
			err := v.Err()
			if fault.ReasonOf(err) != release.ReasonManifestRejected || !fault.Stalls(err) {
				t.Errorf("error %v: want a terminal ManifestRejected", err)
			}
		})
	}
}

// TestEveryViolationIsReported: a manifest with three problems names all
// three, not the first.
func TestEveryViolationIsReported(t *testing.T) {
	data := mutate(t, genuine(t, "v1.4.0"), func(o []map[string]any) []map[string]any {
		podSpec(o)["serviceAccountName"] = "default"
		podSpec(o)["hostPID"] = true
		addRule(o, "kubevirt-operator", map[string]any{"apiGroups": []any{"*"}, "resources": []any{"*"}, "verbs": []any{"*"}})
		return o
	})
	v := release.Vet(data, "v1.4.0", release.VetOptions{})
	fields := map[string]bool{}
	for _, x := range v.Violations {
		fields[x.Field] = true
	}
	for _, want := range []string{"spec.template.spec.serviceAccountName", "spec.template.spec.hostPID", "rules[110].apiGroups"} {
		if !fields[want] {
			t.Errorf("violations %v: missing %s", v.Violations, want)
		}
	}
	if msg := v.Err().Error(); !strings.Contains(msg, "violations") {
		t.Errorf("error %q does not count the violations", msg)
	}
}

// TestMirrorRegistry: a mirror configured by registry or by repository is
// accepted instead of the release's registry, and only it.
func TestMirrorRegistry(t *testing.T) {
	const tag = "v1.4.0"
	moved := func(image string) []byte {
		return mutate(t, genuine(t, tag), func(o []map[string]any) []map[string]any {
			c := container(o)
			c["image"] = image
			setEnv(c, "VIRT_OPERATOR_IMAGE", image)
			return o
		})
	}
	tests := []struct {
		image, mirror string
		ok            bool
	}{
		{"registry.example.com/kubevirt/virt-operator:" + tag, "registry.example.com/kubevirt", true},
		{"registry.example.com/kubevirt/virt-operator:" + tag, "", false},
		{"registry.example.com/mirror/kv-operator:" + tag, "registry.example.com/mirror/kv-operator", true},
		{"registry.example.com/mirror/kv-operator:" + tag, "registry.example.com/mirror", false},
		{"quay.io/kubevirt/virt-operator:" + tag, "registry.example.com/kubevirt", false},
	}
	for _, tt := range tests {
		o := release.VetOptions{}
		if tt.mirror != "" {
			o.Registries = []string{tt.mirror}
		}
		if v := release.Vet(moved(tt.image), tag, o); v.Accepted() != tt.ok {
			t.Errorf("image %s with mirror %q: accepted %t, want %t (%v)", tt.image, tt.mirror, v.Accepted(), tt.ok, v.Violations)
		}
	}
}

// TestTheCRFileIsVettedToo: kubevirt-cr.yaml of every era is accepted; one
// that sets more than a release's does (what the admission policy would
// refuse anyway) is refused naming what it sets.
func TestTheCRFileIsVettedToo(t *testing.T) {
	for _, tag := range []string{"v0.20.0", "v0.34.0", "v0.59.2", "v1.8.4"} {
		if _, err := release.ParseCRManifest(releases.CRManifest(tag), tag, "kubevirt"); err != nil {
			t.Errorf("%s: %v", tag, err)
		}
	}
	base := string(releases.CRManifest("v1.8.4"))
	for _, c := range []struct{ edit, want string }{
		{"  imageRegistry: evil.example.com/kubevirt\n", "spec.imageRegistry is set"},
		{"  uninstallStrategy: RemoveWorkloads\n", "spec.uninstallStrategy is set"},
		{"  infra: {nodePlacement: {nodeSelector: {x: y}}}\n", "spec.infra is set"},
	} {
		data := strings.Replace(base, "spec:\n", "spec:\n"+c.edit, 1)
		if _, err := release.ParseCRManifest([]byte(data), "v1.8.4", "kubevirt"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want refused naming %q", c.edit, err, c.want)
		}
	}
	for _, c := range []struct{ from, to, want string }{
		{"customizeComponents: {}", `customizeComponents: {flags: {api: {v: "9"}}}`, "spec.customizeComponents patches"},
		{"featureGates: []", "featureGates: [Root]", "spec.configuration sets more"},
	} {
		data := strings.Replace(base, c.from, c.to, 1)
		if data == base {
			t.Fatalf("%q not in %s", c.from, base)
		}
		if _, err := release.ParseCRManifest([]byte(data), "v1.8.4", "kubevirt"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want refused naming %q", c.to, err, c.want)
		}
	}
}
