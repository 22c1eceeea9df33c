package releases

import (
	"bytes"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Namespace is where the release manifests put KubeVirt.
const Namespace = "kubevirt"

// OperatorManifest renders kubevirt-operator.yaml for tag, era by era
// (FACTS.md §3.1, §3.2). One deviation: releases before v0.40 shipped the
// CRD as apiextensions.k8s.io/v1beta1, which no apiserver since 1.22 serves;
// the fixture always uses v1 with the served versions of the era.
func OperatorManifest(tag string) []byte {
	objs := []any{namespace(tag), kubeVirtCRD(tag)}
	if AtLeast(tag, "v0.29.0-rc.0") {
		objs = append(objs, priorityClass())
	}
	objs = append(objs, kubevirtOperatorAggregateRole(), serviceAccount())
	if AtLeast(tag, "v0.29.0-rc.0") {
		objs = append(objs, operatorRole(), operatorRoleBinding())
	}
	objs = append(objs, operatorClusterRole(tag), operatorClusterRoleBinding(), OperatorDeployment(tag))
	return render(objs)
}

// CRManifest renders kubevirt-cr.yaml for tag (FACTS.md §3.3).
func CRManifest(tag string) []byte {
	spec := map[string]any{"imagePullPolicy": "IfNotPresent"}
	if AtLeast(tag, "v0.30.0-rc.0") {
		spec["certificateRotateStrategy"] = map[string]any{}
	}
	if AtLeast(tag, "v0.34.0-rc.0") {
		spec["configuration"] = map[string]any{}
		spec["customizeComponents"] = map[string]any{}
	}
	if AtLeast(tag, "v0.40.0-rc.0") {
		spec["configuration"] = map[string]any{"developerConfiguration": map[string]any{"featureGates": []any{}}}
		spec["workloadUpdateStrategy"] = map[string]any{}
	}
	return render([]any{map[string]any{
		"apiVersion": "kubevirt.io/" + CRAPIVersion(tag),
		"kind":       "KubeVirt",
		"metadata":   map[string]any{"name": "kubevirt", "namespace": Namespace},
		"spec":       spec,
	}})
}

// CRAPIVersion is the kubevirt.io version of the release's CR file.
func CRAPIVersion(tag string) string {
	if AtLeast(tag, "v0.37.0-rc.0") {
		return "v1"
	}
	return "v1alpha3"
}

func render(objs []any) []byte {
	var b bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			panic(fmt.Sprintf("render fixture: %v", err))
		}
		// Typed objects carry empty status and creationTimestamp; real
		// manifests do not.
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			panic(fmt.Sprintf("render fixture: %v", err))
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		if data, err = yaml.Marshal(m); err != nil {
			panic(fmt.Sprintf("render fixture: %v", err))
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes()
}

func meta(name, ns string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
}

var operatorLabel = map[string]string{"operator.kubevirt.io": ""}

func namespace(tag string) *corev1.Namespace {
	labels := map[string]string{"kubevirt.io": ""}
	if AtLeast(tag, "v0.58.0-rc.0") {
		labels["pod-security.kubernetes.io/enforce"] = "privileged"
	}
	return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: meta(Namespace, "", labels)}
}

// kubeVirtCRD follows FACTS.md §1.2: v1alpha3 only until v0.36, v1 served
// from v0.37, v1 the storage version from v1.0.0-beta.0, a status
// subresource from v0.33.
func kubeVirtCRD(tag string) *apiextensionsv1.CustomResourceDefinition {
	schema := &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
		Type:     "object",
		Required: []string{"spec"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec":   {Type: "object", XPreserveUnknownFields: ptr(true)},
			"status": {Type: "object", XPreserveUnknownFields: ptr(true)},
		},
	}}
	var sub *apiextensionsv1.CustomResourceSubresources
	if AtLeast(tag, "v0.33.0-rc.0") {
		sub = &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}}
	}
	columns := []apiextensionsv1.CustomResourceColumnDefinition{
		{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		{Name: "Phase", Type: "string", JSONPath: ".status.phase"},
	}
	version := func(name string, storage bool) apiextensionsv1.CustomResourceDefinitionVersion {
		v := apiextensionsv1.CustomResourceDefinitionVersion{Name: name, Served: true, Storage: storage, Schema: schema, Subresources: sub, AdditionalPrinterColumns: columns}
		if name == "v1alpha3" && AtLeast(tag, "v1.0.0-beta.0") {
			v.Deprecated = true
			v.DeprecationWarning = ptr("kubevirt.io/v1alpha3 is now deprecated and will be removed in a future release.")
		}
		return v
	}
	var versions []apiextensionsv1.CustomResourceDefinitionVersion
	switch {
	case AtLeast(tag, "v1.0.0-beta.0"):
		versions = append(versions, version("v1", true), version("v1alpha3", false))
	case AtLeast(tag, "v0.37.0-rc.0"):
		versions = append(versions, version("v1", false), version("v1alpha3", true))
	default:
		versions = append(versions, version("v1alpha3", true))
	}
	names := apiextensionsv1.CustomResourceDefinitionNames{
		Kind: "KubeVirt", ListKind: "KubeVirtList", Plural: "kubevirts", Singular: "kubevirt", ShortNames: []string{"kv", "kvs"},
	}
	if AtLeast(tag, "v0.19.0-rc.0") {
		names.Categories = []string{"all"}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: meta("kubevirts.kubevirt.io", "", operatorLabel),
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "kubevirt.io", Names: names, Scope: apiextensionsv1.NamespaceScoped, Versions: versions,
		},
	}
}

