package gitsource_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

func sshServer(t *testing.T) (*gitserver.Server, *gitserver.SSHServer) {
	t.Helper()
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "over ssh\n")
	x, err := s.StartSSH()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	return s, x
}

func sshSource(t *testing.T, x *gitserver.SSHServer, knownHosts string) (*gitsource.Source, error) {
	t.Helper()
	auth, err := gitsource.LoadAuth(secretDir(t, map[string]string{"identity": string(x.ClientKey()), "known_hosts": knownHosts}))
	if err != nil {
		t.Fatal(err)
	}
	return gitsource.New(gitsource.Config{URL: x.URL(), Auth: auth})
}

func otherKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestSSHWithKnownHosts(t *testing.T) {
	_, x := sshServer(t)
	host := "[127.0.0.1]:" + strings.TrimPrefix(x.Addr(), "127.0.0.1:")
	tests := []struct {
		name       string
		knownHosts string
		ok         bool
		says       string
	}{
		{"matching key", x.KnownHosts(), true, ""},
		{"several keys for the host, one matching", host + " " + otherKey(t) + "\n" + x.KnownHosts() + "\n", true, ""},
		{"wrong key", host + " " + otherKey(t), false, "offered a ssh-ed25519 key that does not match known_hosts"},
		{"no entry for the host", "[example.com]:22 " + otherKey(t), false, "is not in known_hosts (it offered a ssh-ed25519 key)"},
		{"the key listed, and revoked", x.KnownHosts() + "\n@revoked * " + strings.SplitN(x.KnownHosts(), " ", 2)[1] + "\n", false, "marks @revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := sshSource(t, x, tt.knownHosts)
			if err != nil {
				t.Fatal(err)
			}
			rev, err := src.Head(context.Background())
			allErrors.add(err)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				got, err := read(t, src, rev, "kubevirt.yaml")
				if err != nil || got != "over ssh\n" {
					t.Fatalf("read over ssh: %q %v", got, err)
				}
				if _, err := src.WriteFile(context.Background(), "status/x.yaml", []byte(tt.name+"\n"), "status over ssh"); err != nil {
					t.Fatalf("push over ssh: %v", err)
				}
				return
			}
			wantReason(t, err, gitsource.ReasonHostKeyUnknown)
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("error %q should name the host and say %q", err, tt.says)
			}
		})
	}
}

func TestSSHNeedsKnownHosts(t *testing.T) {
	_, x := sshServer(t)
	_, err := sshSource(t, x, "")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonInvalidConfig)
}

func TestSSHWithAnEncryptedIdentity(t *testing.T) {
	_, x := sshServer(t)
	dir := t.TempDir()
	key := dir + "/id"
	if out, err := runCmd(dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", canaryPassword, "-f", key); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pem, _ := os.ReadFile(key)
	pub, _ := os.ReadFile(key + ".pub")
	if err := x.AuthorizeKey(string(pub)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		password string
		ok       bool
	}{{canaryPassword, true}, {"wrong-passphrase", false}} {
		auth, err := gitsource.LoadAuth(secretDir(t, map[string]string{"identity": string(pem), "password": tt.password, "known_hosts": x.KnownHosts()}))
		if err != nil {
			t.Fatal(err)
		}
		src, err := gitsource.New(gitsource.Config{URL: x.URL(), Auth: auth})
		allErrors.add(err)
		if tt.ok {
			if err != nil {
				t.Fatal(err)
			}
			if _, err := read(t, src, head(t, src), "kubevirt.yaml"); err != nil {
				t.Fatalf("read with an encrypted key: %v", err)
			}
			continue
		}
		if fault.ReasonOf(err) != gitsource.ReasonInvalidConfig || !strings.Contains(err.Error(), "cannot decrypt") {
			t.Errorf("wrong passphrase: %v", err)
		}
	}
}
