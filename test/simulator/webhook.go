package simulator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// webhookServer serves the admission webhooks the operator and virt-api
// register. A webhook whose backend is down drops the connection, which the
// apiserver reports as "failed calling webhook" and, with failurePolicy
// Fail, turns into a rejection, as for a Service without endpoints.
type webhookServer struct {
	sim    *Simulator
	ln     net.Listener
	srv    *http.Server
	caPEM  []byte
	url    string
	closed chan struct{}
}

func newWebhookServer(s *Simulator) (*webhookServer, error) {
	cert, caPEM, err := selfSignedLoopbackCert()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	w := &webhookServer{sim: s, ln: ln, caPEM: caPEM, url: "https://" + ln.Addr().String(), closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/kubevirt-validate-delete", w.operatorHook(w.validateDelete))
	mux.HandleFunc("/kubevirt-validate-update", w.operatorHook(allow))
	mux.HandleFunc("/kubevirt-validate-create", w.operatorHook(w.validateCreate))
	mux.HandleFunc("/virt-api-validate", w.virtAPIHook(allow))
	mux.HandleFunc("/virt-api-mutate", w.virtAPIHook(allow))
	// HTTP/1.1 only, so a down backend can drop the connection.
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	return w, nil
}

func (w *webhookServer) serve(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.srv.Serve(w.ln)
	}()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.srv.Shutdown(shutdown)
	<-done
}

type admitFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

func allow(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true}
}

func (w *webhookServer) operatorHook(f admitFunc) http.HandlerFunc {
	return w.hook(func() bool { return w.sim.operatorUp() }, f)
}

func (w *webhookServer) virtAPIHook(f admitFunc) http.HandlerFunc {
	return w.hook(func() bool { return w.sim.virtAPIUp() }, f)
}

func (w *webhookServer) hook(up func() bool, f admitFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if !up() {
			dropConnection(rw)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&review); err != nil || review.Request == nil {
			http.Error(rw, "bad admission review", http.StatusBadRequest)
			return
		}
		resp := f(r.Context(), review.Request)
		resp.UID = review.Request.UID
		review.Response = resp
		review.Request = nil
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(&review)
	}
}

func dropConnection(rw http.ResponseWriter) {
	hj, ok := rw.(http.Hijacker)
	if !ok {
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if conn, _, err := hj.Hijack(); err == nil {
		_ = conn.Close()
	}
}

// validateDelete is the uninstallStrategy check of docs/kubevirt.md, "Deletion".
func (w *webhookServer) validateDelete(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var kv unstructured.Unstructured
	if err := kv.UnmarshalJSON(req.OldObject.Raw); err != nil {
		return allowResp()
	}
	strategy, _, _ := unstructured.NestedString(kv.Object, "spec", "uninstallStrategy")
	phase, _, _ := unstructured.NestedString(kv.Object, "status", "phase")
	if strategy == "" || strategy == "RemoveWorkloads" || phase != "Deployed" {
		return allowResp()
	}
	for _, c := range []struct {
		name string
		n    int
	}{
		{"Virtual Machine Instances", w.sim.countResource(ctx, vmiGVR)},
		{"Virtual Machines", w.sim.countResource(ctx, vmGVR)},
	} {
		if c.n > 0 {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
				Code: http.StatusBadRequest, Status: metav1.StatusFailure, Reason: metav1.StatusReasonBadRequest,
				Message: fmt.Sprintf("Rejecting the uninstall request, since there are still %s present. Either delete all KubeVirt related workloads or change the uninstall strategy before uninstalling KubeVirt.", c.name),
			}}
		}
	}
	return allowResp()
}

// validateCreate rejects a second KubeVirt CR (v1.1+).
func (w *webhookServer) validateCreate(ctx context.Context, _ *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if w.sim.countResource(ctx, kubevirtGVR) > 0 {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Code: http.StatusBadRequest, Status: metav1.StatusFailure, Message: "Kubevirt is already created",
		}}
	}
	return allowResp()
}

func allowResp() *admissionv1.AdmissionResponse { return &admissionv1.AdmissionResponse{Allowed: true} }

// configurations are the webhook configurations of an install, version by
// version (docs/kubevirt.md, "Release manifests"): virt-operator-validator from v0.26 (delete),
// with update from v0.37 and create from v1.1; virt-api's validator and
// mutator throughout.
func (w *webhookServer) configurations(in install) []map[string]any {
	hook := func(name, path string, ops []any, resources ...any) map[string]any {
		return map[string]any{
			"name": name,
			"clientConfig": map[string]any{
				"url":      w.url + path,
				"caBundle": base64.StdEncoding.EncodeToString(w.caPEM),
			},
			"rules": []any{map[string]any{
				"apiGroups": []any{"kubevirt.io"}, "apiVersions": []any{"*"}, "operations": ops, "resources": resources,
			}},
			"failurePolicy":           "Fail",
			"sideEffects":             "None",
			"admissionReviewVersions": []any{"v1"},
			"timeoutSeconds":          int64(5),
		}
	}
	meta := func(name, component string) map[string]any {
		labels := map[string]any{"kubevirt.io": component}
		if atLeast(in.op, "v0.26.1") {
			labels = in.labels(component)
		}
		return map[string]any{"name": name, "labels": labels}
	}
	out := []map[string]any{
		{
			"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": meta("virt-api-validator", "virt-api"),
			"webhooks": []any{hook("virtualmachineinstances-create-validator.kubevirt.io", "/virt-api-validate", []any{"CREATE", "UPDATE"}, "virtualmachineinstances", "virtualmachines")},
		},
		{
			"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": meta("virt-api-mutator", "virt-api"),
			"webhooks": []any{hook("virtualmachineinstances-mutator.kubevirt.io", "/virt-api-mutate", []any{"CREATE"}, "virtualmachineinstances", "virtualmachines")},
		},
	}
	if !atLeast(in.version, "v0.26.0-rc.0") {
		return out
	}
	hooks := []any{hook("kubevirt-validator.kubevirt.io", "/kubevirt-validate-delete", []any{"DELETE"}, "kubevirts")}
	if atLeast(in.version, "v0.37.0-rc.0") {
		hooks = append(hooks, hook("kubevirt-update-validator.kubevirt.io", "/kubevirt-validate-update", []any{"UPDATE"}, "kubevirts"))
	}
	if atLeast(in.version, "v1.1.0-alpha.0") {
		hooks = append(hooks, hook("kubevirt-create-validator.kubevirt.io", "/kubevirt-validate-create", []any{"CREATE"}, "kubevirts"))
	}
	return append(out, map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
		"metadata": meta("virt-operator-validator", "virt-operator"), "webhooks": hooks,
	})
}

// selfSignedLoopbackCert makes a certificate for 127.0.0.1 that is its own
// CA, returning it and its PEM for a caBundle.
func selfSignedLoopbackCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "simulated virt-operator webhooks"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
