package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kvgitops/kvgitops/planner"
)

// StepOptions tune one step.
type StepOptions struct {
	// Deadline bounds the whole step; the agent derives it from when the hop
	// started, so a restart does not extend it. Zero: 30 minutes from now.
	Deadline time.Time
	// Baseline are the VMIs before the hop; nil: observe them now.
	Baseline []VMI
	// Progress receives human-readable progress.
	Progress func(msg string)
}

// Run performs one planned step after re-observing the cluster. A step the
// cluster is already past returns AlreadyDone; a step whose starting state
// no longer holds returns an error wrapping ErrStalePlan.
func (e *Executor) Run(ctx context.Context, step planner.Step, opts StepOptions) (StepResult, error) {
	res := StepResult{Step: step, StartedAt: time.Now()}
	if opts.Deadline.IsZero() {
		opts.Deadline = time.Now().Add(planner.DefaultHopTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, opts.Deadline)
	defer cancel()
	obs, err := e.Observe(ctx)
	if err != nil {
		return res, err
	}
	say := progress(opts.Progress)
	switch step.Type {
	case planner.StepInstall:
		err = e.install(ctx, obs, step, opts, say, &res)
	case planner.StepUpgrade:
		err = e.upgrade(ctx, obs, step, opts, say, &res)
	case planner.StepDeleteKubeVirt:
		err = e.deleteKubeVirt(ctx, obs, say, &res)
	case planner.StepRemoveStuckFinalizers:
		err = e.removeStuckFinalizers(ctx, obs, say, &res)
	case planner.StepDeleteLeftovers:
		err = e.deleteLeftovers(ctx, obs, say, &res)
	case planner.StepDeleteOperator:
		err = e.deleteOperator(ctx, obs, step, say, &res)
	default:
		err = terminal(ReasonStalePlan, nil, "unknown step type %s", planner.QuoteValue(string(step.Type)))
	}
	res.FinishedAt = time.Now()
	return res, err
}

func stale(format string, args ...any) error {
	return &Error{Reason: ReasonStalePlan, Message: planner.Sanitize(fmt.Sprintf(format, args...), planner.MaxMessage), Err: ErrStalePlan}
}

// install applies the operator manifest, waits for its rollout, creates the
// CR from kubevirt-cr.yaml (pinned to the tag for the ImageTag method) and
// waits for the install to complete.
func (e *Executor) install(ctx context.Context, obs *Observation, step planner.Step, opts StepOptions, say progress, res *StepResult) error {
	if err := plannerTag(step.To); err != nil {
		return err
	}
	if kv := obs.KubeVirt; kv != nil && !kv.Deleting && kv.Observed != "" {
		if kv.Observed == step.To && hopComplete(kv, step.To) {
			res.AlreadyDone = true
			return nil
		}
		if kv.Observed != step.To {
			return stale("install of %s planned, but %s is installed", step.To, kv.Observed)
		}
	}
	if e.cfg.Releases == nil {
		return terminal(ReasonMirrorUnavailable, nil, "no release client configured")
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
	if kv := obs.KubeVirt; kv != nil && kv.Deleting {
		say.say("waiting for the KubeVirt CR being deleted to go before installing")
		if err := e.waitGone(ctx, obs.KubeVirtVersion, func() bool { return false }, say); err != nil {
			return err
		}
		obs.KubeVirt = nil
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
	obj := cr.Objects[0].DeepCopy()
	if step.Method == planner.MethodImageTag {
		if err := unstructured.SetNestedField(obj.Object, step.To, "spec", "imageTag"); err != nil {
			return err
		}
	}
	apiVersion := obj.GroupVersionKind().Version
	if obs.KubeVirt == nil {
		say.say("creating the KubeVirt CR")
		ctx1, cancel := e.call(ctx)
		_, err := e.dyn.Resource(kubevirtGVR(apiVersion)).Namespace(e.cfg.Namespace).Create(ctx1, obj, metav1.CreateOptions{FieldManager: e.cfg.FieldManager})
		cancel()
		if err != nil && !isAlreadyExists(err) {
			return apiError(err, "create the KubeVirt CR")
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("applied kubevirt-operator.yaml of %s (sha256 %s)", step.To, op.SHA256))
	return e.waitHop(ctx, apiVersion, step.To, say)
}

// upgrade runs one hop with its method, then checks the workloads.
func (e *Executor) upgrade(ctx context.Context, obs *Observation, step planner.Step, opts StepOptions, say progress, res *StepResult) error {
	if err := plannerTag(step.To); err != nil {
		return err
	}
	kv := obs.KubeVirt
	switch {
	case kv == nil || kv.Deleting:
		return stale("hop %s -> %s planned, but there is no live KubeVirt CR", step.From, step.To)
	case kv.Observed == step.To && hopComplete(kv, step.To):
		res.AlreadyDone = true
		return nil
	case kv.Observed != step.From:
		return stale("hop %s -> %s planned, but %s is installed", step.From, step.To, orDash(kv.Observed))
	}
	baseline := opts.Baseline
	if baseline == nil {
		baseline = obs.VMIs
	}
	apiVersion := obs.KubeVirtVersion
	applyOperator := func() error {
		say.say("fetching kubevirt-operator.yaml of %s", step.To)
		m, err := e.cfg.Releases.OperatorManifest(ctx, step.To, e.cfg.Namespace)
		if err != nil {
			return err
		}
		say.say("applying kubevirt-operator.yaml of %s (sha256 %s)", step.To, m.SHA256)
		if err := e.applyManifest(ctx, m); err != nil {
			return err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("applied kubevirt-operator.yaml of %s (sha256 %s)", step.To, m.SHA256))
		return nil
	}
	setTag := func() error {
		say.say("patching spec.imageTag to %s", step.To)
		return e.patchKubeVirt(ctx, apiVersion, func(k *KubeVirtState) []map[string]any {
			if k.ImageTag == step.To {
				return nil
			}
			return []map[string]any{{"op": "add", "path": "/spec/imageTag", "value": step.To}}
		})
	}
	if step.Method != planner.MethodImageTag && e.cfg.Releases == nil {
		return terminal(ReasonMirrorUnavailable, nil, "no release client configured")
	}
	var err error
	switch step.Method {
	case planner.MethodOperator:
		if err = applyOperator(); err == nil && kv.ImageTag != "" {
			say.say("removing the pinned spec.imageTag %s", kv.ImageTag)
			err = e.patchKubeVirt(ctx, apiVersion, func(k *KubeVirtState) []map[string]any {
				if k.ImageTag == "" {
					return nil
				}
				return []map[string]any{{"op": "remove", "path": "/spec/imageTag"}}
			})
		}
		if err == nil {
			err = e.waitHop(ctx, apiVersion, step.To, say)
		}
	case planner.MethodOperatorThenImageTag:
		if err = applyOperator(); err == nil {
			if err = e.waitOperatorRollout(ctx, step.To, say); err == nil {
				if err = setTag(); err == nil {
					err = e.waitHop(ctx, apiVersion, step.To, say)
				}
			}
		}
	case planner.MethodImageTag:
		if err = setTag(); err == nil {
			err = e.waitHop(ctx, apiVersion, step.To, say)
		}
		var rbac *errRBAC
		if errors.As(err, &rbac) {
			// FACTS.md §5: the running operator lacks the new release's RBAC;
			// update the operator first, then the hop proceeds.
			say.say("the running virt-operator lacks RBAC that %s needs; updating the operator first", step.To)
			res.OperatorFirst = true
			res.Notes = append(res.Notes, "operator updated first: the running virt-operator was "+rbacMarker+" for "+step.To+": "+planner.Sanitize(rbac.msg, 300))
			if e.cfg.Releases == nil {
				return terminal(ReasonHopFailed, nil, "%s", rbac.msg)
			}
			if err = applyOperator(); err == nil {
				if err = e.waitOperatorRollout(ctx, step.To, say); err == nil {
					err = e.waitHop(ctx, apiVersion, step.To, say)
				}
			}
		}
	default:
		return terminal(ReasonStalePlan, nil, "unknown method %s", planner.QuoteValue(string(step.Method)))
	}
	var rbac *errRBAC
	if errors.As(err, &rbac) {
		return terminal(ReasonHopFailed, nil, "virt-operator cannot write the RBAC of %s even after the operator update: %s", step.To, rbac.msg)
	}
	if err != nil {
		return err
	}
	return e.checkWorkloads(ctx, baseline, kv.WorkloadUpdateMethods, res)
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
		return terminal(ReasonWorkloadDisrupted, nil, "VMIs disrupted during the hop to %s: %v", res.Step.To, res.Workloads.Disrupted)
	}
	return nil
}
