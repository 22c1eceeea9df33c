package gitserver_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/test/gitserver"
)

func start(t *testing.T, opts gitserver.Options) *gitserver.Server {
	t.Helper()
	s, err := gitserver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// cli runs the git CLI as a client of the HTTPS server.
func cli(t *testing.T, s *gitserver.Server, dir string, extra []string, args ...string) (string, error) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, s.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return gitserver.Git(context.Background(), dir, append([]string{"GIT_SSL_CAINFO=" + ca}, extra...), args...)
}

func TestCloneAndPushOverHTTPS(t *testing.T) {
	tests := []struct {
		name   string
		opts   gitserver.Options
		url    func(s *gitserver.Server) string
		header []string
	}{
		{"anonymous", gitserver.Options{}, func(s *gitserver.Server) string { return s.URL() }, nil},
		{"basic auth", gitserver.Options{Username: "git", Password: "s3cret"}, func(s *gitserver.Server) string {
			u, _ := url.Parse(s.URL())
			u.User = url.UserPassword("git", "s3cret")
			return u.String()
		}, nil},
		{"bearer token", gitserver.Options{Token: "tok3n"}, func(s *gitserver.Server) string { return s.URL() },
			[]string{"-c", "http.extraHeader=Authorization: Bearer tok3n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.opts)
			u, err := s.User()
			if err != nil {
				t.Fatal(err)
			}
			want, err := u.CommitFile("kubevirt.yaml", []byte("spec: {}\n"), "desired")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if _, err := cli(t, s, dir, nil, append(tt.header, "clone", "--quiet", tt.url(s), "c")...); err != nil {
				t.Fatalf("clone: %v", err)
			}
			clone := filepath.Join(dir, "c")
			if got, _ := gitserver.Git(context.Background(), clone, nil, "rev-parse", "HEAD"); got != want {
				t.Errorf("cloned head %s, want %s", got, want)
			}
			if err := os.WriteFile(filepath.Join(clone, "status.yaml"), []byte("phase: Idle\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"add", "status.yaml"}, {"commit", "--quiet", "-m", "status"}} {
				if _, err := gitserver.Git(context.Background(), clone, nil, args...); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cli(t, s, clone, nil, append(tt.header, "push", "--quiet", "origin", "HEAD:main")...); err != nil {
				t.Fatalf("push: %v", err)
			}
			if got, err := s.Show("main", "status.yaml"); err != nil || got != "phase: Idle" {
				t.Errorf("pushed file = %q, %v", got, err)
			}
			if s.ReceivePacks() == 0 || s.UploadPacks() == 0 {
				t.Errorf("server saw %d upload-packs and %d receive-packs", s.UploadPacks(), s.ReceivePacks())
			}
		})
	}
}

func TestHTTPSRejectsMissingOrWrongCredentials(t *testing.T) {
	s := start(t, gitserver.Options{Username: "git", Password: "s3cret"})
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword("git", "wrong")
	for _, remote := range []string{s.URL(), u.String()} {
		_, err := cli(t, s, t.TempDir(), nil, "ls-remote", remote)
		if err == nil || !strings.Contains(err.Error(), "Authentication failed") && !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "could not read Username") {
			t.Errorf("ls-remote without valid credentials: %v, want an authentication failure", err)
		}
	}
}

func TestSSHWithHostKey(t *testing.T) {
	s := start(t, gitserver.Options{})
	u, err := s.User()
	if err != nil {
		t.Fatal(err)
	}
	want, err := u.CommitFile("kubevirt.yaml", []byte("spec: {}\n"), "desired")
	if err != nil {
		t.Fatal(err)
	}
	x, err := s.StartSSH()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	sshCmd, err := x.GitSSHCommand()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gitserver.Git(context.Background(), t.TempDir(), []string{"GIT_SSH_COMMAND=" + sshCmd}, "ls-remote", x.URL(), "refs/heads/main")
	if err != nil || !strings.HasPrefix(out, want) {
		t.Fatalf("ls-remote over ssh: %q, %v; want %s", out, err, want)
	}
	// A different host key must be refused.
	bad := strings.Replace(sshCmd, "StrictHostKeyChecking=yes", "StrictHostKeyChecking=yes -o HostKeyAlias=elsewhere", 1)
	if _, err := gitserver.Git(context.Background(), t.TempDir(), []string{"GIT_SSH_COMMAND=" + bad}, "ls-remote", x.URL()); err == nil {
		t.Error("ls-remote with an unknown host key succeeded")
	}
	// Push over SSH.
	dir := t.TempDir()
	env := []string{"GIT_SSH_COMMAND=" + sshCmd}
	if _, err := gitserver.Git(context.Background(), dir, env, "clone", "--quiet", x.URL(), "c"); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(dir, "c")
	if _, err := gitserver.Git(context.Background(), clone, env, "commit", "--quiet", "--allow-empty", "-m", "over ssh"); err != nil {
		t.Fatal(err)
	}
	if _, err := gitserver.Git(context.Background(), clone, env, "push", "--quiet", "origin", "HEAD:main"); err != nil {
		t.Fatalf("push over ssh: %v", err)
	}
	if log, _ := s.Log(""); len(log) != 2 || !strings.HasSuffix(log[0], "over ssh") {
		t.Errorf("log after ssh push: %v", log)
	}
}
