package executor

import (
	"errors"

	"github.com/kvgitops/kvgitops/fault"
)

// Reasons of cluster failures, in the one error shape of package fault
// (the release supply's are package release's).
const (
	ReasonStalePlan             fault.Reason = "StalePlan"
	ReasonHopTimeout            fault.Reason = "HopTimeout"
	ReasonHopFailed             fault.Reason = "HopFailed"
	ReasonOperatorRolloutFailed fault.Reason = "OperatorRolloutFailed"
	ReasonWorkloadDisrupted     fault.Reason = "WorkloadDisrupted"
	ReasonUninstallBlocked      fault.Reason = "UninstallBlocked"
	ReasonStuckDeleting         fault.Reason = "StuckDeleting"
	ReasonWebhookUnavailable    fault.Reason = "WebhookUnavailable"
	ReasonAPIUnavailable        fault.Reason = "APIUnavailable"
	ReasonForbidden             fault.Reason = "Forbidden"
	ReasonAPIVersionNotServed   fault.Reason = "APIVersionNotServed"
	ReasonInvalidStep           fault.Reason = "InvalidStep"
	ReasonWorkloadsOutdated     fault.Reason = "WorkloadsOutdated"
	ReasonNamespaceTerminating  fault.Reason = "NamespaceTerminating"
	ReasonTeardownIncomplete    fault.Reason = "TeardownIncomplete"
	// ReasonRestoreRefused: drift correction was asked to write a value
	// kvgitops never writes (another registry, another release's tag).
	ReasonRestoreRefused fault.Reason = "RestoreRefused"
	// ReasonMigrationsInFlight: live migrations run; KubeVirt is not
	// changed under them (transient: tried again next pass).
	ReasonMigrationsInFlight fault.Reason = "MigrationsInFlight"
	// ReasonConfigRefused: the cluster refused the KubeVirt CR settings of
	// spec.kubevirtConfig (a field its KubeVirt does not know).
	ReasonConfigRefused fault.Reason = "ConfigRefused"
)

// ErrStalePlan is returned when the cluster no longer matches the state a
// step was planned from. Re-plan.
var ErrStalePlan = errors.New("stale plan")
