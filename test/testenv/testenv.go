package testenv

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// KubeVersion is the kube-apiserver version `make testbin` builds.
const KubeVersion = "1.37.2"

// Env is a running control plane.
type Env struct {
	// Config is the admin (system:masters) connection.
	Config    *rest.Config
	env       *envtest.Environment
	restarted []*exec.Cmd // apiservers RestartAPIServer started
}

// AssetsDir finds the control-plane binaries: $KUBEBUILDER_ASSETS, else the
// cache folder `make testbin` fills.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "kvgitops", "testbin", KubeVersion)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("test control plane missing: %s not in %s; run `make testbin`", bin, dir)
		}
	}
	return dir, nil
}

// Start starts a control plane. Stop it with Stop. args are more
// kube-apiserver flags (name → value), set over the defaults.
func Start(args ...map[string]string) (*Env, error) {
	// envtest logs through controller-runtime's logger, which says on
	// stderr, with a stack, that nobody set it; its lines are not wanted.
	ctrllog.SetLogger(logr.Discard())
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Webhook and aggregated-API calls reach loopback servers by URL (the
	// real-operator lane routes them through EndpointSlices instead); etcd
	// needs no fsync in tests.
	flags := env.ControlPlane.GetAPIServer().Configure()
	flags.Set("enable-aggregator-routing", "false")
	for _, a := range args {
		for k, v := range a {
			flags.Set(k, v)
		}
	}
	env.ControlPlane.Etcd = &envtest.Etcd{}
	env.ControlPlane.Etcd.Configure().Append("unsafe-no-fsync", "true")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return &Env{Config: cfg, env: env}, nil
}

// Stop stops the control plane and removes its data.
func (e *Env) Stop() error {
	for _, c := range e.restarted {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	return e.env.Stop()
}

// APIServerURL is the apiserver's address.
func (e *Env) APIServerURL() string { return e.Config.Host }

// Impersonate returns a config that acts as the ServiceAccount ns/name.
func (e *Env) Impersonate(ns, name string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// shared is the package's environment, set by Main.
var shared *Env

// Main runs a test package's tests with one control plane shared by all of
// them. Use it from TestMain: os.Exit(testenv.Main(m)). With -short the
// control plane is not started and Get skips.
func Main(m *testing.M) int { return MainWith(m) }

// MainWith is Main with more kube-apiserver flags (see Start).
func MainWith(m *testing.M, args ...map[string]string) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	env, err := Start(args...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	shared = env
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop:", err)
	}
	return code
}

// Get returns the package's control plane, skipping the test under -short.
func Get(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test control plane (not in -short mode)")
	}
	if shared == nil {
		t.Fatal(errors.New("testenv.Main did not start a control plane; call it from TestMain"))
	}
	return shared
}
