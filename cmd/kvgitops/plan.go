package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/redact"
)

// Reasons `plan` reports beyond the planner's own, for inputs it cannot read.
const (
	reasonCatalogUnavailable = "CatalogUnavailable"
	reasonClusterUnavailable = "ClusterUnavailable"
)

type planFlags struct {
	desired, installed, mode, output, kubeconfig, namespace string
	operatorVersion, kubernetesVersion                      string
	risks, featureGates                                     string
	rel                                                     releaseFlags
}

func planCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f planFlags
	fs := flag.NewFlagSet("kvgitops plan", flag.ContinueOnError)
	f.register(fs)
	fs.StringVar(&f.output, "o", "text", "output: text or json")
	if code, stop := parseCommand(fs, args, nil, stderr, func() error { return problem(f.check()) }); stop {
		return code
	}
	p, reason, err := f.compute(ctx)
	if err != nil {
		writePlanError(stdout, stderr, f.output, reason, err)
		return exitRefused
	}
	if f.output == "json" {
		_ = json.NewEncoder(stdout).Encode(p)
	} else {
		writePlanText(stdout, p)
	}
	return exitOK
}

// register adds the flags that say what to plan from: the desired file,
// the catalog, the cluster (observed or described).
func (f *planFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.desired, "desired", "", "path of the desired file (required)")
	fs.StringVar(&f.rel.releasesURL, "releases", "", "release catalog: a file (one tag per line, or GitHub releases JSON) or an https URL of the GitHub releases API (required)")
	f.rel.registerTransport(fs)
	fs.StringVar(&f.installed, "installed", "", `installed KubeVirt version, or "none" (this or --kubeconfig)`)
	fs.StringVar(&f.mode, "mode", string(planner.ModeLocked), "with --installed: Locked or ImageTag")
	fs.StringVar(&f.operatorVersion, "operator-version", "", "with --installed: the running virt-operator's version (default: --installed)")
	fs.StringVar(&f.kubernetesVersion, "kubernetes-version", "", "with --installed: the cluster's Kubernetes version, for the preflight checks (e.g. 1.37.2)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "observe a live cluster through this kubeconfig instead of --installed")
	fs.StringVar(&f.namespace, "kubevirt-namespace", "kubevirt", "with --kubeconfig: KubeVirt's namespace")
	fs.StringVar(&f.risks, "risks", "", "the repository's upgrade-risks file (default: kubevirt-risks.yaml beside --desired, when it exists)")
	fs.StringVar(&f.featureGates, "feature-gates", "", "with --installed: comma-separated feature gates of the KubeVirt CR, for the preflight checks")
}

func (f planFlags) check() string {
	switch {
	case f.desired == "":
		return "--desired is required"
	case f.rel.releasesURL == "":
		return "--releases is required"
	case (f.installed == "") == (f.kubeconfig == ""):
		return "give exactly one of --installed and --kubeconfig"
	case f.output != "text" && f.output != "json":
		return fmt.Sprintf("-o must be text or json, got %q", f.output)
	case f.mode != string(planner.ModeLocked) && f.mode != string(planner.ModeImageTag):
		return fmt.Sprintf("--mode must be Locked or ImageTag, got %q", f.mode)
	}
	return f.checkVersions()
}

// checkVersions: what planning offline is told of the cluster.
func (f planFlags) checkVersions() string {
	switch {
	case f.installed != "" && f.installed != "none" && !planner.ValidTag(f.installed):
		return fmt.Sprintf("--installed must be a release tag such as v1.8.4 or none, got %q", f.installed)
	case f.operatorVersion != "" && !planner.ValidTag(f.operatorVersion):
		return fmt.Sprintf("--operator-version must be a release tag such as v1.8.4, got %q", f.operatorVersion)
	case f.kubernetesVersion != "" && !planner.ValidKubernetesVersion(f.kubernetesVersion):
		return fmt.Sprintf("--kubernetes-version must be a Kubernetes version such as 1.37.2, got %q", f.kubernetesVersion)
	case f.kubeconfig != "" && (f.operatorVersion != "" || f.kubernetesVersion != "" || f.featureGates != ""):
		return "--operator-version, --kubernetes-version and --feature-gates go with --installed; --kubeconfig observes them"
	}
	return ""
}

func (f planFlags) compute(ctx context.Context) (planner.Plan, string, error) {
	data, err := readCapped(f.desired, planner.MaxDesiredSize)
	if err != nil {
		return planner.Plan{}, string(planner.ReasonInvalidDesiredState), err
	}
	d, err := planner.ParseDesired(data)
	if err != nil {
		return planner.Plan{}, string(planner.ReasonInvalidDesiredState), err
	}
	if d.ExtraRisks, err = f.readRisks(); err != nil {
		return planner.Plan{}, string(planner.ReasonInvalidDesiredState), err
	}
	cat, err := loadCatalog(ctx, f.rel)
	if err != nil {
		return planner.Plan{}, reasonCatalogUnavailable, err
	}
	var o planner.Observed
	if f.kubeconfig != "" {
		if o, err = observeCluster(ctx, f.kubeconfig, f.namespace); err != nil {
			return planner.Plan{}, reasonClusterUnavailable, err
		}
	} else {
		if f.installed != "none" {
			op := f.operatorVersion
			if op == "" {
				op = f.installed
			}
			o = planner.Observed{Installed: f.installed, OperatorVersion: op, Mode: planner.Mode(f.mode), KubeVirt: true, OperatorPresent: true}
		} else if f.operatorVersion != "" {
			o = planner.Observed{OperatorVersion: f.operatorVersion, OperatorPresent: true}
		}
		o.KubernetesVersion = f.kubernetesVersion
		if f.featureGates != "" {
			o.FeatureGates = strings.Split(f.featureGates, ",")
		}
	}
	p, err := planner.Compute(d, o, cat)
	return p, string(fault.ReasonOf(err)), err
}

