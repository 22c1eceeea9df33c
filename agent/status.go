package agent

import (
	"bytes"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// Status file identity.
const (
	StatusAPIVersion = "kvgitops.dev/v1alpha1"
	StatusKind       = "KubeVirtStatus"
	maxHistory       = 10
	MaxStatusSize    = 256 << 10 // a status file larger than this is not read
)

// Phase is the one-word state of the status file.
type Phase string

// Phases (the README, "The status file").
const (
	PhaseIdle             Phase = "Idle"
	PhaseProgressing      Phase = "Progressing"
	PhaseSucceeded        Phase = "Succeeded"
	PhaseFailed           Phase = "Failed"
	PhaseInvalid          Phase = "Invalid"
	PhaseRefused          Phase = "Refused"
	PhaseAwaitingApproval Phase = "AwaitingApproval"
	PhaseWaitingForWindow Phase = "WaitingForWindow"
	// PhaseWaitingForRing: a fleet's earlier rings have not run the version
	// for their soak yet (reason WaitingForRing), or one of them failed
	// (reason RolloutHalted).
	PhaseWaitingForRing Phase = "WaitingForRing"
	PhaseSuspended      Phase = "Suspended"
	// PhaseUnknown: the agent cannot see the cluster or the release catalog,
	// so it cannot tell (reason ClusterUnavailable or CatalogUnavailable).
	PhaseUnknown Phase = "Unknown"
)

// Status is the status file. Field order is the file's key order; rendering
// the same Status twice gives the same bytes.
type Status struct {
	APIVersion      string          `yaml:"apiVersion"`
	Kind            string          `yaml:"kind"`
	Cluster         string          `yaml:"cluster"`
	DesiredRevision string          `yaml:"desiredRevision,omitempty"`
	Desired         *DesiredSummary `yaml:"desired,omitempty"`
	Observed        ObservedSummary `yaml:"observed"`
	Phase           Phase           `yaml:"phase"`
	Reason          string          `yaml:"reason,omitempty"`
	Message         string          `yaml:"message,omitempty"`
	Plan            *PlanStatus     `yaml:"plan,omitempty"`
	Workloads       *Workloads      `yaml:"workloads,omitempty"`
	// Forecast is what the plan's first hop does to the running VMIs.
	Forecast   *planner.WorkloadForecast `yaml:"workloadForecast,omitempty"`
	Conditions []Condition               `yaml:"conditions"`
	History    []Run                     `yaml:"history,omitempty"`
	// Journal is every attempt at a step, newest first: intent and outcome,
	// recorded in the cluster before and after acting, so none is lost.
	Journal []Entry `yaml:"journal,omitempty"`
	// Applied is what kvgitops left the cluster running for the current
	// desired content; Drift what was changed outside kvgitops since.
	Applied *planner.Applied     `yaml:"applied,omitempty"`
	Drift   []planner.Difference `yaml:"drift,omitempty"`
	// Preflight are the checks of a refused plan: why, per step.
	Preflight []planner.Check `yaml:"preflight,omitempty"`
}

// DesiredSummary echoes the desired file.
type DesiredSummary struct {
	State string `yaml:"state"`
	// Ring is this cluster's ring of the fleet file (fleet mode).
	Ring     string `yaml:"ring,omitempty"`
	Version  string `yaml:"version,omitempty"`
	Resolved string `yaml:"resolved,omitempty"`
	Method   string `yaml:"method,omitempty"`
	Approval string `yaml:"approval,omitempty"`
	// Compatibility, Drift and AcceptRisks echo the upgrade-safety
	// settings (shown when not the default); Risks names the repository's
	// risks file when it adds any.
	Compatibility string   `yaml:"compatibility,omitempty"`
	Drift         string   `yaml:"drift,omitempty"`
	AcceptRisks   []string `yaml:"acceptRisks,omitempty"`
	Risks         string   `yaml:"risks,omitempty"`
	Signer        string   `yaml:"signer,omitempty"`
	// SetBy is the signed commit that set the desired content.
	SetBy  string `yaml:"setBy,omitempty"`
	Digest string `yaml:"digest"` // sha256 of the desired file, first 16 hex digits
}

// ObservedSummary is what the cluster runs.
type ObservedSummary struct {
	Version         string `yaml:"version,omitempty"`
	OperatorVersion string `yaml:"operatorVersion,omitempty"`
	Mode            string `yaml:"mode,omitempty"`
	Available       bool   `yaml:"available"`
	Kubernetes      string `yaml:"kubernetes,omitempty"`
}

// PlanStatus is the plan being carried out or awaiting approval.
type PlanStatus struct {
	ID     string       `yaml:"id"`
	Action string       `yaml:"action"`
	From   string       `yaml:"from,omitempty"`
	To     string       `yaml:"to,omitempty"`
	Origin *PlanOrigin  `yaml:"origin,omitempty"`
	Steps  []StepStatus `yaml:"steps"`
	// Checks are the preflight checks of every step and their outcomes.
	Checks []planner.Check `yaml:"checks,omitempty"`
}

// PlanOrigin is the observed state the plan was computed from.
type PlanOrigin struct {
	Installed       string `yaml:"installed,omitempty"`
	Mode            string `yaml:"mode,omitempty"`
	OperatorVersion string `yaml:"operatorVersion,omitempty"`
	KubeVirt        bool   `yaml:"kubevirt,omitempty"`
	Terminating     bool   `yaml:"terminating,omitempty"`
	OperatorPresent bool   `yaml:"operatorPresent,omitempty"`
	Workloads       bool   `yaml:"workloads,omitempty"`
	Strategy        string `yaml:"uninstallStrategy,omitempty"`
	Leftovers       bool   `yaml:"leftovers,omitempty"`
	// Kubernetes and FeatureGates feed the preflight checks, so the plan id.
	Kubernetes   string   `yaml:"kubernetes,omitempty"`
	FeatureGates []string `yaml:"featureGates,omitempty"`
}

// StepState is where a step, or an attempt at one in the journal, stands.
type StepState string

// Step states.
const (
	StepPending   StepState = "Pending"
	StepRunning   StepState = "Running"
	StepSucceeded StepState = "Succeeded"
	StepFailed    StepState = "Failed"
	StepSkipped   StepState = "Skipped" // no longer needed when its turn came
)

// RunResult is how a plan ended, in the history.
type RunResult string

// Run results.
const (
	RunSucceeded  RunResult = "Succeeded"
	RunFailed     RunResult = "Failed"
	RunSuperseded RunResult = "Superseded" // another plan replaced it before it ended
)

// StepStatus is one step with how it went.
type StepStatus struct {
	Type          string     `yaml:"type"`
	From          string     `yaml:"from,omitempty"`
	To            string     `yaml:"to,omitempty"`
	Method        string     `yaml:"method,omitempty"`
	State         StepState  `yaml:"state"`
	StartedAt     *Timestamp `yaml:"startedAt,omitempty"`
	FinishedAt    *Timestamp `yaml:"finishedAt,omitempty"`
	OperatorFirst bool       `yaml:"operatorFirst,omitempty"`
	Notes         []string   `yaml:"notes,omitempty"`
	Message       string     `yaml:"message,omitempty"`
}

// Workloads is the last hop's VMIs (docs/kubevirt.md, "Workload updates"):
// how many ran before and now, moved to the new virt-launcher, are moving,
// are still outdated; the ones that will not move, were shut down or
// restarted (as the desired file accepted), or were disrupted although it
// did not — counted, the first 20 of each named.
type Workloads struct {
	RunningBefore int        `yaml:"runningBefore" json:"runningBefore"`
	RunningNow    int        `yaml:"runningNow" json:"runningNow"`
	Moved         int        `yaml:"moved" json:"moved"`
	Moving        NamedCount `yaml:"moving,omitempty" json:"moving,omitzero"`
	Outdated      NamedCount `yaml:"outdated,omitempty" json:"outdated,omitzero"`
	CannotMove    NamedCount `yaml:"cannotMove,omitempty" json:"cannotMove,omitzero"`
	ShutDown      NamedCount `yaml:"shutDown,omitempty" json:"shutDown,omitzero"`
	Restarted     NamedCount `yaml:"restarted,omitempty" json:"restarted,omitzero"`
	Disrupted     NamedCount `yaml:"disrupted,omitempty" json:"disrupted,omitzero"`
	Note          string     `yaml:"note,omitempty" json:"note,omitempty"`
}

// NamedCount counts VMIs and names the first of them.
type NamedCount struct {
	Count int      `yaml:"count" json:"count"`
	Names []string `yaml:"names,omitempty" json:"names,omitempty"`
}

// Condition is a kstatus-style condition.
type Condition struct {
	Type               string    `yaml:"type"`
	Status             string    `yaml:"status"`
	Reason             string    `yaml:"reason"`
	Message            string    `yaml:"message,omitempty"`
	LastTransitionTime Timestamp `yaml:"lastTransitionTime"`
}

// Run is a finished plan in the history, newest first.
type Run struct {
	PlanID     string    `yaml:"planID"`
	Action     string    `yaml:"action"`
	From       string    `yaml:"from,omitempty"`
	To         string    `yaml:"to,omitempty"`
	Result     RunResult `yaml:"result"`
	Steps      int       `yaml:"steps"`
	StartedAt  Timestamp `yaml:"startedAt"`
	FinishedAt Timestamp `yaml:"finishedAt"`
	Message    string    `yaml:"message,omitempty"`
}

// Timestamp renders as RFC 3339 UTC to the second.
type Timestamp struct{ time.Time }

// NewTimestamp truncates to the second.
func NewTimestamp(t time.Time) Timestamp { return Timestamp{t.UTC().Truncate(time.Second)} }

func ts(t time.Time) *Timestamp {
	s := NewTimestamp(t)
	return &s
}

// MarshalYAML writes RFC 3339.
func (t Timestamp) MarshalYAML() (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	return t.UTC().Format(time.RFC3339), nil
}

// UnmarshalYAML reads RFC 3339.
func (t *Timestamp) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!null" {
		*t = Timestamp{}
		return nil
	}
	v, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*t = NewTimestamp(v)
	return nil
}

