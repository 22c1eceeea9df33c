//go:build realnode

package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// noise are resources whose objects come and go on their own (events,
// leases, endpoints) or are not KubeVirt's to clean up.
var noise = map[string]bool{"events": true, "events.events.k8s.io": true, "leases.coordination.k8s.io": true,
	"endpoints": true, "endpointslices.discovery.k8s.io": true, "certificatesigningrequests.certificates.k8s.io": true}

// snapshot names every object in the cluster, as
// "resource.group namespace/name", for the resources that can be listed
// (a resource served by an aggregated API that is down is skipped: its
// objects are gone with it).
func snapshot(ctx context.Context, t *testing.T, c *Cluster) map[string]bool {
	t.Helper()
	disc := discovery.NewDiscoveryClientForConfigOrDie(c.Config)
	lists, _ := disc.ServerPreferredResources() // partial on an unavailable APIService
	dyn := dynamic.NewForConfigOrDie(c.Config)
	out := map[string]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			name := res.Name
			if gv.Group != "" {
				name += "." + gv.Group
			}
			if noise[name] || strings.Contains(res.Name, "/") || !slices.Contains(res.Verbs, "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, o := range items.Items {
				key := name + " " + o.GetNamespace() + "/" + o.GetName()
				// A Service's ClusterIP allocation is named by its address:
				// keyed by its Service, it is that Service's.
				if ns, ok, _ := unstructured.NestedString(o.Object, "spec", "parentRef", "namespace"); ok && name == "ipaddresses.networking.k8s.io" {
					svc, _, _ := unstructured.NestedString(o.Object, "spec", "parentRef", "name")
					key = name + " " + ns + "/" + svc + "@" + o.GetName()
				}
				out[key] = true
			}
		}
	}
	return out
}

// kvgitopsOwn says whether a snapshot key is kvgitops's own (deploy/ and
// what the agent keeps in its namespace), not KubeVirt's.
func kvgitopsOwn(key string) bool {
	_, obj, _ := strings.Cut(key, " ")
	ns, name, _ := strings.Cut(obj, "/")
	return ns == "kvgitops" || strings.HasPrefix(name, "kvgitops")
}
