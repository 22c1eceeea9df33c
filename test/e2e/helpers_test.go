package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

var (
	apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	vwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mwcGVR        = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	crdGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	kvGVR         = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "kubevirts"}
	nsGVR         = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// settleAndCountCommits lets the agent poll n more times and fails if it
// committed the status in the meantime: a steady state makes no commits.
func (e *e2e) settleAndCountCommits(n int64) {
	e.t.Helper()
	before, err := e.st.Git.Log("status/e2e.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	e.polls(n)
	after, err := e.st.Git.Log("status/e2e.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	if len(after) != len(before) {
		e.t.Errorf("%d status commits in %d polls of a steady state, want none: %v", len(after)-len(before), n, after[:len(after)-len(before)])
	}
}

// polls waits until the agents have polled the repository n more times, so
// an assertion that nothing changed has seen that many reconciles.
func (e *e2e) polls(n int64) {
	e.t.Helper()
	start := e.st.Git.Polls()
	deadline := time.Now().Add(60 * time.Second)
	for e.st.Git.Polls() < start+n {
		if time.Now().After(deadline) {
			e.t.Fatalf("the agent polled %d times in 60s, want %d", e.st.Git.Polls()-start, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sshSigningKey makes an SSH key and returns an authorized_keys file that
// trusts it for signing desired files.
func (e *e2e) sshSigningKey() string {
	e.t.Helper()
	dir := e.t.TempDir()
	key := filepath.Join(dir, "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		e.t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	return key + ".pub"
}

// unreachableKubeconfig points at a loopback port nothing listens on.
func (e *e2e) unreachableKubeconfig() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := filepath.Join(e.t.TempDir(), "kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://" + addr + "\", insecure-skip-tls-verify: true}}]\n" +
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *e2e) dyn() dynamic.Interface { return dynamic.NewForConfigOrDie(e.st.Admin) }

// exists reports whether a leftover-named APIService or webhook exists.
func (e *e2e) exists(name string) bool {
	for _, gvr := range []schema.GroupVersionResource{apiServiceGVR, vwcGVR, mwcGVR} {
		if _, err := e.dyn().Resource(gvr).Get(e.t.Context(), name, metav1.GetOptions{}); err == nil {
			return true
		}
	}
	return false
}

func (e *e2e) present(gvr schema.GroupVersionResource, ns, name string) bool {
	_, err := e.dyn().Resource(gvr).Namespace(ns).Get(e.t.Context(), name, metav1.GetOptions{})
	return err == nil
}

// installAsStored stands up KubeVirt tag the way a cluster holds it that
// installed it before Kubernetes 1.22 (a v1beta1 CRD stored as v1): applied
// by an administrator, not by the agent, which would refuse that manifest.
func (e *e2e) installAsStored(tag string) {
	e.t.Helper()
	ctx := e.t.Context()
	if err := testenv.Apply(ctx, e.st.Admin, releases.AsStoredSince122(tag)); err != nil {
		e.t.Fatal(err)
	}
	if err := testenv.Apply(ctx, e.st.Admin, releases.CRManifest(tag)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.Sim.WaitFor(ctx, simulator.Has(simulator.HopCompleted, tag)); err != nil {
		e.t.Fatal(err)
	}
}

// gvrOf maps the kinds of an operator manifest (the CRD through v1).
func gvrOf(o *unstructured.Unstructured) schema.GroupVersionResource {
	gvk := o.GroupVersionKind()
	resources := map[string]string{"Namespace": "namespaces", "CustomResourceDefinition": "customresourcedefinitions", "PriorityClass": "priorityclasses",
		"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "ServiceAccount": "serviceaccounts",
		"Role": "roles", "RoleBinding": "rolebindings", "Deployment": "deployments"}
	if gvk.Kind == "CustomResourceDefinition" {
		gvk.Version = "v1"
	}
	return gvk.GroupVersion().WithResource(resources[gvk.Kind])
}

// appliedEqualsManifest checks that every object of manifest is in the
// cluster with every field the manifest sets (the apiserver adds defaults).
func (e *e2e) appliedEqualsManifest(manifest []byte) {
	e.t.Helper()
	objs, err := testenv.Decode(manifest)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range objs {
		live, err := e.dyn().Resource(gvrOf(o)).Namespace(o.GetNamespace()).Get(context.Background(), o.GetName(), metav1.GetOptions{})
		if err != nil {
			e.t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
			continue
		}
		for _, field := range []string{"spec", "rules", "roleRef", "subjects", "value"} {
			want, ok := o.Object[field]
			if !ok {
				continue
			}
			if path := subset(want, live.Object[field], field); path != "" {
				e.t.Errorf("%s %s differs from the genuine manifest at %s", o.GetKind(), o.GetName(), path)
			}
		}
		for k, v := range o.GetLabels() {
			if live.GetLabels()[k] != v {
				e.t.Errorf("%s %s: label %s=%q, want %q", o.GetKind(), o.GetName(), k, live.GetLabels()[k], v)
			}
		}
	}
}

// subset returns "" when every value of want is in got, else the path of
// the first difference.
func subset(want, got any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path
		}
		for k, v := range w {
			if p := subset(v, g[k], path+"."+k); p != "" {
				return p
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path
		}
		for i := range w {
			if p := subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
		return ""
	}
	if wf, ok := number(want); ok {
		if gf, ok := number(got); ok && wf == gf {
			return ""
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) && !reflect.DeepEqual(want, got) {
		return path
	}
	return ""
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

// Canaries: secrets whose every form is searched for where a reviewer or
// an operator could read it.
const (
	canaryPassword = "canary-Pa55/word+e2e"
	canaryToken    = "canary-token-e2e-51d0"
)

// noSecretsLeaked searches every agent's log, every Event in the cluster
// and every committed version of the status file for the canaries, raw,
// URL-escaped and base64 (alone and as basic auth of user).
func (e *e2e) noSecretsLeaked(user string) {
	e.t.Helper()
	var forms []string
	for _, s := range []string{canaryPassword, canaryToken, user + ":" + canaryPassword} {
		forms = append(forms, s, url.QueryEscape(s), url.PathEscape(s), base64.StdEncoding.EncodeToString([]byte(s)),
			base64.RawStdEncoding.EncodeToString([]byte(s)), base64.URLEncoding.EncodeToString([]byte(s)))
	}
	texts := map[string]string{}
	for _, a := range e.agents {
		var b strings.Builder
		for _, l := range a.Lines() {
			fmt.Fprintln(&b, l)
		}
		texts["log of "+a.Name] = b.String()
	}
	events, err := kubernetes.NewForConfigOrDie(e.st.Admin).CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var ev strings.Builder
	for _, x := range events.Items {
		fmt.Fprintln(&ev, x.Reason, x.Message, x.Annotations)
	}
	texts["Events"] = ev.String()
	history, err := gitserver.Git(context.Background(), filepath.Join(e.st.Git.Root, "repo.git"), nil, "log", "-p", "--all")
	if err != nil {
		e.t.Fatal(err)
	}
	texts["the repository's history"] = history
	if len(events.Items) == 0 || !strings.Contains(history, "status/") {
		e.t.Errorf("nothing to search: %d Events, status history %t", len(events.Items), strings.Contains(history, "status/"))
	}
	for where, text := range texts {
		for _, f := range forms {
			if strings.Contains(text, f) {
				e.t.Errorf("a secret (as %q) appears in %s", f, where)
			}
		}
	}
}
