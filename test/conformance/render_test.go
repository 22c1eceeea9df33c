package conformance

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kvgitops/kvgitops/test/kustomize"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestDeployRendersWithKustomize: kustomize itself renders deploy/ with a
// user's overlay: the image pin, the config patched in, every namespaced
// object in kvgitops's namespace, KubeVirt's untouched by it.
func TestDeployRendersWithKustomize(t *testing.T) {
	kust, err := kustomize.Read()
	if err != nil {
		t.Fatal(err)
	}
	data, objs := rendered(t, map[string]string{"KVGITOPS_CLUSTER_NAME": "rendered"})
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if ns := o.GetNamespace(); ns != "" && ns != "kvgitops" {
			t.Errorf("%s %s rendered into namespace %s", o.GetKind(), o.GetName(), ns)
		}
	}
	if kinds["Deployment"] != 1 || kinds["ConfigMap"] != 1 || kinds["ValidatingAdmissionPolicy"] == 0 {
		t.Errorf("rendered kinds %v", kinds)
	}
	if !strings.Contains(string(data), "image: "+kust.Image()) || !strings.Contains(string(data), "KVGITOPS_CLUSTER_NAME: rendered") {
		t.Errorf("the image pin or the config patch is missing:\n%s", data)
	}
}

// TestDeployComponentsOpenTheNetworkPolicy: each optional component of
// deploy/ renders with the base and changes the NetworkPolicy as its
// comment says.
func TestDeployComponentsOpenTheNetworkPolicy(t *testing.T) {
	egress := func(t *testing.T, components ...string) []any {
		t.Helper()
		_, objs := rendered(t, nil, components...)
		for _, o := range objs {
			if o.GetKind() == "NetworkPolicy" {
				rules, _, _ := unstructured.NestedSlice(o.Object, "spec", "egress")
				return rules
			}
		}
		t.Fatal("no NetworkPolicy rendered")
		return nil
	}
	base := egress(t)
	// allows: a rule lets port out to cidr ("": to anywhere).
	allows := func(rules []any, port int64, cidr string) bool {
		for _, r := range rules {
			m, _ := r.(map[string]any)
			ports, _, _ := unstructured.NestedSlice(m, "ports")
			to, hasTo := m["to"].([]any)
			for _, p := range ports {
				if pm, _ := p.(map[string]any); fmt.Sprint(pm["port"]) != fmt.Sprint(port) {
					continue
				}
				if cidr == "" { // to anywhere: no "to" at all
					if !hasTo {
						return true
					}
					continue
				}
				for _, peer := range to {
					if c, _, _ := unstructured.NestedString(peer.(map[string]any), "ipBlock", "cidr"); c == cidr {
						return true
					}
				}
			}
		}
		return false
	}
	if allows(base, 22, "10.0.0.0/8") || allows(base, 53, "") {
		t.Errorf("the base already allows SSH to private addresses or DNS anywhere: %v", base)
	}
	if rules := egress(t, "git-ssh-private"); !allows(rules, 22, "10.0.0.0/8") || !allows(rules, 22, "192.168.0.0/16") || len(rules) != len(base)+1 {
		t.Errorf("git-ssh-private: %v", rules)
	}
	if rules := egress(t, "dns-anywhere"); !allows(rules, 53, "") || len(rules) != len(base) {
		t.Errorf("dns-anywhere: %v", rules)
	}
}

// TestDeployComponentsMountTheVerifyKeys: the verify-pgp and verify-ssh
// components, together, add their flag, their Secret (not optional) and
// its mount, each with its own names.
func TestDeployComponentsMountTheVerifyKeys(t *testing.T) {
	_, objs := rendered(t, nil, "verify-pgp", "verify-ssh")
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		spec := d.Spec.Template.Spec
		args := strings.Join(spec.Containers[0].Args, " ")
		for _, want := range []struct{ flag, volume, secret, path string }{
			{"--verify-pgp-keys=/etc/kvgitops/verify-pgp/keys.asc", "verify-pgp", "kvgitops-verify-pgp", "/etc/kvgitops/verify-pgp"},
			{"--verify-ssh-keys=/etc/kvgitops/verify-ssh/authorized_keys", "verify-ssh", "kvgitops-verify-ssh", "/etc/kvgitops/verify-ssh"},
		} {
			if !strings.Contains(args, want.flag) {
				t.Errorf("args %q lack %s", args, want.flag)
			}
			mounted := false
			for _, m := range spec.Containers[0].VolumeMounts {
				mounted = mounted || (m.Name == want.volume && m.MountPath == want.path && m.ReadOnly)
			}
			found := false
			for _, v := range spec.Volumes {
				if v.Name == want.volume && v.Secret != nil {
					found = v.Secret.SecretName == want.secret && (v.Secret.Optional == nil || !*v.Secret.Optional)
				}
			}
			if !mounted || !found {
				t.Errorf("%s: mounted %v, Secret %s required %v", want.volume, mounted, want.secret, found)
			}
		}
		return
	}
	t.Fatal("no Deployment rendered")
}

// TestDeployMonitoringComponentRenders: the monitoring component adds a
// ServiceMonitor for the metrics Service, the PrometheusRule and the
// dashboard's ConfigMap, labelled for Grafana's sidecar.
func TestDeployMonitoringComponentRenders(t *testing.T) {
	_, objs := rendered(t, nil, "monitoring")
	found := map[string]bool{}
	for _, o := range objs {
		switch {
		case o.GetKind() == "ServiceMonitor":
			sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
			found["ServiceMonitor"] = sel["app.kubernetes.io/component"] == "metrics"
		case o.GetKind() == "PrometheusRule":
			found["PrometheusRule"] = o.GetNamespace() == "kvgitops"
		case o.GetKind() == "ConfigMap" && o.GetName() == "kvgitops-dashboard":
			dash, _, _ := unstructured.NestedString(o.Object, "data", "kvgitops-dashboard.json")
			found["dashboard"] = o.GetLabels()["grafana_dashboard"] == "1" && strings.Contains(dash, `"title": "kvgitops"`)
		}
	}
	for _, want := range []string{"ServiceMonitor", "PrometheusRule", "dashboard"} {
		if !found[want] {
			t.Errorf("%s missing or wrong in the rendered monitoring component", want)
		}
	}
}

// rendered is what kustomize renders of deploy/ (kustomize's arguments),
// as text and as objects.
func rendered(t *testing.T, config map[string]string, components ...string) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	data, err := kustomize.Render(config, components...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, objs
}
