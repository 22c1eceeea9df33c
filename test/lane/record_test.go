package lane

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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kvgitops/kvgitops/redact"
)

var (
	kvGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "kubevirts"}
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// recorder keeps the distinct states of the KubeVirt CR, in order, as a
// reviewer comparing two operators would read them: phase, conditions
// with reasons, target and observed versions (as FROM and TO), whether the
// deployment ids match, and finalizers.
type recorder struct {
	mu     sync.Mutex
	states []string
	stop   context.CancelFunc
	done   chan struct{}
}

func record(dyn dynamic.Interface, from, to string) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			kv, err := dyn.Resource(kvGVR).Namespace("kubevirt").Get(ctx, "kubevirt", metav1.GetOptions{})
			if err == nil {
				s := state(kv, from, to)
				r.mu.Lock()
				if n := len(r.states); n == 0 || r.states[n-1] != s {
					r.states = append(r.states, s)
				}
				r.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return r
}

func (r *recorder) finish() []string {
	r.stop()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

func state(kv *unstructured.Unstructured, from, to string) string {
	str := func(path ...string) string { v, _, _ := unstructured.NestedString(kv.Object, path...); return v }
	ver := func(v string) string {
		switch v {
		case from:
			return "FROM"
		case to:
			return "TO"
		case "":
			return "-"
		}
		return v
	}
	conds, _, _ := unstructured.NestedSlice(kv.Object, "status", "conditions")
	var cs []string
	for _, c := range conds {
		m, _ := c.(map[string]any)
		cs = append(cs, fmt.Sprintf("%v=%v/%v", m["type"], m["status"], m["reason"]))
	}
	sort.Strings(cs)
	ids := "ids-differ"
	if t := str("status", "targetDeploymentID"); t != "" && t == str("status", "observedDeploymentID") {
		ids = "ids-match"
	}
	return fmt.Sprintf("phase=%s target=%s observed=%s %s finalizers=%v [%s]", redact.OrDash(str("status", "phase")),
		ver(str("status", "targetKubeVirtVersion")), ver(str("status", "observedKubeVirtVersion")), ids, kv.GetFinalizers(), strings.Join(cs, " "))
}

// kubevirtObjects lists what of KubeVirt is in the cluster: the operator
// manifest's objects by name and what virt-operator manages, by label.
func kubevirtObjects(ctx context.Context, dyn dynamic.Interface) []string {
	var out []string
	named := []struct {
		gvr      schema.GroupVersionResource
		ns, name string
	}{
		{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", "kubevirt"},
		{crdGVR, "", "kubevirts.kubevirt.io"},
		{schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}, "", "kubevirt-cluster-critical"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "kubevirt-operator"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "kubevirt.io:operator"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, "", "kubevirt-operator"},
		{schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, "kubevirt", "kubevirt-operator"},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "kubevirt", "virt-operator"},
	}
	for _, n := range named {
		if _, err := dyn.Resource(n.gvr).Namespace(n.ns).Get(ctx, n.name, metav1.GetOptions{}); err == nil {
			out = append(out, n.gvr.Resource+"/"+n.name)
		}
	}
	for _, gvr := range []schema.GroupVersionResource{
		crdGVR,
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "apps", Version: "v1", Resource: "daemonsets"},
	} {
		list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by in (virt-operator,kubevirt-operator)"})
		if err != nil {
			continue
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp() == nil {
				out = append(out, gvr.Resource+"/"+o.GetName())
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