// readRisks reads --risks, or kubevirt-risks.yaml beside --desired when
// it exists, as the agent reads the repository's.
func (f planFlags) readRisks() ([]planner.Risk, error) {
	path := f.risks
	if path == "" {
		path = filepath.Join(filepath.Dir(f.desired), "kubevirt-risks.yaml")
		if _, err := os.Stat(path); err != nil {
			return nil, nil
		}
	}
	data, err := readCapped(path, planner.MaxRisksSize)
	if err != nil {
		return nil, err
	}
	risks, err := planner.ParseRisks(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return risks, nil
}

// readCapped reads a local file, refusing anything over limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: over the %d-byte limit", path, limit)
	}
	return data, nil
}

func writePlanError(stdout, stderr io.Writer, output, reason string, err error) {
	if output == "json" {
		type body struct {
			Reason   string                    `json:"reason"`
			Message  string                    `json:"message"`
			Checks   []planner.Check           `json:"checks,omitempty"`
			Forecast *planner.WorkloadForecast `json:"workloadForecast,omitempty"`
		}
		b := body{Reason: reason, Message: err.Error()}
		var re *planner.RefusalError
		if errors.As(err, &re) {
			b.Message, b.Checks, b.Forecast = re.Message, re.Checks, re.Forecast
		}
		_ = json.NewEncoder(stdout).Encode(map[string]body{"error": b})
		return
	}
	fmt.Fprintf(stderr, "kvgitops plan: refused (%s): %v\n", reason, err)
	var re *planner.RefusalError
	if errors.As(err, &re) && len(re.Checks) > 0 {
		writeChecks(stderr, re.Checks, -1)
		writeForecast(stderr, re.Forecast)
	}
}

// writePlanText prints the plan as a table of hops.
func writePlanText(w io.Writer, p planner.Plan) {
	switch p.Action {
	case planner.ActionNone:
		fmt.Fprintf(w, "Plan %s: nothing to do", p.ID)
		if p.To != "" {
			fmt.Fprintf(w, " (%s is installed)", p.To)
		}
		fmt.Fprintln(w)
		return
	case planner.ActionTeardown:
		fmt.Fprintf(w, "Plan %s: Teardown of %s, %s\n\n", p.ID, redact.OrDash(p.From), steps(len(p.Steps)))
	case planner.ActionInstall:
		fmt.Fprintf(w, "Plan %s: Install %s, %s\n\n", p.ID, p.To, steps(len(p.Steps)))
	default:
		fmt.Fprintf(w, "Plan %s: %s %s -> %s, %s (policy %s)\n\n", p.ID, p.Action, redact.OrDash(p.From), p.To, steps(len(p.Steps)), p.Policy)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tTYPE\tFROM\tTO\tMETHOD")
	for i, s := range p.Steps {
		fmt.Fprintf(tw, "  %d/%d\t%s\t%s\t%s\t%s\n", i+1, len(p.Steps), s.Type, redact.OrDash(s.From), redact.OrDash(s.To), redact.OrDash(string(s.Method)))
	}
	_ = tw.Flush()
	writeChecks(w, p.Checks, len(p.Steps))
	writeForecast(w, p.Forecast)
}

// writeForecast prints what the first hop does to the running VMIs: a
// count per fate, then each VMI that will not simply live-migrate.
func writeForecast(w io.Writer, f *planner.WorkloadForecast) {
	if f == nil {
		return
	}
	fmt.Fprintf(w, "\nWorkloads (the first hop):")
	for _, fate := range []planner.Fate{planner.FateLiveMigrate, planner.FateRestart, planner.FateShutDown, planner.FateStays} {
		fmt.Fprintf(w, " %s %d", fate, f.Counts[fate])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, u := range f.Unmoved {
		verdict := "refused"
		if u.Accepted {
			verdict = "accepted"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.VMI, u.Fate, verdict, u.Why)
	}
	_ = tw.Flush()
}

// writeChecks prints the preflight report: one line per check of a step.
func writeChecks(w io.Writer, checks []planner.Check, steps int) {
	if len(checks) == 0 {
		return
	}
	fmt.Fprintln(w, "\nPreflight checks:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range checks {
		step := fmt.Sprint(c.Step)
		if steps > 0 {
			step = fmt.Sprintf("%d/%d", c.Step, steps)
		}
		fmt.Fprintf(tw, "  step %s\t%s\t%s\t%s\n", step, c.Name, c.Result, c.Message)
	}
	_ = tw.Flush()
}

func steps(n int) string {
	if n == 1 {
		return "1 step"
	}
	return fmt.Sprintf("%d steps", n)
}
