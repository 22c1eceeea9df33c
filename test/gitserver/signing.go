package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/kvgitops/kvgitops/gitsource"
)

// StatusKey is a new SSH (ed25519) status-signing key: the signer a
// cluster's agent commits its status with, and the public key a fleet
// file lists for it.
func StatusKey() (*gitsource.CommitSigner, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	return gitsource.NewSSHCommitSigner(signer), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}