func priorityClass() *schedulingv1.PriorityClass {
	return &schedulingv1.PriorityClass{
		TypeMeta:    metav1.TypeMeta{APIVersion: "scheduling.k8s.io/v1", Kind: "PriorityClass"},
		ObjectMeta:  meta("kubevirt-cluster-critical", "", nil),
		Value:       1000000000,
		Description: "This priority class should be used for core kubevirt components only.",
	}
}

func kubevirtOperatorAggregateRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta("kubevirt.io:operator", "", map[string]string{
			"operator.kubevirt.io": "", "rbac.authorization.k8s.io/aggregate-to-admin": "true",
		}),
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"kubevirt.io"}, Resources: []string{"kubevirts"},
			Verbs: []string{"get", "delete", "create", "update", "patch", "list", "watch", "deletecollection"},
		}},
	}
}

func serviceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta("kubevirt-operator", Namespace, map[string]string{"kubevirt.io": ""}),
	}
}

func operatorRole() *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: meta("kubevirt-operator", Namespace, map[string]string{"kubevirt.io": ""}),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		},
	}
}

func operatorRoleBinding() *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta("kubevirt-operator-rolebinding", Namespace, map[string]string{"kubevirt.io": ""}),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubevirt-operator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kubevirt-operator", Namespace: Namespace}},
	}
}

// operatorClusterRole is the operator's own rights plus a copy of every
// component rule of its release (it has no escalate or bind verbs).
func operatorClusterRole(tag string) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta("kubevirt-operator", "", map[string]string{"kubevirt.io": ""}),
		Rules:      append(operatorOwnRules(tag), ComponentRules(tag)...),
	}
}

func operatorClusterRoleBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta("kubevirt-operator", "", map[string]string{"kubevirt.io": ""}),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kubevirt-operator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kubevirt-operator", Namespace: Namespace}},
	}
}

// OperatorDeployment is the virt-operator Deployment of a release. How it
// carries the version changes by era (FACTS.md §3.2):
//   - v0.17–v0.19: tagged image, OPERATOR_IMAGE;
//   - v0.20–v0.39: image by digest, KUBEVIRT_VERSION and VIRT_*_SHASUM;
//   - v0.40–v0.58.0: tagged image, OPERATOR_IMAGE, no KUBEVIRT_VERSION;
//   - v0.58.1+: tagged image, VIRT_OPERATOR_IMAGE and KUBEVIRT_VERSION.
func OperatorDeployment(tag string) *appsv1.Deployment {
	reg := Registry(tag)
	image := reg + "/virt-operator:" + tag
	var env []corev1.EnvVar
	switch {
	case AtLeast(tag, "v0.58.1"):
		env = []corev1.EnvVar{{Name: "VIRT_OPERATOR_IMAGE", Value: image}, {Name: "KUBEVIRT_VERSION", Value: tag}}
	case AtLeast(tag, "v0.40.0-rc.0"):
		env = []corev1.EnvVar{{Name: "OPERATOR_IMAGE", Value: image}}
	case AtLeast(tag, "v0.20.0"):
		image = reg + "/virt-operator@" + ImageDigest(tag)
		env = []corev1.EnvVar{{Name: "OPERATOR_IMAGE", Value: image}, {Name: "KUBEVIRT_VERSION", Value: tag}}
		for _, c := range []string{"VIRT_API", "VIRT_CONTROLLER", "VIRT_HANDLER", "VIRT_LAUNCHER"} {
			env = append(env, corev1.EnvVar{Name: c + "_SHASUM", Value: fakeDigest(c, tag)})
		}
	default:
		env = []corev1.EnvVar{{Name: "OPERATOR_IMAGE", Value: image}}
	}
	env = append(env, corev1.EnvVar{Name: "WATCH_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['olm.targetNamespaces']"},
	}})
	labels := map[string]string{"kubevirt.io": "virt-operator"}
	pod := corev1.PodSpec{
		ServiceAccountName: "kubevirt-operator",
		Tolerations:        []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
		Containers: []corev1.Container{{
			Name:            "virt-operator",
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            []string{"--port", "8443", "-v", "2"},
			Ports: []corev1.ContainerPort{
				{Name: "metrics", ContainerPort: 8443, Protocol: corev1.ProtocolTCP},
				{Name: "webhooks", ContainerPort: 8444, Protocol: corev1.ProtocolTCP},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/metrics", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS,
			}}, InitialDelaySeconds: 5, TimeoutSeconds: 10},
			Env:          env,
			VolumeMounts: []corev1.VolumeMount{{Name: "kubevirt-operator-certs", MountPath: "/etc/virt-operator/certificates", ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{{Name: "kubevirt-operator-certs", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: "kubevirt-operator-certs", Optional: ptr(true)},
		}}},
	}
	if AtLeast(tag, "v0.29.0-rc.0") {
		pod.PriorityClassName = "kubevirt-cluster-critical"
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta("virt-operator", Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Name: "virt-operator"},
				Spec:       pod,
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }
