package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

// StepOptions tune one step.
type StepOptions struct {
	// Deadline bounds the step's work on KubeVirt itself; the agent derives
	// it from when the hop started, so a restart does not extend it. Zero:
	// 30 minutes from now.
	Deadline time.Time
	// Workloads says whether a hop waits for VMIs to reach its
	// virt-launcher, and how long (its own timeout, from when the wait
	// starts). Zero: Auto, one hour.
	Workloads planner.Workloads
	// Baseline are the VMIs before the hop; nil: observe them now.
	Baseline []VMI
	// Config is spec.kubevirtConfig: what a Configure step applies, and
	// what an install creates the CR with (nil: the defaults).
	Config *planner.KubeVirtConfig
	// Progress receives human-readable progress.
	Progress func(msg string)
	// Milestone receives the few moments worth a status commit (a hop
	// waiting for its workloads), with the workloads as they are.
	Milestone func(msg string, w WorkloadReport)
}

// Run performs one planned step after re-observing the cluster. A step the
// cluster is already past returns AlreadyDone (a hop still waits for its
// workloads); a step whose starting state no longer holds returns an error
// wrapping ErrStalePlan.
func (e *Executor) Run(ctx context.Context, step planner.Step, opts StepOptions) (StepResult, error) {
	res := StepResult{Step: step, StartedAt: time.Now()}
	if opts.Deadline.IsZero() {
		opts.Deadline = time.Now().Add(planner.DefaultHopTimeout)
	}
	if opts.Workloads.Policy == "" {
		opts.Workloads.Policy = planner.WorkloadsAuto
	}
	if opts.Workloads.ProgressTimeout == 0 {
		opts.Workloads.ProgressTimeout = planner.DefaultWorkloadProgressTimeout
	}
	hopCtx, cancel := context.WithDeadline(ctx, opts.Deadline)
	defer cancel()
	obs, err := e.Observe(hopCtx)
	if err != nil {
		return res, e.timeout(err, "observe the cluster")
	}
	say := progress(opts.Progress)
	switch step.Type {
	case planner.StepInstall:
		err = e.install(hopCtx, obs, step, opts, say, &res)
	case planner.StepConfigure:
		err = e.configure(hopCtx, obs, step, opts, say, &res)
	case planner.StepUpgrade:
		err = e.upgrade(ctx, hopCtx, obs, step, opts, say, &res)
	case planner.StepDeleteKubeVirt:
		err = e.deleteKubeVirt(hopCtx, obs, say, &res)
	case planner.StepRemoveStuckFinalizers:
		err = e.removeStuckFinalizers(hopCtx, obs, say, &res)
	case planner.StepDeleteLeftovers:
		err = e.deleteLeftovers(hopCtx, obs, say, &res)
	case planner.StepDeleteOperator:
		err = e.deleteOperator(hopCtx, obs, step, say, &res)
	default:
		err = fault.Stalled(ReasonInvalidStep, nil, "unknown step type %s", redact.Quote(string(step.Type)))
	}
	res.FinishedAt = time.Now()
	return res, err
}

func stale(format string, args ...any) error {
	return fault.Transient(ReasonStalePlan, ErrStalePlan, format, args...)
}

// settle waits until an install whose observed version already equals its
// target is ready. Up to v1.8.x the operator copies observed* before its
// readiness check (docs/kubevirt.md, "What done means"): an agent restarted
// in that window must not start the next step early.
func (e *Executor) settle(ctx context.Context, obs *Observation, say progress) error {
	kv := obs.KubeVirt
	if kv == nil || kv.Deleting || kv.Observed == "" || kv.Observed != kv.Target || hopComplete(kv, kv.Observed) {
		return nil
	}
	say.say("KubeVirt %s is installed but not ready yet; waiting before the next step", kv.Observed)
	return e.waitHop(ctx, obs.KubeVirtVersion, kv.Observed, say)
}

