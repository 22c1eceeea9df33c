package simulator

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/test/releases"
)

var (
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	daemonSetGVR  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
	serviceGVR    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	vwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	roleGVR       = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
)

// install identifies one install strategy.
type install struct {
	version, registry, id string
	op                    string // the operator writing it
	strategy              string // the release whose manifests it holds
}

func (in install) labels(component string) map[string]any {
	managedBy := "virt-operator"
	if !atLeast(in.op, "v0.49.0-rc.0") {
		managedBy = "kubevirt-operator"
	}
	return map[string]any{
		"app.kubernetes.io/managed-by": managedBy,
		"app.kubernetes.io/component":  "kubevirt",
		"kubevirt.io":                  component,
	}
}

// StrategyAnnotation stamps each component with the release whose install
// strategy wrote it: different from install-strategy-version when the
// strategy Job ran the running operator's image (kubevirt#16050). A marker
// of the test ground, not of KubeVirt.
const StrategyAnnotation = "simulator.kvgitops.dev/strategy-version"

func (in install) annotations() map[string]any {
	return map[string]any{
		"kubevirt.io/install-strategy-version":    in.version,
		"kubevirt.io/install-strategy-registry":   in.registry,
		"kubevirt.io/install-strategy-identifier": in.id,
		StrategyAnnotation:                        in.strategy,
	}
}

func (s *Simulator) apply(ctx context.Context, gvr schema.GroupVersionResource, obj map[string]any) error {
	u := &unstructured.Unstructured{Object: obj}
	_, err := s.dyn.Resource(gvr).Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "virt-operator", Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", gvr.Resource, u.GetName(), err)
	}
	return nil
}

// applyComponentRBAC writes the component RBAC of release tag's install
// strategy as the operator's ServiceAccount, so the apiserver's escalation
// check decides. The components' rules are copied into the operator's own
// ClusterRole of the release (it has no escalate or bind), so the simulator
// writes that rule set as one component role. It returns the operator's
// error message on failure.
func (s *Simulator) applyComponentRBAC(ctx context.Context, tag string) error {
	verb := "create"
	if _, err := s.dyn.Resource(roleGVR).Get(ctx, releases.ComponentRoleName, metav1.GetOptions{}); err == nil {
		verb = "update"
	}
	rules := make([]any, 0)
	for _, r := range releases.Rules(releases.RoleOperator, tag) {
		m := map[string]any{"verbs": toAny(r.Verbs)}
		for k, v := range map[string][]string{"apiGroups": r.APIGroups, "resources": r.Resources, "resourceNames": r.ResourceNames, "nonResourceURLs": r.NonResourceURLs} {
			if v != nil {
				m[k] = toAny(v)
			}
		}
		rules = append(rules, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": map[string]any{"name": releases.ComponentRoleName, "labels": map[string]any{"app.kubernetes.io/managed-by": "virt-operator"}},
		"rules":    rules,
	}}
	_, err := s.opDyn.Resource(roleGVR).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "virt-operator", Force: true})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return &rbacError{msg: fmt.Sprintf("unable to %s ClusterRole %s: %v", verb, releases.ComponentRoleName, err)}
		}
		return err
	}
	return nil
}

type rbacError struct{ msg string }

func (e *rbacError) Error() string { return e.msg }

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ensureComponents creates or updates what the install strategy holds: the
// VM CRDs, virt-api, virt-controller, virt-handler, their Services, the
// APIServices and the webhook configurations, all version-aware.
func (s *Simulator) ensureComponents(ctx context.Context, in install) error {
	for _, crd := range workloadCRDs(in) {
		if err := s.apply(ctx, crdGVR, crd); err != nil {
			return err
		}
	}
	ns := s.opts.Namespace
	for _, name := range []string{"virt-api", "virt-controller"} {
		if err := s.apply(ctx, deploymentGVR, s.workload("Deployment", name, in)); err != nil {
			return err
		}
	}
	if err := s.apply(ctx, daemonSetGVR, s.workload("DaemonSet", "virt-handler", in)); err != nil {
		return err
	}
	for _, svc := range []string{"virt-api", "kubevirt-operator-webhook"} {
		obj := map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": svc, "namespace": ns, "labels": in.labels(svc)},
			"spec":     map[string]any{"ports": []any{map[string]any{"port": int64(443), "targetPort": int64(8443)}}, "selector": map[string]any{"kubevirt.io": svc}},
		}
		if err := s.apply(ctx, serviceGVR, obj); err != nil {
			return err
		}
	}
	for _, v := range apiServiceVersions(in.version) {
		if err := s.apply(ctx, apiSvcGVR, s.apiService(v, in)); err != nil {
			return err
		}
	}
	for _, wh := range s.hooks.configurations(in) {
		gvr := vwcGVR
		if wh["kind"] == "MutatingWebhookConfiguration" {
			gvr = mwcGVR
		}
		if err := s.apply(ctx, gvr, wh); err != nil {
			return err
		}
	}
	s.setVirtAPIUp(true)
	return nil
}