// IsZero lets omitempty drop an unset time.
func (t Timestamp) IsZero() bool { return t.Time.IsZero() }

// Render writes the status file. Every free-text field is sanitised first,
// so nothing echoed from a server or a file can inject lines, escapes or
// documents into it.
func Render(s Status) ([]byte, error) {
	s.APIVersion, s.Kind = StatusAPIVersion, StatusKind
	s.Message = redact.Text(s.Message, redact.MaxMessage)
	if s.Plan != nil {
		p := *s.Plan
		p.Steps = append([]StepStatus(nil), p.Steps...)
		for i := range p.Steps {
			p.Steps[i].Message = redact.Text(p.Steps[i].Message, redact.MaxMessage)
			notes := make([]string, len(p.Steps[i].Notes))
			for j, n := range p.Steps[i].Notes {
				notes[j] = redact.Text(n, redact.MaxMessage)
			}
			p.Steps[i].Notes = notes
		}
		s.Plan = &p
	}
	conds := append([]Condition(nil), s.Conditions...)
	for i := range conds {
		conds[i].Message = redact.Text(conds[i].Message, redact.MaxMessage)
	}
	s.Conditions = conds
	hist := append([]Run(nil), s.History...)
	for i := range hist {
		hist[i].Message = redact.Text(hist[i].Message, redact.MaxMessage)
	}
	s.History = hist
	if s.Workloads != nil {
		w := *s.Workloads
		w.Note = redact.Text(w.Note, redact.MaxMessage)
		s.Workloads = &w
	}
	var b bytes.Buffer
	b.WriteString("# Written by kvgitops. Edits are overwritten; change the desired file instead.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ParseStatus reads a status file back (strict: unknown fields rejected).
func ParseStatus(data []byte) (Status, error) { return parseStatus(data, true) }

// ParsePeerStatus reads another cluster's status file, which an agent of
// a newer version may have written: fields it does not know are ignored
// within the same apiVersion (docs/compatibility.md).
func ParsePeerStatus(data []byte) (Status, error) { return parseStatus(data, false) }

func parseStatus(data []byte, strict bool) (Status, error) {
	var s Status
	if len(data) > MaxStatusSize {
		return s, fmt.Errorf("status file is %d bytes, over %d", len(data), MaxStatusSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(strict)
	if err := dec.Decode(&s); err != nil {
		return Status{}, fmt.Errorf("status file: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Status{}, fmt.Errorf("status file: more than one document")
	}
	if s.APIVersion != StatusAPIVersion || s.Kind != StatusKind {
		return Status{}, fmt.Errorf("status file: not a %s %s", StatusAPIVersion, StatusKind)
	}
	return s, nil
}
