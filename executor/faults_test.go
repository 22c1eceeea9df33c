package executor_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/kvgitops/kvgitops/executor"
	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/release"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// TestAnUnreadableAPIIsNeverAbsence (RELIABILITY F22): whichever read of
// an observation fails or is too slow (a list refused, an apiserver that
// has not caught up), Observe fails; it never reports KubeVirt, its
// operator or its leftovers as absent, which would plan an install or a
// teardown.
func TestAnUnreadableAPIIsNeverAbsence(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.8.4", planner.MethodOperator)
	env := testenv.Get(t)
	for _, part := range []string{"/deployments", "/apis/kubevirt.io/", "/customresourcedefinitions", "/virtualmachineinstances",
		"/apiservices", "/validatingwebhookconfigurations", "/clusterroles", "/version"} {
		for _, fault := range []string{"503", "slow"} {
			cfg := rest.CopyConfig(env.Config)
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTrip(func(r *http.Request) (*http.Response, error) {
					if strings.Contains(r.URL.Path, part) {
						if fault == "slow" {
							select {
							case <-r.Context().Done():
								return nil, r.Context().Err()
							case <-time.After(5 * time.Second):
							}
						}
						return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
					}
					return rt.RoundTrip(r)
				})
			}
			ex, err := executor.New(cfg, executor.Config{CallTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			o, err := ex.Observe(t.Context())
			if err == nil {
				t.Errorf("%s %s: observed %+v, want an error", part, fault, o.Observed)
			}
		}
	}
}

// TestAConcurrentWriterIsNeverOverwritten (F19): every patch of the KubeVirt
// CR carries the resourceVersion it was decided on. (1) A hop under another
// writer changing the CR as fast as it can: the patch conflicts (asserted:
// the CR is read again), retries within its bound, and every change of the
// other writer survives. (2) A change between the read and the patch that
// makes the decision wrong (the CR starts deleting right after drift
// correction read it): the patch conflicts, the CR is read again, and
// nothing is written to the deleting CR.
func TestAConcurrentWriterIsNeverOverwritten(t *testing.T) {
	var reads atomic.Int64
	var onRead atomic.Pointer[func()]
	h := start(t, harnessOptions{hook: func(point string) {
		if point != "kubevirt-read" {
			return
		}
		reads.Add(1)
		if f := onRead.Swap(nil); f != nil {
			(*f)()
		}
	}})
	h.install(t, "v1.8.3", planner.MethodImageTag)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var last atomic.Int64
	wg.Add(1)
	// The other writer runs until the hop's patch has landed (or 10 s).
	writing := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(writing)
		deadline := time.Now().Add(10 * time.Second)
		for i := int64(1); ctx.Err() == nil && time.Now().Before(deadline); i++ {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"example.com/writer":"%d"}}}`, i)
			u, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(ctx, "kubevirt", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			if err == nil {
				last.Store(i)
				if tag, _, _ := unstructured.NestedString(u.Object, "spec", "imageTag"); tag == "v1.8.4" {
					return
				}
			}
		}
	}()
	// The first read of the hop's patch waits for a change of the other
	// writer that started after the read: the patch is decided on a stale
	// resourceVersion. (With last = k when the read returned, change k+1
	// may already be in the read; k+2 starts only after k+1 returned.)
	stale := func() {
		k := last.Load()
		for last.Load() < k+2 {
			select {
			case <-writing:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	onRead.Store(&stale)
	reads.Store(0)
	var res executor.StepResult
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		// Bounded retries on conflicts inside a step; the agent retries
		// a step that still lost (transient) with back-off.
		if res, err = h.run(t, upgrade("v1.8.3", "v1.8.4", planner.MethodImageTag), time.Minute); err == nil || fault.Stalls(err) {
			break
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("the hop under a concurrent writer: %v (%+v)", err, res)
	}
	if n := reads.Load(); n < 2 {
		t.Errorf("the CR was read %d times for the hop's patch: a patch decided on a stale read went through (no conflict)", n)
	}
	kv, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(t.Context(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kv.GetAnnotations()["example.com/writer"]; got != fmt.Sprint(last.Load()) {
		t.Errorf("the other writer's last change %d was overwritten: %q", last.Load(), got)
	}
	if o := h.observe(t); o.Installed != "v1.8.4" {
		t.Errorf("installed %s after the hop", o.Installed)
	}

	// (2) Drift: a hand-set registry; right after drift correction read
	// the CR, somebody deletes it (it stays, Terminating, behind the
	// operator's finalizer).
	h.patchCR(t, `{"spec":{"imageRegistry":"quay.io/someone"}}`)
	waitFor(t, "the operator to act on the hand-set registry", func() bool {
		o := h.observe(t)
		return o.KubeVirt.ImageRegistry == "quay.io/someone" && o.KubeVirt.Target == "v1.8.4" && o.KubeVirt.Observed == "v1.8.4"
	})
	del := func() {
		if err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Delete(context.Background(), "kubevirt", metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	}
	onRead.Store(&del)
	reads.Store(0)
	done, err := h.exec.RestoreCR(t.Context(), "v1.8.4", "v1.8.4", "")
	if err != nil || done {
		t.Errorf("RestoreCR on a CR deleted after it was read: %v, %v; want nothing written", done, err)
	}
	if n := reads.Load(); n < 2 {
		t.Errorf("the CR was read %d times: the patch was decided on the read from before the deletion", n)
	}
	kv, err = h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(t.Context(), "kubevirt", metav1.GetOptions{})
	if err == nil {
		if reg, _, _ := unstructured.NestedString(kv.Object, "spec", "imageRegistry"); reg != "quay.io/someone" {
			t.Errorf("the deleting CR was patched: spec.imageRegistry %q", reg)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestAMirrorDroppingMidDownloadAppliesNothing (F9): the connection breaks
// half way through kubevirt-operator.yaml: the step fails transiently (the
// agent retries with back-off) and not one object was written.
func TestAMirrorDroppingMidDownloadAppliesNothing(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	before := h.objectVersions(t)
	manifest := releases.OperatorManifest("v1.8.4")
	h.rel.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "kubevirt-operator.yaml") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
		_, _ = w.Write(manifest[:len(manifest)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	_, err := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), time.Minute)
	if err == nil || fault.Stalls(err) {
		t.Fatalf("a download cut in half: %v, want a transient error", err)
	}
	if after := h.objectVersions(t); after != before {
		t.Errorf("objects changed after a failed download:\n before %s\n after  %s", before, after)
	}
}

// TestACrashLoopingOperatorFailsTheHop (F14): the new operator never
// becomes available: the hop fails (no rollback: downgrades are not
// supported) with the Deployment's own reason, for a human.
func TestACrashLoopingOperatorFailsTheHop(t *testing.T) {
	h := start(t, harnessOptions{})
	h.install(t, "v1.7.4", planner.MethodOperator)
	h.sim.CrashLoopOperator("v1.8.4")
	_, err := h.run(t, upgrade("v1.7.4", "v1.8.4", planner.MethodOperator), time.Minute)
	if fault.ReasonOf(err) != executor.ReasonOperatorRolloutFailed || !fault.Stalls(err) || !strings.Contains(err.Error(), "progress") {
		t.Fatalf("a crash-looping operator: %v, want a terminal OperatorRolloutFailed with the Deployment's reason", err)
	}
	if !strings.Contains(err.Error(), "its pods say why: kubectl -n kubevirt get pods -l kubevirt.io=virt-operator") {
		t.Errorf("%v does not say where the reason is", err)
	}
	if o := h.observe(t); o.Installed != "v1.7.4" {
		t.Errorf("installed %s: the hop must not have happened", o.Installed)
	}
}

// TestATagCannotLeaveTheDownloadTemplate (B19): a step whose version is a
// path (plain, encoded, double-encoded) is refused before any request.
func TestATagCannotLeaveTheDownloadTemplate(t *testing.T) {
	h := start(t, harnessOptions{})
	for _, tag := range []string{"../../../etc/passwd", "v1.8.4/../../x", "%2e%2e%2fx", "%252e%252e", "v1.8.4?x=1", "v1.8.4#x"} {
		before := h.rel.Requests()
		_, err := h.run(t, planner.Step{Type: planner.StepInstall, To: tag, Method: planner.MethodOperator}, 10*time.Second)
		if fault.ReasonOf(err) != release.ReasonManifestRejected {
			t.Errorf("tag %q: %v, want ManifestRejected", tag, err)
		}
		if n := h.rel.Requests() - before; n != 0 {
			t.Errorf("tag %q reached the release server (%d requests)", tag, n)
		}
	}
}

// objectVersions is the resourceVersion of every object an operator
// manifest holds, for "nothing was written".
func (h *harness) objectVersions(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, o := range []struct{ group, version, resource, ns, name string }{
		{"apps", "v1", "deployments", "kubevirt", "virt-operator"},
		{"apiextensions.k8s.io", "v1", "customresourcedefinitions", "", "kubevirts.kubevirt.io"},
		{"rbac.authorization.k8s.io", "v1", "clusterroles", "", "kubevirt-operator"},
		{"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "", "kubevirt-operator"},
		{"", "v1", "serviceaccounts", "kubevirt", "kubevirt-operator"},
		{"", "v1", "namespaces", "", "kubevirt"},
	} {
		u, err := h.dyn.Resource(gvr(o.group, o.version, o.resource)).Namespace(o.ns).Get(t.Context(), o.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s ", o.name, u.GetResourceVersion())
	}
	return b.String()
}
