// Package gitserver runs real Git servers on loopback for tests and the
// demo: `git http-backend` behind net/http/cgi over HTTPS (smart HTTP, with
// optional basic-auth and bearer-token checks in front), and Debian's sshd on
// a loopback port with a generated host key and an authorized client key,
// serving the same bare repositories. It also drives the git CLI the way a
// user would (commit a file, read the head, log a path), isolated from the
// machine's git configuration.
//
// It is test code: the product must not import it.
package gitserver
