package gitsource

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys is a parsed known_hosts file.
type hostKeys struct {
	entries []hostKeyEntry
	revoked []ssh.PublicKey // @revoked: refused for every host
}

type hostKeyEntry struct {
	patterns []string
	key      ssh.PublicKey
}

func parseKnownHosts(data []byte) (*hostKeys, error) {
	hk := &hostKeys{}
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		marker, hosts, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		rest = next
		switch marker {
		case "revoked":
			hk.revoked = append(hk.revoked, key)
			continue
		case "cert-authority":
			continue // host certificates are not supported: the line vouches for no key
		}
		hk.entries = append(hk.entries, hostKeyEntry{patterns: hosts, key: key})
	}
	if len(hk.entries) == 0 {
		return nil, fmt.Errorf("known_hosts holds no host key")
	}
	return hk, nil
}

// keysFor returns the keys known for host:port.
func (hk *hostKeys) keysFor(address string) []ssh.PublicKey {
	norm := knownhosts.Normalize(address)
	var out []ssh.PublicKey
	for _, e := range hk.entries {
		for _, p := range e.patterns {
			if matchHost(p, norm) {
				out = append(out, e.key)
				break
			}
		}
	}
	return out
}

// matchHost matches one known_hosts pattern (plain, hashed |1|salt|hash, or
// with * and ? wildcards) against a normalised host.
func matchHost(pattern, host string) bool {
	if strings.HasPrefix(pattern, "|1|") {
		parts := strings.Split(pattern[3:], "|")
		if len(parts) != 2 {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[0])
		want, err2 := base64.StdEncoding.DecodeString(parts[1])
		if err1 != nil || err2 != nil {
			return false
		}
		m := hmac.New(sha1.New, salt)
		m.Write([]byte(host))
		return hmac.Equal(m.Sum(nil), want)
	}
	if strings.ContainsAny(pattern, "*?") {
		return wildcard(knownhosts.Normalize(pattern), host)
	}
	return knownhosts.Normalize(pattern) == host
}

func wildcard(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if wildcard(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && wildcard(p[1:], s[1:])
	}
	return s != "" && p[0] == s[0] && wildcard(p[1:], s[1:])
}

// callback verifies the server's host key against the known keys of that
// host and fails closed, naming the host and the key algorithm offered.
func (hk *hostKeys) callback() ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		for _, r := range hk.revoked {
			if bytes.Equal(r.Marshal(), key.Marshal()) {
				return &hostKeyError{msg: fmt.Sprintf("host %s offered a %s key that known_hosts marks @revoked (SHA256 %s)", hostname, key.Type(), ssh.FingerprintSHA256(key))}
			}
		}
		known := hk.keysFor(hostname)
		for _, k := range known {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		if len(known) == 0 {
			return &hostKeyError{msg: fmt.Sprintf("host %s is not in known_hosts (it offered a %s key)", hostname, key.Type())}
		}
		return &hostKeyError{msg: fmt.Sprintf("host %s offered a %s key that does not match known_hosts (SHA256 %s)", hostname, key.Type(), ssh.FingerprintSHA256(key))}
	}
}

type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// algorithms are the host key algorithms to ask the server for: those of the
// keys known for the host, so a server with several keys offers one we know.
func (hk *hostKeys) algorithms(address string) []string {
	var out []string
	for _, k := range hk.keysFor(address) {
		for _, a := range algorithmsFor(k.Type()) {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
