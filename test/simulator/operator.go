package simulator

import (
	"context"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runningOperator is the operator whose pods are ready and acting: the
// release it runs (version), and what a CR naming no tag or registry gets
// from it (target, registry), read as virt-operator reads its image.
type runningOperator struct {
	version, target, registry string
	image, prefix             string
}

// operatorState tracks the virt-operator Deployment's rollout.
type operatorState struct {
	gen               int64
	version, registry string
	readyAt           time.Time
	running           *runningOperator
}

// syncOperator follows the virt-operator Deployment: a new generation rolls
// out for RolloutDelay (forever when its version crash-loops) while the
// previous pods keep acting. It returns the operator that acts, or nil.
func (s *Simulator) syncOperator(ctx context.Context) (*runningOperator, error) {
	dep, err := s.kube.AppsV1().Deployments(s.opts.Namespace).Get(ctx, "virt-operator", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.mu.Lock()
		if s.op.gen != 0 {
			s.record(OperatorGone, runningVersion(s.op.running), "", "virt-operator Deployment deleted")
		}
		s.op = operatorState{}
		s.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := operatorContainer(dep)
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	read := readOperatorImage(c.Image, env)
	version, registry := read.binary, read.registry
	now := time.Now()

	s.mu.Lock()
	if dep.Generation != s.op.gen {
		prev := s.op.running
		alreadyRolled := s.op.gen == 0 && deploymentReady(dep)
		s.op = operatorState{gen: dep.Generation, version: version, registry: registry, readyAt: now.Add(s.opts.RolloutDelay), running: prev}
		if alreadyRolled {
			s.op.readyAt = now
		} else {
			s.record(OperatorRolloutStarted, runningVersion(prev), version, "virt-operator Deployment generation "+strconv.FormatInt(dep.Generation, 10))
			s.pokeAfter(s.opts.RolloutDelay)
		}
	}
	crash := s.faults.crashLoop[version] || read.image == "" // VerifyEnv: no image env, no operator
	switch {
	case crash && !s.op.readyAt.IsZero() && !now.Before(s.op.readyAt):
		s.record(OperatorCrashLooping, runningVersion(s.op.running), version, "virt-operator pods at "+version+" are in CrashLoopBackOff")
		s.op.readyAt = time.Time{} // report once
	case !crash && !s.op.readyAt.IsZero() && !now.Before(s.op.readyAt):
		if s.op.running == nil || s.op.running.version != version || s.op.running.registry != registry || s.op.running.image != read.image {
			s.op.running = &runningOperator{version: version, target: read.version, registry: registry, image: read.image, prefix: read.prefix}
			s.record(OperatorReady, "", version, "virt-operator rolled out")
			for _, h := range s.hops { // a new operator process starts with a fresh work queue
				h.retryAt, h.failures = time.Time{}, 0
			}
		}
	}
	running := s.op.running
	rolledOut := running != nil && running.version == version && !crash
	s.mu.Unlock()

	status := rolloutStatus(dep, rolledOut, crash, running != nil)
	if !equality.Semantic.DeepEqual(status, dep.Status) {
		dep.Status = status
		if _, err := s.kube.AppsV1().Deployments(dep.Namespace).UpdateStatus(ctx, dep, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
	}
	if running == nil {
		return nil, nil
	}
	r := *running
	return &r, nil
}

func runningVersion(r *runningOperator) string {
	if r == nil {
		return ""
	}
	return r.version
}

func operatorContainer(dep *appsv1.Deployment) corev1.Container {
	cs := dep.Spec.Template.Spec.Containers
	for _, c := range cs {
		if c.Name == "virt-operator" {
			return c
		}
	}
	if len(cs) > 0 {
		return cs[0]
	}
	return corev1.Container{}
}

func deploymentReady(dep *appsv1.Deployment) bool {
	r := replicas(dep)
	return dep.Status.ObservedGeneration == dep.Generation && dep.Status.UpdatedReplicas == r && dep.Status.AvailableReplicas == r
}

func replicas(dep *appsv1.Deployment) int32 {
	if dep.Spec.Replicas == nil {
		return 1
	}
	return *dep.Spec.Replicas
}

// rolloutStatus is what the Deployment controller would write: ready once
// rolled out; one new pod that never becomes available when crash-looping
// (with old pods still serving if there were any); otherwise in progress.
func rolloutStatus(dep *appsv1.Deployment, rolledOut, crash, oldServing bool) appsv1.DeploymentStatus {
	r := replicas(dep)
	st := appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: r}
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated"}
	available := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable"}
	switch {
	case rolledOut:
		st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = r, r, r
		progressing.Reason = "NewReplicaSetAvailable"
		available.Status, available.Reason = corev1.ConditionTrue, "MinimumReplicasAvailable"
	case crash:
		st.Replicas, st.UpdatedReplicas, st.UnavailableReplicas = r+1, 1, 1
		if oldServing {
			st.ReadyReplicas, st.AvailableReplicas = r, r
			available.Status, available.Reason = corev1.ConditionTrue, "MinimumReplicasAvailable"
		}
		progressing.Status, progressing.Reason = corev1.ConditionFalse, "ProgressDeadlineExceeded"
		progressing.Message = `ReplicaSet "virt-operator" has timed out progressing: container virt-operator is in CrashLoopBackOff`
	default:
		if oldServing {
			st.ReadyReplicas, st.AvailableReplicas = r, r
			available.Status, available.Reason = corev1.ConditionTrue, "MinimumReplicasAvailable"
		}
		st.UnavailableReplicas = r - st.AvailableReplicas
	}
	// Keep the transition times of conditions that did not change, so an
	// unchanged rollout is not rewritten on every pass.
	for _, c := range []*appsv1.DeploymentCondition{&available, &progressing} {
		for _, old := range dep.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
				c.LastUpdateTime, c.LastTransitionTime = old.LastUpdateTime, old.LastTransitionTime
			}
		}
		if c.LastTransitionTime.IsZero() {
			now := metav1.NewTime(time.Now().Truncate(time.Second))
			c.LastUpdateTime, c.LastTransitionTime = now, now
		}
	}
	st.Conditions = []appsv1.DeploymentCondition{available, progressing}
	return st
}
