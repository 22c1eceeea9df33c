package executor

import (
	"context"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

// Condition is a KubeVirt CR condition.
type Condition struct {
	Type, Status, Reason, Message string
}

// KubeVirtState is what the KubeVirt CR says.
type KubeVirtState struct {
	Name, Namespace                string
	UID                            string
	ResourceVersion                string
	Generation, ObservedGeneration int64
	HasObservedGeneration          bool
	Phase                          string
	ImageTag                       string
	UninstallStrategy              string
	WorkloadUpdateMethods          []string
	Target, TargetRegistry         string
	Observed, ObservedRegistry     string
	OperatorVersion                string // status.operatorVersion: a placeholder before v1.1
	ImageRegistry                  string // spec.imageRegistry
	FeatureGates                   []string
	TargetID, ObservedID           string
	OutdatedWorkloads              int64 // status.outdatedVirtualMachineInstanceWorkloads
	HasOutdatedWorkloads           bool  // the workload updater has written it
	Spec                           map[string]any
	Conditions                     []Condition
	Finalizers                     []string
	Deleting                       bool
	DeletionTimestamp              *time.Time
}

// Condition returns the condition of a type.
func (k *KubeVirtState) Condition(typ string) (Condition, bool) {
	for _, c := range k.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

// OperatorState is the virt-operator Deployment.
type OperatorState struct {
	Version, Registry, Image string
	Generation               int64
	RolledOut                bool                  // its current generation is fully available
	RolloutFailed            string                // ProgressDeadlineExceeded message
	Meta                     planner.ManagedObject // what says who manages it
}

// Observation is a snapshot of the cluster.
type Observation struct {
	planner.Observed
	ServerVersion string
	KubeVirt      *KubeVirtState // nil: no CR
	Operator      *OperatorState // nil: no virt-operator Deployment
	// WorkloadCount counts VMs and VMIs (cheaply: one request each);
	// Workloads has them one by one, once ObserveWorkloads read them (nil
	// before: a pass with nothing to do never lists thousands of VMIs).
	WorkloadCount int
	Workloads     *Workloads
	Leftovers     []string // "APIService/v1.subresources.kubevirt.io", ...
	// Strays names every KubeVirt CR when virt-operator serves none.
	Strays []string
	// Managed are the KubeVirt CRs and the virt-operator Deployment with
	// what says who manages them (planner.Owner reads them).
	Managed []planner.ManagedObject
	// OperatorObjects are the objects of kubevirt-operator.yaml present
	// ("Deployment/virt-operator", ...).
	OperatorObjects []string
	// Remnants is what virt-operator created, cluster-wide.
	Remnants []Remnant
	// KubeVirtVersion is the kubevirt.io API version used to read the CR.
	KubeVirtVersion string
	// stuck are the workloads held by KubeVirt's finalizers with
	// virt-controller gone.
	stuck []stuckObject
}

// leftoverObjects are what an unclean uninstall leaves (docs/teardown.md).
var leftoverObjects = []struct {
	gvr  schema.GroupVersionResource
	kind string
	name string
}{
	{apiServiceGVR, "APIService", "v1.subresources.kubevirt.io"},
	{apiServiceGVR, "APIService", "v1alpha3.subresources.kubevirt.io"},
	{mwcGVR, "MutatingWebhookConfiguration", "virt-api-mutator"},
	{vwcGVR, "ValidatingWebhookConfiguration", "virt-api-validator"},
	{vwcGVR, "ValidatingWebhookConfiguration", "virt-operator-validator"},
	{mwcGVR, "MutatingWebhookConfiguration", "virt-launcher-pod-mutator"},
}

// Observe reads the cluster. It never uses discovery of aggregated APIs, so a
// leftover APIService without a backend does not blind it.
func (e *Executor) Observe(ctx context.Context) (*Observation, error) {
	o := &Observation{}
	ctx1, cancel := e.call(ctx)
	defer cancel()
	if v, err := e.kube.Discovery().ServerVersion(); err == nil {
		o.ServerVersion = v.GitVersion
	} else {
		return nil, apiError(err, "read the server version")
	}
	var err error
	if o.Operator, err = e.observeOperator(ctx1); err != nil {
		return nil, err
	}
	if o.KubeVirtVersion, err = e.kubevirtAPIVersion(ctx1); err != nil {
		return nil, err
	}
	if o.KubeVirtVersion != "" {
		if o.KubeVirt, o.Strays, o.Managed, err = e.observeKubeVirt(ctx1, o.KubeVirtVersion); err != nil {
			return nil, err
		}
	}
	if o.Operator != nil {
		o.Managed = append(o.Managed, o.Operator.Meta)
	}
	for _, r := range []string{"virtualmachineinstances", "virtualmachines"} {
		n, err := e.countKubeVirtObjects(ctx1, r)
		if err != nil {
			return nil, err
		}
		o.WorkloadCount += n
	}
	if err := e.observeStuckWorkloads(ctx1, o); err != nil {
		return nil, err
	}
	if o.OperatorObjects, err = e.observeOperatorObjects(ctx1); err != nil {
		return nil, err
	}
	if o.Remnants, err = e.observeRemnants(ctx1); err != nil {
		return nil, err
	}
	for _, l := range leftoverObjects {
		_, err := e.dyn.Resource(l.gvr).Get(ctx1, l.name, metav1.GetOptions{})
		switch {
		case err == nil:
			o.Leftovers = append(o.Leftovers, l.kind+"/"+l.name)
		case !apierrors.IsNotFound(err):
			return nil, apiError(err, "read %s %s", l.kind, l.name)
		}
	}
	o.Observed = o.plannerView()
	return o, nil
}

// observeStuckWorkloads: without virt-operator nothing may remain to
// remove the workloads' finalizers; those being deleted are read then.
func (e *Executor) observeStuckWorkloads(ctx context.Context, o *Observation) error {
	if o.Operator != nil || o.WorkloadCount == 0 {
		return nil
	}
	w, err := e.observeWorkloads(ctx)
	if err != nil {
		return err
	}
	o.Workloads = w
	if len(w.stuck()) == 0 {
		return nil
	}
	running, err := e.controllerRunning(ctx)
	if err != nil || running {
		return err
	}
	o.stuck = w.stuck()
	return nil
}

// ObserveWorkloads reads every VMI, VM and migration into o: what planning
// a hop and waiting for its VMIs need.
func (e *Executor) ObserveWorkloads(ctx context.Context, o *Observation) error {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	w, err := e.observeWorkloads(ctx1)
	if err != nil {
		return err
	}
	o.Workloads = w
	o.Observed = o.plannerView()
	return nil
}

func (o *Observation) plannerView() planner.Observed {
	p := planner.Observed{Mode: planner.ModeLocked, Workloads: o.WorkloadCount, KubernetesVersion: o.ServerVersion,
		StrayKubeVirts: o.Strays, OperatorObjects: len(o.OperatorObjects), Managed: o.Managed}
	if w := o.Workloads; w != nil {
		p.WorkloadsKnown, p.MigrationsInFlight = true, w.InFlight()
		for _, v := range w.VMIs {
			if v.Running() {
				p.VMIs = append(p.VMIs, v.plannerVMI())
			}
		}
	}
	if o.KubeVirt == nil {
		// With a live CR these objects are KubeVirt's own; only without one
		// are they leftovers and remnants.
		p.Leftovers = len(o.Leftovers)
		p.Remnants = len(o.Remnants)
	}
	if o.Operator == nil {
		p.StuckCRDs = len(stuckCRDs(o.Remnants))
	}
	p.StuckWorkloads = len(o.stuck)
	for _, s := range o.stuck[:min(len(o.stuck), 20)] {
		p.StuckWorkloadNames = append(p.StuckWorkloadNames, s.String())
	}
	if op := o.Operator; op != nil {
		p.OperatorPresent = true
		p.OperatorImage = op.Image
		if planner.ValidTag(op.Version) {
			p.OperatorVersion = op.Version
		}
	}
	if kv := o.KubeVirt; kv != nil {
		p.KubeVirt = true
		p.Installed = kv.Observed
		p.Terminating = kv.Deleting
		p.UninstallStrategy = kv.UninstallStrategy
		p.ImageTag, p.ImageRegistry, p.FeatureGates = kv.ImageTag, kv.ImageRegistry, kv.FeatureGates
		p.KubeVirtSpec, p.WorkloadSettings = kv.Spec, kv.settings()
		if kv.ImageTag != "" {
			p.Mode = planner.ModeImageTag
		}
	}
	return p
}

// kubevirtAPIVersion picks the version to read KubeVirt CRs with: v1 when the
// installed CRD serves it, else v1alpha3; "" when there is no CRD.
func (e *Executor) kubevirtAPIVersion(ctx context.Context) (string, error) {
	crd, err := e.dyn.Resource(crdGVR).Get(ctx, "kubevirts.kubevirt.io", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", apiError(err, "read the KubeVirt CRD")
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	served := []string{}
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if ok, _ := m["served"].(bool); ok {
			name, _ := m["name"].(string)
			served = append(served, name)
		}
	}
	switch {
	case slices.Contains(served, "v1"):
		return "v1", nil
	case slices.Contains(served, "v1alpha3"):
		return "v1alpha3", nil
	}
	return "", nil
}

func kubevirtGVR(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "kubevirt.io", Version: version, Resource: "kubevirts"}
}

// observeKubeVirt reads every KubeVirt CR in the cluster: the one in
// KubeVirt's namespace is the CR; when virt-operator would serve none of
// them (more than one, or one elsewhere), all are named as strays; and
// what each says of who manages it.
func (e *Executor) observeKubeVirt(ctx context.Context, version string) (*KubeVirtState, []string, []planner.ManagedObject, error) {
	list, err := e.dyn.Resource(kubevirtGVR(version)).Namespace("").List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, apiError(err, "list KubeVirt CRs")
	}
	items := list.Items
	var metas []planner.ManagedObject
	for i := range items {
		metas = append(metas, managed("KubeVirt", &items[i]))
	}
	slices.SortFunc(items, func(a, b unstructured.Unstructured) int {
		return a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time)
	})
	served, strays := strayKubeVirts(items, e.cfg.Namespace)
	if served == nil {
		return nil, strays, metas, nil
	}
	return kubeVirtState(served), strays, metas, nil
}

