package planner

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/kvgitops/kvgitops/redact"
)

// CheckResult is the outcome of one preflight check of one step.
type CheckResult string

// Check results.
const (
	CheckPass       CheckResult = "Pass"
	CheckWarn       CheckResult = "Warn"
	CheckRefuse     CheckResult = "Refuse"
	CheckNotChecked CheckResult = "NotChecked" // the input it needs is unknown
)

// Check is one preflight check of one step, made before anything is applied
// (docs/upgrade-safety.md). Step is the 1-based index of the step.
type Check struct {
	Step    int         `json:"step" yaml:"step"`
	Name    string      `json:"check" yaml:"check"`
	Result  CheckResult `json:"result" yaml:"result"`
	Reason  Reason      `json:"reason,omitempty" yaml:"reason,omitempty"`
	Message string      `json:"message,omitempty" yaml:"message,omitempty"`
}

// Check names: every preflight check of a step (docs/upgrade-safety.md).
const (
	// CheckClusterServesRelease: a step that applies a release's
	// kubevirt-operator.yaml needs every API of it served by the cluster.
	CheckClusterServesRelease = "ClusterServesRelease"
	// CheckImageTagStrategy: an operator with the strategy bug must never
	// meet a spec.imageTag other than its own version.
	CheckImageTagStrategy = "ImageTagStrategy"
	// CheckKubernetesCompatible: the cluster's Kubernetes is in the
	// target's supported range.
	CheckKubernetesCompatible = "KubernetesCompatible"
	// CheckKnownRisk: the hop meets no known upgrade risk (one check per
	// risk, CheckKnownRisk + "/" + its id).
	CheckKnownRisk = "KnownRisk"
	// CheckFeatureGates: the CR's feature gates exist in the target (one
	// check per gate, CheckFeatureGates + "/" + its name).
	CheckFeatureGates = "FeatureGates"
	// CheckWorkloads: every running VMI live-migrates to the hop's
	// virt-launcher, or the desired file accepts what happens to it.
	CheckWorkloads = "Workloads"
	// CheckMigrationsInFlight: no live migration runs when a step starts
	// (a change of KubeVirt under one can kill the guest, kubevirt#18720).
	CheckMigrationsInFlight = "MigrationsInFlight"
)

// crdV1Since is the first release that ships its KubeVirt CRD as
// apiextensions.k8s.io/v1; older ones use v1beta1, which Kubernetes stopped
// serving in 1.22 (docs/kubevirt.md, "Release manifests").
const crdV1Since = "v0.40.0-rc.0"

// appliesManifest reports whether a step applies its target's operator
// manifest.
func appliesManifest(s Step) bool {
	return s.Type == StepInstall || s.Type == StepUpgrade && s.Method.AppliesManifest()
}

// preflight runs the checks of every step; the first refusal (in step
// order) refuses the plan, with every check's outcome attached.
func (p *Plan) preflight(d Desired, o Observed) error {
	if c, ok := strategyCheck(p.Steps, d.Method.ForMode(o.Mode)); ok {
		p.Checks = append([]Check{c}, p.Checks...)
	}
	kube, known := parseKubeVersion(o.KubernetesVersion) // once: the same for every step
	gates, settings := effectiveSettings(d, o)
	unknownSaid := false
	for i, s := range p.Steps {
		if s.Type.ChangesKubeVirt() && len(o.MigrationsInFlight) > 0 && i == 0 {
			p.Checks = append(p.Checks, inFlightCheck(o.MigrationsInFlight))
		}
		if s.Type == StepConfigure {
			p.Checks = append(p.Checks, gateChecks(i+1, Step{Type: StepUpgrade, From: s.From, To: s.To}, gates, d.Compatibility, true)...)
		}
		if !s.Type.Deploys() {
			continue
		}
		if appliesManifest(s) {
			p.Checks = append(p.Checks, servesRelease(i+1, s, o, kube, known))
		}
		p.Checks = append(p.Checks, kubernetesCheck(i+1, s, kube, known, d.Compatibility))
		p.Checks = append(p.Checks, riskChecks(i+1, s, d.ExtraRisks, d.AcceptRisks)...)
		if s.Type == StepUpgrade {
			p.Checks = append(p.Checks, gateChecks(i+1, s, gates, d.Compatibility, i == 0)...)
			p.workloadChecks(i+1, s, d, o, settings, &unknownSaid)
		}
	}
	slices.SortStableFunc(p.Checks, func(a, b Check) int { return a.Step - b.Step })
	for _, c := range p.Checks {
		if c.Result == CheckRefuse {
			s := p.Steps[c.Step-1]
			return &RefusalError{Reason: c.Reason, Checks: p.Checks, Forecast: p.Forecast,
				Message: fmt.Sprintf("step %d/%d %s: %s", c.Step, len(p.Steps), s, c.Message)}
		}
	}
	return nil
}

