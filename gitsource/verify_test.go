package gitsource_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// sshSigner is an SSH signing key for `git commit -S` with gpg.format=ssh.
func sshSigner(t *testing.T) (keyFile, pub string) {
	t.Helper()
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "signing")
	if _, err := gitserver.Git(context.Background(), dir, nil, "version"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	b, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, strings.TrimSpace(string(b))
}

func signedCommit(t *testing.T, u *gitserver.User, keyFile, path, content string) {
	t.Helper()
	if err := u.Pull(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.Dir(), path), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", path}, {"-c", "gpg.format=ssh", "-c", "user.signingkey=" + keyFile, "commit", "-q", "-S", "-m", "signed " + path}, {"push", "-q", "origin", "HEAD:main"}} {
		if out, err := u.Git(args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
}

func verifying(keys gitsource.VerifyConfig) func(*gitsource.Config) {
	return func(c *gitsource.Config) { c.Verify = &keys }
}

func TestSSHSignatures(t *testing.T) {
	s := server(t, gitserver.Options{})
	u := user(t, s)
	trustedKey, trustedPub := sshSigner(t)
	otherKeyFile, _ := sshSigner(t)
	src := source(t, s, nil, verifying(gitsource.VerifyConfig{SSHKeys: []string{trustedPub}}))
	ctx := context.Background()

	signedCommit(t, u, trustedKey, "kubevirt.yaml", "v1\n")
	// Unsigned status commits by the agent on top do not matter: the file
	// was set by the signed commit.
	if _, err := src.WriteFile(ctx, "status/c.yaml", []byte("x\n"), "status"); err != nil {
		t.Fatal(err)
	}
	v, err := src.VerifyFile(ctx, head(t, src), "kubevirt.yaml")
	signer := v.Signer
	if err != nil || !strings.HasPrefix(signer, "ssh:SHA256:") {
		t.Fatalf("signed by the trusted key: %q %v", signer, allErrors.add(err))
	}

	signedCommit(t, u, otherKeyFile, "kubevirt.yaml", "v2\n")
	_, err = src.VerifyFile(ctx, head(t, src), "kubevirt.yaml")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonSignatureInvalid)
	if !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("unknown key: %v", err)
	}

	commit(t, u, "kubevirt.yaml", "v3\n")
	_, err = src.VerifyFile(ctx, head(t, src), "kubevirt.yaml")
	allErrors.add(err)
	wantReason(t, err, gitsource.ReasonSignatureInvalid)
	if !strings.Contains(err.Error(), "is not signed") {
		t.Errorf("unsigned: %v", err)
	}
}

func TestOpenPGPSignatures(t *testing.T) {
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "README.md", "repo\n")
	trusted, err := openpgp.NewEntity("Platform Team", "", "platform@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := openpgp.NewEntity("Mallory", "", "mallory@example.com", nil)
	var ring bytes.Buffer
	w, _ := armor.Encode(&ring, openpgp.PublicKeyType, nil)
	if err := trusted.Serialize(w); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	src := source(t, s, nil, verifying(gitsource.VerifyConfig{PGPKeyRings: []string{ring.String()}}))
	ctx := context.Background()

	for _, tt := range []struct {
		name    string
		sign    func(msg []byte) string
		ok      bool
		message string
	}{
		{"trusted key", func(m []byte) string { return armoredSig(t, trusted, m) }, true, ""},
		{"unknown key", func(m []byte) string { return armoredSig(t, stranger, m) }, false, "not valid for a trusted key"},
		{"two signatures", func(m []byte) string { return armoredSig(t, trusted, m) + armoredSig(t, trusted, m) }, false, "2 signatures"},
		{"garbage signature", func([]byte) string {
			return "-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all\n-----END PGP SIGNATURE-----\n"
		}, false, "not valid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pushSignedObject(t, s, "kubevirt.yaml", tt.name+"\n", tt.sign)
			v, err := src.VerifyFile(ctx, head(t, src), "kubevirt.yaml")
			signer := v.Signer
			allErrors.add(err)
			if tt.ok {
				if err != nil || !strings.Contains(signer, "Platform Team") {
					t.Fatalf("signer %q, %v", signer, err)
				}
				return
			}
			wantReason(t, err, gitsource.ReasonSignatureInvalid)
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q, want %q", err, tt.message)
			}
		})
	}
}

func armoredSig(t *testing.T, e *openpgp.Entity, msg []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, e, bytes.NewReader(msg), nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// pushSignedObject writes a commit with a crafted signature straight into
// the server's bare repository, as a signing client would push it.
func pushSignedObject(t *testing.T, s *gitserver.Server, path, content string, sign func([]byte) string) {
	t.Helper()
	repo, err := git.PlainOpen(filepath.Join(s.Root, "repo.git"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		t.Fatal(err)
	}
	parent, _ := repo.CommitObject(ref.Hash())
	tree, _ := parent.Tree()
	st := repo.Storer
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	bw, _ := blob.Writer()
	_, _ = bw.Write([]byte(content))
	_ = bw.Close()
	bh, _ := st.SetEncodedObject(blob)
	entries := []object.TreeEntry{}
	for _, e := range tree.Entries {
		if e.Name != path {
			entries = append(entries, e)
		}
	}
	entries = append(entries, object.TreeEntry{Name: path, Mode: 0o100644, Hash: bh})
	sortEntries(entries)
	newTree := &object.Tree{Entries: entries}
	to := st.NewEncodedObject()
	if err := newTree.Encode(to); err != nil {
		t.Fatal(err)
	}
	th, _ := st.SetEncodedObject(to)
	sig := object.Signature{Name: "Platform Team", Email: "platform@example.com", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: "signed", TreeHash: th, ParentHashes: []plumbing.Hash{parent.Hash}}
	unsigned := st.NewEncodedObject()
	if err := c.EncodeWithoutSignature(unsigned); err != nil {
		t.Fatal(err)
	}
	r, _ := unsigned.Reader()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(r)
	c.PGPSignature = sign(msg.Bytes())
	co := st.NewEncodedObject()
	if err := c.Encode(co); err != nil {
		t.Fatal(err)
	}
	ch, _ := st.SetEncodedObject(co)
	if err := st.SetReference(plumbing.NewHashReference(ref.Name(), ch)); err != nil {
		t.Fatal(err)
	}
}

func sortEntries(es []object.TreeEntry) {
	for i := range es {
		for j := i + 1; j < len(es); j++ {
			if es[j].Name < es[i].Name {
				es[i], es[j] = es[j], es[i]
			}
		}
	}
}
