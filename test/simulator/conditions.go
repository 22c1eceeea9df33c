package simulator

import (
	"fmt"
	"time"
)

type cond struct{ typ, status, reason, message string }

// situation is what a pass of the operator found.
type situation int

const (
	installing situation = iota
	updating
	ready
	failed
	deleting
)

type condInput struct {
	op                     string // running operator version: decides the condition set
	target, targetRegistry string
	obs, obsRegistry       string
	err                    string
	// created: every resource of the target is created but the readiness
	// check has not passed (up to v1.8.x): Created=True beside the rest.
	created bool
}

// conditionsFor computes the conditions of a pass from scratch, as the
// operator does (docs/kubevirt.md, "What done means").
func conditionsFor(s situation, in condInput) []cond {
	if !atLeast(in.op, "v0.20.0-alpha.0") {
		return legacyConditions(s, in)
	}
	three := func(a, p, d, reason, msg string) []cond {
		return []cond{{"Available", a, reason, msg}, {"Progressing", p, reason, msg}, {"Degraded", d, reason, msg}}
	}
	created := cond{"Created", "True", "AllResourcesCreated", "All resources were created."}
	switch s {
	case installing:
		c := three("False", "True", "False", "DeploymentInProgress",
			fmt.Sprintf("Deploying version %s with registry %s", in.target, in.targetRegistry))
		if in.created {
			c = append(c, created)
		}
		return c
	case updating:
		c := three("True", "True", "True", "UpdateInProgress",
			fmt.Sprintf("Transitioning from previous version %s with registry %s to target version %s using registry %s",
				in.obs, in.obsRegistry, in.target, in.targetRegistry))
		if in.created {
			c = append(c, created)
		}
		return c
	case ready:
		return append(three("True", "False", "False", "AllComponentsReady", "All components are ready."), created)
	case failed:
		msg := "An error occurred during deployment: " + in.err
		return append(three("False", "False", "True", "DeploymentFailed", msg), cond{"Synchronized", "False", "DeploymentFailed", msg})
	default:
		return three("False", "False", "True", "DeletionInProgress", "Deletion was triggered")
	}
}

// legacyConditions are the v0.17–v0.19 set: Created, Ready, Updating,
// Synchronized. v0.17 swapped the arguments of the update message.
func legacyConditions(s situation, in condInput) []cond {
	switch s {
	case updating:
		from, fromReg, to, toReg := in.obs, in.obsRegistry, in.target, in.targetRegistry
		if !atLeast(in.op, "v0.18.0-alpha.0") {
			from, fromReg, to, toReg = to, toReg, from, fromReg
		}
		return []cond{{"Updating", "True", "UpdateInProgress",
			fmt.Sprintf("Transitioning from previous version %s with registry %s to target version %s using registry %s", from, fromReg, to, toReg)}}
	case ready:
		return []cond{{"Created", "True", "AllResourcesCreated", "All resources were created."}, {"Ready", "True", "AllComponentsReady", "All components are ready."}}
	case failed:
		return []cond{{"Synchronized", "False", "DeploymentFailed", "An error occurred during deployment: " + in.err}}
	case installing, deleting: // v0.17–v0.19 show nothing while they install or delete
	}
	return nil
}

// mergeConditions applies the timestamp rules: a new condition gets only
// lastProbeTime; a changed one gets both; an unchanged one keeps its own.
func mergeConditions(old []any, want []cond, now time.Time) []any {
	stamp := now.UTC().Format(time.RFC3339)
	byType := map[string]map[string]any{}
	for _, o := range old {
		if m, ok := o.(map[string]any); ok {
			if t, _ := m["type"].(string); t != "" {
				byType[t] = m
			}
		}
	}
	out := make([]any, 0, len(want))
	for _, w := range want {
		m := map[string]any{"type": w.typ, "status": w.status, "reason": w.reason, "message": w.message}
		prev, had := byType[w.typ]
		switch {
		case had && prev["status"] == w.status && prev["reason"] == w.reason && prev["message"] == w.message:
			m = prev
		case had:
			m["lastProbeTime"], m["lastTransitionTime"] = stamp, stamp
		default:
			m["lastProbeTime"], m["lastTransitionTime"] = stamp, nil
		}
		out = append(out, m)
	}
	return out
}
