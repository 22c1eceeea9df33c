package simulator

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// hop is one attempt to reach a target deployment id.
type hop struct {
	from, to   string
	strategy   string // the release whose install strategy it writes
	strategyAt time.Time
	rbacErr    string
	failures   int
	retryAt    time.Time // the operator's backoff after a failed pass
	components bool
	rolloutAt  time.Time
	readyAt    time.Time // a ≤v1.8 operator copies observed* before it is ready
	done       bool
}

// stringSpecFields feed the deployment id (docs/kubevirt.md, "The KubeVirt CR").
var stringSpecFields = []string{"imagePullPolicy", "uninstallStrategy", "productName", "productVersion", "productComponent", "monitorNamespace", "serviceMonitorNamespace", "monitorAccount"}

func deploymentID(target, registry string, spec map[string]any) (string, string) {
	props := map[string]string{}
	for _, f := range stringSpecFields {
		if v, ok := spec[f].(string); ok && v != "" {
			props[f] = v
		}
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha1.New()
	h.Write([]byte(target + "|" + registry))
	for _, k := range keys {
		h.Write([]byte("|" + k + "=" + props[k]))
	}
	cfg, _ := json.Marshal(map[string]any{"kubeVirtVersion": target, "registry": registry, "additionalProperties": props})
	return hex.EncodeToString(h.Sum(nil)), string(cfg)
}

// syncInstall drives an install or update of the CR to its target, one pass
// at a time, the way virt-operator's syncInstallation does.
func (s *Simulator) syncInstall(ctx context.Context, kv *unstructured.Unstructured, op runningOperator) error {
	now := time.Now()
	obj := kv.DeepCopy()
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	target, _ := spec["imageTag"].(string)
	if target == "" {
		target = op.version
	}
	registry, _ := spec["imageRegistry"].(string)
	if registry == "" {
		registry = op.registry
	}
	id, cfg := deploymentID(target, registry, spec)
	modern := atLeast(op.version, "v0.20.0-alpha.0")

	// The first thing a v0.20+ operator does is annotate the CR.
	if modern {
		ann := obj.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		latest, storage := "v1alpha3", "v1alpha3"
		if atLeast(op.version, "v0.37.0-rc.0") {
			latest = "v1"
		}
		if atLeast(op.version, "v1.0.0-beta.0") {
			storage = "v1"
		}
		if ann["kubevirt.io/latest-observed-api-version"] != latest || ann["kubevirt.io/storage-observed-api-version"] != storage {
			ann["kubevirt.io/latest-observed-api-version"], ann["kubevirt.io/storage-observed-api-version"] = latest, storage
			obj.SetAnnotations(ann)
			_, err := s.dyn.Resource(kubevirtGVR).Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{})
			return err
		}
	}

	status["operatorVersion"] = operatorVersionField(op.version)
	status["targetKubeVirtVersion"], status["targetKubeVirtRegistry"] = target, registry
	if modern {
		status["targetDeploymentID"], status["targetDeploymentConfig"] = id, cfg
	}
	if status["phase"] == nil || status["phase"] == "" {
		status["phase"] = "Deploying"
	}
	obsVer, _ := status["observedKubeVirtVersion"].(string)
	obsReg, _ := status["observedKubeVirtRegistry"].(string)
	obsID, _ := status["observedDeploymentID"].(string)
	copied := obsVer == target && obsReg == registry
	if modern {
		copied = obsID == id
	}
	in := condInput{op: op.version, target: target, targetRegistry: registry, obs: obsVer, obsRegistry: obsReg}
	oldConds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	finalize := false
	var completed *hop // set when this pass finishes a hop

	s.mu.Lock()
	h := s.hops[id]
	if !copied && h == nil {
		h = &hop{from: obsVer, to: target, strategy: strategyVersion(op.version, target), strategyAt: now.Add(s.opts.StrategyDelay)}
		s.hops[id] = h
		if obsVer == "" {
			s.record(InstallStarted, "", target, "Deploying version "+target+" with registry "+registry)
		} else {
			s.record(HopStarted, obsVer, target, "Transitioning from "+obsVer+" to "+target)
		}
		for _, v := range s.rules.violations(obsVer, target) {
			s.record(PathViolation, obsVer, target, v)
		}
		if h.strategy != target {
			s.record(MixedInstall, obsVer, target, fmt.Sprintf("virt-operator %s ran the install strategy Job with its own image: %s's manifests with %s images, reported as %s (kubevirt#16050)",
				op.version, h.strategy, target, target))
		}
	}
	stalled := s.faults.stall[target]
	slow := s.faults.slow
	failing := s.faults.fail[target]
	s.mu.Unlock()

	situation := ready
	switch {
	case copied && (h == nil || h.done || !now.Before(h.readyAt)):
		finalize = true
		if h != nil && !h.done {
			completed = h
		}
	case copied:
		// Observed already says target; the readiness check has not passed.
		finalize, situation = true, installing
		s.pokeAfter(h.readyAt.Sub(now))
	case h.rbacErr != "" && now.Before(h.retryAt):
		finalize, situation, in.err = true, failed, h.rbacErr
		s.pokeAfter(h.retryAt.Sub(now))
	case failing != "" && !now.Before(h.strategyAt):
		finalize, situation, in.err = true, failed, failing
		s.mu.Lock()
		h.failures++
		wait := s.retryBackoff(h.failures)
		s.mu.Unlock()
		s.pokeAfter(wait)
	default:
		situation = updating
		if obsVer == "" {
			situation = installing
		}
		if now.Before(h.strategyAt) {
			s.pokeAfter(h.strategyAt.Sub(now))
			break
		}
		finalize = true
		var err error
		situation, err = s.progress(ctx, h, install{version: target, registry: registry, id: id, op: op.version, strategy: h.strategy}, stalled, slow, now, situation)
		if err != nil {
			var re *rbacError
			if !errors.As(err, &re) {
				return err
			}
			situation, in.err = failed, re.msg
		}
		if situation == ready {
			status["observedKubeVirtVersion"], status["observedKubeVirtRegistry"] = target, registry
			if modern {
				status["observedDeploymentID"], status["observedDeploymentConfig"] = id, cfg
			}
			completed = h
			if !readyBeforeObserved(op.version) && s.opts.ReadyLag > 0 {
				s.mu.Lock()
				lag := s.opts.ReadyLag + s.faults.slowReady
				h.readyAt = now.Add(lag)
				s.mu.Unlock()
				situation, completed = installing, nil
				s.pokeAfter(lag)
			}
		}
	}
	if situation == ready {
		status["phase"] = "Deployed"
		if atLeast(op.version, "v0.52.0-rc.0") {
			status["observedGeneration"] = obj.GetGeneration()
		}
		if hasWorkloadUpdates(op.version) {
			methods, _, _ := unstructured.NestedStringSlice(spec, "workloadUpdateStrategy", "workloadUpdateMethods")
			n, err := s.syncWorkloads(ctx, launcherImage(registry, target), methods)
			if err != nil {
				return err
			}
			status["outdatedVirtualMachineInstanceWorkloads"] = int64(n)
		}
	}
	status["conditions"] = mergeConditions(oldConds, conditionsFor(situation, in), now)
	added := finalize && s.addFinalizer(obj, op.version)
	err := s.writeKV(ctx, kv, obj, status)
	// Transitions are recorded once they are visible in the cluster.
	s.mu.Lock()
	defer s.mu.Unlock()
	pending := s.pending
	s.pending = nil
	if err != nil {
		return err
	}
	for _, f := range pending {
		f()
	}
	if added {
		s.record(FinalizerAdded, "", target, finalizerFor(op.version))
	}
	if completed != nil && !completed.done {
		completed.done = true
		s.record(HopCompleted, completed.from, target, "All components are ready.")
	}
	return nil
}

