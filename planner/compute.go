package planner

import (
	"fmt"

	"github.com/kvgitops/kvgitops/redact"
)

// Compute plans how to get from the observed cluster to the desired state
// over the catalog's releases (docs/architecture.md, "Planning rules"). A plan that the rules forbid is
// a *RefusalError carrying one of the Reason constants.
func Compute(d Desired, o Observed, c *Catalog) (Plan, error) {
	p := Plan{
		Origin:        o,
		CatalogDigest: c.Digest(),
		Version:       d.Version,
		Policy:        d.PathPolicy,
		Method:        d.Method,
	}
	if f, ok := Owner(o.Managed); ok {
		return Plan{}, refuse(ReasonManagedElsewhere, "%s manages KubeVirt in this cluster (%s has %s): kvgitops changes nothing another tool manages, "+
			"as the two would undo each other's changes under running VMs; %s", f.Tool, f.Object, f.Evidence, f.Advice)
	}
	if n := len(o.StrayKubeVirts); n > 0 {
		return Plan{}, refuse(ReasonMultipleKubeVirts, "virt-operator ignores every KubeVirt CR while there is more than one, or one outside its namespace; found %s. "+
			"Delete none of them on kvgitops's word: every VM depends on the one in use. If another tool manages one (OpenShift Virtualization/HCO, Harvester, OLM, Helm, Argo CD, Flux), "+
			"that tool runs KubeVirt here: take this cluster out of kvgitops; otherwise find which one the VMs run under before removing the others",
			quoteList(o.StrayKubeVirts))
	}
	var err error
	switch d.State {
	case StatePresent:
		err = p.present(d, o, c)
	case StateAbsent:
		err = p.absent(d, o)
	default:
		return Plan{}, refuse(ReasonInvalidDesiredState, "the desired state was not parsed with ParseDesired")
	}
	if err != nil {
		return Plan{}, err
	}
	if p.Steps == nil {
		p.Steps = []Step{}
	}
	if d.State == StatePresent {
		p.configure(d, o)
	}
	if err := p.preflight(d, o); err != nil {
		return Plan{}, err
	}
	p.ID = planID(p)
	return p, nil
}

// configure puts a Configure step first when the CR's settings are not
// those of spec.kubevirtConfig, so the hops run under them (an install
// creates the CR with them).
func (p *Plan) configure(d Desired, o Observed) {
	if d.KubeVirtConfig == nil || !o.KubeVirt || o.Terminating || len(d.KubeVirtConfig.Differences(o.KubeVirtSpec)) == 0 {
		return
	}
	p.Steps = append([]Step{{Type: StepConfigure, From: o.Installed, To: o.Installed}}, p.Steps...)
	if p.Action == ActionNone {
		p.Action, p.From, p.To = ActionConfigure, o.Installed, o.Installed
	}
}

func (p *Plan) present(d Desired, o Observed, c *Catalog) error {
	t, err := resolve(d.selector, c)
	if err != nil {
		return err
	}
	if t.line().less(firstRollingLine) {
		return refuse(ReasonUnsupportedSourceVersion, "%s predates v0.17.0, the first release with rolling updates", t.tag)
	}
	p.To = t.tag
	if o.Installed == "" {
		return p.install(d, o, t)
	}
	cur, err := parseTag(o.Installed)
	if err != nil {
		return refuse(ReasonUnsupportedSourceVersion, "installed version %s is not a release tag", redact.Quote(o.Installed))
	}
	p.From = cur.tag
	if cur.line().less(firstRollingLine) {
		return refuse(ReasonUnsupportedSourceVersion, "installed %s is older than the v0.17 line; KubeVirt supports rolling updates only from v0.17.0", cur.tag)
	}
	switch cmp := t.compare(cur); {
	case cmp < 0:
		return refuse(ReasonDowngradeNotSupported, "desired %s is older than installed %s; KubeVirt does not support downgrades", t.tag, cur.tag)
	case cmp == 0:
		p.Action = ActionNone
		return nil
	}
	hops, err := path(cur, t, d.PathPolicy, c)
	if err != nil {
		return err
	}
	hops, around := avoidBlocked(cur, hops, c, d.ExtraRisks, d.AcceptRisks)
	if len(hops) > MaxHops {
		return refuse(ReasonNoUpgradePath, "the path from %s to %s has %d hops, more than the %d a plan may hold: KubeVirt's whole history from v0.17 is about 60; check the release catalog (a mirror listing fabricated releases?)",
			cur.tag, t.tag, len(hops), MaxHops)
	}
	if d.Method.TagOnly() && StrategyIgnoresImageTag(o.OperatorVersion) {
		return refuse(ReasonImageTagStrategyBug, "virt-operator %s runs the install strategy with its own image whatever spec.imageTag says (kubevirt#16050, fixed in v1.7.0-rc.1 and v1.8.0): an ImageTag hop to %s would install %s's manifests with %s's images and report success; use method Operator or Auto",
			o.OperatorVersion, hops[0].tag, o.OperatorVersion, hops[0].tag)
	}
	m := d.Method.ForMode(o.Mode)
	p.Action = ActionUpgrade
	from := cur
	for _, h := range hops {
		// Applying a release's operator while the CR pins another tag lets
		// a buggy operator write its own strategy with the pinned images:
		// unpin (Operator) instead, and stay unpinned.
		if StrategyIgnoresImageTag(h.tag) {
			m = m.Unpinned() // the preflight says so (strategyCheck)
		}
		p.Steps = append(p.Steps, Step{Type: StepUpgrade, From: from.tag, To: h.tag, Method: m})
		from = h
	}
	p.Checks = append(p.Checks, around...)
	return nil
}

