package releases

import (
	"crypto/sha256"
	"encoding/hex"
)

// OperatorDeployment is the virt-operator Deployment of a release, in the
// shape of its era. Where two genuine assets bracket a change and no
// source names the release that made it, the change is placed at the first
// genuine asset that shows it. How the version is carried (docs/kubevirt.md, "How the operator reads its version"):
//   - v0.17–v0.19: tagged image, OPERATOR_IMAGE;
//   - v0.20–v0.39: image by digest, KUBEVIRT_VERSION and VIRT_*_SHASUM;
//   - v0.40–v0.58.0: tagged image, OPERATOR_IMAGE, no KUBEVIRT_VERSION;
//   - v0.58.1+: tagged image, VIRT_OPERATOR_IMAGE and KUBEVIRT_VERSION.
func OperatorDeployment(tag string) map[string]any {
	image, env := operatorImage(tag)
	probe := map[string]any{"httpGet": map[string]any{"path": "/metrics", "port": int64(8443), "scheme": "HTTPS"}, "initialDelaySeconds": int64(5), "timeoutSeconds": int64(10)}
	d := &operatorDeployment{
		probe: probe,
		c: map[string]any{
			"name": "virt-operator", "image": image, "imagePullPolicy": "IfNotPresent", "env": env,
			"ports":          []any{map[string]any{"containerPort": int64(8443), "name": "metrics", "protocol": "TCP"}},
			"readinessProbe": probe, "resources": map[string]any{},
			"command": []any{"virt-operator", "--port", "8443", "-v", "2"},
		},
		pod:    map[string]any{"serviceAccountName": "kubevirt-operator", "securityContext": map[string]any{"runAsNonRoot": true}},
		labels: map[string]any{"kubevirt.io": "virt-operator", "prometheus.kubevirt.io": ""},
	}
	d.tmeta = map[string]any{"labels": d.labels, "name": "virt-operator"}
	for _, e := range operatorEras {
		if (e.since == "" || AtLeast(tag, e.since)) && (e.until == "" || !AtLeast(tag, e.until)) {
			e.change(d)
		}
	}
	d.pod["containers"] = []any{d.c}
	if d.mounts != nil {
		d.c["volumeMounts"], d.pod["volumes"] = d.mounts, d.volumes
	}
	sel := map[string]any{"kubevirt.io": "virt-operator"}
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": meta("virt-operator", Namespace, map[string]any{"kubevirt.io": "virt-operator"}),
		"spec": map[string]any{
			"replicas": int64(2), "selector": map[string]any{"matchLabels": sel},
			"strategy": map[string]any{"type": "RollingUpdate"},
			"template": map[string]any{"metadata": d.tmeta, "spec": d.pod},
		},
	}
}

