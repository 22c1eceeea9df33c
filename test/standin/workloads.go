package standin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Labels the stand-in puts on the Pods it makes.
const (
	ownerLabel = "standin.kvgitops.dev/owner"
	hashLabel  = "standin.kvgitops.dev/template-hash"
	nodeName   = "standin-node"
)

func templateHash(t corev1.PodTemplateSpec) string {
	data, _ := json.Marshal(t)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:10]
}

// syncWorkloads is the Deployment, DaemonSet and ReplicaSet controllers and
// the kubelet in one: the Pods of every template exist, Running and Ready;
// Pods of an older template go; the workload status says so.
func (s *Standin) syncWorkloads(ctx context.Context) error {
	deps, err := s.kube.AppsV1().Deployments(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if d.DeletionTimestamp != nil {
			continue
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if err := s.ensurePods(ctx, "Deployment", d.Name, d.UID, d.Spec.Template, int(replicas)); err != nil {
			return err
		}
		st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
			}}
		keepTimes(st.Conditions, d.Status.Conditions)
		if !equality.Semantic.DeepEqual(st, d.Status) {
			d.Status = st
			if _, err := s.kube.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
	}
	dss, err := s.kube.AppsV1().DaemonSets(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range dss.Items {
		ds := &dss.Items[i]
		if ds.DeletionTimestamp != nil {
			continue
		}
		if err := s.ensurePods(ctx, "DaemonSet", ds.Name, ds.UID, ds.Spec.Template, 1); err != nil {
			return err
		}
		st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 1,
			UpdatedNumberScheduled: 1, NumberAvailable: 1}
		if !equality.Semantic.DeepEqual(st, ds.Status) {
			ds.Status = st
			if _, err := s.kube.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
	}
	return s.removeOrphanPods(ctx, deps.Items, dss.Items)
}

func keepTimes(now, old []appsv1.DeploymentCondition) {
	stamp := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range now {
		now[i].LastUpdateTime, now[i].LastTransitionTime = stamp, stamp
		for _, o := range old {
			if o.Type == now[i].Type && o.Status == now[i].Status && o.Reason == now[i].Reason {
				now[i].LastUpdateTime, now[i].LastTransitionTime = o.LastUpdateTime, o.LastTransitionTime
			}
		}
	}
}

// ensurePods makes n Pods of the current template (named after the owner,
// which virt-operator's readiness check relies on) and removes the others.
func (s *Standin) ensurePods(ctx context.Context, kind, name string, uid types.UID, tmpl corev1.PodTemplateSpec, n int) error {
	owner := kind + "-" + name
	hash := templateHash(tmpl)
	pods, err := s.kube.CoreV1().Pods(s.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ownerLabel + "=" + owner})
	if err != nil {
		return err
	}
	have := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels[hashLabel] != hash {
			if err := s.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		have[p.Name] = p
	}
	for i := range n {
		podName := fmt.Sprintf("%s-%s-%d", name, hash[:8], i)
		p, ok := have[podName]
		if !ok {
			labels := map[string]string{ownerLabel: owner, hashLabel: hash}
			for k, v := range tmpl.Labels {
				labels[k] = v
			}
			spec := *tmpl.Spec.DeepCopy()
			spec.NodeName = nodeName
			// The controller reference: virt-operator counts a DaemonSet's
			// updated pods by it (a Deployment's pods would name their
			// ReplicaSet; nothing reads that here).
			ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr(true)}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: s.opts.Namespace, Labels: labels, Annotations: tmpl.Annotations,
				OwnerReferences: []metav1.OwnerReference{ref}}, Spec: spec}
			if p, err = s.kube.CoreV1().Pods(s.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				if apierrors.IsAlreadyExists(err) {
					continue
				}
				return fmt.Errorf("create pod %s: %w", podName, err)
			}
		}
		if p.Status.Phase == corev1.PodRunning {
			continue
		}
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: s.opts.VirtAPIIP, PodIP: s.opts.VirtAPIIP, StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			}}
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true,
				Started: ptr(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
		}
		if _, err := s.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// removeOrphanPods is the garbage collector for Pods whose owner is gone.
func (s *Standin) removeOrphanPods(ctx context.Context, deps []appsv1.Deployment, dss []appsv1.DaemonSet) error {
	owners := map[string]bool{}
	for _, d := range deps {
		owners["Deployment-"+d.Name] = d.DeletionTimestamp == nil
	}
	for _, d := range dss {
		owners["DaemonSet-"+d.Name] = d.DeletionTimestamp == nil
	}
	pods, err := s.kube.CoreV1().Pods(s.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ownerLabel})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if !owners[p.Labels[ownerLabel]] {
			if err := s.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
