package stack

import (
	"context"
	"time"

	"github.com/kvgitops/kvgitops/agent"
)

// Status reads the committed status file of cluster from the git server,
// as a reviewer would.
// A fleet's agent commits to its own branch, status/<cluster>, read first.
func (s *Stack) Status(cluster string) (agent.Status, bool) {
	path := agent.PeerStatusPath(cluster)
	text, err := s.Git.Show("status/"+cluster, path)
	if err != nil {
		if text, err = s.Git.Show(s.Git.Branch, path); err != nil {
			return agent.Status{}, false
		}
	}
	st, err := agent.ParseStatus([]byte(text + "\n"))
	return st, err == nil
}

// WaitStatus polls the committed status until cond holds.
func (s *Stack) WaitStatus(ctx context.Context, cluster string, cond func(agent.Status) bool) (agent.Status, error) {
	for {
		if st, ok := s.Status(cluster); ok && cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			st, _ := s.Status(cluster)
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Phase is a WaitStatus condition: phase p at observed version v ("" any).
func Phase(p agent.Phase, v string) func(agent.Status) bool {
	return func(st agent.Status) bool { return st.Phase == p && (v == "" || st.Observed.Version == v) }
}