func apiServiceVersions(tag string) []string {
	if atLeast(tag, "v0.37.0-rc.0") {
		return []string{"v1", "v1alpha3"}
	}
	return []string{"v1alpha3"}
}

func (s *Simulator) apiService(version string, in install) map[string]any {
	labels := map[string]any{"kubevirt.io": "virt-api-aggregator"}
	if atLeast(in.op, "v0.26.1") {
		for k, v := range in.labels("virt-api-aggregator") {
			labels[k] = v
		}
	}
	return map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": version + ".subresources.kubevirt.io", "labels": labels},
		"spec": map[string]any{
			"service":               map[string]any{"namespace": s.opts.Namespace, "name": "virt-api", "port": int64(443)},
			"group":                 "subresources.kubevirt.io",
			"version":               version,
			"groupPriorityMinimum":  int64(1000),
			"versionPriority":       int64(15),
			"insecureSkipTLSVerify": true,
		},
	}
}

func (s *Simulator) workload(kind, name string, in install) map[string]any {
	sel := map[string]any{"kubevirt.io": name}
	tmpl := map[string]any{
		"metadata": map[string]any{"labels": sel, "annotations": in.annotations()},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": name, "image": in.registry + "/" + name + ":" + in.version}}},
	}
	spec := map[string]any{"selector": map[string]any{"matchLabels": sel}, "template": tmpl}
	if kind == "Deployment" {
		spec["replicas"] = int64(2)
	}
	meta := map[string]any{"name": name, "namespace": s.opts.Namespace, "labels": in.labels(name), "annotations": in.annotations()}
	return map[string]any{"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
}

// workloadCRDs are the VM CRDs the install strategy carries: VMIs, VMs and
// migrations are what the agent's workload checks and deletion cascades
// touch.
func workloadCRDs(in install) []map[string]any {
	schema := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	versions := []any{map[string]any{"name": "v1alpha3", "served": true, "storage": true, "schema": schema}}
	switch {
	case atLeast(in.version, "v1.0.0-beta.0"):
		versions = []any{
			map[string]any{"name": "v1", "served": true, "storage": true, "schema": schema},
			map[string]any{"name": "v1alpha3", "served": true, "storage": false, "schema": schema},
		}
	case atLeast(in.version, "v0.37.0-rc.0"):
		versions = []any{
			map[string]any{"name": "v1", "served": true, "storage": false, "schema": schema},
			map[string]any{"name": "v1alpha3", "served": true, "storage": true, "schema": schema},
		}
	}
	crd := func(kind, plural, short string) map[string]any {
		return map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": plural + ".kubevirt.io", "labels": in.labels("")},
			"spec": map[string]any{
				"group": "kubevirt.io", "scope": "Namespaced", "versions": versions,
				"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "shortNames": []any{short}, "listKind": kind + "List"},
			},
		}
	}
	return []map[string]any{
		crd("VirtualMachineInstance", "virtualmachineinstances", "vmi"),
		crd("VirtualMachine", "virtualmachines", "vm"),
		crd("VirtualMachineInstanceMigration", "virtualmachineinstancemigrations", "vmim"),
	}
}

// markComponentsReady writes the status a kubelet and the controllers would
// have produced once every component pod of the install is ready.
func (s *Simulator) markComponentsReady(ctx context.Context) error {
	for _, name := range []string{"virt-api", "virt-controller"} {
		u, err := s.dyn.Resource(deploymentGVR).Namespace(s.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		gen := u.GetGeneration()
		st := map[string]any{"observedGeneration": gen, "replicas": int64(2), "updatedReplicas": int64(2), "readyReplicas": int64(2), "availableReplicas": int64(2)}
		if err := unstructured.SetNestedMap(u.Object, st, "status"); err != nil {
			return err
		}
		if _, err := s.dyn.Resource(deploymentGVR).Namespace(s.opts.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	u, err := s.dyn.Resource(daemonSetGVR).Namespace(s.opts.Namespace).Get(ctx, "virt-handler", metav1.GetOptions{})
	if err != nil {
		return err
	}
	st := map[string]any{"observedGeneration": u.GetGeneration(), "desiredNumberScheduled": int64(1), "currentNumberScheduled": int64(1),
		"numberReady": int64(1), "updatedNumberScheduled": int64(1), "numberAvailable": int64(1), "numberMisscheduled": int64(0)}
	if err := unstructured.SetNestedMap(u.Object, st, "status"); err != nil {
		return err
	}
	_, err = s.dyn.Resource(daemonSetGVR).Namespace(s.opts.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}