// afterWrite queues f (run under s.mu) for after this pass's status write
// succeeds; callers hold s.mu.
func (s *Simulator) afterWrite(f func()) { s.pending = append(s.pending, f) }

// progress runs the strategy of a hop: RBAC as the operator, components,
// then the rollout. It returns the situation of the pass.
func (s *Simulator) progress(ctx context.Context, h *hop, in install, stalled bool, slow time.Duration, now time.Time, sit situation) (situation, error) {
	if err := s.applyComponentRBAC(ctx, in.strategy); err != nil {
		var re *rbacError
		if errors.As(err, &re) {
			s.mu.Lock()
			h.failures++
			wait := s.retryBackoff(h.failures)
			h.rbacErr, h.retryAt = re.msg, now.Add(wait)
			s.afterWrite(func() { s.record(RBACForbidden, h.from, h.to, re.msg) })
			s.mu.Unlock()
			s.pokeAfter(wait) // the operator re-enqueues a failed pass with backoff
		}
		return failed, err
	}
	s.mu.Lock()
	if h.rbacErr != "" {
		h.rbacErr, h.failures = "", 0
		s.afterWrite(func() { s.record(RBACGranted, h.from, h.to, "component RBAC written") })
	}
	needComponents := !h.components
	s.mu.Unlock()
	if needComponents {
		if err := s.ensureComponents(ctx, in); err != nil {
			return sit, err
		}
		if err := s.disruptVMIs(ctx, h); err != nil {
			return sit, err
		}
		s.mu.Lock()
		h.components = true
		h.rolloutAt = now.Add(s.opts.RolloutDelay + slow)
		s.mu.Unlock()
		s.pokeAfter(s.opts.RolloutDelay + slow)
	}
	if stalled || now.Before(h.rolloutAt) {
		return sit, nil
	}
	if err := s.markComponentsReady(ctx); err != nil {
		return sit, err
	}
	return ready, nil
}