func kubeVirtState(u *unstructured.Unstructured) *KubeVirtState {
	s := func(path ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v
	}
	k := &KubeVirtState{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: string(u.GetUID()), ResourceVersion: u.GetResourceVersion(),
		Generation: u.GetGeneration(), Phase: s("status", "phase"), ImageTag: s("spec", "imageTag"),
		UninstallStrategy: s("spec", "uninstallStrategy"),
		Target:            s("status", "targetKubeVirtVersion"), TargetRegistry: s("status", "targetKubeVirtRegistry"),
		Observed: s("status", "observedKubeVirtVersion"), ObservedRegistry: s("status", "observedKubeVirtRegistry"),
		OperatorVersion: s("status", "operatorVersion"), ImageRegistry: s("spec", "imageRegistry"),
		TargetID: s("status", "targetDeploymentID"), ObservedID: s("status", "observedDeploymentID"),
		Finalizers: u.GetFinalizers(),
	}
	k.OutdatedWorkloads, k.HasOutdatedWorkloads, _ = unstructured.NestedInt64(u.Object, "status", "outdatedVirtualMachineInstanceWorkloads")
	k.Spec, _, _ = unstructured.NestedMap(u.Object, "spec")
	k.FeatureGates, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "configuration", "developerConfiguration", "featureGates")
	if og, ok, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); ok {
		k.ObservedGeneration, k.HasObservedGeneration = og, true
	}
	if ts := u.GetDeletionTimestamp(); ts != nil {
		t := ts.Time
		k.Deleting, k.DeletionTimestamp = true, &t
	}
	methods, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "workloadUpdateStrategy", "workloadUpdateMethods")
	k.WorkloadUpdateMethods = methods
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		str := func(k string) string { v, _ := m[k].(string); return v }
		k.Conditions = append(k.Conditions, Condition{Type: str("type"), Status: str("status"), Reason: str("reason"), Message: str("message")})
	}
	return k
}

