package simulator

import (
	"slices"
	"strings"
)

// RealOperatorDifferences lists, in one place, where the simulator knowingly
// differs from KubeVirt's real virt-operator as the real-operator lane
// observes it (test/lane compares a hop and a deletion on both). Each entry
// matches a difference reported by Differ and says why it stays.
var RealOperatorDifferences = []struct{ Match, Reason string }{
	{
		Match:  "only simulator: phase=Deployed target=TO observed=TO ids-match finalizers=[foregroundDeleteKubeVirt] [Available=True/UpdateInProgress Created=True/AllResourcesCreated Degraded=True/UpdateInProgress Progressing=True/UpdateInProgress]",
		Reason: readinessWindow,
	},
}

// readinessWindow: why the lane's real operator never shows the window.
const readinessWindow = "up to v1.8.x the operator copies observed* once every resource is created, before its readiness check (kubevirt.go@v1.8.0; docs/kubevirt.md, What done means): " +
	"on a cluster the window lasts while the new pods become ready; " +
	"the lane's stand-in marks pods ready at once, so the real operator passes its readiness check in the same pass, while the simulator keeps the window (ReadyLag) for the agent's tests"

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

// KnownDifference says whether a difference is listed, and why.
func KnownDifference(d string) (string, bool) {
	for _, k := range RealOperatorDifferences {
		if d == k.Match {
			return k.Reason, true
		}
	}
	return "", false
}
