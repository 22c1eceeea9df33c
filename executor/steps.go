package executor

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
	if opts.Workloads.Timeout == 0 {
		opts.Workloads.Timeout = planner.DefaultWorkloadTimeout
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
		err = e.install(hopCtx, obs, step, say, &res)
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
func (e *Executor) install(ctx context.Context, obs *Observation, step planner.Step, say progress, res *StepResult) error {
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
	apiVersion, err := e.createCR(ctx, obs, cr, step, say)
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

// createCR creates the KubeVirt CR from the release's kubevirt-cr.yaml
// (pinned to the tag when the method pins it), unless one is there; it
// returns the CR's API version.
func (e *Executor) createCR(ctx context.Context, obs *Observation, cr *release.Manifest, step planner.Step, say progress) (string, error) {
	obj := cr.Objects[0].DeepCopy()
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
	kv := obs.KubeVirt
	switch {
	case kv == nil || kv.Deleting:
		return stale("hop %s -> %s planned, but there is no live KubeVirt CR", step.From, step.To)
	case kv.Observed == step.To && hopComplete(kv, step.To):
		res.AlreadyDone = true
	case kv.Observed != step.From:
		return stale("hop %s -> %s planned, but %s is installed", step.From, step.To, redact.OrDash(kv.Observed))
	}
	baseline := opts.Baseline
	if baseline == nil {
		baseline = obs.VMIs
	}
	if !res.AlreadyDone {
		run, ok := hopBy[step.Method]
		if !ok {
			return fault.Stalled(ReasonInvalidStep, nil, "a hop cannot be made by method %s", redact.Quote(string(step.Method)))
		}
		if err := run(&hop{e: e, ctx: hopCtx, obs: obs, step: step, say: say, res: res}); err != nil {
			return err
		}
	}
	if err := e.checkWorkloads(hopCtx, baseline, kv.WorkloadUpdateMethods, res); err != nil {
		return err
	}
	return e.waitWorkloads(ctx, step.To, kv.WorkloadUpdateMethods, opts, say, res)
}

// checkWorkloads compares the VMIs with the baseline; a disruption fails the
// hop (and stops the plan). methods are the CR's workloadUpdateMethods as
// observed when the step began.
func (e *Executor) checkWorkloads(ctx context.Context, baseline []VMI, methods []string, res *StepResult) error {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	now, _, err := e.observeWorkloads(ctx1)
	if err != nil {
		return err
	}
	res.Workloads = compareWorkloads(baseline, now, methods)
	if len(res.Workloads.Disrupted) > 0 {
		return fault.Stalled(ReasonWorkloadDisrupted, nil, "VMIs disrupted during the hop to %s: %v", res.Step.To, res.Workloads.Disrupted)
	}
	return nil
}