// StrategyIgnoresImageTag reports whether virt-operator v runs the
// install-strategy Job with its own image, whatever spec.imageTag says:
// v0.58.1 (v0.59.0) through every v1.6.x and v1.7.0-rc.0 (kubevirt#16050;
// docs/kubevirt.md, "The imageTag strategy bug").
func StrategyIgnoresImageTag(v string) bool {
	return TagAtLeast(v, "v0.58.1") && !TagAtLeast(v, "v1.7.0-rc.1")
}

func quoteList(l []string) string {
	out := ""
	for i, s := range l {
		if i > 0 {
			out += ", "
		}
		out += redact.Quote(s)
	}
	return out
}

// install is one step at the target. An operator already running at a newer
// version would be downgraded by applying the target's manifest.
func (p *Plan) install(d Desired, o Observed, t version) error {
	if o.OperatorVersion != "" {
		if op, err := parseTag(o.OperatorVersion); err == nil && op.compare(t) > 0 {
			return refuse(ReasonDowngradeNotSupported, "virt-operator %s is already running; installing %s would downgrade it", op.tag, t.tag)
		}
	}
	m := d.Method.InstallMethod()
	p.Action = ActionInstall
	p.Steps = []Step{{Type: StepInstall, To: t.tag, Method: m}}
	return nil
}

// absent plans a teardown in the documented order. Leftovers are cleaned
// after the CR is deleted (its deletion can leave them) or whenever some
// remain, so every step changes what is observed and re-planning converges.
// Absent means absent: no CR, no operator manifest object and nothing the
// operator created is left.
func (p *Plan) absent(d Desired, o Observed) error {
	if nothingLeft(o) {
		p.Action = ActionNone
		return nil
	}
	if err := workloadsAllowTeardown(d, o); err != nil {
		return err
	}
	from := o.Installed
	if from == "" {
		from = o.OperatorVersion
	}
	p.Action = ActionTeardown
	p.From = from
	for _, t := range teardownSteps(d, o) {
		p.Steps = append(p.Steps, Step{Type: t, From: from})
	}
	return nil
}

// nothingLeft: no CR, no operator, nothing either left behind.
func nothingLeft(o Observed) bool {
	return !o.KubeVirt && !o.OperatorPresent && o.Leftovers == 0 && o.OperatorObjects == 0 && o.Remnants == 0 && o.StuckCRDs == 0 &&
		o.StuckWorkloads == 0
}

// teardownSteps are the steps a teardown needs, in the documented order.
func teardownSteps(d Desired, o Observed) []StepType {
	// Without its operator a CR can neither finish a deletion nor (its
	// fail-closed webhook answers no more) start one.
	stuck := (o.KubeVirt || o.StuckCRDs > 0 || o.StuckWorkloads > 0) && !o.OperatorPresent
	var out []StepType
	for _, st := range []struct {
		t    StepType
		when bool
	}{
		{StepRemoveStuckFinalizers, stuck && d.Teardown.RemoveStuckFinalizers},
		{StepDeleteKubeVirt, o.KubeVirt},
		{StepDeleteLeftovers, o.KubeVirt || o.Leftovers > 0},
		{StepDeleteOperator, o.OperatorPresent || o.OperatorObjects > 0 || o.Remnants > 0 || o.StuckCRDs > 0},
	} {
		if st.when {
			out = append(out, st.t)
		}
	}
	return out
}

