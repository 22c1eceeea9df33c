package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

// releaseCommand dispatches `kvgitops release <sub>`.
func releaseCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: kvgitops release check --tag TAG (--file PATH | --manifest-base-url URL) [-o text|json]")
		return exitUsage
	}
	return releaseCheck(ctx, args[1:], stdout, stderr)
}

type checkFlags struct {
	tag, file, output, namespace string
	rel                          releaseFlags
}

// releaseCheck vets a kubevirt-operator.yaml exactly as the agent does
// (release.VetRelease) and prints the verdict: exit 0 accepted, 1 refused,
// 2 usage or fetch error.
func releaseCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f checkFlags
	fs := flag.NewFlagSet("kvgitops release check", flag.ContinueOnError)
	fs.StringVar(&f.tag, "tag", "", "release tag the manifest claims to be (required)")
	fs.StringVar(&f.file, "file", "", "a local kubevirt-operator.yaml (else it is fetched from --manifest-base-url)")
	f.rel.registerManifests(fs, "") // none: --file, else GitHub's release downloads
	f.rel.registerTransport(fs)
	fs.StringVar(&f.namespace, "kubevirt-namespace", "kubevirt", "KubeVirt's namespace")
	fs.StringVar(&f.output, "o", "text", "output: text or json")
	if code, stop := parseCommand(fs, args, nil, stderr, nil); stop {
		return code
	}
	switch {
	case !planner.ValidTag(f.tag):
		fmt.Fprintf(stderr, "kvgitops release check: --tag must be a release tag such as v1.4.0, got %q\n", f.tag)
		return exitUsage
	case f.output != "text" && f.output != "json":
		fmt.Fprintf(stderr, "kvgitops release check: -o must be text or json, got %q\n", f.output)
		return exitUsage
	case f.file != "" && f.rel.manifestBase != "":
		fmt.Fprintln(stderr, "kvgitops release check: give --file or --manifest-base-url, not both")
		return exitUsage
	}
	v, err := f.vet(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops release check:", err)
		return exitUsage
	}
	if f.output == "json" {
		_ = json.NewEncoder(stdout).Encode(checkReport(v))
	} else {
		writeCheckText(stdout, v)
	}
	if !v.Accepted() {
		return exitRefused
	}
	return exitOK
}

func (f checkFlags) vet(ctx context.Context) (*release.Vetting, error) {
	if f.file != "" {
		data, err := readCapped(f.file, release.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		pins, err := f.rel.parsePins()
		if err != nil {
			return nil, err
		}
		return release.VetRelease(data, f.tag, release.VetOptions{Namespace: f.namespace, Registries: splitList(f.rel.registries)}, pins), nil
	}
	if f.rel.manifestBase == "" {
		f.rel.manifestBase = release.DefaultManifestBaseURL
	}
	rc, err := f.rel.releaseClient()
	if err != nil {
		return nil, err
	}
	return rc.CheckOperatorManifest(ctx, f.tag, f.namespace)
}

// report is the JSON of `release check -o json`.
type report struct {
	Accepted   bool                `json:"accepted"`
	Tag        string              `json:"tag"`
	Version    string              `json:"version"`
	SHA256     string              `json:"sha256"`
	Objects    []reportObject      `json:"objects"`
	Violations []release.Violation `json:"violations"`
}

type reportObject struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

func checkReport(v *release.Vetting) report {
	r := report{Accepted: v.Accepted(), Tag: v.Tag, Version: v.Version, SHA256: v.SHA256, Objects: []reportObject{}, Violations: v.Violations}
	if r.Violations == nil {
		r.Violations = []release.Violation{}
	}
	for _, o := range v.Objects {
		r.Objects = append(r.Objects, reportObject{Kind: o.GetKind(), Name: o.GetName(), Namespace: o.GetNamespace()})
	}
	return r
}

func writeCheckText(w io.Writer, v *release.Vetting) {
	if v.Accepted() {
		fmt.Fprintf(w, "kubevirt-operator.yaml of %s: accepted\n", v.Tag)
	} else {
		fmt.Fprintf(w, "kubevirt-operator.yaml of %s: refused, %d violation(s)\n", v.Tag, len(v.Violations))
		for _, x := range v.Violations {
			fmt.Fprintf(w, "  - %s\n", x)
		}
	}
	version := v.Version
	if version == "" {
		version = "(no virt-operator Deployment)"
	}
	fmt.Fprintf(w, "version: %s\nsha256:  %s\n", version, v.SHA256)
	if v.Accepted() {
		fmt.Fprintf(w, "pin:     --release-pins %s=%s\n", v.Tag, v.SHA256)
	}
	fmt.Fprintf(w, "objects (%d):\n", len(v.Objects))
	for _, o := range v.Objects {
		name := o.GetName()
		if ns := o.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
		fmt.Fprintf(w, "  %s %s\n", o.GetKind(), strings.TrimSpace(name))
	}
}
