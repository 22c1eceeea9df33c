package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// VerifyConfig lists the keys trusted to sign the desired file. A commit
// must carry exactly one signature, by one of these keys.
type VerifyConfig struct {
	// PGPKeyRings are armored OpenPGP public keys (or key rings).
	PGPKeyRings []string
	// SSHKeys are public keys in authorized_keys format.
	SSHKeys []string

	pgp openpgp.EntityList
	ssh []ssh.PublicKey
}

func (v *VerifyConfig) validate() error {
	v.pgp, v.ssh = nil, nil
	for i, ring := range v.PGPKeyRings {
		el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(ring))
		if err != nil {
			return fmt.Errorf("verification key ring %d: %v", i+1, err)
		}
		v.pgp = append(v.pgp, el...)
	}
	for i, line := range v.SSHKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("verification SSH key %d: %v", i+1, err)
		}
		v.ssh = append(v.ssh, k)
	}
	if len(v.pgp) == 0 && len(v.ssh) == 0 {
		return errors.New("signature verification needs at least one trusted key")
	}
	return nil
}

// TrustedKeys is a VerifyConfig that trusts keys: each an authorized_keys
// line of an SSH public key or an armored OpenPGP public key.
func TrustedKeys(keys ...string) (*VerifyConfig, error) {
	v := &VerifyConfig{}
	for _, k := range keys {
		if strings.HasPrefix(strings.TrimSpace(k), "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			v.PGPKeyRings = append(v.PGPKeyRings, k)
		} else {
			v.SSHKeys = append(v.SSHKeys, strings.TrimSpace(k))
		}
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// VerifyCommit checks a raw commit object (`git cat-file commit`) against
// keys and names the signer: a local checkout's peer branches are verified
// by the same code as the agent's.
func VerifyCommit(raw []byte, keys *VerifyConfig) (string, error) {
	obj := &plumbing.MemoryObject{}
	obj.SetType(plumbing.CommitObject)
	if _, err := obj.Write(raw); err != nil {
		return "", err
	}
	var c object.Commit
	if err := c.Decode(obj); err != nil {
		return "", fmt.Errorf("not a commit: %v", err)
	}
	c.Hash = obj.Hash()
	return keys.verify(&c)
}

// signatureNamespace is what git signs commits with (gpg.ssh namespace).
const signatureNamespace = "git"

// verify checks a commit's one signature against the trusted keys and names
// the signer.
func (v *VerifyConfig) verify(c *object.Commit) (string, error) {
	sig := c.PGPSignature
	switch n := strings.Count(sig, "-----BEGIN "); {
	case n == 0:
		return "", fmt.Errorf("commit %s is not signed", short(c.Hash))
	case n > 1:
		return "", fmt.Errorf("commit %s carries %d signatures; exactly one is accepted", short(c.Hash), n)
	}
	msg := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(msg); err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(strings.TrimSpace(sig), "-----BEGIN PGP SIGNATURE-----"):
		if len(v.pgp) == 0 {
			return "", fmt.Errorf("commit %s has an OpenPGP signature but no OpenPGP key is trusted", short(c.Hash))
		}
		r, _ := msg.Reader()
		entity, err := openpgp.CheckArmoredDetachedSignature(v.pgp, r, strings.NewReader(sig), nil)
		if err != nil {
			return "", fmt.Errorf("commit %s: OpenPGP signature not valid for a trusted key: %v", short(c.Hash), err)
		}
		return pgpIdentity(entity), nil
	case strings.HasPrefix(strings.TrimSpace(sig), "-----BEGIN SSH SIGNATURE-----"):
		s, err := sshsig.Unarmor([]byte(sig))
		if err != nil {
			return "", fmt.Errorf("commit %s: malformed SSH signature", short(c.Hash))
		}
		for _, k := range v.ssh {
			if !bytes.Equal(k.Marshal(), s.PublicKey.Marshal()) {
				continue
			}
			r, _ := msg.Reader()
			if err := sshsig.Verify(io.Reader(r), s, k, s.HashAlgorithm, signatureNamespace); err != nil {
				return "", fmt.Errorf("commit %s: SSH signature does not verify: %v", short(c.Hash), err)
			}
			return "ssh:" + ssh.FingerprintSHA256(k), nil
		}
		return "", fmt.Errorf("commit %s is signed by SSH key %s, which is not trusted", short(c.Hash), ssh.FingerprintSHA256(s.PublicKey))
	}
	return "", fmt.Errorf("commit %s has a signature of an unknown kind", short(c.Hash))
}

func pgpIdentity(e *openpgp.Entity) string {
	id := fmt.Sprintf("pgp:%X", e.PrimaryKey.Fingerprint)
	for name := range e.Identities {
		return id + " (" + name + ")"
	}
	return id
}

func short(h plumbing.Hash) string { return h.String()[:7] }
