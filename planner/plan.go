package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// MaxHops bounds a plan: every KubeVirt line from v0.17 to today with each
// patch of the installed line is well under it; more means a catalog that
// is not KubeVirt's.
const MaxHops = 100

// Action is what a plan does as a whole.
type Action string

// Actions.
const (
	ActionNone     Action = "None"
	ActionInstall  Action = "Install"
	ActionUpgrade  Action = "Upgrade"
	ActionTeardown Action = "Teardown"
	// ActionConfigure: the version is right; the KubeVirt CR's settings
	// are not those of spec.kubevirtConfig.
	ActionConfigure Action = "Configure"
)

// StepType is the kind of one step.
type StepType string

// Step types, in the order a teardown runs them.
const (
	StepInstall               StepType = "Install"
	StepConfigure             StepType = "Configure"
	StepUpgrade               StepType = "Upgrade"
	StepRemoveStuckFinalizers StepType = "RemoveStuckFinalizers"
	StepDeleteKubeVirt        StepType = "DeleteKubeVirt"
	StepDeleteLeftovers       StepType = "DeleteLeftovers"
	StepDeleteOperator        StepType = "DeleteOperator"
)

// Deploys reports whether a step installs or upgrades KubeVirt (the steps
// the preflight checks and the workloads are about).
func (t StepType) Deploys() bool {
	switch t {
	case StepInstall, StepUpgrade:
		return true
	case StepConfigure, StepRemoveStuckFinalizers, StepDeleteKubeVirt, StepDeleteLeftovers, StepDeleteOperator:
	}
	return false
}

// ChangesKubeVirt reports whether a step writes the KubeVirt CR or its
// operator while KubeVirt runs: what must never happen while a live
// migration is in flight (kubevirt#18720).
func (t StepType) ChangesKubeVirt() bool {
	switch t {
	case StepConfigure, StepUpgrade, StepDeleteKubeVirt:
		return true
	case StepInstall, StepRemoveStuckFinalizers, StepDeleteLeftovers, StepDeleteOperator:
	}
	return false
}

// Mode says how the KubeVirt CR picks its version.
type Mode string

// Modes.
const (
	ModeLocked   Mode = "Locked"   // no spec.imageTag: the operand follows the operator
	ModeImageTag Mode = "ImageTag" // spec.imageTag pins the operand
)

// Observed is the part of the cluster's state that planning depends on.
// The executor fills it; tests and `kvgitops plan --installed` build it.
type Observed struct {
	// Installed is the KubeVirt CR's status.observedKubeVirtVersion: the last
	// version completely installed. "" when there is no CR or it has never
	// finished an install.
	Installed string
	// Mode is Locked unless the CR pins spec.imageTag.
	Mode Mode
	// OperatorVersion is the version of the virt-operator Deployment, "" when
	// there is none or its version cannot be told.
	OperatorVersion string
	// KubeVirt reports whether a KubeVirt CR exists, and Terminating whether
	// it carries a deletionTimestamp.
	KubeVirt    bool
	Terminating bool
	// OperatorPresent reports whether the virt-operator Deployment exists.
	OperatorPresent bool
	// Workloads counts VMs and VMIs in the cluster.
	Workloads int
	// UninstallStrategy is the CR's spec.uninstallStrategy.
	UninstallStrategy string
	// Leftovers counts APIServices and webhook configurations an unclean
	// uninstall left behind.
	Leftovers int
	// KubernetesVersion is the API server's version (v1.37.2), "" when
	// unknown: the checks that need it are then not made.
	KubernetesVersion string
	// Managed are the KubeVirt CRs and the virt-operator Deployment with
	// the labels, annotations and owners that say who manages them.
	Managed []ManagedObject
	// StrayKubeVirts names (namespace/name) every KubeVirt CR when
	// virt-operator serves none of them: there is more than one, or the
	// only one is outside its namespace. Empty otherwise.
	StrayKubeVirts []string
	// OperatorObjects counts the objects of the operator manifest still in
	// the cluster (the Namespace and the operator's CRD, roles, bindings,
	// ServiceAccount and Deployment).
	OperatorObjects int
	// Remnants counts what virt-operator created and left behind with no
	// KubeVirt CR (its CRDs, component RBAC, APIServices, webhooks):
	// nothing removes them when the operator is gone.
	Remnants int
	// StuckCRDs counts KubeVirt CRDs stuck Terminating on the operator's
	// finalizer with no operator to remove it.
	StuckCRDs int
	// FeatureGates are the KubeVirt CR's feature gates
	// (spec.configuration.developerConfiguration.featureGates).
	FeatureGates []string
	// ImageTag and ImageRegistry are the CR's spec fields, OperatorImage
	// the virt-operator Deployment's image: what drift is measured on.
	ImageTag, ImageRegistry, OperatorImage string
	// WorkloadsKnown says VMIs were read: VMIs are the running ones, and
	// WorkloadSettings how the CR moves them after a hop.
	WorkloadsKnown   bool
	VMIs             []VMI
	WorkloadSettings WorkloadSettings
	// MigrationsInFlight names (namespace/vmi) the live migrations that
	// have not finished.
	MigrationsInFlight []string
	// KubeVirtSpec is the CR's spec as the cluster holds it (nil without a
	// CR): what a desired kubevirtConfig is compared with.
	KubeVirtSpec map[string]any
	// StuckWorkloads counts VMIs, VMs and migrations being deleted that
	// hold KubeVirt's finalizers while virt-controller, which removes
	// them, is gone; StuckWorkloadNames names the first of them
	// ("VirtualMachineInstance default/db-0").
	StuckWorkloads     int
	StuckWorkloadNames []string
}

