package standin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncJobs is the Job controller and kubelet for virt-operator's
// install-strategy Jobs: each runs once, with the virt-operator binary of
// its image's tag and its container's environment, and is marked complete
// or failed. The operator deletes finished Jobs with foreground
// propagation, which only a garbage collector would finish: the stand-in
// drops that finalizer.
func (s *Standin) syncJobs(ctx context.Context) error {
	jobs, err := s.kube.BatchV1().Jobs(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.DeletionTimestamp != nil {
			if err := s.dropGCFinalizers(ctx, j); err != nil {
				return err
			}
			continue
		}
		if j.Status.StartTime != nil {
			continue // started (running or finished)
		}
		if err := s.startJob(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

func (s *Standin) dropGCFinalizers(ctx context.Context, j *batchv1.Job) error {
	fs := slices.DeleteFunc(slices.Clone(j.Finalizers), func(f string) bool {
		return f == metav1.FinalizerDeleteDependents || f == metav1.FinalizerOrphanDependents
	})
	if len(fs) == len(j.Finalizers) {
		return nil
	}
	j.Finalizers = fs
	_, err := s.kube.BatchV1().Jobs(j.Namespace).Update(ctx, j, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// startJob marks the Job started and runs its container as a process.
func (s *Standin) startJob(ctx context.Context, j *batchv1.Job) error {
	if len(j.Spec.Template.Spec.Containers) == 0 {
		return nil
	}
	c := j.Spec.Template.Spec.Containers[0]
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	j.Status.StartTime = &now
	j.Status.Active = 1
	updated, err := s.kube.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	s.record("JobStarted", j.Name+" "+c.Image)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.runContainer(ctx, j.Name, c)
		s.finishJob(context.WithoutCancel(ctx), updated, err)
	}()
	return nil
}

// runContainer runs the virt-operator binary of c's image tag with c's
// command line and environment, as the operator's ServiceAccount.
func (s *Standin) runContainer(ctx context.Context, name string, c corev1.Container) error {
	bin, err := s.binary(c.Image)
	if err != nil {
		return err
	}
	args := append(slices.Clone(c.Command[min(1, len(c.Command)):]), c.Args...)
	args = append(args, "--kubeconfig", s.opts.OperatorKubeconfig)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(containerEnv(c), "HOME="+s.dir)
	log, err := os.Create(filepath.Join(s.dir, "job-"+name+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

func (s *Standin) finishJob(ctx context.Context, j *batchv1.Job, runErr error) {
	for attempt := 0; attempt < 20; attempt++ {
		cur, err := s.kube.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
		if err != nil {
			return
		}
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		cur.Status.Active = 0
		if runErr == nil {
			cur.Status.Succeeded, cur.Status.CompletionTime = 1, &now
			cur.Status.Conditions = []batchv1.JobCondition{
				{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now},
				{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now},
			}
		} else {
			cur.Status.Failed = 1
			cur.Status.Conditions = []batchv1.JobCondition{
				{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastProbeTime: now, LastTransitionTime: now},
				{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: fmt.Sprint(runErr), LastProbeTime: now, LastTransitionTime: now},
			}
		}
		_, err = s.kube.BatchV1().Jobs(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			s.record("JobFinished", fmt.Sprintf("%s: %v", j.Name, runErr))
			s.poke()
			return
		}
		if !apierrors.IsConflict(err) {
			s.record("JobStatusFailed", err.Error())
			return
		}
	}
}

// containerEnv turns a container's variables into a process environment;
// values from fields come out empty (nothing sets those annotations here).
func containerEnv(c corev1.Container) []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}
