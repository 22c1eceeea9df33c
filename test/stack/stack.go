package stack

import (
	"cmp"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kvgitops/kvgitops/hack/ociimage"
	"github.com/kvgitops/kvgitops/test/gitserver"
	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/root"
	"github.com/kvgitops/kvgitops/test/simulator"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// Options tune the stack.
type Options struct {
	RolloutDelay time.Duration // simulator rollouts; default 300ms
	GitUser      string        // basic auth of the git server; default "kvgitops"
	GitPassword  string        // default "demo-password"
	// Binary is a prebuilt kvgitops; "" builds one.
	Binary string
	// AgentConfig, when set, is what agents connect as (e.g. impersonating
	// the ServiceAccount of deploy/); default the admin config.
	AgentConfig *rest.Config
	// NoSimulator leaves virt-operator to someone else (the real operator).
	NoSimulator bool
	// Releases, when set, is the release server to use (it is not closed
	// by the stack); default one with the real catalog.
	Releases *releases.Server
	// Simulator overrides the simulator's options (RolloutDelay and
	// StrategyDelay above win when set).
	Simulator simulator.Options
}

// Stack is a running test ground.
type Stack struct {
	Dir        string // scratch folder: kubeconfig, secret, CA files, binary
	Admin      *rest.Config
	Sim        *simulator.Simulator
	Releases   *releases.Server
	Git        *gitserver.Server
	Human      *gitserver.User
	Kubeconfig string
	SecretDir  string
	ReleaseCA  string
	Binary     string

	ownReleases bool
}

// Start brings everything up against the apiserver behind admin and builds
// the binary. Close stops it all.
func Start(ctx context.Context, admin *rest.Config, o Options) (*Stack, error) {
	if o.RolloutDelay == 0 {
		o.RolloutDelay = 300 * time.Millisecond
	}
	if o.GitUser == "" {
		o.GitUser, o.GitPassword = "kvgitops", "demo-password"
	}
	dir, err := os.MkdirTemp("", "kvgitops-stack-")
	if err != nil {
		return nil, err
	}
	s := &Stack{Dir: dir, Admin: admin}
	fail := func(err error) (*Stack, error) {
		s.Close()
		return nil, err
	}
	// The agent keeps its journal in its own namespace, which deploy/
	// creates: so does the stack.
	if err := applyDeploy(ctx, admin, "namespace.yaml"); err != nil {
		return fail(err)
	}
	// A new stack is a new repository: the memory an agent of an earlier
	// stack left in the cluster (its anchors name commits of another
	// repository) goes, as an administrator moving kvgitops to another
	// repository would delete it.
	if err := ForgetMemory(ctx, admin); err != nil {
		return fail(err)
	}
	if !o.NoSimulator {
		if err := simulator.Wipe(ctx, admin); err != nil {
			return fail(err)
		}
		so := o.Simulator
		so.RolloutDelay, so.StrategyDelay = o.RolloutDelay, cmp.Or(so.StrategyDelay, 20*time.Millisecond)
		if s.Sim, err = simulator.New(admin, so); err != nil {
			return fail(err)
		}
		if err := s.Sim.Start(context.Background()); err != nil {
			return fail(err)
		}
	}
	s.Releases, s.ownReleases = o.Releases, o.Releases == nil
	if s.ownReleases {
		s.Releases = releases.NewServer(nil)
	}
	if s.Git, err = gitserver.New(gitserver.Options{Username: o.GitUser, Password: o.GitPassword}); err != nil {
		return fail(err)
	}
	if s.Human, err = s.Git.User(); err != nil {
		return fail(err)
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	agentCfg := admin
	if o.AgentConfig != nil {
		agentCfg = o.AgentConfig
	}
	if err := writeKubeconfig(agentCfg, s.Kubeconfig); err != nil {
		return fail(err)
	}
	s.SecretDir = filepath.Join(dir, "git-secret")
	files := map[string][]byte{"username": []byte(o.GitUser), "password": []byte(o.GitPassword), "ca.crt": s.Git.CAPEM()}
	if err := writeFiles(s.SecretDir, files); err != nil {
		return fail(err)
	}
	s.ReleaseCA = filepath.Join(dir, "release-ca.crt")
	if err := os.WriteFile(s.ReleaseCA, s.Releases.CAPEM(), 0o600); err != nil {
		return fail(err)
	}
	s.Binary = o.Binary
	if s.Binary == "" {
		if s.Binary, err = Build(ctx, dir); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// Close stops every server the stack started and removes its files.
func (s *Stack) Close() {
	if s.Sim != nil {
		s.Sim.Stop()
	}
	if s.Releases != nil && s.ownReleases {
		s.Releases.Close()
	}
	if s.Git != nil {
		s.Git.Close()
	}
	_ = os.RemoveAll(s.Dir)
}

// MemoryConfigMap is where agents keep their memory (in the namespace of
// deploy/).
const MemoryConfigMap = "kvgitops-memory"

// ForgetMemory deletes the agents' memory from the cluster.
func ForgetMemory(ctx context.Context, admin *rest.Config) error {
	kube, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	err = kube.CoreV1().ConfigMaps("kvgitops").Delete(ctx, MemoryConfigMap, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("forget the agents' memory: %w", err)
	}
	return nil
}

// applyDeploy applies files of deploy/ as an administrator would.
func applyDeploy(ctx context.Context, admin *rest.Config, files ...string) error {
	dir, err := root.Module()
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, "deploy", f))
		if err != nil {
			return err
		}
		if err := testenv.Apply(ctx, admin, data); err != nil {
			return fmt.Errorf("apply deploy/%s: %w", f, err)
		}
	}
	return nil
}

// BinaryEnv names a kvgitops binary built once for every test package
// (hack/test.sh sets it); Build uses it instead of building its own.
const BinaryEnv = "KVGITOPS_TEST_BINARY"

// Build compiles cmd/kvgitops into dir (once per stack), unless BinaryEnv
// names one already built.
func Build(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv(BinaryEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s: %w", BinaryEnv, err)
		}
		return bin, nil
	}
	root, err := root.Module()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kvgitops")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kvgitops")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kvgitops: %v\n%s", err, out)
	}
	return bin, nil
}

