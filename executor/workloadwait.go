package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// workloadPoll is how often the workload wait looks at the VMIs.
const workloadPoll = 2 * time.Second

// outdated lists the VMIs that do not run the virt-launcher of version to:
// labelled by virt-controller, or (tagged images) naming another tag. The
// label alone lags behind the hop by one pass of the workload updater.
func outdated(vmis []VMI, to string) []string {
	var out []string
	for _, v := range vmis {
		if v.Deleting {
			continue
		}
		ref := release.ParseImage(v.Launcher)
		if v.Outdated || v.Launcher != "" && ref.Digest == "" && ref.Tag != to {
			out = append(out, v.key())
		}
	}
	return out
}

// waitWorkloads makes a hop finish for running VMs too (docs/kubevirt.md,
// "Workload updates"): with policy Wait (Auto when the CR has
// workloadUpdateMethods) it waits, under its own timeout, until no VMI is
// on an older virt-launcher; with ReportOnly it records how many are and
// that they stay so until restarted.
func (e *Executor) waitWorkloads(ctx context.Context, to string, methods []string, opts StepOptions, say progress, res *StepResult) error {
	w := opts.Workloads
	policy := w.Policy
	if policy == planner.WorkloadsAuto {
		policy = planner.WorkloadsReportOnly
		if len(methods) > 0 {
			policy = planner.WorkloadsWait
		}
	}
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	last := ""
	lastMilestone, milestoneCount := time.Time{}, -1
	for {
		ctx1, cancel1 := e.call(ctx)
		vmis, _, err := e.observeWorkloads(ctx1)
		cancel1()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		res.Workloads.Outdated = outdated(vmis, to)
		n := len(res.Workloads.Outdated)
		if stop, err := settledWorkloads(policy, methods, to, res, say); stop {
			return err
		}
		msg := fmt.Sprintf("waiting for %d VMIs to move to the %s virt-launcher (%s): %s", n, to, strings.Join(methods, ", "), listSome(res.Workloads.Outdated))
		if msg != last {
			say.say("%s", msg)
			last = msg
		}
		// A status commit when the wait starts, then at most one a minute
		// while the count moves.
		if opts.Milestone != nil && n != milestoneCount && time.Since(lastMilestone) >= time.Minute {
			opts.Milestone(msg, res.Workloads)
			lastMilestone, milestoneCount = time.Now(), n
		}
		if err := sleep(ctx, workloadPoll); err != nil {
			break
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fault.Stalled(ReasonWorkloadsOutdated, nil, "%d VMIs still run a virt-launcher older than %s after %s (spec.workloads.timeout): %s",
			len(res.Workloads.Outdated), to, w.Timeout, listSome(res.Workloads.Outdated))
	}
	return ctx.Err()
}

// settledWorkloads decides whether the wait ends: no VMI outdated, or the
// policy reports them instead, or nothing will ever move them.
func settledWorkloads(policy planner.WorkloadPolicy, methods []string, to string, res *StepResult, say progress) (bool, error) {
	n := len(res.Workloads.Outdated)
	switch {
	case n == 0:
		res.Workloads.Note = ""
		return true, nil
	case policy == planner.WorkloadsReportOnly && len(methods) == 0:
		res.Workloads.Note = fmt.Sprintf("%d VMIs run a virt-launcher older than %s and stay so until restarted: the KubeVirt CR has no spec.workloadUpdateStrategy.workloadUpdateMethods", n, to)
		say.say("%s", res.Workloads.Note)
		return true, nil
	case policy == planner.WorkloadsReportOnly:
		res.Workloads.Note = fmt.Sprintf("%d VMIs run a virt-launcher older than %s; virt-controller moves them (%s), not waited for (spec.workloads.policy ReportOnly)", n, to, strings.Join(methods, ", "))
		say.say("%s", res.Workloads.Note)
		return true, nil
	case len(methods) == 0:
		return true, fault.Stalled(ReasonWorkloadsOutdated, nil, "spec.workloads.policy is Wait, but the KubeVirt CR has no spec.workloadUpdateStrategy.workloadUpdateMethods: %d VMIs (%s) stay on a virt-launcher older than %s until restarted; add LiveMigrate or Evict, or set policy ReportOnly",
			n, listSome(res.Workloads.Outdated), to)
	}
	return false, nil
}

// listSome names up to ten items.
func listSome(l []string) string {
	if len(l) <= 10 {
		return strings.Join(l, ", ")
	}
	return strings.Join(slices.Clone(l[:10]), ", ") + fmt.Sprintf(" and %d more", len(l)-10)
}
