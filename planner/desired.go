package planner

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"
)

// The desired file's identity.
const (
	DesiredAPIVersion = "kvgitops.dev/v1alpha1"
	DesiredKind       = "KubeVirtDesiredState"
)

// MaxDesiredSize caps the desired file. Larger files are rejected unread.
const MaxDesiredSize = 64 << 10

// Bounds of the durations in the desired file.
const (
	DefaultHopTimeout = 30 * time.Minute
	// MinWorkloadTimeout is the least a sized wait for a hop's VMIs lasts:
	// upstream's own update test allows 500s for a handful of VMIs.
	MinWorkloadTimeout = time.Hour
	// DefaultWorkloadProgressTimeout fails a workload wait in which no VMI
	// moved for this long (KubeVirt itself lets a migration run 150s per
	// GiB of guest memory: raise it for large guests).
	DefaultWorkloadProgressTimeout = 30 * time.Minute
	minDuration                    = time.Second
	maxHopTimeout                  = 24 * time.Hour
	maxWindow                      = 7 * 24 * time.Hour
)

// State says whether KubeVirt should be installed.
type State string

// States.
const (
	StatePresent State = "Present"
	StateAbsent  State = "Absent"
)

// PathPolicy chooses the hops within the installed release's line.
type PathPolicy string

// Path policies.
const (
	PolicyStrict      PathPolicy = "Strict"
	PolicyLatestPatch PathPolicy = "LatestPatch"
)

// WorkloadPolicy says what a hop does about VMIs left on the old
// virt-launcher (docs/kubevirt.md, "Workload updates").
type WorkloadPolicy string

// Workload policies.
const (
	// WorkloadsAuto waits when the KubeVirt CR has workloadUpdateMethods
	// and only reports otherwise.
	WorkloadsAuto WorkloadPolicy = "Auto"
	// WorkloadsWait waits until no VMI is outdated before the next hop.
	WorkloadsWait WorkloadPolicy = "Wait"
	// WorkloadsReportOnly counts outdated VMIs in the status and moves on.
	WorkloadsReportOnly WorkloadPolicy = "ReportOnly"
)

// Workloads is spec.workloads.
type Workloads struct {
	Policy WorkloadPolicy
	// Timeout caps the wait for the VMIs of one hop; 0 sizes it from their
	// count and the cluster's throttles (docs/spec/desired.md).
	Timeout time.Duration
	// ProgressTimeout fails the wait when no VMI has moved for this long.
	ProgressTimeout time.Duration
	// Unmovable says what the preflight does about VMIs a hop will not
	// live-migrate; Accept lists the ones it lets through anyway.
	Unmovable UnmovablePolicy
	Accept    Accepted
}

// UnmovablePolicy is spec.workloads.unmovable.
type UnmovablePolicy string

// Unmovable policies.
const (
	// UnmovableRefuse (default) refuses a plan while a running VMI will not
	// live-migrate and spec.workloads.accept does not name it.
	UnmovableRefuse UnmovablePolicy = "Refuse"
	// UnmovableAccept lets every such VMI be shut down, restarted or left
	// on its old virt-launcher, as KubeVirt decides; the status names them.
	UnmovableAccept UnmovablePolicy = "Accept"
	// UnmovableRestart: a VMI KubeVirt would leave on its old virt-launcher
	// whose VM starts it again (run strategy Always or RerunOnFailure) is
	// restarted by kvgitops after the hop, and a restart KubeVirt's
	// eviction makes is accepted; a VMI nothing would start again is
	// refused unless spec.workloads.accept names it.
	UnmovableRestart UnmovablePolicy = "Restart"
)

// Accepted is spec.workloads.accept: VMIs by namespace/name, or by labels
// (every label given must match).
type Accepted struct {
	Names  []string
	Labels map[string]string
}

// Accepts reports whether the desired file lets v be shut down, restarted
// or left on its old virt-launcher.
func (w Workloads) Accepts(v VMI) bool { return w.Unmovable == UnmovableAccept || w.Accept.covers(v) }

// Restarts reports whether kvgitops restarts v after a hop that leaves it
// on its old virt-launcher (spec.workloads.unmovable: Restart): only a VMI
// whose VM starts it again.
func (w Workloads) Restarts(v VMI) bool {
	return w.Unmovable == UnmovableRestart && restarting(v.RunStrategy)
}

