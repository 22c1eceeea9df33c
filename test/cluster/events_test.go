//go:build realnode

package cluster

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// timeline logs, with KVGITOPS_TIMELINE set, the events of KubeVirt's,
// kvgitops's and the guests' namespaces since a step's commit, each with
// the seconds from the commit to its first and last occurrence: where a
// step's time went (a probe's initial delay, a Lease waited out).
func (r *realKubeVirt) timeline(ctx context.Context, what string, since time.Time) {
	if os.Getenv("KVGITOPS_TIMELINE") == "" {
		return
	}
	type entry struct {
		first float64
		line  string
	}
	var es []entry
	for _, ns := range []string{"kubevirt", "kvgitops", "vms"} {
		evs, err := r.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			r.t.Logf("timeline: events of %s: %v", ns, err)
			continue
		}
		for _, e := range evs.Items {
			first, last := e.FirstTimestamp.Time, e.LastTimestamp.Time
			if first.IsZero() {
				first = e.EventTime.Time
			}
			if last.IsZero() {
				last = first
			}
			if last.Before(since) {
				continue
			}
			f, l := first.Sub(since).Seconds(), last.Sub(since).Seconds()
			es = append(es, entry{f, fmt.Sprintf("%6.1f %6.1f ×%d %s/%s %s: %.140s", f, l, max(e.Count, 1),
				e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, strings.ReplaceAll(e.Message, "\n", " "))})
		}
	}
	slices.SortStableFunc(es, func(a, b entry) int { return cmp.Compare(a.first, b.first) })
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.line
	}
	r.t.Logf("%s: the events since the commit (seconds to first, last):\n%s", what, strings.Join(lines, "\n"))
}