// install applies the operator manifest, waits for its rollout, creates the
// CR from kubevirt-cr.yaml (pinned to the tag for the ImageTag method) and
// waits for the install to complete.
func (e *Executor) install(ctx context.Context, obs *Observation, step planner.Step, opts StepOptions, say progress, res *StepResult) error {
	if err := plannerTag(step.To); err != nil {
		return err
	}
	if done, err := installed(obs, step); done || err != nil {
		res.AlreadyDone = done
		return err
	}
	if e.cfg.Releases == nil {
		return fault.Stalled(release.ReasonMirrorUnavailable, nil, "no release client configured")
	}
	say.say("fetching the %s manifests", step.To)
	op, err := e.cfg.Releases.OperatorManifest(ctx, step.To, e.cfg.Namespace)
	if err != nil {
		return err
	}
	cr, err := e.cfg.Releases.CRManifest(ctx, step.To, e.cfg.Namespace)
	if err != nil {
		return err
	}
	if err := e.clearWay(ctx, obs, say); err != nil {
		return err
	}
	say.say("applying kubevirt-operator.yaml of %s (sha256 %s)", step.To, op.SHA256)
	if err := e.applyManifest(ctx, op); err != nil {
		return err
	}
	if err := e.waitOperatorRollout(ctx, step.To, say); err != nil {
		return err
	}
	if err := e.waitEstablished(ctx); err != nil {
		return err
	}
	apiVersion, err := e.createCR(ctx, obs, cr, step, planner.InstallConfig(opts.Config), say)
	if err != nil {
		return err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("applied kubevirt-operator.yaml of %s (sha256 %s)", step.To, op.SHA256))
	return e.waitHop(ctx, apiVersion, step.To, say)
}

// installed reports whether the install is already done; a different
// version installed makes the plan stale.
func installed(obs *Observation, step planner.Step) (bool, error) {
	kv := obs.KubeVirt
	if kv == nil || kv.Deleting || kv.Observed == "" {
		return false, nil
	}
	if kv.Observed == step.To && hopComplete(kv, step.To) {
		return true, nil
	}
	if kv.Observed != step.To {
		return false, stale("install of %s planned, but %s is installed", step.To, kv.Observed)
	}
	return false, nil
}

// clearWay waits for a KubeVirt CR being deleted, then for its namespace,
// to be gone before an install.
func (e *Executor) clearWay(ctx context.Context, obs *Observation, say progress) error {
	if kv := obs.KubeVirt; kv != nil && kv.Deleting {
		say.say("waiting for the KubeVirt CR being deleted to go before installing")
		if err := e.waitGone(ctx, obs.KubeVirtVersion, func() bool { return false }, say); err != nil {
			return err
		}
		obs.KubeVirt = nil
	}
	return e.waitNamespaceGone(ctx, say)
}

// createCR creates the KubeVirt CR from the release's kubevirt-cr.yaml with
// the settings of config (pinned to the tag when the method pins it),
// unless one is there; it returns the CR's API version.
func (e *Executor) createCR(ctx context.Context, obs *Observation, cr *release.Manifest, step planner.Step, config *planner.KubeVirtConfig, say progress) (string, error) {
	obj := cr.Objects[0].DeepCopy()
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	if err := unstructured.SetNestedMap(obj.Object, mergeSpec(spec, config.Spec()), "spec"); err != nil {
		return "", err
	}
	if step.Method.PinsTag() {
		if err := unstructured.SetNestedField(obj.Object, step.To, "spec", "imageTag"); err != nil {
			return "", err
		}
	}
	apiVersion := obj.GroupVersionKind().Version
	if obs.KubeVirt != nil {
		return apiVersion, nil
	}
	say.say("creating the KubeVirt CR")
	ctx1, cancel := e.call(ctx)
	defer cancel()
	_, err := e.dyn.Resource(kubevirtGVR(apiVersion)).Namespace(e.cfg.Namespace).Create(ctx1, obj, metav1.CreateOptions{FieldManager: e.cfg.FieldManager})
	if err != nil && !isAlreadyExists(err) {
		return "", apiError(err, "create the KubeVirt CR")
	}
	return apiVersion, nil
}

// upgrade runs one hop with its method, then checks and waits for the
// workloads (under their own timeout, not the hop's).
func (e *Executor) upgrade(ctx, hopCtx context.Context, obs *Observation, step planner.Step, opts StepOptions, say progress, res *StepResult) error {
	if err := plannerTag(step.To); err != nil {
		return err
	}
	if err := e.settle(hopCtx, obs, say); err != nil {
		return err
	}
	if err := e.hopState(hopCtx, obs, step, say, res); err != nil {
		return err
	}
	kv := obs.KubeVirt
	baseline := opts.Baseline
	if !res.AlreadyDone {
		run, ok := hopBy[step.Method]
		if !ok {
			return fault.Stalled(ReasonInvalidStep, nil, "a hop cannot be made by method %s", redact.Quote(string(step.Method)))
		}
		w, err := e.readWorkloads(hopCtx)
		if err != nil {
			return err
		}
		if f := w.InFlight(); len(f) > 0 {
			return inFlight(f)
		}
		if baseline == nil {
			baseline = w.VMIs
		}
		if err := run(&hop{e: e, ctx: hopCtx, obs: obs, step: step, say: say, res: res}); err != nil {
			return err
		}
	}
	// A hop found done (resumed after a restart) has no baseline: the VMIs
	// are judged from now on.
	return e.waitWorkloads(ctx, step.To, kv, baseline, opts, say, res)
}

