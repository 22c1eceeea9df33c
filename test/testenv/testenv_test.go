package testenv_test

import (
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kvgitops/kvgitops/test/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestServerVersion(t *testing.T) {
	env := testenv.Get(t)
	v, err := kubernetes.NewForConfigOrDie(env.Config).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v"+testenv.KubeVersion {
		t.Errorf("server version %s, want v%s", v.GitVersion, testenv.KubeVersion)
	}
}

func TestImpersonatedServiceAccountWithoutBindingIsForbidden(t *testing.T) {
	env := testenv.Get(t)
	cs := kubernetes.NewForConfigOrDie(env.Impersonate("default", "nobody"))
	_, err := cs.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "system:serviceaccount:default:nobody") {
		t.Errorf("list namespaces as an unbound ServiceAccount: %v, want forbidden naming the account", err)
	}
}