// Step is one unit of execution. From and To are release tags.
type Step struct {
	Type   StepType `json:"type"`
	From   string   `json:"from,omitempty"`
	To     string   `json:"to,omitempty"`
	Method Method   `json:"method,omitempty"`
}

// Plan is the result of [Compute]: what to do, and what it was computed from.
// The executor runs its steps in order and refuses a step whose starting
// state no longer matches the cluster.
type Plan struct {
	ID     string `json:"id"`
	Action Action `json:"action"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Steps  []Step `json:"steps"`
	// Checks are the preflight checks of the steps.
	Checks []Check `json:"checks,omitempty"`
	// Forecast is what the first hop does to the running VMIs (nil when
	// there is no hop or the VMIs are unknown).
	Forecast *WorkloadForecast `json:"workloadForecast,omitempty"`

	// The inputs, recorded so a plan can be re-derived and compared.
	Origin        Observed   `json:"-"`
	CatalogDigest string     `json:"-"`
	Version       string     `json:"-"` // spec.version as written
	Policy        PathPolicy `json:"-"`
	Method        Method     `json:"-"`
}

// Continues reports whether p is what remains of q: the same target and
// q's steps end with p's. An approved plan stays approved while it runs.
func (p Plan) Continues(q Plan) bool {
	if p.Action != q.Action || p.To != q.To || len(p.Steps) == 0 || len(p.Steps) > len(q.Steps) {
		return false
	}
	return slices.Equal(p.Steps, q.Steps[len(q.Steps)-len(p.Steps):])
}

// planID digests everything a plan was computed from and what it does.
func planID(p Plan) string {
	h := sha256.New()
	fmt.Fprintf(h, "kvgitops-plan-v1\ncatalog=%s\naction=%s\nfrom=%s\nto=%s\n", p.CatalogDigest, p.Action, p.From, p.To)
	writeOrigin(h, p.Action, p.Origin)
	var b strings.Builder // one write: a long plan has hundreds of lines
	for _, s := range p.Steps {
		b.WriteString("step=" + string(s.Type) + "|" + s.From + "|" + s.To + "|" + string(s.Method) + "\n")
	}
	for _, c := range p.Checks {
		if c.Name == CheckWorkloads || c.Name == CheckMigrationsInFlight {
			continue // the VMIs come and go: an approved plan stays approved (a refusal has no id)
		}
		b.WriteString("check=" + strconv.Itoa(c.Step) + "|" + c.Name + "|" + string(c.Result) + "|" + string(c.Reason) + "\n")
	}
	_, _ = io.WriteString(h, b.String())
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// writeOrigin writes the observed fields that decide the plan. Workload
// counts matter only to a teardown, so VMs starting and stopping do not
// invalidate an approved upgrade.
func writeOrigin(w io.Writer, a Action, o Observed) {
	fmt.Fprintf(w, "installed=%s\nmode=%s\noperator=%s\nkubevirt=%t\nterminating=%t\noperatorPresent=%t\n",
		o.Installed, o.Mode, o.OperatorVersion, o.KubeVirt, o.Terminating, o.OperatorPresent)
	if a == ActionTeardown {
		fmt.Fprintf(w, "workloads=%t\nuninstallStrategy=%s\nleftovers=%t\n", o.Workloads > 0, o.UninstallStrategy, o.Leftovers > 0)
		fmt.Fprintf(w, "operatorObjects=%t\nremnants=%t\nstuckCRDs=%t\n", o.OperatorObjects > 0, o.Remnants > 0, o.StuckCRDs > 0)
	}
}