func (a Accepted) covers(v VMI) bool {
	if slices.Contains(a.Names, v.Key()) {
		return true
	}
	if len(a.Labels) == 0 {
		return false
	}
	for k, want := range a.Labels {
		if got, ok := v.Labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// Approval says whether a plan may run without a human naming its id.
type Approval string

// Approval modes.
const (
	ApprovalAutomatic Approval = "Automatic"
	ApprovalManual    Approval = "Manual"
)

// Desired is a validated desired file (the README, "The desired file"). Build it with
// [ParseDesired]; every field holds its default when the file leaves it out.
type Desired struct {
	State        State
	Version      string // as written: a tag, "latest" or a constraint; "" when Absent
	Method       Method
	PathPolicy   PathPolicy
	Approval     Approval
	ApprovedPlan string
	Suspend      bool
	HopTimeout   time.Duration
	Window       *Window // nil: any time
	Teardown     Teardown
	Workloads    Workloads
	// Compatibility Strict refuses a hop outside the target's Kubernetes
	// range or onto a removed feature gate; Warn (default) warns.
	Compatibility Compatibility
	// AcceptRisks names known upgrade risks (by id) the plan may cross.
	AcceptRisks []string
	// Drift: Report (default) stops at changes made outside kvgitops;
	// Correct plans from what the cluster runs.
	Drift Drift
	// ExtraRisks are the repository's own risks (its risks file, read by
	// the caller with ParseRisks), checked with the built-in ones.
	ExtraRisks []Risk
	// KubeVirtConfig are the KubeVirt CR settings kvgitops applies; nil
	// leaves an existing CR's settings alone.
	KubeVirtConfig *KubeVirtConfig

	selector selector
}

// Teardown holds the opt-ins of a teardown.
type Teardown struct {
	RemoveStuckFinalizers bool
	AllowWorkloadRemoval  bool
}

// selector is the parsed form of spec.version.
type selector struct {
	exact      version
	latest     bool
	constraint *semver.Constraints
}

// ParseDesired validates and decodes a desired file. The input is untrusted:
// any deviation from the schema is a *FieldError naming the field and value.
// Rules beyond the YAML: exactly one document; no anchors, aliases or custom
// tags; unknown or duplicate keys rejected; strings must be YAML strings (an
// unquoted 1.10 is a float and is rejected, never read as "1.1"); UTF-8 only
// (a leading UTF-8 byte-order mark is dropped), no control or bidi-override
// characters.
func ParseDesired(data []byte) (Desired, error) {
	root, err := decodeSingleDocument(data, MaxDesiredSize)
	if err != nil {
		return Desired{}, err
	}
	d := defaultDesired()
	var spec *yaml.Node
	top := fields{
		"apiVersion": func(n *yaml.Node) error { return expectConst(n, "apiVersion", DesiredAPIVersion) },
		"kind":       func(n *yaml.Node) error { return expectConst(n, "kind", DesiredKind) },
		"spec":       func(n *yaml.Node) error { spec = n; return nil },
	}
	if err := top.decode("", root, "apiVersion", "kind", "spec"); err != nil {
		return Desired{}, err
	}
	if err := d.decodeSpec(spec); err != nil {
		return Desired{}, err
	}
	return d, nil
}

// defaultDesired holds every default of a desired spec.
func defaultDesired() Desired {
	return Desired{
		State:      StatePresent,
		Method:     MethodAuto,
		PathPolicy: PolicyStrict,
		Approval:   ApprovalAutomatic,
		HopTimeout: DefaultHopTimeout,
		Workloads:  Workloads{Policy: WorkloadsAuto, ProgressTimeout: DefaultWorkloadProgressTimeout, Unmovable: UnmovableRefuse},

		Compatibility: CompatibilityWarn,
		Drift:         DriftReport,
	}
}

// decodeAcceptRisks reads spec.acceptRisks: risk ids, each once.
func (d *Desired) decodeAcceptRisks(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return &FieldError{Field: "spec.acceptRisks", Line: n.Line, Problem: "must be a list of risk ids, got " + kindName(n)}
	}
	for i, v := range n.Content {
		field := fmt.Sprintf("spec.acceptRisks[%d]", i)
		s, err := scalarString(v, field)
		if err != nil {
			return err
		}
		if !riskIDPattern.MatchString(s) {
			return fieldErr(v, field, s, "not a risk id (letters, digits, '.', '_', '-')")
		}
		if slices.Contains(d.AcceptRisks, s) {
			return fieldErr(v, field, s, "is listed twice")
		}
		d.AcceptRisks = append(d.AcceptRisks, s)
	}
	return nil
}

// checkVersion: spec.version is required, and must be a release,
// "latest" or a constraint, with state Present; it is omitted with Absent.
func (d *Desired) checkVersion(spec, versionNode *yaml.Node) error {
	switch d.State {
	case StatePresent:
		if versionNode == nil {
			return &FieldError{Field: "spec.version", Line: spec.Line, Problem: "required when spec.state is Present"}
		}
		sel, err := parseSelector(d.Version)
		if err != nil {
			return fieldErr(versionNode, "spec.version", d.Version, err.Error())
		}
		d.selector = sel
	case StateAbsent:
		if versionNode != nil {
			return fieldErr(versionNode, "spec.version", d.Version, "must be omitted when spec.state is Absent")
		}
	}
	return nil
}

func (d *Desired) decodeSpec(spec *yaml.Node) error {
	var versionNode *yaml.Node
	f := fields{
		"state": func(n *yaml.Node) error {
			return enum(n, "spec.state", &d.State, StatePresent, StateAbsent)
		},
		"version": func(n *yaml.Node) error {
			versionNode = n
			s, err := scalarString(n, "spec.version")
			d.Version = s
			return err
		},
		"method": func(n *yaml.Node) error {
			return enum(n, "spec.method", &d.Method, desirableMethods()...)
		},
		"pathPolicy": func(n *yaml.Node) error {
			return enum(n, "spec.pathPolicy", &d.PathPolicy, PolicyStrict, PolicyLatestPatch)
		},
		"approval": func(n *yaml.Node) error {
			return enum(n, "spec.approval", &d.Approval, ApprovalAutomatic, ApprovalManual)
		},
		"approvedPlan": func(n *yaml.Node) error {
			s, err := scalarString(n, "spec.approvedPlan")
			if err == nil && s != "" && !planIDPattern.MatchString(s) {
				return fieldErr(n, "spec.approvedPlan", s, "not a plan id (8 lower-case hex digits from the status file)")
			}
			d.ApprovedPlan = s
			return err
		},
		"suspend": func(n *yaml.Node) error { return scalarBool(n, "spec.suspend", &d.Suspend) },
		"hopTimeout": func(n *yaml.Node) error {
			return duration(n, "spec.hopTimeout", maxHopTimeout, &d.HopTimeout)
		},
		"maintenanceWindow": func(n *yaml.Node) error {
			w, err := decodeWindow(n)
			d.Window = w
			return err
		},
		"teardown":  func(n *yaml.Node) error { return d.decodeTeardown(n) },
		"workloads": func(n *yaml.Node) error { return d.decodeWorkloads(n) },
		"compatibility": func(n *yaml.Node) error {
			return enum(n, "spec.compatibility", &d.Compatibility, CompatibilityWarn, CompatibilityStrict)
		},
		"drift":       func(n *yaml.Node) error { return enum(n, "spec.drift", &d.Drift, DriftReport, DriftCorrect) },
		"acceptRisks": d.decodeAcceptRisks,
		"kubevirtConfig": func(n *yaml.Node) error {
			c, err := decodeKubeVirtConfig(n)
			d.KubeVirtConfig = c
			return err
		},
	}
	if err := f.decode("spec", spec); err != nil {
		return err
	}
	if err := d.checkVersion(spec, versionNode); err != nil {
		return err
	}
	if d.Approval == ApprovalAutomatic && d.ApprovedPlan != "" {
		return &FieldError{Field: "spec.approvedPlan", Value: d.ApprovedPlan, Problem: "only meaningful with spec.approval: Manual"}
	}
	return nil
}

func (d *Desired) decodeTeardown(n *yaml.Node) error {
	f := fields{
		"removeStuckFinalizers": func(v *yaml.Node) error {
			return scalarBool(v, "spec.teardown.removeStuckFinalizers", &d.Teardown.RemoveStuckFinalizers)
		},
		"allowWorkloadRemoval": func(v *yaml.Node) error {
			return scalarBool(v, "spec.teardown.allowWorkloadRemoval", &d.Teardown.AllowWorkloadRemoval)
		},
	}
	return f.decode("spec.teardown", n)
}

func (d *Desired) decodeWorkloads(n *yaml.Node) error {
	f := fields{
		"policy": func(v *yaml.Node) error {
			return enum(v, "spec.workloads.policy", &d.Workloads.Policy, WorkloadsAuto, WorkloadsWait, WorkloadsReportOnly)
		},
		"timeout": func(v *yaml.Node) error {
			return duration(v, "spec.workloads.timeout", maxHopTimeout, &d.Workloads.Timeout)
		},
		"progressTimeout": func(v *yaml.Node) error {
			return duration(v, "spec.workloads.progressTimeout", maxHopTimeout, &d.Workloads.ProgressTimeout)
		},
		"unmovable": func(v *yaml.Node) error {
			return enum(v, "spec.workloads.unmovable", &d.Workloads.Unmovable, UnmovableRefuse, UnmovableAccept, UnmovableRestart)
		},
		"accept": d.decodeAccept,
	}
	return f.decode("spec.workloads", n)
}

// maxAcceptedNames bounds spec.workloads.accept.names.
const maxAcceptedNames = 500

// decodeAccept reads spec.workloads.accept: names (namespace/name) and
// labels.
func (d *Desired) decodeAccept(n *yaml.Node) error {
	const p = "spec.workloads.accept"
	tmp := map[string]any{}
	err := fields{
		"names": func(v *yaml.Node) error {
			return stringList(v, p+".names", maxAcceptedNames, tmp, "names", func(s string) string {
				ns, name, ok := strings.Cut(s, "/")
				if !ok || !dnsLabel.MatchString(ns) || !dnsSubdomain.MatchString(name) {
					return "not namespace/name of a VMI"
				}
				return ""
			})
		},
		"labels": func(v *yaml.Node) error { return labelMap(v, p+".labels", tmp) },
	}.decode(p, n)
	if err != nil {
		return err
	}
	d.Workloads.Accept.Names = fromAny(tmp["names"])
	if m, ok := tmp["nodeSelector"].(map[string]any); ok {
		d.Workloads.Accept.Labels = map[string]string{}
		for k, v := range m {
			d.Workloads.Accept.Labels[k] = v.(string)
		}
	}
	return nil
}

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
)

