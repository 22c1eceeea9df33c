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

func deploymentID(target, registry, operatorImage string, spec map[string]any) (string, string) {
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
	h.Write([]byte(target + "|" + registry + "|" + operatorImage))
	for _, k := range keys {
		h.Write([]byte("|" + k + "=" + props[k]))
	}
	cfg, _ := json.Marshal(map[string]any{"kubeVirtVersion": target, "registry": registry, "additionalProperties": props})
	return hex.EncodeToString(h.Sum(nil)), string(cfg)
}

// pass is one syncInstallation pass over the CR: what the operator read
// and what it is about to write.
type pass struct {
	obj              *unstructured.Unstructured
	spec, status     map[string]any
	oldConds         []any
	op               string
	target, registry string
	id, cfg          string
	obsVer           string
	copied           bool // observed* already name the target
	in               condInput
	now              time.Time
	situation        situation
	finalize         bool
	completed        *hop // set when this pass finishes a hop
}

// hopFaults are the faults injected for a pass, read once under s.mu.
type hopFaults struct {
	stalled bool
	slow    time.Duration
	failing string
}

func newPass(kv *unstructured.Unstructured, op runningOperator, now time.Time) *pass {
	p := &pass{obj: kv.DeepCopy(), op: op.version, now: now, situation: ready}
	p.spec, _, _ = unstructured.NestedMap(p.obj.Object, "spec")
	p.status, _, _ = unstructured.NestedMap(p.obj.Object, "status")
	if p.status == nil {
		p.status = map[string]any{}
	}
	p.oldConds, _, _ = unstructured.NestedSlice(p.obj.Object, "status", "conditions")
	p.target, _ = p.spec["imageTag"].(string)
	if p.target == "" {
		p.target = op.target
	}
	p.registry, _ = p.spec["imageRegistry"].(string)
	if p.registry == "" {
		p.registry = op.registry
	}
	p.id, p.cfg = deploymentID(p.target, p.registry, idOperatorImage(op, p.spec), p.spec)
	p.obsVer, _ = p.status["observedKubeVirtVersion"].(string)
	obsReg, _ := p.status["observedKubeVirtRegistry"].(string)
	obsID, _ := p.status["observedDeploymentID"].(string)
	p.copied = p.obsVer == p.target && obsReg == p.registry
	if usesDeploymentID(p.op) {
		p.copied = obsID == p.id
	}
	p.in = condInput{op: p.op, target: p.target, targetRegistry: p.registry, obs: p.obsVer, obsRegistry: obsReg}
	return p
}

// writeTarget fills what the operator writes on every pass: its version and
// the target it is working towards.
func (p *pass) writeTarget() {
	p.status["operatorVersion"] = operatorVersionField(p.op)
	p.status["targetKubeVirtVersion"], p.status["targetKubeVirtRegistry"] = p.target, p.registry
	if usesDeploymentID(p.op) {
		p.status["targetDeploymentID"], p.status["targetDeploymentConfig"] = p.id, p.cfg
	}
	if p.status["phase"] == nil || p.status["phase"] == "" {
		p.status["phase"] = "Deploying"
	}
}

// observe copies the target into observed*.
func (p *pass) observe() {
	p.status["observedKubeVirtVersion"], p.status["observedKubeVirtRegistry"] = p.target, p.registry
	if usesDeploymentID(p.op) {
		p.status["observedDeploymentID"], p.status["observedDeploymentConfig"] = p.id, p.cfg
	}
}

// unpullable: the install names images that cannot exist (no registry, or
// no tag), as a renamed operator image gives; it never becomes ready.
func unpullable(p *pass) bool { return p.registry == "" || p.target == "" }

func (p *pass) fail(msg string) { p.finalize, p.situation, p.in.err = true, failed, msg }

// syncInstall drives an install or update of the CR to its target, one pass
// at a time, the way virt-operator's syncInstallation does.
func (s *Simulator) syncInstall(ctx context.Context, kv *unstructured.Unstructured, op runningOperator) error {
	p := newPass(kv, op, time.Now())
	if wrote, err := s.annotateAPIVersions(ctx, p.obj, p.op); wrote || err != nil {
		return err
	}
	p.writeTarget()
	h, f := s.beginHop(p)
	if err := s.decide(ctx, p, h, f); err != nil {
		return err
	}
	if p.situation == ready {
		p.deployed()
	}
	p.status["conditions"] = mergeConditions(p.oldConds, conditionsFor(p.situation, p.in), p.now)
	added := p.finalize && s.addFinalizer(p.obj, p.op)
	return s.commitPass(ctx, kv, p, added)
}

// annotateAPIVersions is the first thing a v0.20+ operator does: annotate
// the CR with the API versions it serves and stores, and end the pass. It
// reports whether it wrote.
func (s *Simulator) annotateAPIVersions(ctx context.Context, obj *unstructured.Unstructured, op string) (bool, error) {
	latest, storage, ok := observedAPIVersions(op)
	if !ok {
		return false, nil
	}
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	if ann["kubevirt.io/latest-observed-api-version"] == latest && ann["kubevirt.io/storage-observed-api-version"] == storage {
		return false, nil
	}
	ann["kubevirt.io/latest-observed-api-version"], ann["kubevirt.io/storage-observed-api-version"] = latest, storage
	obj.SetAnnotations(ann)
	// The real operator updates the object it decoded into its Go types:
	// what they omit when empty is gone from the spec (docs/kubevirt.md,
	// "The CR's spec").
	if spec, ok := obj.Object["spec"].(map[string]any); ok {
		dropEmptyLists(spec)
	}
	_, err := s.dyn.Resource(kubevirtGVR).Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{})
	return true, err
}

