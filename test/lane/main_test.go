package lane

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvgitops/kvgitops/test/releases"
	"github.com/kvgitops/kvgitops/test/root"
	"github.com/kvgitops/kvgitops/test/stack"
	"github.com/kvgitops/kvgitops/test/testenv"
)

// Addresses on the namespace's loopback the EndpointSlices point at.
const (
	operatorIP  = "10.250.0.1"
	virtAPIIP   = "10.250.0.2"
	apiserverIP = "10.250.0.3" // advertised only: the namespace has no default route to guess one from
	insideEnv   = "KVGITOPS_LANE_NETNS"
	binaryEnv   = "KVGITOPS_LANE_BINARY"
)

// lane is what TestMain prepared.
var lane struct {
	env      *testenv.Env
	binary   string // kvgitops
	ops      string // <tag>/virt-operator builds
	tags     []string
	rendered map[string][]byte // kubevirt-operator.yaml per tag
	skip     string            // why the lane cannot run here
	skipped  int               // tests that skipped for it
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		lane.skip = "the real-operator lane needs servers (not in -short mode)"
		os.Exit(loudSkips(m.Run()))
	}
	if os.Getenv(insideEnv) == "" {
		os.Exit(loudSkips(reexec(m)))
	}
	os.Exit(inside(m))
}

// loudSkips says on stderr, without -v, that the lane did not run: a
// skipped lane must not read as a plain "ok".
func loudSkips(code int) int {
	if lane.skipped > 0 {
		fmt.Fprintf(os.Stderr, "lane: %d tests SKIPPED, the real-operator lane did not run: %s\n", lane.skipped, lane.skip)
	}
	return code
}

// reexec runs the tests again inside a new network namespace.
func reexec(m *testing.M) int {
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil {
		lane.skip = fmt.Sprintf("cannot create a network namespace here (unshare --net: %v); the real-operator lane runs only inside one", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kvgitops-lane-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	bin, err := stack.Build(context.Background(), dir) // outside: the namespace has no network to fetch modules
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), insideEnv+"=1", binaryEnv+"="+bin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// inside sets the namespace's loopback up, starts the control plane with
// aggregator routing, and renders the manifests of the built releases.
func inside(m *testing.M) int {
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", operatorIP + "/32", "dev", "lo"}, {"addr", "add", virtAPIIP + "/32", "dev", "lo"}, {"addr", "add", apiserverIP + "/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "lane: ip %v: %v %s\n", args, err, out)
			return 1
		}
	}
	lane.binary = os.Getenv(binaryEnv)
	if err := findOperators(); err != nil {
		lane.skip = err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kvgitops-lane-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ca, err := writeCA(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lane:", err)
		return 1
	}
	env, err := testenv.Start(map[string]string{
		"enable-aggregator-routing":          "true",
		"advertise-address":                  apiserverIP,
		"requestheader-client-ca-file":       ca,
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lane:", err)
		return 1
	}
	lane.env = env
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "lane: stop:", err)
	}
	return code
}

// findOperators reads the pinned tags and renders their manifests with
// their own resource-generator.
func findOperators() error {
	root, err := root.Module()
	if err != nil {
		return err
	}
	table, err := os.ReadFile(filepath.Join(root, "hack", "virt-operator-tags.tsv"))
	if err != nil {
		return err
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	lane.ops = filepath.Join(cache, "kvgitops", "virt-operator")
	if d := os.Getenv("OPERATOR_DIR"); d != "" {
		lane.ops = d
	}
	lane.rendered = map[string][]byte{}
	sc := bufio.NewScanner(strings.NewReader(string(table)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		tag := f[0]
		if _, err := os.Stat(filepath.Join(lane.ops, tag, "virt-operator")); err != nil {
			return fmt.Errorf("no virt-operator build of %s in %s: run `make operators`", tag, lane.ops)
		}
		if lane.rendered[tag], err = releases.FromResourceGenerator(lane.ops, tag); err != nil {
			return err
		}
		lane.tags = append(lane.tags, tag)
	}
	return sc.Err()
}

// need skips the test when the lane cannot run, or fails it under CI.
func need(t *testing.T) {
	t.Helper()
	if lane.skip == "" {
		return
	}
	if os.Getenv("CI") != "" && !testing.Short() {
		t.Fatalf("%s: CI must run the real-operator lane (CI=%s)", lane.skip, os.Getenv("CI"))
	}
	lane.skipped++
	t.Skipf("skipping %s: %s", t.Name(), lane.skip)
}

// writeCA writes a CA for the apiserver's request-header authentication,
// which virt-operator's TLS setup reads.
func writeCA(dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lane front-proxy CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "front-proxy-ca.crt")
	return p, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}
