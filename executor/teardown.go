package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/planner"
)

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// deleteKubeVirt deletes the CR (UID precondition) and waits until it is
// gone. The uninstallStrategy denial and a CR stuck without its operator are
// terminal, with the way out in the message.
func (e *Executor) deleteKubeVirt(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	if kv == nil {
		res.AlreadyDone = true
		return nil
	}
	operatorGone := func() bool {
		ctx1, cancel := e.call(ctx)
		defer cancel()
		op, err := e.observeOperator(ctx1)
		return err == nil && op == nil
	}
	if kv.Deleting && obs.Operator == nil && len(kv.Finalizers) > 0 {
		return stuck(kv)
	}
	if !kv.Deleting {
		say.say("deleting the KubeVirt CR")
		ctx1, cancel := e.call(ctx)
		uid := types.UID(kv.UID)
		err := e.dyn.Resource(kubevirtGVR(obs.KubeVirtVersion)).Namespace(kv.Namespace).Delete(ctx1, kv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		cancel()
		switch {
		case err == nil || apierrors.IsNotFound(err):
		case strings.Contains(err.Error(), "Rejecting the uninstall request"):
			return terminal(ReasonUninstallBlocked, err, "virt-operator refused the uninstall (uninstallStrategy %s): %s", orDash(kv.UninstallStrategy), err.Error())
		case isWebhookCallFailure(err) && obs.Operator == nil:
			return terminal(ReasonWebhookUnavailable, err, "virt-operator is gone and its fail-closed virt-operator-validator rejects deleting the CR; restore the operator or remove the webhook by hand: %s", err.Error())
		default:
			return apiError(err, "delete the KubeVirt CR")
		}
	}
	res.Notes = append(res.Notes, "KubeVirt CR deleted")
	return e.waitGone(ctx, obs.KubeVirtVersion, operatorGone, say)
}

// removeStuckFinalizers is the documented remediation (FACTS.md §2.4): only
// when the CR is Terminating and the operator is really gone; delete
// virt-operator-validator first, then JSON-patch the finalizers away.
func (e *Executor) removeStuckFinalizers(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	switch {
	case kv == nil:
		res.AlreadyDone = true
		return nil
	case !kv.Deleting:
		return stale("finalizer removal planned, but the KubeVirt CR is not being deleted")
	case obs.Operator != nil:
		return stale("finalizer removal planned, but virt-operator is running and will finish the deletion")
	}
	say.say("deleting virt-operator-validator, whose fail-closed webhook rejects every update of the CR")
	ctx1, cancel := e.call(ctx)
	err := e.dyn.Resource(vwcGVR).Delete(ctx1, "virt-operator-validator", metav1.DeleteOptions{})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete virt-operator-validator")
	}
	say.say("removing finalizers %v from the KubeVirt CR", kv.Finalizers)
	err = e.patchKubeVirt(ctx, obs.KubeVirtVersion, func(k *KubeVirtState) []map[string]any {
		if len(k.Finalizers) == 0 {
			return nil
		}
		return []map[string]any{{"op": "remove", "path": "/metadata/finalizers"}}
	})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	if err != nil {
		return err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("removed stuck finalizers %v after deleting virt-operator-validator", kv.Finalizers))
	return nil
}

// deleteLeftovers removes the APIServices and webhook configurations an
// unclean uninstall leaves, then verifies they are gone. Only after the CR is
// gone: before that, these webhooks protect it.
func (e *Executor) deleteLeftovers(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	if obs.KubeVirt != nil {
		return stale("leftover cleanup planned, but the KubeVirt CR still exists")
	}
	for _, l := range leftoverObjects {
		if !slices.Contains(obs.Leftovers, l.kind+"/"+l.name) {
			continue
		}
		say.say("deleting leftover %s %s", l.kind, l.name)
		ctx1, cancel := e.call(ctx)
		err := e.dyn.Resource(l.gvr).Delete(ctx1, l.name, metav1.DeleteOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			return apiError(err, "delete %s %s", l.kind, l.name)
		}
		res.Notes = append(res.Notes, "deleted leftover "+l.kind+"/"+l.name)
	}
	ctx1, cancel := e.call(ctx)
	defer cancel()
	for _, l := range leftoverObjects {
		if _, err := e.dyn.Resource(l.gvr).Get(ctx1, l.name, metav1.GetOptions{}); err == nil {
			return transient(ReasonAPIUnavailable, nil, "%s %s is still present after deletion", l.kind, l.name)
		} else if !apierrors.IsNotFound(err) {
			return apiError(err, "verify %s %s is gone", l.kind, l.name)
		}
	}
	return nil
}

// deleteOperator deletes the objects of the installed release's operator
// manifest, in reverse order, without waiting. When that manifest cannot be
// had (the tag is unknown or gone from the release host), it deletes the
// allow-listed names, which are the same objects.
func (e *Executor) deleteOperator(ctx context.Context, obs *Observation, step planner.Step, say progress, res *StepResult) error {
	if obs.KubeVirt != nil {
		return stale("operator removal planned, but the KubeVirt CR still exists")
	}
	var objs []*unstructured.Unstructured
	if planner.ValidTag(step.From) && e.cfg.Releases != nil {
		m, err := e.cfg.Releases.OperatorManifest(ctx, step.From, e.cfg.Namespace)
		switch {
		case err == nil:
			objs = m.Objects
		case !IsTerminal(err):
			return err
		default:
			res.Notes = append(res.Notes, "operator manifest of "+step.From+" unavailable ("+planner.Sanitize(err.Error(), 200)+"); deleting the known objects by name")
		}
	}
	if objs == nil {
		objs = allowListObjects(e.cfg.Namespace)
	}
	deleted := 0
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		r, err := e.resourceFor(o)
		if err != nil {
			return err
		}
		say.say("deleting %s %s", o.GetKind(), o.GetName())
		ctx1, cancel := e.call(ctx)
		policy := metav1.DeletePropagationBackground
		err = r.Delete(ctx1, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
		cancel()
		switch {
		case err == nil:
			deleted++
		case apierrors.IsNotFound(err):
		default:
			return apiError(err, "delete %s %s", o.GetKind(), o.GetName())
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("deleted %d objects of the operator manifest", deleted))
	return nil
}

func allowListObjects(namespace string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, a := range operatorAllowList {
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(a.gvk)
		name := a.name
		if a.gvk.Kind == "Namespace" {
			name = namespace
		}
		o.SetName(name)
		if a.namespaced {
			o.SetNamespace(namespace)
		}
		out = append(out, o)
	}
	return out
}
