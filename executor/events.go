package executor

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/redact"
)

// Event records a Kubernetes Event about KubeVirt: on the KubeVirt CR when
// there is one, else on KubeVirt's Namespace (cluster-scoped objects'
// events live in "default"). It is best effort: a failure is dropped, as an
// event is never worth failing a step for.
func (e *Executor) Event(ctx context.Context, warning bool, reason fault.Reason, message string) {
	ctx, cancel := e.call(ctx)
	defer cancel()
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: e.cfg.Namespace}
	ns := metav1.NamespaceDefault
	if v, err := e.kubevirtAPIVersion(ctx); err == nil && v != "" {
		if kv, _, _, err := e.observeKubeVirt(ctx, v); err == nil && kv != nil {
			ref = corev1.ObjectReference{APIVersion: "kubevirt.io/" + v, Kind: "KubeVirt", Namespace: kv.Namespace, Name: kv.Name, UID: types.UID(kv.UID)}
			ns = kv.Namespace
		}
	}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: "kvgitops-", Namespace: ns},
		InvolvedObject:      ref,
		Reason:              string(reason),
		Message:             redact.Text(message, 1024),
		Type:                typ,
		Source:              corev1.EventSource{Component: e.cfg.FieldManager},
		ReportingController: "kvgitops.dev/agent",
		ReportingInstance:   e.cfg.FieldManager,
		Action:              string(reason),
		FirstTimestamp:      now,
		LastTimestamp:       now,
		EventTime:           metav1.NewMicroTime(now.Time),
		Count:               1,
	}
	if _, err := e.kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		e.log.Debug("Event not recorded", "reason", reason, "error", err)
	}
}
