package e2e

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// exists reports whether a leftover-named APIService or webhook exists.
func (e *e2e) exists(name string) bool {
	dyn := dynamic.NewForConfigOrDie(e.st.Admin)
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	} {
		if _, err := dyn.Resource(gvr).Get(e.t.Context(), name, metav1.GetOptions{}); err == nil {
			return true
		}
	}
	return false
}
