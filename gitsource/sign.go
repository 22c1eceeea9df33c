package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// CommitSigner signs the agent's status commits, for branches that accept
// signed commits only. Its key signs status and nothing else: a desired
// file set by a commit it signed is refused (see VerifyFile).
type CommitSigner struct {
	ssh      ssh.Signer
	pgp      *openpgp.Entity
	identity string // as VerifyConfig names a signer: ssh:SHA256:… or pgp:FINGERPRINT
}

// Identity names the signing key the way verification names signers.
func (s *CommitSigner) Identity() string { return s.identity }

// LoadCommitSigner reads the signing key from a mounted Secret with Flux's
// key names: kind "openpgp" reads git.asc (an armored private key) and
// passphrase; kind "ssh" reads identity (an OpenSSH private key) and
// password.
func LoadCommitSigner(dir, kind string) (*CommitSigner, error) {
	read := func(key string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err == nil && len(b) > maxSecretFile {
			return nil, fmt.Errorf("secret key %s is %d bytes, over %d", key, len(b), maxSecretFile)
		}
		return b, err
	}
	switch kind {
	case "openpgp":
		key, err := read("git.asc")
		if err != nil || key == nil {
			return nil, fmt.Errorf("status signing with OpenPGP needs git.asc in %s: %v", dir, err)
		}
		pass, err := read("passphrase")
		if err != nil {
			return nil, err
		}
		return NewPGPCommitSigner(key, bytes.TrimRight(pass, "\r\n"))
	case "ssh":
		key, err := read("identity")
		if err != nil || key == nil {
			return nil, fmt.Errorf("status signing with SSH needs identity in %s: %v", dir, err)
		}
		pass, err := read("password")
		if err != nil {
			return nil, err
		}
		signer, err := parseIdentity(key, bytes.TrimRight(pass, "\r\n"))
		if err != nil {
			return nil, err
		}
		return NewSSHCommitSigner(signer), nil
	}
	return nil, fmt.Errorf("status signing %q: use openpgp or ssh", kind)
}

// NewSSHCommitSigner signs with an SSH key.
func NewSSHCommitSigner(signer ssh.Signer) *CommitSigner {
	return &CommitSigner{ssh: signer, identity: "ssh:" + ssh.FingerprintSHA256(signer.PublicKey())}
}

// NewPGPCommitSigner signs with an armored OpenPGP private key, decrypted
// with passphrase when it is protected.
func NewPGPCommitSigner(armored, passphrase []byte) (*CommitSigner, error) {
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(el) != 1 {
		return nil, fmt.Errorf("git.asc: not one armored OpenPGP private key (%v)", err)
	}
	e := el[0]
	if e.PrivateKey == nil {
		return nil, errors.New("git.asc holds a public key; the private key signs")
	}
	if e.PrivateKey.Encrypted {
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, errors.New("git.asc: cannot decrypt the private key with the passphrase")
		}
	}
	return &CommitSigner{pgp: e, identity: pgpIdentity(e)}, nil
}

// sign returns the armored signature of a commit's encoding without one.
func (s *CommitSigner) sign(c *object.Commit) (string, error) {
	payload := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(payload); err != nil {
		return "", err
	}
	r, _ := payload.Reader()
	if s.ssh != nil {
		sig, err := sshsig.Sign(r, s.ssh, sshsig.HashSHA512, signatureNamespace)
		if err != nil {
			return "", fmt.Errorf("sign the status commit: %w", err)
		}
		return string(sshsig.Armor(sig)), nil
	}
	var out strings.Builder
	if err := openpgp.ArmoredDetachSign(&out, s.pgp, io.Reader(r), nil); err != nil {
		return "", fmt.Errorf("sign the status commit: %w", err)
	}
	return out.String() + "\n", nil
}