// dropEmptyLists removes the empty lists of m and of the mappings under it
// (not inside list elements): every list field of KubeVirt's spec types is
// `omitempty`, so a typed round trip drops it.
func dropEmptyLists(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case []any:
			if len(v) == 0 {
				delete(m, k)
			}
		case map[string]any:
			dropEmptyLists(v)
		}
	}
}

// beginHop finds the hop of the pass's target, starting one (and recording
// how it starts) when observed* do not name the target yet.
func (s *Simulator) beginHop(p *pass) (*hop, hopFaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hops[p.id]
	if !p.copied && h == nil {
		h = &hop{from: p.obsVer, to: p.target, strategy: strategyVersion(p.op, p.target), strategyAt: p.now.Add(s.opts.StrategyDelay)}
		s.hops[p.id] = h
		s.recordStart(p, h)
	}
	return h, hopFaults{stalled: s.faults.stall[p.target] || unpullable(p), slow: s.faults.slow, failing: s.faults.fail[p.target]}
}

// recordStart records a hop's start, the path rules it breaks and whether
// it mixes releases; callers hold s.mu.
func (s *Simulator) recordStart(p *pass, h *hop) {
	if p.obsVer == "" {
		s.record(InstallStarted, "", p.target, "Deploying version "+p.target+" with registry "+p.registry)
	} else {
		s.record(HopStarted, p.obsVer, p.target, "Transitioning from "+p.obsVer+" to "+p.target)
	}
	for _, v := range s.rules.violations(p.obsVer, p.target) {
		s.record(PathViolation, p.obsVer, p.target, v)
	}
	if unpullable(p) {
		s.record(ImagePullFailed, p.obsVer, p.target, fmt.Sprintf("component images %s/virt-api:%s cannot be pulled: an operator image whose name does not end in virt-operator gives no registry (or, before v1.0, no tag)", p.registry, p.target))
	}
	if h.strategy != p.target {
		s.record(MixedInstall, p.obsVer, p.target, fmt.Sprintf("virt-operator %s ran the install strategy Job with its own image: %s's manifests with %s images, reported as %s (kubevirt#16050)",
			p.op, h.strategy, p.target, p.target))
	}
}

// decide is what the pass does: confirm a copied target, wait out a
// readiness check or a backoff, fail, or roll the hop on.
func (s *Simulator) decide(ctx context.Context, p *pass, h *hop, f hopFaults) error {
	switch {
	case p.copied && (h == nil || h.done || !p.now.Before(h.readyAt)):
		p.finalize = true
		if h != nil && !h.done {
			p.completed = h
		}
	case p.copied:
		// Observed already says target; the readiness check has not passed:
		// Deploying with Created=True.
		p.finalize, p.situation, p.in.created = true, installing, true
		s.pokeAfter(h.readyAt.Sub(p.now))
	case h.rbacErr != "" && p.now.Before(h.retryAt):
		p.fail(h.rbacErr)
		s.pokeAfter(h.retryAt.Sub(p.now))
	case f.failing != "" && !p.now.Before(h.strategyAt):
		p.fail(f.failing)
		s.mu.Lock()
		h.failures++
		wait := s.retryBackoff(h.failures)
		s.mu.Unlock()
		s.pokeAfter(wait)
	default:
		return s.roll(ctx, p, h, f)
	}
	return nil
}

// roll moves a hop on once its install strategy exists: RBAC, components,
// rollout; when they are ready the target is observed.
func (s *Simulator) roll(ctx context.Context, p *pass, h *hop, f hopFaults) error {
	p.situation = updating
	if p.obsVer == "" {
		p.situation = installing
	}
	if p.now.Before(h.strategyAt) {
		s.pokeAfter(h.strategyAt.Sub(p.now))
		return nil
	}
	p.finalize = true
	before := p.situation
	sit, err := s.progress(ctx, h, install{version: p.target, registry: p.registry, id: p.id, op: p.op, strategy: h.strategy}, f.stalled, f.slow, p.now, p.situation)
	if err != nil {
		var re *rbacError
		if !errors.As(err, &re) {
			return err
		}
		sit, p.in.err = failed, re.msg
	}
	p.situation = sit
	if sit != ready {
		return nil
	}
	p.observe()
	p.completed = h
	if !readyBeforeObserved(p.op) && s.opts.ReadyLag > 0 {
		// Up to v1.8 observed* are copied before the readiness check
		// passes: this pass keeps the conditions it started with and adds
		// Created=True.
		s.mu.Lock()
		lag := s.opts.ReadyLag + s.faults.slowReady
		h.readyAt = p.now.Add(lag)
		s.mu.Unlock()
		p.situation, p.completed, p.in.created = before, nil, true
		s.pokeAfter(lag)
	}
	return nil
}

// deployed is a pass that found everything ready: the phase and the
// observed generation. (The outdated-workload count is virt-controller's:
// its workload updater patches it.)
func (p *pass) deployed() {
	p.status["phase"] = "Deployed"
	if reportsObservedGeneration(p.op) {
		p.status["observedGeneration"] = p.obj.GetGeneration()
	}
}

// commitPass writes the CR; transitions are recorded once they are visible
// in the cluster.
func (s *Simulator) commitPass(ctx context.Context, kv *unstructured.Unstructured, p *pass, added bool) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	err := s.writeKV(ctx, kv, p.obj, p.status)
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
		s.record(FinalizerAdded, "", p.target, finalizerFor(p.op))
	}
	if p.completed != nil && !p.completed.done {
		p.completed.done = true
		s.record(HopCompleted, p.completed.from, p.target, "All components are ready.")
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
