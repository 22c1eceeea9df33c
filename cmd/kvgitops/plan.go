package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/kvgitops/kvgitops/planner"
)

// Reasons `plan` reports beyond the planner's own, for inputs it cannot read.
const (
	reasonCatalogUnavailable = "CatalogUnavailable"
	reasonClusterUnavailable = "ClusterUnavailable"
)

type planFlags struct {
	desired, installed, mode, output, kubeconfig, namespace string
	rel                                                     releaseFlags
}

func planCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f planFlags
	fs := flag.NewFlagSet("kvgitops plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.desired, "desired", "", "path of the desired file (required)")
	fs.StringVar(&f.rel.releasesURL, "releases", "", "release catalog: a file (one tag per line, or GitHub releases JSON) or an https URL of the GitHub releases API (required)")
	fs.StringVar(&f.rel.caFile, "release-ca-file", "", "PEM bundle to trust for the releases URL (default: system roots)")
	fs.StringVar(&f.rel.networks, "release-allowed-networks", "", "comma-separated CIDRs the releases URL may resolve to (private and loopback addresses are refused otherwise)")
	fs.StringVar(&f.installed, "installed", "", `installed KubeVirt version, or "none" (this or --kubeconfig)`)
	fs.StringVar(&f.mode, "mode", string(planner.ModeLocked), "with --installed: Locked or ImageTag")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "observe a live cluster through this kubeconfig instead of --installed")
	fs.StringVar(&f.namespace, "kubevirt-namespace", "kubevirt", "with --kubeconfig: KubeVirt's namespace")
	fs.StringVar(&f.output, "o", "text", "output: text or json")
	if err := parseFlags(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "kvgitops plan:", err)
		return exitUsage
	}
	if msg := f.check(); msg != "" {
		fmt.Fprintln(stderr, "kvgitops plan:", msg)
		fs.Usage()
		return exitUsage
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
	case f.installed != "" && f.installed != "none" && !planner.ValidTag(f.installed):
		return fmt.Sprintf("--installed must be a release tag such as v1.8.4 or none, got %q", f.installed)
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
	cat, err := loadCatalog(ctx, f.rel)
	if err != nil {
		return planner.Plan{}, reasonCatalogUnavailable, err
	}
	var o planner.Observed
	if f.kubeconfig != "" {
		if o, err = observeCluster(ctx, f.kubeconfig, f.namespace); err != nil {
			return planner.Plan{}, reasonClusterUnavailable, err
		}
	} else if f.installed != "none" {
		o = planner.Observed{Installed: f.installed, OperatorVersion: f.installed, Mode: planner.Mode(f.mode), KubeVirt: true, OperatorPresent: true}
	}
	p, err := planner.Compute(d, o, cat)
	return p, string(planner.ReasonOf(err)), err
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
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		msg := err.Error()
		var re *planner.RefusalError
		if errors.As(err, &re) {
			msg = re.Message
		}
		_ = json.NewEncoder(stdout).Encode(map[string]body{"error": {Reason: reason, Message: msg}})
		return
	}
	fmt.Fprintf(stderr, "kvgitops plan: refused (%s): %v\n", reason, err)
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
		fmt.Fprintf(w, "Plan %s: Teardown of %s, %s\n\n", p.ID, orDash(p.From), steps(len(p.Steps)))
	case planner.ActionInstall:
		fmt.Fprintf(w, "Plan %s: Install %s, %s\n\n", p.ID, p.To, steps(len(p.Steps)))
	default:
		fmt.Fprintf(w, "Plan %s: %s %s -> %s, %s (policy %s)\n\n", p.ID, p.Action, orDash(p.From), p.To, steps(len(p.Steps)), p.Policy)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tTYPE\tFROM\tTO\tMETHOD")
	for i, s := range p.Steps {
		fmt.Fprintf(tw, "  %d/%d\t%s\t%s\t%s\t%s\n", i+1, len(p.Steps), s.Type, orDash(s.From), orDash(s.To), orDash(string(s.Method)))
	}
	_ = tw.Flush()
}

func steps(n int) string {
	if n == 1 {
		return "1 step"
	}
	return fmt.Sprintf("%d steps", n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
