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
	probe := map[string]any{"httpGet": map[string]any{"path": "/metrics", "port": int64(8443), "scheme": "HTTPS"}, "initialDelaySeconds": int64(5), "timeoutSeconds": int64(10)}
	ports := []any{map[string]any{"containerPort": int64(8443), "name": "metrics", "protocol": "TCP"}}
	if AtLeast(tag, "v0.26.0-rc.0") {
		ports = append(ports, map[string]any{"containerPort": int64(8444), "name": "webhooks", "protocol": "TCP"})
	}
	c := map[string]any{
		"name": "virt-operator", "image": image, "imagePullPolicy": "IfNotPresent",
		"env": env, "ports": ports, "readinessProbe": probe, "resources": map[string]any{},
	}
	argv := []any{"virt-operator", "--port", "8443", "-v", "2"}
	if modern {
		c["command"], c["args"] = argv[:1], argv[1:]
	} else {
		c["command"] = argv
	}
	switch {
	case modern:
		c["resources"] = map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "450Mi"}}
		c["securityContext"] = map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []any{"ALL"}},
			"seccompProfile": map[string]any{"type": "RuntimeDefault"}}
	case AtLeast(tag, "v0.41.0-rc.0"):
		c["resources"] = map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "150Mi"}}
	}
	if AtLeast(tag, "v1.8.0-rc.0") {
		c["livenessProbe"] = probe
		c["terminationMessagePolicy"] = "FallbackToLogsOnError"
	}
	pod := map[string]any{"containers": []any{c}, "serviceAccountName": "kubevirt-operator", "securityContext": map[string]any{"runAsNonRoot": true}}
	var mounts, volumes []any
	if AtLeast(tag, "v0.29.0-rc.0") {
		pod["priorityClassName"] = "kubevirt-cluster-critical"
		mounts = append(mounts, map[string]any{"mountPath": "/etc/virt-operator/certificates", "name": "kubevirt-operator-certs", "readOnly": true})
		volumes = append(volumes, map[string]any{"name": "kubevirt-operator-certs", "secret": map[string]any{"optional": true, "secretName": "kubevirt-operator-certs"}})
	}
	if AtLeast(tag, "v0.46.0-rc.0") {
		mounts = append(mounts, map[string]any{"mountPath": "/profile-data", "name": "profile-data"})
		volumes = append(volumes, map[string]any{"emptyDir": map[string]any{}, "name": "profile-data"})
	}
	if mounts != nil {
		c["volumeMounts"], pod["volumes"] = mounts, volumes
	}
	if AtLeast(tag, "v0.28.0-rc.0") {
		pod["tolerations"] = []any{map[string]any{"key": "CriticalAddonsOnly", "operator": "Exists"}}
	}
	if AtLeast(tag, "v0.20.0") {
		pod["affinity"] = map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
			"podAffinityTerm": map[string]any{"labelSelector": map[string]any{"matchExpressions": []any{map[string]any{
				"key": "kubevirt.io", "operator": "In", "values": []any{"virt-operator"}}}}, "topologyKey": "kubernetes.io/hostname"},
			"weight": int64(1)}}}}
	}
	if modern {
		pod["nodeSelector"] = map[string]any{"kubernetes.io/os": "linux"}
		pod["securityContext"] = map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}
	}
	labels := map[string]any{"kubevirt.io": "virt-operator", "prometheus.kubevirt.io": ""}
	if AtLeast(tag, "v0.47.0-rc.0") {
		labels["prometheus.kubevirt.io"] = "true"
	}
	if AtLeast(tag, "v0.52.0-rc.0") {
		labels["name"] = "virt-operator"
	}
	if AtLeast(tag, "v1.7.0-rc.0") {
		labels["np.kubevirt.io/allow-access-cluster-services"] = "true"
	}
	tmeta := map[string]any{"labels": labels, "name": "virt-operator"}
	if !AtLeast(tag, "v0.48.0-rc.0") {
		ann := map[string]any{"scheduler.alpha.kubernetes.io/critical-pod": ""}
		if !AtLeast(tag, "v0.28.0-rc.0") {
			ann["scheduler.alpha.kubernetes.io/tolerations"] = `[{"key":"CriticalAddonsOnly","operator":"Exists"}]`
		}
		tmeta["annotations"] = ann
	}
	sel := map[string]any{"kubevirt.io": "virt-operator"}
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": meta("virt-operator", Namespace, map[string]any{"kubevirt.io": "virt-operator"}),
		"spec": map[string]any{
			"replicas": int64(2), "selector": map[string]any{"matchLabels": sel},
			"strategy": map[string]any{"type": "RollingUpdate"},
			"template": map[string]any{"metadata": tmeta, "spec": pod},
		},
	}
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
