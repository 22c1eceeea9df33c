package simulator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/kvgitops/kvgitops/redact"
)

// Recorder keeps the distinct states of the KubeVirt CR, in order, as a
// reviewer comparing two operators would read them: phase, conditions
// with reasons, target and observed versions (as FROM and TO), whether the
// deployment ids match, whether the operator observed the CR's generation,
// and finalizers.
type Recorder struct {
	mu     sync.Mutex
	states []string
	failed []string // distinct messages of failure conditions
	stop   context.CancelFunc
	done   chan struct{}
}

// Record starts recording the CR kubevirt/kubevirt's states, from and to
// written as FROM and TO, until Finish. It watches the CR, so every
// written state is seen, however briefly it lasted.
func Record(dyn dynamic.Interface, from, to string) *Recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{stop: cancel, done: make(chan struct{})}
	res := dyn.Resource(kubevirtGVR).Namespace("kubevirt")
	add := func(kv *unstructured.Unstructured) {
		s := State(kv, from, to)
		f := failures(kv)
		r.mu.Lock()
		if n := len(r.states); n == 0 || r.states[n-1] != s {
			r.states = append(r.states, s)
		}
		for _, m := range f {
			if !slices.Contains(r.failed, m) {
				r.failed = append(r.failed, m)
			}
		}
		r.mu.Unlock()
	}
	// The state now, read before Record returns (the caller's next write
	// must come after it: a list made later raced the caller's delete and
	// missed the state before it), then every change from it.
	list := func() string {
		l, err := res.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kubevirt"})
		if err != nil {
			return ""
		}
		for i := range l.Items {
			add(&l.Items[i])
		}
		return l.GetResourceVersion()
	}
	first := list()
	go func() {
		defer close(r.done)
		rv := first
		for ctx.Err() == nil {
			if rv == "" {
				if rv = list(); rv == "" {
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			w, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kubevirt", ResourceVersion: rv})
			if err != nil {
				rv = ""
				continue
			}
			for ev := range w.ResultChan() {
				kv, ok := ev.Object.(*unstructured.Unstructured)
				if !ok { // an error event: the version is too old
					rv = ""
					break
				}
				rv = kv.GetResourceVersion()
				if ev.Type != watch.Deleted {
					add(kv)
				}
			}
			w.Stop()
		}
	}()
	return r
}

// Finish stops the recording and returns the states, in order.
func (r *Recorder) Finish() []string {
	r.stop()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

// FinishLogging is Finish, logging through logf each failure condition
// recorded (one whose reason ends in Failed, with its message): what a
// state that differs came from.
func (r *Recorder) FinishLogging(logf func(format string, args ...any)) []string {
	states := r.Finish()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.failed {
		logf("the KubeVirt CR said: %s", f)
	}
	return states
}

// failures are kv's conditions whose reason ends in Failed, as
// "type=status/reason: message" (the message capped).
func failures(kv *unstructured.Unstructured) []string {
	var out []string
	for _, m := range conditions(kv) {
		if reason := fmt.Sprint(m["reason"]); strings.HasSuffix(reason, "Failed") {
			msg := fmt.Sprint(m["message"])
			if len(msg) > 500 {
				msg = msg[:500] + "…"
			}
			out = append(out, fmt.Sprintf("%v=%v/%s: %s", m["type"], m["status"], reason, msg))
		}
	}
	return out
}

// conditions are kv's status conditions.
func conditions(kv *unstructured.Unstructured) []map[string]any {
	conds, _, _ := unstructured.NestedSlice(kv.Object, "status", "conditions")
	out := make([]map[string]any, 0, len(conds))
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// State is one state of the CR kv as Record writes it.
func State(kv *unstructured.Unstructured, from, to string) string {
	str := func(path ...string) string { v, _, _ := unstructured.NestedString(kv.Object, path...); return v }
	ver := func(v string) string {
		switch v {
		case "":
			return "-"
		case from:
			return "FROM"
		case to:
			return "TO"
		}
		return v
	}
	var cs []string
	for _, m := range conditions(kv) {
		cs = append(cs, fmt.Sprintf("%v=%v/%v", m["type"], m["status"], m["reason"]))
	}
	sort.Strings(cs)
	ids := "ids-differ"
	if t := str("status", "targetDeploymentID"); t != "" && t == str("status", "observedDeploymentID") {
		ids = "ids-match"
	}
	gen := "generation-observed"
	if og, ok, _ := unstructured.NestedInt64(kv.Object, "status", "observedGeneration"); !ok || og != kv.GetGeneration() {
		gen = "generation-new"
	}
	return fmt.Sprintf("phase=%s target=%s observed=%s %s %s finalizers=%v [%s]", redact.OrDash(str("status", "phase")),
		ver(str("status", "targetKubeVirtVersion")), ver(str("status", "observedKubeVirtVersion")), ids, gen, kv.GetFinalizers(), strings.Join(cs, " "))
}
