package simulator_test

import (
	"context"
	"os"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var (
	kvGVR   = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "kubevirts"}
	crdGVR  = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiSvc  = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	vwcGVR  = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mwcGVR  = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	vmiGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1alpha3", Resource: "virtualmachineinstances"}
	waitFor = 30 * time.Second
)

type harness struct {
	cfg  *rest.Config
	sim  *simulator.Simulator
	dyn  dynamic.Interface
	kube kubernetes.Interface
}

func start(t *testing.T) *harness { return startWith(t, simulator.Options{}) }

// startWith starts a simulator with o over the harness defaults.
func startWith(t *testing.T, o simulator.Options) *harness { return startWrapped(t, o, nil) }

// startWrapped is startWith with the simulator's requests going through
// wrap (nil: unwrapped); the harness's own clients are not wrapped.
func startWrapped(t *testing.T, o simulator.Options, wrap transport.WrapperFunc) *harness {
	t.Helper()
	env := testenv.Get(t)
	if err := simulator.Wipe(t.Context(), env.Config); err != nil {
		t.Fatalf("wipe: %v", err)
	}
	if o.RolloutDelay == 0 {
		o.RolloutDelay = 100 * time.Millisecond
	}
	if o.StrategyDelay == 0 {
		o.StrategyDelay = 20 * time.Millisecond
	}
	if o.VMIShutdownDelay == 0 {
		o.VMIShutdownDelay = 10 * time.Millisecond
	}
	simCfg := env.Config
	if wrap != nil {
		simCfg = rest.CopyConfig(env.Config)
		simCfg.Wrap(wrap)
	}
	sim, err := simulator.New(simCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	return &harness{cfg: cfg, sim: sim, dyn: dynamic.NewForConfigOrDie(cfg), kube: kubernetes.NewForConfigOrDie(cfg)}
}

func (h *harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// applyOperator applies a release's kubevirt-operator.yaml, as a user would
// (a release older than v0.40 as a cluster upgraded past Kubernetes 1.22
// holds it: its v1beta1 CRD as v1).
func (h *harness) applyOperator(t *testing.T, tag string) {
	t.Helper()
	if err := testenv.Apply(h.ctx(t), h.cfg, releases.AsStoredSince122(tag)); err != nil {
		t.Fatalf("apply operator %s: %v", tag, err)
	}
}

// install applies both manifests of tag, with spec overrides on the CR, and
// waits for the install to complete.
func (h *harness) install(t *testing.T, tag string, spec map[string]any) {
	t.Helper()
	h.applyOperator(t, tag)
	objs, err := testenv.Decode(releases.CRManifest(tag))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range spec {
		if err := unstructured.SetNestedField(objs[0].Object, v, "spec", k); err != nil {
			t.Fatal(err)
		}
	}
	gvr := kvGVR
	gvr.Version = objs[0].GroupVersionKind().Version
	for attempt := 0; ; attempt++ {
		_, err = h.dyn.Resource(gvr).Namespace("kubevirt").Create(h.ctx(t), objs[0], metav1.CreateOptions{})
		if !apierrors.IsNotFound(err) || attempt > 200 {
			break
		}
		time.Sleep(25 * time.Millisecond) // the CRD is not established yet
	}
	if err != nil {
		t.Fatalf("create CR: %v", err)
	}
	h.wait(t, simulator.Has(simulator.HopCompleted, tag))
}

func (h *harness) wait(t *testing.T, cond func([]simulator.Transition) bool) {
	t.Helper()
	if err := h.sim.WaitFor(h.ctx(t), cond); err != nil {
		t.Fatalf("waiting: %v; transitions: %+v", err, h.sim.Transitions())
	}
}

func (h *harness) kv(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	kv, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Get(h.ctx(t), "kubevirt", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get KubeVirt: %v", err)
	}
	return kv
}

func (h *harness) patchImageTag(t *testing.T, tag string) {
	t.Helper()
	patch := []byte(`[{"op":"add","path":"/spec/imageTag","value":"` + tag + `"}]`)
	if _, err := h.dyn.Resource(kvGVR).Namespace("kubevirt").Patch(h.ctx(t), "kubevirt", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch imageTag %s: %v", tag, err)
	}
}

func (h *harness) exists(t *testing.T, gvr schema.GroupVersionResource, ns, name string) bool {
	t.Helper()
	_, err := h.dyn.Resource(gvr).Namespace(ns).Get(h.ctx(t), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("get %s %s: %v", gvr.Resource, name, err)
	}
	return err == nil
}

func str(obj *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(obj.Object, path...)
	return s
}

// condition returns status/reason/message of a condition type.
func condition(obj *unstructured.Unstructured, typ string) (status, reason, message string, ok bool) {
	cs, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range cs {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return s, r, msg, true
		}
	}
	return "", "", "", false
}

func kinds(ts []simulator.Transition) []simulator.Kind {
	out := make([]simulator.Kind, len(ts))
	for i, t := range ts {
		out[i] = t.Kind
	}
	return out
}

func unstructuredInt(obj *unstructured.Unstructured, path ...string) (int64, bool, error) {
	return unstructured.NestedInt64(obj.Object, path...)
}

// noViolations fails the test if KubeVirt was driven outside its rules.
func (h *harness) noViolations(t *testing.T) {
	t.Helper()
	if v := h.sim.Violations(); len(v) > 0 {
		t.Errorf("the simulator recorded violations: %+v", v)
	}
}