func (e *Executor) observeOperator(ctx context.Context) (*OperatorState, error) {
	dep, err := e.kube.AppsV1().Deployments(e.cfg.Namespace).Get(ctx, "virt-operator", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apiError(err, "read the virt-operator Deployment")
	}
	return operatorState(dep), nil
}

// managed is what of obj's metadata says who manages it.
func managed(kind string, obj metav1.Object) planner.ManagedObject {
	m := planner.ManagedObject{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Labels: obj.GetLabels(), Annotations: obj.GetAnnotations()}
	for _, r := range obj.GetOwnerReferences() {
		m.OwnerKinds = append(m.OwnerKinds, r.Kind)
	}
	return m
}

func operatorState(dep *appsv1.Deployment) *OperatorState {
	op := &OperatorState{Generation: dep.Generation, Meta: managed("Deployment", dep)}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != "virt-operator" && len(dep.Spec.Template.Spec.Containers) > 1 {
			continue
		}
		env := map[string]string{}
		for _, v := range c.Env {
			env[v.Name] = v.Value
		}
		op.Image = c.Image
		op.Version, op.Registry = release.OperatorVersion(env)
		break
	}
	op.RolledOut, op.RolloutFailed = rolloutStatus(dep)
	return op
}

// rolloutStatus follows `kubectl rollout status`: complete when the current
// generation is observed and every replica is updated and available; failed
// when the controller reports ProgressDeadlineExceeded.
func rolloutStatus(dep *appsv1.Deployment) (done bool, failed string) {
	st := dep.Status
	if st.ObservedGeneration < dep.Generation {
		return false, ""
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, redact.Text("virt-operator rollout failed: "+c.Message, redact.MaxMessage)
		}
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	return st.UpdatedReplicas >= want && st.Replicas == st.UpdatedReplicas && st.AvailableReplicas >= st.UpdatedReplicas, ""
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// Settling reports whether KubeVirt's observed version equals its target
// while the install is not ready yet: up to v1.8.x the operator copies
// observed* before its readiness check, so observedKubeVirtVersion alone is
// not "installed".
func (o *Observation) Settling() bool {
	kv := o.KubeVirt
	return kv != nil && !kv.Deleting && kv.Observed != "" && kv.Observed == kv.Target && !hopComplete(kv, kv.Observed)
}

// OutdatedCount is how many VMIs run a virt-launcher older than the
// installed version: counted when the VMIs were read, else the workload
// updater's count (-1 when neither is known).
func (o *Observation) OutdatedCount() int {
	switch {
	case o.Installed == "":
		return 0
	case o.Workloads != nil:
		return len(outdated(o.Workloads.VMIs, o.Installed))
	case o.KubeVirt != nil && o.KubeVirt.HasOutdatedWorkloads:
		return int(o.KubeVirt.OutdatedWorkloads)
	}
	return -1
}

// settings are how the CR moves VMIs after a hop.
func (k *KubeVirtState) settings() planner.WorkloadSettings {
	s := planner.WorkloadSettings{Methods: k.WorkloadUpdateMethods}
	s.EvictionStrategy, _, _ = unstructured.NestedString(k.Spec, "configuration", "evictionStrategy")
	if n, ok, _ := unstructured.NestedInt64(k.Spec, "workloadUpdateStrategy", "batchEvictionSize"); ok {
		s.BatchEvictionSize = int(n)
	}
	if d, ok, _ := unstructured.NestedString(k.Spec, "workloadUpdateStrategy", "batchEvictionInterval"); ok {
		s.BatchEvictionInterval, _ = time.ParseDuration(d)
	}
	if n, ok, _ := unstructured.NestedInt64(k.Spec, "configuration", "migrations", "parallelMigrationsPerCluster"); ok {
		s.ParallelMigrationsPerCluster = int(n)
	}
	if n, ok, _ := unstructured.NestedInt64(k.Spec, "configuration", "migrations", "parallelOutboundMigrationsPerNode"); ok {
		s.ParallelOutboundMigrationsPerNode = int(n)
	}
	return s
}

// Summary describes the KubeVirt CR for messages ("" without one).
func (o *Observation) Summary() string {
	if o.KubeVirt == nil {
		return ""
	}
	return summary(o.KubeVirt)
}
