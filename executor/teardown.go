package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// deleteKubeVirt deletes the CR (UID precondition) and waits until it is
// gone, saying what the deletion waits for. The uninstallStrategy denial
// and a CR stuck without its operator are terminal, with the way out in the
// message.
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
		return e.stuck(ctx, kv)
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
			return fault.Stalled(ReasonUninstallBlocked, err, "virt-operator refused the uninstall (uninstallStrategy %s): %s", redact.OrDash(kv.UninstallStrategy), err.Error())
		case isWebhookCallFailure(err) && obs.Operator == nil:
			return fault.Stalled(ReasonWebhookUnavailable, err, "virt-operator is gone and its fail-closed virt-operator-validator rejects deleting the CR; restore the operator, or set spec.teardown.removeStuckFinalizers: true to let kvgitops delete the webhook and finish: %s", err.Error())
		default:
			return apiError(err, "delete the KubeVirt CR")
		}
	}
	res.Notes = append(res.Notes, "KubeVirt CR deleted")
	return e.waitGone(ctx, obs.KubeVirtVersion, operatorGone, say)
}

// waitGone waits until the CR no longer exists, saying what the operator's
// deletion waits for (VMIs shutting down, CRDs terminating). When the
// operator is gone too, nothing will remove its finalizer: that is
// reported at once.
func (e *Executor) waitGone(ctx context.Context, apiVersion string, operatorGone func() bool, say progress) error {
	say.say("waiting for the KubeVirt CR to be deleted")
	last, said := "", ""
	err := e.watchObject(ctx, e.dyn.Resource(kubevirtGVR(apiVersion)).Namespace(e.cfg.Namespace), "kubevirt", func(u *unstructured.Unstructured) (bool, time.Duration, error) {
		if u == nil {
			return true, 0, nil
		}
		k := kubeVirtState(u)
		if k.Deleting && len(k.Finalizers) > 0 && operatorGone() {
			return false, 0, e.stuck(ctx, k)
		}
		last = fmt.Sprintf("phase %s, finalizers %v", redact.OrDash(k.Phase), k.Finalizers)
		if what := e.deletionProgress(ctx); what != "" {
			last += "; " + what
		}
		if last != said {
			say.say("waiting for the KubeVirt CR to be deleted: %s", last)
			said = last
		}
		return false, 2 * time.Second, nil // re-check the operator and the cascade now and then
	})
	return e.timeout(err, "the KubeVirt CR was not deleted: last seen %s", last)
}

// deletionProgress says what a deletion is waiting for: VMIs shutting down
// and KubeVirt CRDs terminating.
func (e *Executor) deletionProgress(ctx context.Context) string {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	var parts []string
	if w, err := e.observeWorkloads(ctx1); err == nil {
		n := 0
		for _, v := range w.VMIs {
			if v.Deleting {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d VMIs terminating", n))
		}
	}
	if rs, err := e.observeRemnants(ctx1); err == nil {
		var crds []string
		for _, r := range rs {
			if r.Kind == "CustomResourceDefinition" && r.Deleting {
				crds = append(crds, r.Name)
			}
		}
		if len(crds) > 0 {
			parts = append(parts, "CRDs terminating: "+listSome(crds))
		}
	}
	return strings.Join(parts, "; ")
}

// stuck explains a deletion that cannot finish: virt-operator is gone and
// holds the CR (and maybe its CRDs) by finalizers only it removes.
func (e *Executor) stuck(ctx context.Context, k *KubeVirtState) error {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	what := fmt.Sprintf("the KubeVirt CR is stuck Terminating with finalizers %v", k.Finalizers)
	if rs, err := e.observeRemnants(ctx1); err == nil {
		if crds := stuckCRDs(rs); len(crds) > 0 {
			what += fmt.Sprintf(" and CRDs %s with %s", listSome(crds), CRDFinalizer)
		}
	}
	return fault.Stalled(ReasonStuckDeleting, nil,
		"%s: virt-operator is gone, so nothing will remove them; set spec.teardown.removeStuckFinalizers: true to let kvgitops remove them (it deletes virt-operator-validator first)", what)
}

// removeStuckFinalizers is the documented remediation (docs/teardown.md),
// only when virt-operator is really gone: delete virt-operator-validator,
// then JSON-patch the CR's finalizers away, then release the KubeVirt CRDs
// the operator left Terminating on its own finalizer.
func (e *Executor) removeStuckFinalizers(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	crds := stuckCRDs(obs.Remnants)
	switch {
	case obs.Operator != nil:
		return stale("finalizer removal planned, but virt-operator is running and will finish the deletion")
	case kv == nil && len(crds) == 0 && len(obs.stuck) == 0:
		res.AlreadyDone = true
		return nil
	}
	if len(obs.stuck) > 0 {
		say.say("removing KubeVirt's finalizers from %d VMIs, VMs and migrations being deleted (virt-controller is gone)", len(obs.stuck))
		released, err := e.releaseWorkloads(ctx, obs.Workloads)
		if len(released) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("removed KubeVirt's finalizers from %d workloads being deleted: %s", len(released), listSome(released)))
		}
		if err != nil {
			return err
		}
	}
	if kv != nil {
		if err := e.releaseCR(ctx, obs, say, res); err != nil {
			return err
		}
	}
	for _, name := range crds {
		say.say("removing %s from the Terminating CRD %s", CRDFinalizer, name)
		if err := e.dropFinalizer(ctx, name, CRDFinalizer); err != nil {
			return err
		}
		res.Notes = append(res.Notes, "released CRD "+name+" from "+CRDFinalizer)
	}
	return nil
}

