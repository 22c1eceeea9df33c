package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Protocol v2 (gitprotocol-v2): a poll asks for one branch with ls-refs and
// a ref-prefix, so its cost does not grow with the repository's refs; a
// read asks for exactly the objects it needs (the commit and its root tree
// with filter tree:1, then a tree or a blob by id), so its cost does not
// grow with the repository's files. Servers that answer in protocol v0 are
// remembered and served by go-git as before.

// errV0 means the server answered the v2 probe in protocol v0.
var errV0 = errors.New("the server speaks protocol v0 only")

// v2caps is a server's v2 capability advertisement.
type v2caps struct {
	lsRefs bool
	fetch  map[string]bool // fetch's features: shallow, filter, …
}

func parseCaps(p *pktReader) (*v2caps, error) {
	first, k, err := p.line()
	if err != nil {
		return nil, err
	}
	if k == pktData && strings.HasPrefix(first, "# service=") {
		if k, _, err := p.next(); err != nil || k != pktFlush {
			return nil, fmt.Errorf("malformed advertisement")
		}
		first, k, err = p.line()
		if err != nil {
			return nil, err
		}
	}
	if k != pktData || first != "version 2" {
		return nil, errV0
	}
	c := &v2caps{fetch: map[string]bool{}}
	for {
		l, k, err := p.line()
		if err != nil {
			return nil, err
		}
		if k != pktData {
			return c, nil
		}
		name, value, _ := strings.Cut(l, "=")
		switch name {
		case "ls-refs":
			c.lsRefs = true
		case "fetch":
			for _, f := range strings.Fields(value) {
				c.fetch[f] = true
			}
			c.fetch["fetch"] = true
		}
	}
}

// v2conn is one protocol v2 conversation: HTTP (one POST per command) or
// SSH (one upload-pack process for the session).
type v2conn interface {
	caps() *v2caps
	// command sends a request and returns the response, read to its flush.
	command(ctx context.Context, req string) (*pktReader, io.Closer, error)
	Close() error
}

// v2 opens a conversation, or returns errV0.
func (s *Source) v2(ctx context.Context) (v2conn, error) {
	if s.protocol == 1 {
		return nil, errV0
	}
	var c v2conn
	var err error
	if s.remote.http != nil {
		c, err = s.remote.openHTTP(ctx, s.v2http)
		if hc, ok := c.(*httpConn); ok {
			s.v2http = hc.c
		}
	} else {
		c, err = s.remote.openSSH(ctx, s.cfg.MaxPackSize)
	}
	switch {
	case errors.Is(err, errV0):
		s.protocol = 1
		return nil, errV0
	case err != nil:
		return nil, err
	}
	s.protocol = 2
	if !c.caps().lsRefs || !c.caps().fetch["fetch"] {
		c.Close()
		s.protocol = 1
		return nil, errV0
	}
	return c, nil
}

// maxListedRefs bounds what one ls-refs may answer (a fleet has at most
// 2,000 clusters; a hostile server does not get to fill memory).
const maxListedRefs = 20000

// lsRefs lists the branches whose names start with one of prefixes.
func lsRefs(ctx context.Context, c v2conn, prefixes ...string) (map[string]plumbing.Hash, error) {
	var w pktWriter
	w.line("command=ls-refs")
	w.line("agent=%s", agent)
	w.delim()
	for _, p := range prefixes {
		w.line("ref-prefix refs/heads/%s", p)
	}
	w.flush()
	p, closer, err := c.command(ctx, w.String())
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	refs := map[string]plumbing.Hash{}
	for {
		l, k, err := p.line()
		if err != nil {
			return nil, err
		}
		if k != pktData {
			return refs, nil
		}
		id, name, _ := strings.Cut(l, " ")
		name, _, _ = strings.Cut(name, " ")
		if strings.HasPrefix(name, "refs/heads/") && plumbing.IsHash(id) {
			if len(refs) == maxListedRefs {
				return nil, fmt.Errorf("the server lists over %d branches", maxListedRefs)
			}
			refs[name] = plumbing.NewHash(id)
		}
	}
}

// fetchRequest is one v2 fetch: wants, a depth (0: none) and a filter
// ("" or one the server supports).
type fetchRequest struct {
	wants  []plumbing.Hash
	depth  int
	filter string
}

// fetchV2 runs one fetch into st within lim.
func fetchV2(ctx context.Context, c v2conn, r fetchRequest, st *memory.Storage, lim limits) (unpacked, error) {
	var w pktWriter
	w.line("command=fetch")
	w.line("agent=%s", agent)
	w.delim()
	w.line("no-progress")
	w.line("ofs-delta")
	if r.depth > 0 && c.caps().fetch["shallow"] {
		w.line("deepen %d", r.depth)
	}
	if r.filter != "" && c.caps().fetch["filter"] {
		w.line("filter %s", r.filter)
	}
	for _, h := range r.wants {
		w.line("want %s", h)
	}
	w.line("done")
	w.flush()
	p, closer, err := c.command(ctx, w.String())
	if err != nil {
		return unpacked{}, err
	}
	defer closer.Close()
	// Sections until "packfile": shallow-info, wanted-refs, acknowledgments.
	for {
		l, k, err := p.line()
		if err != nil {
			return unpacked{}, err
		}
		switch {
		case k == pktData && l == "packfile":
			br := &bandReader{p: p}
			u, err := unpackInto(br, st, lim)
			if err == nil {
				_, err = io.Copy(io.Discard, br) // to the flush: SSH reuses the stream
			}
			return u, err
		case k == pktFlush || k == pktEnd:
			return unpacked{}, errors.New("the fetch response has no pack")
		}
	}
}

// agent is what kvgitops calls itself on the wire.
const agent = "git/kvgitops"
