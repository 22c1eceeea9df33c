package standin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// virtAPI stands in for virt-api where the apiserver calls it: every
// admission review is allowed (validating) or left as it is (mutating), and
// the subresources.kubevirt.io APIServices get an empty resource list, so
// discovery works and the operator's fail-closed webhooks let its own
// writes through. It serves the certificate virt-operator made for virt-api
// (Secret kubevirt-virt-api-certs), read when a connection needs it.
type virtAPI struct {
	kube      kubernetes.Interface
	namespace string
	srv       *http.Server
	ln        net.Listener

	mu   sync.Mutex
	cert *tls.Certificate
	rv   string
}

func newVirtAPI(kube kubernetes.Interface, namespace, addr string) (*virtAPI, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("virt-api stand-in: %w", err)
	}
	v := &virtAPI{kube: kube, namespace: namespace, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/apis/subresources.kubevirt.io/", v.discovery)
	mux.HandleFunc("/openapi/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"swagger":"2.0","info":{"title":"virt-api stand-in","version":"v1"},"paths":{}}`)
	})
	mux.HandleFunc("/", v.admit)
	v.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{GetCertificate: v.certificate, MinVersion: tls.VersionTLS12},
		// Handshakes fail until virt-operator has made virt-api's certificate.
		ErrorLog: log.New(io.Discard, "", 0)}
	return v, nil
}

func (v *virtAPI) serve() error {
	err := v.srv.ServeTLS(v.ln, "", "")
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

func (v *virtAPI) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = v.srv.Shutdown(ctx)
}

func (v *virtAPI) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sec, err := v.kube.CoreV1().Secrets(v.namespace).Get(ctx, "kubevirt-virt-api-certs", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("virt-api certificate: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cert != nil && v.rv == sec.ResourceVersion {
		return v.cert, nil
	}
	c, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("virt-api certificate: %w", err)
	}
	v.cert, v.rv = &c, sec.ResourceVersion
	return v.cert, nil
}

func (v *virtAPI) discovery(w http.ResponseWriter, r *http.Request) {
	gv := strings.TrimPrefix(strings.TrimSuffix(r.URL.Path, "/"), "/apis/")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv, APIResources: []metav1.APIResource{}})
}

func (v *virtAPI) admit(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if r.Method != http.MethodPost || json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&review) != nil || review.Request == nil {
		http.Error(w, "not an admission review", http.StatusBadRequest)
		return
	}
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
