package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvgitops/kvgitops/redact"
)

func writeFleetTable(w io.Writer, r fleetReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tRING\tDESIRED\tOBSERVED\tPHASE\tREASON\tUPDATED")
	for _, c := range r.Cluster {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Ring, desiredCell(c), redact.OrDash(c.Observed), phaseCell(c), redact.OrDash(c.Reason), when(c.Updated))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "RING\tSTATE\tDONE\tSOAK\tCONTROLS")
	for _, g := range r.Rings {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", g.Name, g.State, g.Done, g.Clusters, redact.OrDash(g.Soak), redact.OrDash(g.Controls))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, summaryLine(r))
}

// writeFleetMarkdown is a dashboard a CI job can commit: Git hosts render
// the Mermaid chart and the tables.
func writeFleetMarkdown(w io.Writer, r fleetReport) {
	fmt.Fprintf(w, "# KubeVirt fleet: %s\n\n%s\n\n", r.Version, summaryLine(r))
	fmt.Fprintln(w, "```mermaid\nflowchart LR")
	ids := map[string]string{}
	for i, g := range r.Rings {
		fmt.Fprintf(w, "  subgraph r%d[\"%s: %s %d/%d\"]\n", i, mermaidText(g.Name), g.State, g.Done, g.Clusters)
		for _, c := range r.Cluster {
			if c.Ring != g.Name {
				continue
			}
			id := fmt.Sprintf("c%d", len(ids))
			ids[c.Name] = id
			fmt.Fprintf(w, "    %s[\"%s<br/>%s %s\"]:::%s\n", id, mermaidText(c.Name), mermaidText(redact.OrDash(c.Observed)), mermaidText(phaseCell(c)), phaseClass(c))
		}
		fmt.Fprintln(w, "  end")
		if i > 0 {
			fmt.Fprintf(w, "  r%d --> r%d\n", i-1, i)
		}
	}
	fmt.Fprintln(w, "  classDef ok fill:#d3f9d8,stroke:#2b8a3e\n  classDef busy fill:#fff3bf,stroke:#e67700\n  classDef bad fill:#ffe3e3,stroke:#c92a2a\n  classDef wait fill:#f1f3f5,stroke:#868e96\n```")
	for _, g := range r.Rings {
		soak := ""
		if g.Soak != "" {
			soak = ", soak " + g.Soak
		}
		if g.Controls != "" {
			soak += ", " + g.Controls
		}
		fmt.Fprintf(w, "\n## Ring %s: %s (%d/%d done%s)\n\n", g.Name, g.State, g.Done, g.Clusters, soak)
		fmt.Fprintln(w, "| cluster | desired | observed | phase | reason | updated | message |\n|---|---|---|---|---|---|---|")
		for _, c := range r.Cluster {
			if c.Ring == g.Name {
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", c.Name, desiredCell(c), markdownCell(redact.OrDash(c.Observed)), phaseCell(c),
					markdownCell(redact.OrDash(c.Reason)), when(c.Updated), markdownCell(redact.Text(c.Message, 200)))
			}
		}
	}
}

func summaryLine(r fleetReport) string {
	s := fmt.Sprintf("fleet %s (digest %s", r.Version, r.Digest)
	if r.Since != nil {
		s += ", since " + r.Since.UTC().Format(time.RFC3339)
	}
	s += "): "
	if r.Paused {
		s += "paused (spec.paused); "
	}
	if r.Healthy {
		return s + "healthy"
	}
	return s + fmt.Sprintf("%d problem(s): %s", len(r.Problem), strings.Join(r.Problem, "; "))
}

func desiredCell(c clusterLine) string {
	if c.Held != "" {
		return c.Desired + " (" + c.Held + ")"
	}
	return c.Desired
}

func phaseCell(c clusterLine) string {
	if c.Stale {
		return c.Phase + " (stale)"
	}
	return c.Phase
}

func phaseClass(c clusterLine) string {
	switch {
	case c.Stale || c.Phase == "Failed" || c.Phase == "Refused" || c.Phase == "Invalid":
		return "bad"
	case c.Phase == "Succeeded":
		return "ok"
	case c.Phase == "Progressing":
		return "busy"
	}
	return "wait"
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// mermaidText keeps a label inside its quotes.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ").Replace(s)
}

// markdownCell keeps untrusted text inert in a table cell: no heading,
// link, image, emphasis, HTML or code span can start in it.
func markdownCell(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', '`', '*', '_', '[', ']', '(', ')', '#', '!', '<', '>', '|', '~', '&':
			b.WriteByte('\\')
		case '\n', '\r':
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}
