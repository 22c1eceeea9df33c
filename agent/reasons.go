package agent

import "github.com/kvgitops/kvgitops/fault"

// The reasons the agent gives itself, in the status file (reason, and the
// conditions'), Events and logs: a contract (docs/spec/status.md). Git's,
// the cluster's and the planner's reasons pass through as they are.
const (
	// ReasonUpToDate: the cluster is as desired (phase Succeeded or Idle).
	ReasonUpToDate fault.Reason = "UpToDate"
	// ReasonSuspended: spec.suspend is true; no step starts.
	ReasonSuspended fault.Reason = "Suspended"
	// ReasonClusterUnavailable: the API server cannot be read (phase
	// Unknown); retried with back-off.
	ReasonClusterUnavailable fault.Reason = "ClusterUnavailable"
	// ReasonMemoryUnreadable: the agent's memory in the cluster does not
	// parse (phase Unknown); nothing is done until it is deleted or fixed.
	ReasonMemoryUnreadable fault.Reason = "MemoryUnreadable"
	// ReasonCatalogUnavailable: no release catalog could be read yet
	// (phase Unknown); retried.
	ReasonCatalogUnavailable fault.Reason = "CatalogUnavailable"
	// ReasonSettling: KubeVirt reports the version but is not ready yet;
	// the next step waits.
	ReasonSettling fault.Reason = "Settling"
	// ReasonHopInProgress: a step runs.
	ReasonHopInProgress fault.Reason = "HopInProgress"
	// ReasonWaitingForWorkloads: a hop is done, its VMIs are moving to its
	// virt-launcher.
	ReasonWaitingForWorkloads fault.Reason = "WaitingForWorkloads"
	// ReasonMigrationsInFlight: live migrations run; the next step waits
	// for them (a change of KubeVirt under one can kill its guest).
	ReasonMigrationsInFlight fault.Reason = "MigrationsInFlight"
	// ReasonRetrying: a step failed transiently; retried with back-off.
	ReasonRetrying fault.Reason = "Retrying"
	// ReasonNoProgress: a step succeeded but the cluster did not change;
	// it is not repeated (phase Failed).
	ReasonNoProgress fault.Reason = "NoProgress"
	// ReasonJournalUnavailable: a step's intent cannot be recorded in the
	// agent's memory, so it does not start.
	ReasonJournalUnavailable fault.Reason = "JournalUnavailable"
	// ReasonJournalFull: too many attempts wait to be published in the
	// status file; no step starts until they are.
	ReasonJournalFull fault.Reason = "JournalFull"
	// ReasonDriftDetected: something changed outside kvgitops (under
	// spec.drift Report nothing is applied).
	ReasonDriftDetected fault.Reason = "DriftDetected"
	// ReasonDriftCorrected: a hand-set imageTag or imageRegistry was put
	// back (spec.drift Correct).
	ReasonDriftCorrected fault.Reason = "DriftCorrected"
	// ReasonAwaitingApproval: approval Manual and the plan is not the one
	// spec.approvedPlan names.
	ReasonAwaitingApproval fault.Reason = "AwaitingApproval"
	// ReasonOutsideWindow: no maintenance window is open.
	ReasonOutsideWindow fault.Reason = "OutsideWindow"
	// ReasonWindowTooShort: the open window closes before hopTimeout.
	ReasonWindowTooShort fault.Reason = "WindowTooShort"
)

// Reasons of the agent's own Events.
const (
	EventStepStarted   fault.Reason = "StepStarted"
	EventStepSucceeded fault.Reason = "StepSucceeded"
	EventStepFailed    fault.Reason = "StepFailed"
)
