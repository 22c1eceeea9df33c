package simulator

import (
	"slices"
	"strings"
	"testing"
)

// Steps of a lifecycle the lanes record on both the real operator and the
// simulator.
const (
	StepInstall     = "install"
	StepOperatorHop = "operator-manifest hop"
	StepImageTagHop = "ImageTag hop"
	StepDeletion    = "the operator's deletion"
	StepLeft        = "objects left after the operator's deletion"
	StepRemoval     = "the agent's removal (state Absent)"
)

// KnownDifferences lists, in one place, where the simulator knowingly
// differs from KubeVirt's real virt-operator as the lanes observe it (the
// stand-in lane, test/lane, and the real node, test/cluster): per step,
// the exact difference Differ reports and why it stays.
var KnownDifferences = []struct{ Step, Match, Reason string }{
	{
		Step:   StepInstall,
		Match:  "only simulator: phase=Deploying target=TO observed=TO ids-match generation-new finalizers=[foregroundDeleteKubeVirt] [Available=False/DeploymentInProgress Created=True/AllResourcesCreated Degraded=False/DeploymentInProgress Progressing=True/DeploymentInProgress]",
		Reason: readinessWindow,
	},
	{
		Step:   StepOperatorHop,
		Match:  "only simulator: phase=Deployed target=TO observed=TO ids-match generation-observed finalizers=[foregroundDeleteKubeVirt] [Available=True/UpdateInProgress Created=True/AllResourcesCreated Degraded=True/UpdateInProgress Progressing=True/UpdateInProgress]",
		Reason: readinessWindow,
	},
	{
		Step:   StepImageTagHop,
		Match:  "only simulator: phase=Deployed target=TO observed=TO ids-match generation-new finalizers=[foregroundDeleteKubeVirt] [Available=True/UpdateInProgress Created=True/AllResourcesCreated Degraded=True/UpdateInProgress Progressing=True/UpdateInProgress]",
		Reason: readinessWindow,
	},
	{
		Step:   StepDeletion,
		Match:  "only real: phase=Deleting target=FROM observed=FROM ids-match generation-new finalizers=[foregroundDeleteKubeVirt] [Available=False/DeletionInProgress Degraded=True/DeletionInProgress Progressing=False/DeletionInProgress Synchronized=False/DeletionFailed]",
		Reason: staleCacheDeletion,
	},
}

// staleCacheDeletion: why the real operator's deletion may pass through a
// failed state the simulator never writes.
const staleCacheDeletion = "virt-operator deletes every CRD its informer cache still lists and returns on any error, NotFound included " +
	"(apply/delete.go crdHandleDeletion), writing Synchronized=False/DeletionFailed (kubevirt.go) and retrying; when its cache lags behind " +
	"a CRD it has already deleted, a pass fails that way and the next one goes on (seen in the lane under make test's load: " +
	"customresourcedefinitions \"virtualmachinerestores.snapshot.kubevirt.io\" not found); the simulator's deletes do not fail, and " +
	"the agent reads a deletion's end from the CR being gone, not from its conditions"

// readinessWindow: why the simulator shows a state on installs and hops
// that the real operator does not write there.
const readinessWindow = "up to v1.8.x virt-operator copies the observed version once its reconciler reports synced and checks readiness after " +
	"(kubevirt.go syncInstallation; docs/kubevirt.md, What done means), but on an install or a version hop the reconciler reports synced " +
	"only once virt-api, virt-controller and virt-handler have rolled over, the same readiness the later check reads (reconcile.go Sync), " +
	"so the real operator goes from in-progress straight to AllComponentsReady: both lanes see that, the real node with pods that take " +
	"a minute to become ready; the state is real on configuration changes; the simulator writes it on every install and hop on purpose, " +
	"an order harsher than KubeVirt's that the agent must survive (it never takes the observed version alone as done)"

// Differ reports how two recordings differ: states or objects only one of
// them has ("only real: …", "only simulator: …"), and common states seen in
// another order ("order: …").
func Differ(real, sim []string) []string {
	var out []string
	for _, r := range real {
		if !slices.Contains(sim, r) {
			out = append(out, "only real: "+r)
		}
	}
	for _, s := range sim {
		if !slices.Contains(real, s) {
			out = append(out, "only simulator: "+s)
		}
	}
	var commonReal, commonSim []string
	for _, r := range real {
		if slices.Contains(sim, r) {
			commonReal = append(commonReal, r)
		}
	}
	for _, s := range sim {
		if slices.Contains(real, s) {
			commonSim = append(commonSim, s)
		}
	}
	if !slices.Equal(commonReal, commonSim) {
		out = append(out, "order: real "+strings.Join(commonReal, " -> ")+"; simulator "+strings.Join(commonSim, " -> "))
	}
	return out
}

// KnownDifference says whether a difference of a step is listed in
// KnownDifferences, and why.
func KnownDifference(step, d string) (string, bool) {
	for _, k := range KnownDifferences {
		if step == k.Step && d == k.Match {
			return k.Reason, true
		}
	}
	return "", false
}

// Compare fails t on every difference of a step between the real
// operator's recording and the simulator's that KnownDifferences does not
// list, and logs the listed ones with their reason.
func Compare(t testing.TB, step string, real, sim []string) {
	t.Helper()
	for _, d := range Differ(real, sim) {
		if reason, ok := KnownDifference(step, d); ok {
			t.Logf("%s: known difference %s (%s)", step, d, reason)
			continue
		}
		t.Errorf("%s: the simulator differs from the real operator: %s\nreal: %q\nsimulator: %q", step, d, real, sim)
	}
}
