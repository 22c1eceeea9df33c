package gitsource_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// TestSignedStatusCommits: with a signing key from the mounted Secret
// (Flux's names: identity for SSH, git.asc and passphrase for OpenPGP),
// every status commit is signed, and git itself verifies it on the
// server's copy with `git verify-commit`.
func TestSignedStatusCommits(t *testing.T) {
	t.Run("ssh", func(t *testing.T) {
		keyFile, pub := sshSigner(t)
		key, _ := os.ReadFile(keyFile)
		signer, err := gitsource.LoadCommitSigner(secretDir(t, map[string]string{"identity": string(key)}), "ssh")
		if err != nil {
			t.Fatal(err)
		}
		s, head := pushSigned(t, signer)
		allowed := filepath.Join(t.TempDir(), "allowed_signers")
		if err := os.WriteFile(allowed, []byte("kvgitops@noreply "+pub+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyCommit(t, s, head, nil, "-c", "gpg.ssh.allowedSignersFile="+allowed)
	})
	t.Run("openpgp", func(t *testing.T) {
		e, err := openpgp.NewEntity("kvgitops", "status", "kvgitops@noreply", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.EncryptPrivateKeys([]byte(canaryPassword), nil); err != nil {
			t.Fatal(err)
		}
		var priv, pubKey bytes.Buffer
		w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
		if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		w, _ = armor.Encode(&pubKey, openpgp.PublicKeyType, nil)
		_ = e.Serialize(w)
		_ = w.Close()
		signer, err := gitsource.LoadCommitSigner(secretDir(t, map[string]string{"git.asc": priv.String(), "passphrase": canaryPassword + "\n"}), "openpgp")
		if err != nil {
			t.Fatal(err)
		}
		s, head := pushSigned(t, signer)
		home := t.TempDir()
		imp := exec.Command("gpg", "--batch", "--import")
		imp.Env = append(os.Environ(), "GNUPGHOME="+home)
		imp.Stdin = &pubKey
		if out, err := imp.CombinedOutput(); err != nil {
			t.Fatalf("gpg --import: %v %s", err, out)
		}
		verifyCommit(t, s, head, []string{"GNUPGHOME=" + home})
	})
}

// pushSigned pushes two status commits with signer and returns the head.
func pushSigned(t *testing.T, signer *gitsource.CommitSigner) (*gitserver.Server, string) {
	t.Helper()
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "v1\n")
	src := source(t, s, nil, func(c *gitsource.Config) { c.Signer = signer })
	for _, body := range []string{"one\n", "two\n"} {
		if _, err := src.WriteFile(context.Background(), "status/c.yaml", []byte(body), "status"); err != nil {
			t.Fatal(err)
		}
	}
	head, err := s.Head()
	if err != nil {
		t.Fatal(err)
	}
	return s, head
}

func verifyCommit(t *testing.T, s *gitserver.Server, commit string, env []string, config ...string) {
	t.Helper()
	for _, c := range []string{commit, commit + "~1"} {
		out, err := gitserver.Git(context.Background(), filepath.Join(s.Root, "repo.git"), env, append(config, "verify-commit", "-v", c)...)
		if err != nil {
			t.Fatalf("git verify-commit %s: %v\n%s", c, err, out)
		}
	}
}

// TestTheAgentsOwnKeyNeverVouchesForDesiredContent: a desired file set by
// a commit signed with the agent's status-signing key is refused, even when
// that key is among the trusted ones (a stolen Secret must not become a
// way to choose what the cluster runs).
func TestTheAgentsOwnKeyNeverVouchesForDesiredContent(t *testing.T) {
	s := server(t, gitserver.Options{})
	keyFile, pub := sshSigner(t)
	key, _ := os.ReadFile(keyFile)
	signer, err := gitsource.LoadCommitSigner(secretDir(t, map[string]string{"identity": string(key)}), "ssh")
	if err != nil {
		t.Fatal(err)
	}
	signedCommit(t, user(t, s), keyFile, "kubevirt.yaml", "v1\n")
	src := source(t, s, nil, verifying(gitsource.VerifyConfig{SSHKeys: []string{pub}}), func(c *gitsource.Config) { c.Signer = signer })
	_, err = src.VerifyFile(context.Background(), head(t, src), "kubevirt.yaml")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonSignatureInvalid)
	if !strings.Contains(err.Error(), "own status-signing key") {
		t.Errorf("refusal %v", err)
	}
}