// releaseCR deletes virt-operator-validator, then the CR (if not yet being
// deleted), then removes the CR's finalizers.
func (e *Executor) releaseCR(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	kv := obs.KubeVirt
	say.say("deleting virt-operator-validator, whose fail-closed webhook rejects every change of the CR now that virt-operator is gone")
	ctx1, cancel := e.call(ctx)
	err := e.dyn.Resource(vwcGVR).Delete(ctx1, "virt-operator-validator", metav1.DeleteOptions{})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete virt-operator-validator")
	}
	if !kv.Deleting {
		say.say("deleting the KubeVirt CR")
		if err := e.throughWebhookRemoval(ctx, say, func() error { return e.deleteCR(ctx, obs.KubeVirtVersion, kv) }); err != nil {
			return err
		}
	}
	if len(kv.Finalizers) > 0 {
		say.say("removing finalizers %v from the KubeVirt CR", kv.Finalizers)
		if err := e.throughWebhookRemoval(ctx, say, func() error { return e.removeCRFinalizers(ctx, obs.KubeVirtVersion) }); err != nil {
			return err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("removed stuck finalizers %v after deleting virt-operator-validator", kv.Finalizers))
	}
	return nil
}

func (e *Executor) removeCRFinalizers(ctx context.Context, apiVersion string) error {
	err := e.patchKubeVirt(ctx, apiVersion, func(k *KubeVirtState) []map[string]any {
		if len(k.Finalizers) == 0 {
			return nil
		}
		return []map[string]any{{"op": "remove", "path": "/metadata/finalizers"}}
	})
	if apierrors.IsNotFound(errors.Unwrap(err)) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (e *Executor) deleteCR(ctx context.Context, apiVersion string, kv *KubeVirtState) error {
	ctx1, cancel := e.call(ctx)
	defer cancel()
	uid := types.UID(kv.UID)
	err := e.dyn.Resource(kubevirtGVR(apiVersion)).Namespace(kv.Namespace).Delete(ctx1, kv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return apiError(err, "delete the KubeVirt CR")
}

// throughWebhookRemoval runs a write that virt-operator-validator, just
// deleted, would reject. The apiserver drops a deleted webhook
// configuration from its admission cache asynchronously, so the first
// attempts may still be sent to it: they are retried, bounded, saying why.
func (e *Executor) throughWebhookRemoval(ctx context.Context, say progress, write func() error) error {
	deadline := time.Now().Add(webhookSettle)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := write()
		if err == nil {
			return nil
		}
		if !isWebhookCallFailure(err) || time.Now().After(deadline) {
			return err
		}
		say.say("the apiserver still calls the deleted virt-operator-validator (its admission cache lags); retrying (attempt %d)", attempt)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// webhookSettle bounds how long a deleted webhook may still be called.
const webhookSettle = 30 * time.Second

// dropFinalizer removes one finalizer from a CRD, with a resourceVersion
// test so a concurrent change is re-read rather than overwritten.
func (e *Executor) dropFinalizer(ctx context.Context, crd, finalizer string) error {
	for attempt := 0; attempt < 5; attempt++ {
		ctx1, cancel := e.call(ctx)
		u, err := e.dyn.Resource(crdGVR).Get(ctx1, crd, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cancel()
			return nil
		}
		if err != nil {
			cancel()
			return apiError(err, "read CRD %s", crd)
		}
		i := slices.Index(u.GetFinalizers(), finalizer)
		if i < 0 {
			cancel()
			return nil
		}
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`, u.GetResourceVersion(), i)
		_, err = e.dyn.Resource(crdGVR).Patch(ctx1, crd, types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: e.cfg.FieldManager})
		cancel()
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsInvalid(err) && !strings.Contains(err.Error(), "test operation") {
			return apiError(err, "remove %s from CRD %s", finalizer, crd)
		}
	}
	return fault.Transient(ReasonAPIUnavailable, nil, "CRD %s kept changing under 5 patch attempts", crd)
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
			return fault.Transient(ReasonAPIUnavailable, nil, "%s %s is still present after deletion", l.kind, l.name)
		} else if !apierrors.IsNotFound(err) {
			return apiError(err, "verify %s %s is gone", l.kind, l.name)
		}
	}
	return nil
}

// deleteOperator removes what is left of KubeVirt once its CR is gone: the
// objects of the installed release's operator manifest (in reverse order;
// the allow-listed names when that manifest cannot be had) and what
// virt-operator created and left behind (its CRDs, component RBAC,
// APIServices, webhooks: found by its managed-by label). Then it verifies
// that nothing is left, waiting for KubeVirt's namespace to finish
// terminating; what cannot be removed is named in a TeardownIncomplete.
func (e *Executor) deleteOperator(ctx context.Context, obs *Observation, step planner.Step, say progress, res *StepResult) error {
	if obs.KubeVirt != nil {
		return stale("operator removal planned, but the KubeVirt CR still exists")
	}
	objs, err := e.operatorObjects(ctx, obs, step, res)
	if err != nil {
		return err
	}
	deleted := 0
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		r, err := e.resourceFor(o)
		if err != nil {
			return err
		}
		ok, err := e.deleteIfPresent(ctx, r.Delete, o.GetKind(), o.GetName(), say)
		if err != nil {
			return err
		}
		if ok {
			deleted++
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("deleted %d objects of the operator manifest", deleted))
	if err := e.deleteRemnants(ctx, obs, say, res); err != nil {
		return err
	}
	return e.verifyAbsent(ctx, say)
}

// operatorObjects are the objects of the installed release's operator
// manifest (the allow-listed names when it cannot be had), with every
// allow-listed object present, whichever release put it there (a
// PriorityClass from a later release, say).
func (e *Executor) operatorObjects(ctx context.Context, obs *Observation, step planner.Step, res *StepResult) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	if planner.ValidTag(step.From) && e.cfg.Releases != nil {
		m, err := e.cfg.Releases.OperatorManifest(ctx, step.From, e.cfg.Namespace)
		switch {
		case err == nil:
			objs = m.Objects
		case !fault.Stalls(err):
			return nil, err
		default:
			res.Notes = append(res.Notes, "operator manifest of "+step.From+" unavailable ("+redact.Text(err.Error(), 200)+"); deleting the known objects by name")
		}
	}
	for _, o := range allowListObjects(e.cfg.Namespace) {
		if slices.Contains(obs.OperatorObjects, o.GetKind()+"/"+o.GetName()) && !slices.ContainsFunc(objs, func(m *unstructured.Unstructured) bool {
			return m.GetKind() == o.GetKind() && m.GetName() == o.GetName()
		}) {
			objs = append([]*unstructured.Unstructured{o}, objs...)
		}
	}
	return objs, nil
}

// deleteRemnants deletes what virt-operator created and left behind.
func (e *Executor) deleteRemnants(ctx context.Context, obs *Observation, say progress, res *StepResult) error {
	removed := 0
	for _, r := range obs.Remnants {
		ok, err := e.deleteIfPresent(ctx, e.dyn.Resource(r.gvr).Delete, r.Kind, r.Name, say)
		if err != nil {
			return err
		}
		if ok {
			removed++
		}
	}
	if removed > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("deleted %d objects virt-operator had created and left behind", removed))
	}
	return nil
}

type deleteFunc func(ctx context.Context, name string, opts metav1.DeleteOptions, sub ...string) error

func (e *Executor) deleteIfPresent(ctx context.Context, del deleteFunc, kind, name string, say progress) (bool, error) {
	say.say("deleting %s %s", kind, name)
	ctx1, cancel := e.call(ctx)
	defer cancel()
	policy := metav1.DeletePropagationBackground
	err := del(ctx1, name, metav1.DeleteOptions{PropagationPolicy: &policy})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, apiError(err, "delete %s %s", kind, name)
}

// verifyAbsent waits until no object of the operator manifest and nothing
// virt-operator created is left (the namespace terminates once its content
// is gone), then reports success; at the deadline it names what is left.
func (e *Executor) verifyAbsent(ctx context.Context, say progress) error {
	var left []string
	said := ""
	for {
		ctx1, cancel := e.call(ctx)
		objs, err := e.observeOperatorObjects(ctx1)
		var rs []Remnant
		if err == nil {
			rs, err = e.observeRemnants(ctx1)
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				return err
			}
		} else {
			left = objs
			for _, r := range rs {
				left = append(left, r.String())
			}
			if len(left) == 0 {
				return nil
			}
			if err := e.heldWorkloads(ctx, rs); err != nil {
				return err
			}
			if msg := listSome(left); msg != said {
				say.say("waiting for %d objects of KubeVirt to go: %s", len(left), msg)
				said = msg
			}
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fault.Stalled(ReasonTeardownIncomplete, err, "KubeVirt is not gone: %d objects are left after the teardown: %s", len(left), listSome(left))
		}
	}
}

// heldWorkloads: a KubeVirt CRD being deleted waits for its instances; with
// virt-controller gone, those holding KubeVirt's finalizers never go.
// Said at once (transient: the next plan names them and, with
// spec.teardown.removeStuckFinalizers, releases them) instead of waiting
// out the deadline.
func (e *Executor) heldWorkloads(ctx context.Context, rs []Remnant) error {
	if !slices.ContainsFunc(rs, func(r Remnant) bool { return r.Kind == "CustomResourceDefinition" && r.Deleting }) {
		return nil
	}
	ctx1, cancel := e.call(ctx)
	defer cancel()
	w, err := e.observeWorkloads(ctx1)
	if err != nil || len(w.stuck()) == 0 {
		return err
	}
	if running, err := e.controllerRunning(ctx1); err != nil || running {
		return err
	}
	stuck := w.stuck()
	names := make([]string, 0, len(stuck))
	for _, s := range stuck {
		names = append(names, s.String())
	}
	return fault.Transient(ReasonTeardownIncomplete, nil, "%d VMIs, VMs or migrations are stuck Terminating on KubeVirt's finalizers with virt-controller gone: %s",
		len(names), listSome(names))
}

// waitNamespaceGone lets an install that follows a teardown wait for
// KubeVirt's namespace to finish terminating: objects cannot be created in
// a Terminating namespace. Still terminating at the deadline is transient.
func (e *Executor) waitNamespaceGone(ctx context.Context, say progress) error {
	said := false
	for {
		ctx1, cancel := e.call(ctx)
		ns, err := e.kube.CoreV1().Namespaces().Get(ctx1, e.cfg.Namespace, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return apiError(err, "read namespace %s", e.cfg.Namespace)
		case ns.DeletionTimestamp == nil:
			return nil
		}
		if !said {
			say.say("namespace %s is still terminating from a teardown; waiting for it to go before installing", e.cfg.Namespace)
			said = true
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fault.Transient(ReasonNamespaceTerminating, err, "namespace %s is still terminating; the install will be retried", e.cfg.Namespace)
		}
	}
}

func allowListObjects(namespace string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, a := range release.Kinds {
		if a.GVK == release.CRDv1beta1 {
			continue // the same CRD as v1
		}
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(a.GVK)
		name := a.Name
		if a.GVK.Kind == "Namespace" {
			name = namespace
		}
		o.SetName(name)
		if a.Namespaced {
			o.SetNamespace(namespace)
		}
		out = append(out, o)
	}
	return out
}
