package gitserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// User is somebody with a working clone of a repository on the server,
// committing with the git CLI (pushing straight to the bare repository).
type User struct {
	s    *Server
	repo string
	dir  string
}

// User returns a working clone of repo (default "repo.git").
func (s *Server) User(repo ...string) (*User, error) {
	name := "repo.git"
	if len(repo) > 0 {
		name = repo[0]
	}
	dir, err := os.MkdirTemp(s.work, "clone-")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if _, err := Git(ctx, s.work, nil, "clone", "--quiet", filepath.Join(s.Root, name), dir); err != nil {
		return nil, err
	}
	if _, err := Git(ctx, dir, nil, "checkout", "--quiet", "-B", s.Branch); err != nil {
		return nil, err
	}
	return &User{s: s, repo: name, dir: dir}, nil
}

// Dir is the working clone.
func (u *User) Dir() string { return u.dir }

// CommitFiles writes files (path → content; nil content deletes), commits
// them with msg and pushes. It returns the new commit id.
func (u *User) CommitFiles(msg string, files map[string][]byte) (string, error) {
	ctx := context.Background()
	if err := u.Pull(); err != nil {
		return "", err
	}
	for path, content := range files {
		full := filepath.Join(u.dir, path)
		if content == nil {
			if _, err := Git(ctx, u.dir, nil, "rm", "--quiet", "--ignore-unmatch", path); err != nil {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return "", err
		}
		if _, err := Git(ctx, u.dir, nil, "add", path); err != nil {
			return "", err
		}
	}
	if _, err := Git(ctx, u.dir, nil, "commit", "--quiet", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	// Somebody (the agent) may push in between: rebase and push again, as a
	// person would.
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if _, err = Git(ctx, u.dir, nil, "push", "--quiet", "origin", "HEAD:"+u.s.Branch); err == nil {
			return Git(ctx, u.dir, nil, "rev-parse", "HEAD")
		}
		if _, rerr := Git(ctx, u.dir, nil, "pull", "--quiet", "--rebase", "origin", u.s.Branch); rerr != nil {
			return "", rerr
		}
	}
	return "", err
}

// CommitFile commits one file.
func (u *User) CommitFile(path string, content []byte, msg string) (string, error) {
	return u.CommitFiles(msg, map[string][]byte{path: content})
}

// Pull brings the clone up to the server's branch (if it has one).
func (u *User) Pull() error {
	ctx := context.Background()
	if _, err := Git(ctx, u.dir, nil, "fetch", "--quiet", "origin"); err != nil {
		return err
	}
	if out, _ := Git(ctx, u.dir, nil, "ls-remote", "origin", "refs/heads/"+u.s.Branch); out == "" {
		return nil // empty repository
	}
	_, err := Git(ctx, u.dir, nil, "reset", "--quiet", "--hard", "origin/"+u.s.Branch)
	return err
}

// Git runs git in the clone.
func (u *User) Git(args ...string) (string, error) {
	return Git(context.Background(), u.dir, nil, args...)
}

// Head is the commit id of the branch on the server, "" when it has none.
func (s *Server) Head(repo ...string) (string, error) {
	out, err := Git(context.Background(), s.repoDir(repo), nil, "rev-parse", "--verify", "--quiet", "refs/heads/"+s.Branch)
	if err != nil {
		return "", nil
	}
	return out, nil
}

// Show returns a file at a revision of the server's repository.
func (s *Server) Show(rev, path string, repo ...string) (string, error) {
	return Git(context.Background(), s.repoDir(repo), nil, "show", rev+":"+path)
}

// Log lists the one-line log of the branch, for path when given.
func (s *Server) Log(path string, repo ...string) ([]string, error) {
	return s.LogOf(s.Branch, path, repo...)
}

// LogOf is Log for another branch.
func (s *Server) LogOf(branch, path string, repo ...string) ([]string, error) {
	args := []string{"log", "--format=%H %an: %s", branch}
	if path != "" {
		args = append(args, "--", path)
	}
	out, err := Git(context.Background(), s.repoDir(repo), nil, args...)
	if err != nil || out == "" {
		return nil, err
	}
	return strings.Split(out, "\n"), nil
}

func (s *Server) repoDir(repo []string) string {
	if len(repo) > 0 {
		return filepath.Join(s.Root, repo[0])
	}
	return filepath.Join(s.Root, "repo.git")
}

// ForcePush rewrites the branch to rev (a force-push by somebody else).
func (s *Server) ForcePush(rev string, repo ...string) error {
	_, err := Git(context.Background(), s.repoDir(repo), nil, "update-ref", "refs/heads/"+s.Branch, rev)
	if err != nil {
		return fmt.Errorf("force-push: %w", err)
	}
	return nil
}