// hopState checks the hop against the CR: done already, finishing, to do,
// or stale.
func (e *Executor) hopState(hopCtx context.Context, obs *Observation, step planner.Step, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	switch {
	case kv == nil || kv.Deleting:
		return stale("hop %s -> %s planned, but there is no live KubeVirt CR", step.From, step.To)
	case kv.Observed == step.To && hopComplete(kv, step.To):
		res.AlreadyDone = true
	case kv.Observed == step.To && kv.Target == step.To:
		// Up to v1.8 the operator reports the target observed before its
		// readiness check passes (docs/kubevirt.md, "What done means"): a
		// hop resumed in that window is finishing, not stale.
		say.say("the hop to %s is finishing (observed, not yet ready)", step.To)
		if err := e.waitHop(hopCtx, obs.KubeVirtVersion, step.To, say); err != nil {
			return err
		}
		res.AlreadyDone = true
	case kv.Observed != step.From:
		return stale("hop %s -> %s planned, but %s is installed", step.From, step.To, redact.OrDash(kv.Observed))
	}
	return nil
}

// configure applies spec.kubevirtConfig to the CR with server-side apply
// (field manager kvgitops, strict field validation: a field the running
// KubeVirt does not know is refused, nothing applied), once no live
// migration runs, then waits for the operator to take it in.
func (e *Executor) configure(ctx context.Context, obs *Observation, step planner.Step, opts StepOptions, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	switch {
	case opts.Config == nil:
		return fault.Stalled(ReasonInvalidStep, nil, "a Configure step without spec.kubevirtConfig")
	case kv == nil || kv.Deleting:
		return stale("configure planned, but there is no live KubeVirt CR")
	case len(opts.Config.Differences(kv.Spec)) == 0:
		res.AlreadyDone = true
		return nil
	}
	if err := e.quiet(ctx); err != nil {
		return err
	}
	body := map[string]any{"apiVersion": "kubevirt.io/" + obs.KubeVirtVersion, "kind": "KubeVirt",
		"metadata": map[string]any{"name": kv.Name, "namespace": kv.Namespace}, "spec": opts.Config.Spec()}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	say.say("applying spec.kubevirtConfig to the KubeVirt CR (server-side apply, field manager %s)", e.cfg.FieldManager)
	ctx1, cancel := e.call(ctx)
	defer cancel()
	force := true
	_, err = e.dyn.Resource(kubevirtGVR(obs.KubeVirtVersion)).Namespace(kv.Namespace).Patch(ctx1, kv.Name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: e.cfg.FieldManager, Force: &force, FieldValidation: "Strict"})
	switch {
	case apierrors.IsBadRequest(err) || apierrors.IsInvalid(err):
		return fault.Stalled(ReasonConfigRefused, err, "the cluster refused spec.kubevirtConfig (nothing was applied): %s", redact.Text(err.Error(), 400))
	case err != nil:
		return apiError(err, "apply spec.kubevirtConfig")
	}
	res.Notes = append(res.Notes, "applied spec.kubevirtConfig ("+opts.Config.Digest()+")")
	return e.waitHop(ctx, obs.KubeVirtVersion, kv.Observed, say)
}

// inFlight is the refusal to change KubeVirt under live migrations.
func inFlight(vmis []string) error {
	return fault.Transient(ReasonMigrationsInFlight, nil, "%d live migrations are in flight (%s): nothing changes KubeVirt until they finish (kubevirt#18720)",
		len(vmis), listSome(vmis))
}

// mergeSpec lays over on spec, mapping by mapping.
func mergeSpec(spec, over map[string]any) map[string]any {
	if spec == nil {
		spec = map[string]any{}
	}
	for k, v := range over {
		sub, isMap := v.(map[string]any)
		cur, curMap := spec[k].(map[string]any)
		if isMap && curMap {
			spec[k] = mergeSpec(cur, sub)
			continue
		}
		spec[k] = v
	}
	return spec
}