// workloadsAllowTeardown refuses a teardown that would delete VMs without
// the opt-in, or that the CR's uninstall strategy blocks.
func workloadsAllowTeardown(d Desired, o Observed) error {
	if o.StuckWorkloads > 0 && !d.Teardown.RemoveStuckFinalizers {
		return refuse(ReasonStuckFinalizers, "%d VMIs, VMs or migrations are stuck Terminating on KubeVirt's finalizers (%s) and virt-controller, which removes them, is gone: their CRDs cannot go either; set spec.teardown.removeStuckFinalizers: true to let kvgitops remove KubeVirt's finalizers from them",
			o.StuckWorkloads, quoteList(o.StuckWorkloadNames))
	}
	// Without a CR, deleting what the operator left deletes its CRDs, and
	// with them every VM: the same opt-in as a teardown.
	if !o.KubeVirt && o.Remnants > 0 && o.Workloads > 0 && !d.Teardown.AllowWorkloadRemoval {
		return refuse(ReasonWorkloadsExist, "%d VMs/VMIs exist and removing what KubeVirt left behind deletes its CRDs and every one of them; set spec.teardown.allowWorkloadRemoval: true to accept that", o.Workloads)
	}
	if !o.KubeVirt || o.Terminating || o.Workloads == 0 {
		return nil
	}
	if !d.Teardown.AllowWorkloadRemoval {
		return refuse(ReasonWorkloadsExist, "%d VMs/VMIs exist and teardown deletes every one of them; set spec.teardown.allowWorkloadRemoval: true to accept that", o.Workloads)
	}
	if o.UninstallStrategy != "" && o.UninstallStrategy != "RemoveWorkloads" {
		return refuse(ReasonWorkloadsExist, "%d VMs/VMIs exist and the KubeVirt CR's uninstallStrategy %s blocks its deletion; remove the workloads or change the strategy", o.Workloads, redact.Quote(o.UninstallStrategy))
	}
	return nil
}

// resolve picks the target release: an exact tag must be in the catalog;
// latest and constraints pick the highest stable release.
func resolve(s selector, c *Catalog) (version, error) {
	switch {
	case !s.exact.isZero():
		if _, ok := c.find(s.exact.tag); !ok {
			return version{}, refuse(ReasonUnknownVersion, "%s is not in the release catalog (%d releases, latest %s)", s.exact.tag, c.Len(), orNone(c.Latest()))
		}
		return s.exact, nil
	case s.latest:
		if l := c.Latest(); l != "" {
			v, _ := parseTag(l)
			return v, nil
		}
		return version{}, refuse(ReasonUnknownVersion, "the release catalog has no stable release")
	case s.constraint != nil:
		st := c.stable()
		for i := len(st) - 1; i >= 0; i-- {
			if s.constraint.Check(st[i].sv) {
				return st[i], nil
			}
		}
		return version{}, refuse(ReasonUnknownVersion, "no stable release in the catalog matches %s", redact.Quote(s.constraint.String()))
	}
	return version{}, refuse(ReasonInvalidDesiredState, "spec.version is not set")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// path lists the hops from cur to t (docs/architecture.md, "Planning rules"): within cur's line every
// later stable release (Strict) or its latest (LatestPatch), then the latest
// stable release of every line in between, then t. Consecutive lines must be
// adjacent, or the catalog lacks a line and there is no supported path.
func path(cur, t version, policy PathPolicy, c *Catalog) ([]version, error) {
	cl, tl := cur.line(), t.line()
	st := c.stable()
	hops := withinLine(cur, t, policy, st)
	prev := cl
	for i := 0; i < len(st); i++ {
		l := st[i].line()
		if !cl.less(l) || !l.less(tl) {
			continue
		}
		// The last stable release of line l is its latest.
		for i+1 < len(st) && st[i+1].line() == l {
			i++
		}
		if !prev.next(l) {
			return nil, noPath(prev, l, cur, t)
		}
		hops = append(hops, st[i])
		prev = l
	}
	if tl != cl && !prev.next(tl) {
		return nil, noPath(prev, tl, cur, t)
	}
	if n := len(hops); n == 0 || hops[n-1].compare(t) != 0 {
		hops = append(hops, t)
	}
	return hops, nil
}

// withinLine are the hops in cur's line: every later stable release up to t
// (Strict), or only the last of them (LatestPatch).
func withinLine(cur, t version, policy PathPolicy, st []version) []version {
	cl := cur.line()
	var hops []version
	for _, v := range st {
		if v.line() == cl && v.compare(cur) > 0 && (t.line() != cl || v.compare(t) <= 0) {
			hops = append(hops, v)
		}
	}
	if policy == PolicyLatestPatch && len(hops) > 1 {
		hops = hops[len(hops)-1:]
	}
	return hops
}

func noPath(from, to line, cur, t version) error {
	return refuse(ReasonNoUpgradePath, "no supported path from %s to %s: the catalog has no release line between %s and %s, and KubeVirt updates only from one minor to the next",
		cur.tag, t.tag, from, to)
}

// String renders a step for logs and messages.
func (s Step) String() string {
	switch {
	case s.From != "" && s.To != "":
		return fmt.Sprintf("%s %s -> %s (%s)", s.Type, s.From, s.To, s.Method)
	case s.To != "":
		return fmt.Sprintf("%s %s (%s)", s.Type, s.To, s.Method)
	}
	return fmt.Sprintf("%s %s", s.Type, s.From)
}
