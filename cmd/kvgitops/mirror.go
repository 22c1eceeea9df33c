package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/kvgitops/kvgitops/mirror"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
)

type mirrorFlags struct {
	plan                         planFlags
	to, ociLayout, out, insecure string
}

// mirrorCommand prepares an air-gapped site for the plan the flags
// describe (as `kvgitops plan`): every image of every release on its path
// copied to --to (or --oci-layout), the manifests rewritten into --out,
// and the agent's settings printed.
func mirrorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f mirrorFlags
	fs := flag.NewFlagSet("kvgitops mirror", flag.ContinueOnError)
	f.plan.register(fs)
	f.plan.rel.registerManifests(fs, release.DefaultManifestBaseURL) // the source's
	fs.StringVar(&f.to, "to", "", "the mirror's repository prefix, e.g. registry.example.com/kubevirt (required)")
	fs.StringVar(&f.ociLayout, "oci-layout", "", "write the images into this OCI layout instead of pushing them to --to")
	fs.StringVar(&f.insecure, "insecure-registry", "", "comma-separated registries (host:port) that may be reached over plain HTTP (default: none but loopback)")
	fs.StringVar(&f.out, "out", "", "directory for the rewritten manifests, releases.txt and mirror.json (required)")
	fs.StringVar(&f.plan.output, "o", "text", "output: text or json (mirror.json)")
	if code, stop := parseCommand(fs, args, nil, stderr, func() error { return problem(f.check()) }); stop {
		return code
	}
	p, reason, err := f.plan.compute(ctx)
	if err != nil {
		writePlanError(stdout, stderr, f.plan.output, reason, err)
		return exitRefused
	}
	tags := releasesOf(p)
	if len(tags) == 0 {
		fmt.Fprintf(stderr, "kvgitops mirror: the plan (%s) installs no release: nothing to mirror\n", p.Action)
		return exitRefused
	}
	rc, err := f.plan.rel.releaseClient()
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops mirror:", err)
		return exitUsage
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		fmt.Fprintln(stderr, "kvgitops mirror:", err)
		return exitRefused
	}
	res, err := mirror.Run(ctx, rc, tags, mirror.Options{To: f.to, OCILayout: f.ociLayout, Out: f.out, Namespace: f.plan.namespace, InsecureRegistries: splitList(f.insecure),
		Progress: func(c mirror.Copied) {
			fmt.Fprintf(stderr, "%s → %s %s%s\n", c.Source, c.Target, c.Digest, c.Skipped)
		}})
	if err != nil {
		fmt.Fprintln(stderr, "kvgitops mirror:", err)
		return exitRefused
	}
	if f.plan.output == "json" {
		_ = json.NewEncoder(stdout).Encode(res)
	} else {
		writeMirrorText(stdout, res, f.out)
	}
	return exitOK
}

func (f mirrorFlags) check() string {
	switch {
	case f.to == "":
		return "--to is required (the mirror's repository prefix, e.g. registry.example.com/kubevirt)"
	case f.out == "":
		return "--out is required (where the rewritten manifests go)"
	}
	return f.plan.check()
}

// releasesOf are the releases a plan installs or upgrades to, in order.
func releasesOf(p planner.Plan) []string {
	var tags []string
	for _, s := range p.Steps {
		if (s.Type == planner.StepInstall || s.Type == planner.StepUpgrade) && planner.ValidTag(s.To) && !slices.Contains(tags, s.To) {
			tags = append(tags, s.To)
		}
	}
	return tags
}

func writeMirrorText(w io.Writer, res *mirror.Result, out string) {
	n, tags := 0, []string{}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range res.Releases {
		tags = append(tags, r.Tag)
		for _, c := range r.Images {
			state := c.Digest
			if c.Skipped != "" {
				state = "skipped: " + c.Skipped
			} else {
				n++
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Tag, c.Component, c.Target, state)
		}
	}
	fmt.Fprintf(w, "Mirrored %d images of %s to %s\n", n, strings.Join(tags, " → "), res.Registry)
	_ = tw.Flush()
	fmt.Fprintf(w, `
Serve %s over HTTPS on your mirror host and set in the agent's configuration (deploy/config.yaml):
  KVGITOPS_RELEASES_URL: "https://<mirror host>/<path>/releases.txt"
  KVGITOPS_MANIFEST_BASE_URL: "https://<mirror host>/<path>"
  KVGITOPS_RELEASE_IMAGE_REGISTRY: %q
  KVGITOPS_RELEASE_PINS: %q
and in deploy/admission-policy.yaml:
  - name: registries
    expression: %q
`, out, res.Registry, res.ReleasePins, res.AdmissionPolicyRegistries)
}
