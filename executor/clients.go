package executor

import (
	"k8s.io/client-go/discovery"
	appsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// clients are the typed API groups the executor uses, and nothing more:
// the whole clientset would link (and initialise) every API group's
// client into the agent.
type clients struct {
	core corev1.CoreV1Interface
	apps appsv1.AppsV1Interface
	disc discovery.DiscoveryInterface
}

func newClients(cfg *rest.Config) (clients, error) {
	core, err := corev1.NewForConfig(cfg)
	if err != nil {
		return clients{}, err
	}
	apps, err := appsv1.NewForConfig(cfg)
	if err != nil {
		return clients{}, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return clients{}, err
	}
	return clients{core: core, apps: apps, disc: disc}, nil
}

func (c clients) CoreV1() corev1.CoreV1Interface          { return c.core }
func (c clients) AppsV1() appsv1.AppsV1Interface          { return c.apps }
func (c clients) Discovery() discovery.DiscoveryInterface { return c.disc }
