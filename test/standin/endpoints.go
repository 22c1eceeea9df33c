package standin

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncEndpoints publishes an EndpointSlice for each Service the apiserver
// calls (webhooks, the aggregated API), pointing at the address the test
// gave the process behind it: virt-operator's webhook and the virt-api
// stand-in. The apiserver must run with --enable-aggregator-routing so it
// dials these instead of an unroutable ClusterIP.
func (s *Standin) syncEndpoints(ctx context.Context) error {
	backends := map[string]string{"kubevirt-operator-webhook": s.opts.OperatorIP, "virt-api": s.opts.VirtAPIIP}
	for svcName, ip := range backends {
		svc, err := s.kube.CoreV1().Services(s.opts.Namespace).Get(ctx, svcName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		want := endpointSlice(svc, ip)
		cur, err := s.kube.DiscoveryV1().EndpointSlices(s.opts.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := s.kube.DiscoveryV1().EndpointSlices(s.opts.Namespace).Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		case err != nil:
			return err
		case !equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) || !equality.Semantic.DeepEqual(cur.Ports, want.Ports):
			cur.Endpoints, cur.Ports = want.Endpoints, want.Ports
			if _, err := s.kube.DiscoveryV1().EndpointSlices(s.opts.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
	}
	return nil
}

// namedPorts resolves the target ports virt-operator's Services name.
var namedPorts = map[string]int32{"webhooks": 8444, "metrics": 8443}

func endpointSlice(svc *corev1.Service, ip string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc.Name + "-standin", Namespace: svc.Namespace, Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	for _, p := range svc.Spec.Ports {
		port := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			port = namedPorts[p.TargetPort.StrVal]
		}
		if port == 0 {
			port = p.Port
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)})
	}
	return es
}
