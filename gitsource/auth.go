package gitsource

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kvgitops/kvgitops/redact"
)

// Auth holds credentials, in the key names of a Flux Git redact.Secret.
type Auth struct {
	Username    string
	Password    redact.Secret // basic auth password, or the SSH key's passphrase
	BearerToken redact.Secret
	Identity    redact.Secret // PEM private key for SSH
	KnownHosts  []byte
	CA          *x509.CertPool // ca.crt
}

// redact.Secret directory limits: a mounted redact.Secret is small.
const maxSecretFile = 64 << 10

// Credentials give the credentials of each request (HTTPS) or connection
// (SSH) as they are at that moment, so a rotated token or key is used at
// once, without a restart. The CA (ca.crt) is read once, when the source is
// built.
type Credentials interface {
	Auth() (Auth, error)
}

// Static are fixed credentials.
type Static Auth

// Auth returns them.
func (s Static) Auth() (Auth, error) { return Auth(s), nil }

// secretKeys are the keys of a Flux Git Secret kvgitops reads.
var secretKeys = []string{"username", "password", "bearerToken", "identity", "known_hosts", "ca.crt"}

// SecretDir reads the credentials of a mounted Secret (Flux's key names),
// again whenever one of its files changed: the kubelet swaps a rotated
// Secret's files in place. The one place kvgitops loads Git credentials.
func SecretDir(dir string) Credentials { return &secretDir{dir: dir} }

type secretDir struct {
	dir string

	mu    sync.Mutex
	stamp string // size and modification time of every key file
	auth  Auth
}

func (d *secretDir) Auth() (Auth, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var stamp strings.Builder
	for _, k := range secretKeys {
		if fi, err := os.Stat(filepath.Join(d.dir, k)); err == nil {
			fmt.Fprintf(&stamp, "%s:%d:%d;", k, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	if d.dir != "" && stamp.String() == d.stamp {
		return d.auth, nil
	}
	a, err := LoadAuth(d.dir)
	if err != nil {
		return Auth{}, err
	}
	d.stamp, d.auth = stamp.String(), a
	return a, nil
}

// LoadAuth reads a mounted redact.Secret directory with Flux's key names:
// username, password, bearerToken, identity, known_hosts, ca.crt. Missing
// keys are fine; unreadable or oversized ones are not.
func LoadAuth(dir string) (Auth, error) {
	var a Auth
	if dir == "" {
		return a, nil
	}
	read := func(key string) ([]byte, error) {
		p := filepath.Join(dir, key)
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if fi.Size() > maxSecretFile {
			return nil, fmt.Errorf("secret key %s is %d bytes, over %d", key, fi.Size(), maxSecretFile)
		}
		return os.ReadFile(p)
	}
	var errs []error
	str := func(key string) string {
		b, err := read(key)
		errs = append(errs, err)
		return strings.TrimRight(string(b), "\r\n")
	}
	a.Username = str("username")
	a.Password = redact.Secret(str("password"))
	a.BearerToken = redact.Secret(str("bearerToken"))
	a.Identity = redact.Secret(str("identity"))
	kh, err := read("known_hosts")
	errs = append(errs, err)
	a.KnownHosts = kh
	ca, err := read("ca.crt")
	errs = append(errs, err)
	if len(ca) > 0 {
		a.CA = x509.NewCertPool()
		if !a.CA.AppendCertsFromPEM(ca) {
			errs = append(errs, errors.New("secret key ca.crt holds no PEM certificate"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Auth{}, fmt.Errorf("read Git secret %s: %w", dir, err)
	}
	return a, nil
}

// secrets lists the credential values to scrub from messages.
func (a Auth) secrets() []string {
	out := []string{string(a.Password), string(a.BearerToken), string(a.Identity)}
	if a.Password != "" {
		// Basic auth travels as base64("user:password"): scrub that form too.
		out = append(out, a.Username+":"+string(a.Password))
	}
	return out
}

// variants are the forms a secret can be echoed in: as is, URL-encoded,
// base64 (alone and as basic-auth), and the user:password pair.