// effectiveSettings: the feature gates and workload settings a plan
// runs under — the desired file's kubevirtConfig where it says them, the
// cluster's otherwise.
func effectiveSettings(d Desired, o Observed) ([]string, WorkloadSettings) {
	gates, settings := o.FeatureGates, o.WorkloadSettings
	if c := d.KubeVirtConfig; c != nil {
		if g, ok := c.FeatureGates(); ok {
			gates = g
		}
		settings = c.Settings(settings)
	}
	return gates, settings
}

// workloadChecks adds a hop's workload check (an unknown forecast is said
// once) and forecasts the first hop's VMIs.
func (p *Plan) workloadChecks(step int, s Step, d Desired, o Observed, settings WorkloadSettings, unknownSaid *bool) {
	if o.WorkloadsKnown || !*unknownSaid {
		p.Checks = append(p.Checks, workloadCheck(step, s, o, settings, d.Workloads))
		*unknownSaid = true
	}
	if o.WorkloadsKnown && p.Forecast == nil {
		f := ForecastWorkloads(o.VMIs, settings, s.To, d.Workloads)
		p.Forecast = &f
	}
}

// inFlightCheck says the first step waits for the live migrations that
// run: a change of KubeVirt under one can kill its guest (kubevirt#18720).
func inFlightCheck(vmis []string) Check {
	return Check{Step: 1, Name: CheckMigrationsInFlight, Result: CheckWarn, Reason: ReasonMigrationsInFlight,
		Message: fmt.Sprintf("%d live migrations are in flight (%s): the step waits until they finish, as a change of KubeVirt under a running migration can kill its guest (kubevirt#18720)",
			len(vmis), quoteList(firstN(vmis, 10)))}
}

func firstN(l []string, n int) []string {
	if len(l) > n {
		return l[:n]
	}
	return l
}

// strategyCheck says where a plan stops pinning spec.imageTag: the first
// hop planned with another method than the desired one, because its
// operator writes its install strategy with its own image (kubevirt#16050).
func strategyCheck(steps []Step, planned Method) (Check, bool) {
	for i, s := range steps {
		if s.Type == StepUpgrade && s.Method != planned {
			return Check{Step: i + 1, Name: CheckImageTagStrategy, Result: CheckPass,
				Message: fmt.Sprintf("planned Operator, unpinning spec.imageTag: virt-operator %s writes its install strategy with its own image whatever spec.imageTag says (kubevirt#16050), so the CR follows the operator from here on", s.To)}, true
		}
	}
	return Check{}, false
}

// servesRelease checks that the cluster serves the API of the release's
// KubeVirt CRD.
func servesRelease(i int, s Step, o Observed, kube kubeVersion, known bool) Check {
	c := Check{Step: i, Name: CheckClusterServesRelease, Result: CheckPass}
	api, servedFrom, servedUntil := "apiextensions.k8s.io/v1", kubeVersion{1, 16}, kubeVersion{}
	if !TagAtLeast(s.To, crdV1Since) {
		api, servedFrom, servedUntil = "apiextensions.k8s.io/v1beta1", kubeVersion{}, kubeVersion{1, 22}
	}
	switch {
	case !known:
		c.Result = CheckNotChecked
		c.Message = fmt.Sprintf("not checked: the cluster's Kubernetes version is unknown (%s ships its KubeVirt CRD as %s)", s.To, api)
	case kube.less(servedFrom) || servedUntil != (kubeVersion{}) && !kube.less(servedUntil):
		c.Result, c.Reason = CheckRefuse, ReasonAPIVersionNotServed
		c.Message = fmt.Sprintf("%s ships its KubeVirt CRD as %s, which Kubernetes %s does not serve: it cannot be applied on this cluster",
			s.To, api, redact.Text(o.KubernetesVersion, 64))
	default:
		c.Message = fmt.Sprintf("Kubernetes %s serves %s, the API of %s's KubeVirt CRD", redact.Text(o.KubernetesVersion, 64), api, s.To)
	}
	return c
}

type kubeVersion struct{ major, minor int }

func (k kubeVersion) less(o kubeVersion) bool {
	return k.major < o.major || k.major == o.major && k.minor < o.minor
}

var kubeVersionPattern = regexp.MustCompile(`^v?([0-9]{1,3})\.([0-9]{1,3})(\.[0-9]+)?([-+].*)?$`)

// parseKubeVersion reads a Kubernetes version as the API server reports it
// (v1.37.2, v1.30.4-eks-a737599, v1.31.1+k3s1) or as a user writes it
// (1.37.2, 1.37).
func parseKubeVersion(s string) (kubeVersion, bool) {
	m := kubeVersionPattern.FindStringSubmatch(s)
	if m == nil {
		return kubeVersion{}, false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return kubeVersion{major, minor}, true
}

// ValidKubernetesVersion reports whether s reads as a Kubernetes version.
func ValidKubernetesVersion(s string) bool {
	_, ok := parseKubeVersion(s)
	return ok
}
