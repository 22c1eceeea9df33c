package gitserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSHServer is Debian's sshd on a loopback port serving the Server's
// repositories to one authorized key.
type SSHServer struct {
	Port       int
	dir        string
	cmd        *exec.Cmd
	hostPub    string // "ssh-ed25519 AAAA..."
	clientKey  []byte // OpenSSH private key of the authorized user
	clientPub  string
	serverRoot string
}

// StartSSH starts sshd for s's repositories. Stop it with Close.
func (s *Server) StartSSH() (*SSHServer, error) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/sshd"); statErr != nil {
			return nil, fmt.Errorf("sshd not found (run `make test`, which installs openssh-server): %w", err)
		}
		sshd = "/usr/sbin/sshd"
	}
	dir, err := os.MkdirTemp("", "kvgitops-sshd-")
	if err != nil {
		return nil, err
	}
	x := &SSHServer{dir: dir, serverRoot: s.Root}
	if err := x.keys(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("sshd privilege-separation folder: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	x.Port = port
	config := strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel ERROR",
		"SetEnv GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1",
	}, "\n") + "\n"
	if !s.opts.V0Only {
		config += "AcceptEnv GIT_PROTOCOL\n"
	}
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	x.cmd = exec.Command(sshd, "-D", "-e", "-f", cfgPath)
	x.cmd.Stderr = os.Stderr
	if err := x.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	// sshd writes its pid file once it listens; a probe connection would
	// only make it log a failed key exchange.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "sshd.pid")); err == nil {
			return x, nil
		}
		if time.Now().After(deadline) {
			x.Close()
			return nil, fmt.Errorf("sshd did not start on %s", x.Addr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops sshd (by its PID) and removes its files.
func (x *SSHServer) Close() {
	if x.cmd != nil && x.cmd.Process != nil {
		_ = x.cmd.Process.Kill()
		_ = x.cmd.Wait()
	}
	_ = os.RemoveAll(x.dir)
}

// Addr is 127.0.0.1:port.
func (x *SSHServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(x.Port) }

// URL is the ssh:// URL of a repository (default "repo.git").
func (x *SSHServer) URL(repo ...string) string {
	name := "repo.git"
	if len(repo) > 0 {
		name = repo[0]
	}
	return "ssh://root@" + x.Addr() + filepath.Join(x.serverRoot, name)
}

// KnownHosts is the known_hosts line for the server's host key.
func (x *SSHServer) KnownHosts() string {
	return "[127.0.0.1]:" + strconv.Itoa(x.Port) + " " + x.hostPub
}

// HostKey is the server's public host key ("ssh-ed25519 AAAA...").
func (x *SSHServer) HostKey() string { return x.hostPub }

// ClientKey is the OpenSSH private key of the authorized user.
func (x *SSHServer) ClientKey() []byte { return x.clientKey }

// AuthorizeKey adds another public key to the authorized keys.
func (x *SSHServer) AuthorizeKey(pub string) error {
	f, err := os.OpenFile(filepath.Join(x.dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(strings.TrimSpace(pub) + "\n")
	return err
}

func (x *SSHServer) keys() error {
	ctx := context.Background()
	for _, name := range []string{"host_ed25519", "client_ed25519"} {
		cmd := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", filepath.Join(x.dir, name))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(x.dir, name))
		return strings.TrimSpace(string(b)), err
	}
	var err error
	if x.hostPub, err = read("host_ed25519.pub"); err != nil {
		return err
	}
	if x.clientPub, err = read("client_ed25519.pub"); err != nil {
		return err
	}
	f := strings.Fields(x.hostPub)
	if len(f) < 2 {
		return errors.New("malformed host key")
	}
	x.hostPub = f[0] + " " + f[1]
	if x.clientKey, err = os.ReadFile(filepath.Join(x.dir, "client_ed25519")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(x.dir, "authorized_keys"), []byte(x.clientPub+"\n"), 0o600)
}

// GitSSHCommand is a GIT_SSH_COMMAND that trusts only the server's host key
// and offers the client key.
func (x *SSHServer) GitSSHCommand() (string, error) {
	kh := filepath.Join(x.dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(x.KnownHosts()+"\n"), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes",
		filepath.Join(x.dir, "client_ed25519"), kh), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
