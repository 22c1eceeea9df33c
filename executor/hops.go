package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
	"github.com/kvgitops/kvgitops/release"
)

// hop carries one upgrade step through its method: one function per
// method, sharing the moves they are made of.
type hop struct {
	e    *Executor
	ctx  context.Context
	obs  *Observation
	step planner.Step
	say  progress
	res  *StepResult
}

// hopBy is how each planned method runs a hop: the one place the executor
// knows the methods (planner/method.go knows everything else about them).
var hopBy = map[planner.Method]func(*hop) error{
	planner.MethodOperator:             (*hop).byOperator,
	planner.MethodOperatorThenImageTag: (*hop).byOperatorThenImageTag,
	planner.MethodImageTag:             (*hop).byImageTag,
}

func (h *hop) apiVersion() string { return h.obs.KubeVirtVersion }

// byOperator applies the target's operator manifest with the CR locked to
// it. A pinned imageTag is removed: first when it equals what the running
// operator runs (so the new operator never meets a pin to another version,
// which a buggy operator would install with its own manifests), after the
// apply otherwise (unpinning first would move the CR to an older operator).
func (h *hop) byOperator() error {
	kv := h.obs.KubeVirt
	unpinFirst := kv.ImageTag != "" && h.obs.Operator != nil && h.obs.Operator.Version == kv.ImageTag
	if unpinFirst {
		if err := h.unpin(); err != nil {
			return err
		}
	}
	if err := h.applyOperator(); err != nil {
		return err
	}
	if kv.ImageTag != "" && !unpinFirst {
		if err := h.unpin(); err != nil {
			return err
		}
	}
	// The new operator does the hop: one that never becomes available
	// (a crash loop, a bad image) fails it with the Deployment's reason
	// instead of a timeout an hour later.
	if err := h.e.waitOperatorRollout(h.ctx, h.step.To, h.say); err != nil {
		return err
	}
	return h.e.waitHop(h.ctx, h.apiVersion(), h.step.To, h.say)
}

// byOperatorThenImageTag applies the operator, waits for its rollout, then
// moves the pinned tag to the target.
func (h *hop) byOperatorThenImageTag() error {
	if err := h.applyOperator(); err != nil {
		return err
	}
	if err := h.e.waitOperatorRollout(h.ctx, h.step.To, h.say); err != nil {
		return err
	}
	if err := h.setTag(); err != nil {
		return err
	}
	return h.e.waitHop(h.ctx, h.apiVersion(), h.step.To, h.say)
}

// byImageTag moves spec.imageTag under the running operator. When that
// operator lacks RBAC the target needs (docs/kubevirt.md, "Update methods"), the target's operator
// is applied first and the hop proceeds.
func (h *hop) byImageTag() error {
	err := h.setTag()
	if err == nil {
		err = h.e.waitHop(h.ctx, h.apiVersion(), h.step.To, h.say)
	}
	var rbac *errRBAC
	if !errors.As(err, &rbac) {
		return err
	}
	h.say.say("the running virt-operator lacks RBAC that %s needs; updating the operator first", h.step.To)
	h.res.OperatorFirst = true
	h.res.Notes = append(h.res.Notes, "operator updated first: the running virt-operator was "+rbacMarker+" for "+h.step.To+": "+redact.Text(rbac.msg, 300))
	if h.e.cfg.Releases == nil {
		return fault.Stalled(ReasonHopFailed, nil, "%s", rbac.msg)
	}
	if err := h.applyOperator(); err != nil {
		return err
	}
	if err := h.e.waitOperatorRollout(h.ctx, h.step.To, h.say); err != nil {
		return err
	}
	return h.e.waitHopRBAC(h.ctx, h.apiVersion(), h.step.To, false, rbac.msg, h.say)
}

func (h *hop) applyOperator() error {
	if h.e.cfg.Releases == nil {
		return fault.Stalled(release.ReasonMirrorUnavailable, nil, "no release client configured")
	}
	h.say.say("fetching kubevirt-operator.yaml of %s", h.step.To)
	m, err := h.e.cfg.Releases.OperatorManifest(h.ctx, h.step.To, h.e.cfg.Namespace)
	if err != nil {
		return err
	}
	h.say.say("applying kubevirt-operator.yaml of %s (sha256 %s)", h.step.To, m.SHA256)
	if err := h.e.applyManifest(h.ctx, m); err != nil {
		return err
	}
	h.res.Notes = append(h.res.Notes, fmt.Sprintf("applied kubevirt-operator.yaml of %s (sha256 %s)", h.step.To, m.SHA256))
	return nil
}

func (h *hop) setTag() error {
	h.say.say("patching spec.imageTag to %s", h.step.To)
	return h.e.patchKubeVirt(h.ctx, h.apiVersion(), func(k *KubeVirtState) []map[string]any {
		if k.ImageTag == h.step.To {
			return nil
		}
		return []map[string]any{{"op": "add", "path": "/spec/imageTag", "value": h.step.To}}
	})
}

func (h *hop) unpin() error {
	h.say.say("removing the pinned spec.imageTag %s", h.obs.KubeVirt.ImageTag)
	return h.e.patchKubeVirt(h.ctx, h.apiVersion(), func(k *KubeVirtState) []map[string]any {
		if k.ImageTag == "" {
			return nil
		}
		return []map[string]any{{"op": "remove", "path": "/spec/imageTag"}}
	})
}