// operatorImage is how a release carries its image and version (see
// OperatorDeployment): the container's image and its environment.
func operatorImage(tag string) (string, []any) {
	reg := Registry(tag)
	image := reg + "/virt-operator:" + tag
	digest := AtLeast(tag, "v0.20.0") && !AtLeast(tag, "v0.40.0-rc.0")
	if digest {
		image = reg + "/virt-operator@" + ImageDigest(tag)
	}
	modern := AtLeast(tag, "v0.58.1")
	imageEnv := "OPERATOR_IMAGE"
	if modern {
		imageEnv = "VIRT_OPERATOR_IMAGE"
	}
	env := []any{
		map[string]any{"name": imageEnv, "value": image},
		map[string]any{"name": "WATCH_NAMESPACE", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.annotations['olm.targetNamespaces']"}}},
	}
	if digest || modern {
		env = append(env, map[string]any{"name": "KUBEVIRT_VERSION", "value": tag})
	}
	if digest {
		for _, c := range []string{"VIRT_API", "VIRT_CONTROLLER", "VIRT_HANDLER", "VIRT_LAUNCHER"} {
			env = append(env, map[string]any{"name": c + "_SHASUM", "value": fakeDigest(c, tag)})
		}
	}
	return image, env
}

// operatorDeployment is the virt-operator Deployment being built for a
// release: its container, pod spec and template metadata.
type operatorDeployment struct {
	probe                 map[string]any
	c, pod, labels, tmeta map[string]any
	mounts, volumes       []any
}

// operatorEras are the changes to the virt-operator Deployment across
// releases, in order: each applies to the releases from since (when set)
// and before until (when set). The fidelity tests hold them to the genuine
// manifests.
var operatorEras = []struct {
	since, until string
	change       func(*operatorDeployment)
}{
	{until: "v0.48.0-rc.0", change: func(d *operatorDeployment) {
		d.tmeta["annotations"] = map[string]any{"scheduler.alpha.kubernetes.io/critical-pod": ""}
	}},
	{until: "v0.28.0-rc.0", change: func(d *operatorDeployment) {
		d.tmeta["annotations"].(map[string]any)["scheduler.alpha.kubernetes.io/tolerations"] = `[{"key":"CriticalAddonsOnly","operator":"Exists"}]`
	}},
	{since: "v0.20.0", change: func(d *operatorDeployment) {
		d.pod["affinity"] = map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
			"podAffinityTerm": map[string]any{"labelSelector": map[string]any{"matchExpressions": []any{map[string]any{
				"key": "kubevirt.io", "operator": "In", "values": []any{"virt-operator"}}}}, "topologyKey": "kubernetes.io/hostname"},
			"weight": int64(1)}}}}
	}},
	{since: "v0.26.0-rc.0", change: func(d *operatorDeployment) {
		d.c["ports"] = append(d.c["ports"].([]any), map[string]any{"containerPort": int64(8444), "name": "webhooks", "protocol": "TCP"})
	}},
	{since: "v0.28.0-rc.0", change: func(d *operatorDeployment) {
		d.pod["tolerations"] = []any{map[string]any{"key": "CriticalAddonsOnly", "operator": "Exists"}}
	}},
	{since: "v0.29.0-rc.0", change: func(d *operatorDeployment) {
		d.pod["priorityClassName"] = "kubevirt-cluster-critical"
		d.mount(map[string]any{"mountPath": "/etc/virt-operator/certificates", "name": "kubevirt-operator-certs", "readOnly": true},
			map[string]any{"name": "kubevirt-operator-certs", "secret": map[string]any{"optional": true, "secretName": "kubevirt-operator-certs"}})
	}},
	{since: "v0.41.0-rc.0", change: func(d *operatorDeployment) {
		d.c["resources"] = map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "150Mi"}}
	}},
	{since: "v0.46.0-rc.0", change: func(d *operatorDeployment) {
		d.mount(map[string]any{"mountPath": "/profile-data", "name": "profile-data"}, map[string]any{"emptyDir": map[string]any{}, "name": "profile-data"})
	}},
	{since: "v0.47.0-rc.0", change: func(d *operatorDeployment) { d.labels["prometheus.kubevirt.io"] = "true" }},
	{since: "v0.52.0-rc.0", change: func(d *operatorDeployment) { d.labels["name"] = "virt-operator" }},
	{since: "v0.58.1", change: func(d *operatorDeployment) {
		argv := d.c["command"].([]any)
		d.c["command"], d.c["args"] = argv[:1], argv[1:]
		d.c["resources"] = map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "450Mi"}}
		d.c["securityContext"] = map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []any{"ALL"}},
			"seccompProfile": map[string]any{"type": "RuntimeDefault"}}
		d.pod["nodeSelector"] = map[string]any{"kubernetes.io/os": "linux"}
		d.pod["securityContext"] = map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}
	}},
	{since: "v1.7.0-rc.0", change: func(d *operatorDeployment) { d.labels["np.kubevirt.io/allow-access-cluster-services"] = "true" }},
	{since: "v1.8.0-rc.0", change: func(d *operatorDeployment) {
		d.c["livenessProbe"] = d.probe
		d.c["terminationMessagePolicy"] = "FallbackToLogsOnError"
	}},
}

func (d *operatorDeployment) mount(mount, volume map[string]any) {
	d.mounts, d.volumes = append(d.mounts, mount), append(d.volumes, volume)
}

// fakeDigest is a stable stand-in for an image digest of a digest build.
func fakeDigest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