var planIDPattern = regexp.MustCompile(`^[0-9a-f]{8}$`)

// bareVersion matches values that look like a version with no operator; such
// a value must be a full release tag, so "v1.2", "1.2.3" and "V1.2.3" are
// rejected instead of being read as constraints.
var bareVersion = regexp.MustCompile(`^[vV]?[0-9]+(\.[0-9]+)*(-[^ ]*)?(\+.*)?$`)

// constraintChars is the alphabet of a semver constraint.
var constraintChars = regexp.MustCompile(`^[0-9A-Za-z.<>=~^!*|, -]+$`)

const maxConstraintLen = 100

func parseSelector(s string) (selector, error) {
	switch {
	case s == "":
		return selector{}, errorString("must not be empty: use a release tag (v1.8.4), \"latest\" or a constraint (~1.8)")
	case strings.TrimSpace(s) != s:
		return selector{}, errorString("must not have leading or trailing spaces")
	case s == "latest":
		return selector{latest: true}, nil
	case strings.HasPrefix(s, "v") && tagPattern.MatchString(s):
		v, err := parseTag(s)
		if err != nil {
			return selector{}, errorString(err.Error())
		}
		return selector{exact: v}, nil
	case bareVersion.MatchString(s):
		return selector{}, errorString("not a release tag: write the full tag with a leading v (v1.8.4) or a constraint (~1.8)")
	}
	c, err := semver.NewConstraint(s)
	if len(s) > maxConstraintLen || !constraintChars.MatchString(s) || err != nil {
		return selector{}, errorString(`not a release tag (v1.8.4), "latest" or a valid semver constraint (~1.8)`)
	}
	return selector{constraint: c}, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }
