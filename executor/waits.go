package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

var deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

// rbacMarker is the apiserver's escalation-prevention message (docs/kubevirt.md, "Update methods").
const rbacMarker = "attempting to grant RBAC permissions not currently held"

// errRBAC is a hop blocked by the RBAC the running operator lacks.
type errRBAC struct{ msg string }

func (e *errRBAC) Error() string { return e.msg }

// sayAgain is how often a long wait says again what it waits for, changed
// or not: the agent logs a message once and commits the latest to the
// status file at most every 30 s, so the last of a burst is not lost.
const sayAgain = 10 * time.Second

// progress reports what a step waits for.
type progress func(msg string)

func (p progress) say(format string, args ...any) {
	if p != nil {
		p(fmt.Sprintf(format, args...))
	}
}

// waitOperatorRollout waits until the virt-operator Deployment runs version
// and its rollout is complete; a ProgressDeadlineExceeded fails the hop.
func (e *Executor) waitOperatorRollout(ctx context.Context, version string, say progress) error {
	say.say("waiting for the virt-operator %s rollout", version)
	last := "no virt-operator Deployment"
	err := e.watchObject(ctx, e.dyn.Resource(deploymentGVR).Namespace(e.cfg.Namespace), "virt-operator", func(u *unstructured.Unstructured) (bool, time.Duration, error) {
		if u == nil {
			last = "no virt-operator Deployment"
			return false, 0, nil
		}
		var dep appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dep); err != nil {
			return false, 0, err
		}
		op := operatorState(&dep)
		last = fmt.Sprintf("virt-operator %s, %d/%d replicas updated, %d available", op.Version, dep.Status.UpdatedReplicas, ptrOr(dep.Spec.Replicas, 1), dep.Status.AvailableReplicas)
		switch {
		case op.Version != version:
			return false, 0, nil
		case op.RolloutFailed != "":
			return false, 0, fault.Stalled(ReasonOperatorRolloutFailed, nil, "%s; %s", op.RolloutFailed, e.operatorPodsHint())
		case !op.RolledOut:
			say.say("waiting for the virt-operator %s rollout: %s", version, last)
			return false, sayAgain, nil
		}
		return true, 0, nil
	})
	return e.timeout(err, "virt-operator %s rollout: last seen %s; %s", version, last, e.operatorPodsHint())
}

// operatorPodsHint says where a stuck operator rollout's reason is: its
// pods (an image that cannot be pulled, a container that exits), which
// kvgitops does not read (pod specs are not its to see).
func (e *Executor) operatorPodsHint() string {
	return "its pods say why: kubectl -n " + e.cfg.Namespace + " get pods -l kubevirt.io=virt-operator"
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// waitEstablished waits until the KubeVirt CRD accepts CRs.
func (e *Executor) waitEstablished(ctx context.Context) error {
	err := e.watchObject(ctx, e.dyn.Resource(crdGVR), "kubevirts.kubevirt.io", func(u *unstructured.Unstructured) (bool, time.Duration, error) {
		if u == nil {
			return false, 0, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, 0, nil
			}
		}
		return false, 0, nil
	})
	return e.timeout(err, "the KubeVirt CRD never became established")
}

// hopComplete is docs/kubevirt.md, "What done means": the operator targets to and has observed it
// with the same registry and deployment id, the conditions say done, and
// (v0.52+) the generation is observed.
func hopComplete(k *KubeVirtState, to string) bool {
	if k.Target != to || k.Observed != to || k.ObservedRegistry != k.TargetRegistry || k.Phase != "Deployed" {
		return false
	}
	if k.TargetID != "" && k.ObservedID != k.TargetID {
		return false
	}
	if k.HasObservedGeneration && k.ObservedGeneration != k.Generation {
		return false
	}
	if _, modern := k.Condition("Available"); modern {
		return condIs(k, "Available", "True") && condIs(k, "Progressing", "False") && condIs(k, "Degraded", "False")
	}
	// v0.17–v0.19: Ready=True and no Updating.
	_, updating := k.Condition("Updating")
	return condIs(k, "Ready", "True") && !updating
}

func condIs(k *KubeVirtState, typ, status string) bool {
	c, ok := k.Condition(typ)
	return ok && c.Status == status
}

// deploymentFailed returns the DeploymentFailed message, if any.
func deploymentFailed(k *KubeVirtState) string {
	for _, c := range k.Conditions {
		if c.Reason == "DeploymentFailed" && (c.Type == "Synchronized" && c.Status == "False" || c.Type == "Degraded" && c.Status == "True") {
			return c.Message
		}
	}
	return ""
}

// summary describes the CR for progress and timeout messages.
func summary(k *KubeVirtState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "target %s, observed %s, phase %s", redact.OrDash(k.Target), redact.OrDash(k.Observed), redact.OrDash(k.Phase))
	for _, typ := range []string{"Available", "Progressing", "Degraded", "Ready", "Updating", "Synchronized"} {
		if c, ok := k.Condition(typ); ok {
			fmt.Fprintf(&b, ", %s=%s", typ, c.Status)
			if c.Reason != "" {
				fmt.Fprintf(&b, " %s", c.Reason)
			}
		}
	}
	return b.String()
}

// waitHop waits for the CR to complete the hop to version. A persisting
// DeploymentFailed fails it (after FailGrace); the RBAC escalation failure
// returns *errRBAC at once so an ImageTag hop can update the operator first.
func (e *Executor) waitHop(ctx context.Context, apiVersion, to string, say progress) error {
	return e.waitHopRBAC(ctx, apiVersion, to, true, "", say)
}

// waitHopRBAC is waitHop; with rbacAtOnce false the RBAC failure is waited
// out like any other. After the operator update the old operator's failure
// (stale) lingers on the CR until the new operator's first pass: it does not
// count until status.operatorVersion names the new operator.
func (e *Executor) waitHopRBAC(ctx context.Context, apiVersion, to string, rbacAtOnce bool, stale string, say progress) error {
	say.say("waiting for observedKubeVirtVersion %s", to)
	var failingSince time.Time
	last := "no KubeVirt CR"
	err := e.watchObject(ctx, e.dyn.Resource(kubevirtGVR(apiVersion)).Namespace(e.cfg.Namespace), "kubevirt", func(u *unstructured.Unstructured) (bool, time.Duration, error) {
		if u == nil {
			return false, 0, fmt.Errorf("the KubeVirt CR disappeared during the hop: %w", ErrStalePlan)
		}
		k := kubeVirtState(u)
		last = summary(k)
		say.say("waiting for observedKubeVirtVersion %s: %s", to, last)
		if msg := deploymentFailed(k); msg != "" && k.Target == to && (msg != stale || k.OperatorVersion == to) {
			if rbacAtOnce && strings.Contains(msg, rbacMarker) {
				return false, 0, &errRBAC{msg: msg}
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if wait := e.cfg.FailGrace - time.Since(failingSince); wait > 0 {
				return false, wait, nil
			}
			return false, 0, fault.Stalled(ReasonHopFailed, nil, "virt-operator reports DeploymentFailed for %s: %s", to, msg)
		}
		failingSince = time.Time{}
		return hopComplete(k, to), sayAgain, nil
	})
	return e.timeout(err, "hop to %s: last seen %s", to, last)
}

// timeout turns a deadline into a HopTimeout that says what was seen last.
func (e *Executor) timeout(err error, format string, args ...any) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fault.Stalled(ReasonHopTimeout, err, "timed out: "+format, args...)
	}
	return err
}

// plannerTag checks a step's version before it reaches a URL or a patch.
func plannerTag(tag string) error {
	if !planner.ValidTag(tag) {
		return fault.Stalled(release.ReasonManifestRejected, nil, "%s is not a release tag", redact.Quote(tag))
	}
	return nil
}
