package gitsource

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Revision names a commit of a branch: "main@sha1:<40 hex>", as Flux does.
type Revision string

func newRevision(branch string, h plumbing.Hash) Revision {
	return Revision(branch + "@sha1:" + h.String())
}

// Commit is the commit id of the revision, "" when malformed.
func (r Revision) Commit() string {
	_, c, ok := strings.Cut(string(r), "@sha1:")
	if !ok || !plumbing.IsHash(c) {
		return ""
	}
	return c
}

// Branch is the branch the revision was read from.
func (r Revision) Branch() string {
	b, _, _ := strings.Cut(string(r), "@")
	return b
}

// Short is a short form for messages: main@1a2b3c4.
func (r Revision) Short() string {
	b, _, _ := strings.Cut(string(r), "@")
	if c := r.Commit(); c != "" {
		return b + "@" + c[:7]
	}
	return string(r)
}

func (r Revision) hash() (plumbing.Hash, error) {
	c := r.Commit()
	if c == "" {
		return plumbing.ZeroHash, fmt.Errorf("revision %q is not branch@sha1:<commit>", string(r))
	}
	return plumbing.NewHash(c), nil
}
