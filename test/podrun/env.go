package podrun

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// env is the container's environment as the kubelet builds it, in its
// order (a later entry wins): the image's, the Services' links, envFrom,
// env; then HOSTNAME and the apiserver's address.
func (p *Pod) env(ctx context.Context, image []string, c corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	if p.o.Spec.EnableServiceLinks == nil || *p.o.Spec.EnableServiceLinks {
		links, err := p.serviceLinks(ctx)
		if err != nil {
			return nil, err
		}
		for _, kv := range links {
			set(kv[0], kv[1])
		}
	}
	host, port := p.apiserver()
	set("KUBERNETES_SERVICE_HOST", host)
	set("KUBERNETES_SERVICE_PORT", port)
	for _, from := range c.EnvFrom {
		data, err := p.envSource(ctx, from)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		v, err := p.envValue(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
	}
	set("HOSTNAME", p.o.Name)
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// envSource is what one envFrom entry adds.
func (p *Pod) envSource(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		data, err := p.configMap(ctx, from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
		return asStrings(data), err
	case from.SecretRef != nil:
		data, err := p.secret(ctx, from.SecretRef.Name, from.SecretRef.Optional)
		return asStrings(data), err
	}
	return nil, fmt.Errorf("envFrom %+v: not supported", from)
}

func asStrings(data map[string][]byte) map[string]string {
	out := make(map[string]string, len(data))
	for k, v := range data {
		out[k] = string(v)
	}
	return out
}

// envValue resolves one env entry.
func (p *Pod) envValue(ctx context.Context, e corev1.EnvVar) (string, error) {
	if strings.Contains(e.Value, "$(") {
		return "", fmt.Errorf("$(VAR) expansion in %q is not supported", e.Value)
	}
	from := e.ValueFrom
	switch {
	case from == nil:
		return e.Value, nil
	case from.FieldRef != nil:
		switch from.FieldRef.FieldPath {
		case "metadata.name":
			return p.o.Name, nil
		case "metadata.namespace":
			return p.o.Namespace, nil
		case "status.podIP", "status.hostIP":
			return podIP, nil
		case "spec.serviceAccountName":
			return p.serviceAccount(), nil
		}
		return "", fmt.Errorf("field %s: not supported", from.FieldRef.FieldPath)
	case from.ConfigMapKeyRef != nil:
		data, err := p.configMap(ctx, from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Optional)
		return string(data[from.ConfigMapKeyRef.Key]), err
	case from.SecretKeyRef != nil:
		data, err := p.secret(ctx, from.SecretKeyRef.Name, from.SecretKeyRef.Optional)
		return string(data[from.SecretKeyRef.Key]), err
	}
	return "", fmt.Errorf("valueFrom %+v: not supported", from)
}

// serviceLinks are the variables the kubelet adds for each Service of the
// namespace with a cluster IP (enableServiceLinks, on by default):
// NAME_SERVICE_HOST, NAME_SERVICE_PORT[_PORTNAME], NAME_PORT and
// NAME_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
func (p *Pod) serviceLinks(ctx context.Context) ([][2]string, error) {
	list, err := p.kube.CoreV1().Services(p.o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the Services for their links: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var out [][2]string
	for _, s := range list.Items {
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Spec.Ports[0]
		out = append(out, [2]string{name + "_SERVICE_HOST", ip}, [2]string{name + "_SERVICE_PORT", strconv.Itoa(int(first.Port))})
		for _, sp := range s.Spec.Ports {
			if sp.Name != "" {
				out = append(out, [2]string{name + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), strconv.Itoa(int(sp.Port))})
			}
		}
		out = append(out, [2]string{name + "_PORT", strings.ToLower(string(first.Protocol)) + "://" + ip + ":" + strconv.Itoa(int(first.Port))})
		for _, sp := range s.Spec.Ports {
			proto := string(sp.Protocol)
			pre := name + "_PORT_" + strconv.Itoa(int(sp.Port)) + "_" + proto
			out = append(out, [2]string{pre, strings.ToLower(proto) + "://" + ip + ":" + strconv.Itoa(int(sp.Port))},
				[2]string{pre + "_PROTO", strings.ToLower(proto)}, [2]string{pre + "_PORT", strconv.Itoa(int(sp.Port))}, [2]string{pre + "_ADDR", ip})
		}
	}
	return out, nil
}