// addFinalizer adds the operator's finalizer, stripping the bare string when
// a v1.9+ operator takes over. It reports whether it changed anything.
func (s *Simulator) addFinalizer(obj *unstructured.Unstructured, op string) bool {
	want := finalizerFor(op)
	fs := obj.GetFinalizers()
	out := slices.DeleteFunc(slices.Clone(fs), func(f string) bool { return want != bareFinalizer && f == bareFinalizer })
	if !slices.Contains(out, want) {
		out = append(out, want)
	}
	if slices.Equal(fs, out) {
		return false
	}
	obj.SetFinalizers(out)
	return true
}

// writeKV writes metadata changes with an update of the CR and status with
// the status subresource, or everything with one update before v0.33 (no
// status subresource). Nothing is written when nothing changed.
func (s *Simulator) writeKV(ctx context.Context, orig, obj *unstructured.Unstructured, status map[string]any) error {
	res := s.dyn.Resource(kubevirtGVR).Namespace(obj.GetNamespace())
	oldStatus, _, _ := unstructured.NestedMap(orig.Object, "status")
	metaChanged := !equality.Semantic.DeepEqual(orig.GetFinalizers(), obj.GetFinalizers()) || !equality.Semantic.DeepEqual(orig.GetAnnotations(), obj.GetAnnotations())
	statusChanged := !equality.Semantic.DeepEqual(oldStatus, status)
	if !metaChanged && !statusChanged {
		return nil
	}
	sub, err := s.hasStatusSubresource(ctx)
	if err != nil {
		return err
	}
	if !sub {
		if err := unstructured.SetNestedMap(obj.Object, status, "status"); err != nil {
			return err
		}
		_, err := res.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	}
	if metaChanged {
		if obj, err = res.Update(ctx, obj, metav1.UpdateOptions{}); err != nil || !statusChanged {
			return err
		}
	}
	if err := unstructured.SetNestedMap(obj.Object, status, "status"); err != nil {
		return err
	}
	_, err = res.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}

// hasStatusSubresource reports whether the installed KubeVirt CRD has a
// status subresource (v0.33+).
func (s *Simulator) hasStatusSubresource(ctx context.Context) (bool, error) {
	crd, err := s.dyn.Resource(crdGVR).Get(ctx, "kubevirts.kubevirt.io", metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		if _, ok, _ := unstructured.NestedMap(asMap(v), "subresources", "status"); ok {
			return true, nil
		}
	}
	return false, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