// BuildImage writes kvgitops's image as make image does (a static
// binary, the image of hack/ociimage), named name, into dir; it returns the
// OCI archive. The binary is BinaryEnv's when that one is static (hack/test.sh
// builds it so), else built; it stays at dir/kvgitops (the real node runs it
// beside the cluster too).
func BuildImage(dir, name string) (string, error) {
	data, err := staticBinary(filepath.Join(dir, "kvgitops"))
	if err != nil {
		return "", err
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return "", fmt.Errorf("CA bundle: %w", err)
	}
	img, err := ociimage.Image(data, ca, "dev", "amd64")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "kvgitops.tar")
	return out, ociimage.WriteOCIArchive(img, name, out)
}

// staticBinary is BinaryEnv's binary when it is static, else one built;
// its bytes, written to bin either way.
func staticBinary(bin string) ([]byte, error) {
	if env := os.Getenv(BinaryEnv); env != "" && static(env) {
		data, err := os.ReadFile(env)
		if err != nil {
			return nil, err
		}
		return data, os.WriteFile(bin, data, 0o755)
	}
	if err := buildStatic(bin); err != nil {
		return nil, err
	}
	return os.ReadFile(bin)
}

// static says whether the ELF binary at path has no interpreter (links
// no libc): what an image with nothing but the binary can run.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// buildStatic builds cmd/kvgitops without cgo into bin.
func buildStatic(bin string) error {
	root, err := root.Module()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/kvgitops")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build kvgitops: %w\n%s", err, b)
	}
	return nil
}

func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(c *rest.Config, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken,
		Impersonate: c.Impersonate.UserName, ImpersonateGroups: c.Impersonate.Groups,
	}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	return clientcmd.WriteToFile(*cfg, path)
}

// DesiredFile renders a desired file with the given spec lines.
func DesiredFile(spec string) []byte {
	return []byte("apiVersion: kvgitops.dev/v1alpha1\nkind: KubeVirtDesiredState\nspec:\n" + spec)
}
