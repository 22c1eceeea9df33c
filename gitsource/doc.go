// Package gitsource is everything kvgitops does with Git, on go-git v5.
//
// It speaks the agent's language: revisions are strings
// ("main@sha1:<hex>"), files are bytes, and a status update is "write this
// file with this message". Nothing of go-git leaks out of it.
//
// Polling asks for one reference advertisement and downloads no pack when
// the branch has not moved. Reading fetches, at the transport level, only
// the wanted commit (depth 1), telling the server what is already held (one
// "have", the shallow boundary), into an in-memory store; no worktree, no
// tags, no submodules, every read size-capped, and a symlink or other
// non-regular file at the desired path is an error. Writing builds the
// status commit from objects (blob, trees, commit), pushes it with the old
// head as precondition, skips it when the bytes are unchanged, and on a
// rejected push re-fetches and re-applies on the new head, never forcing.
// Optionally it verifies that the commit that set the desired file is signed
// by a trusted OpenPGP or SSH key, and refuses history that no longer
// descends from what was applied.
//
// Only https:// and ssh:// remotes are accepted, credentials come from a
// mounted Secret with Flux's key names, SSH requires known_hosts, every
// network operation has its own deadline and byte cap, and credentials are
// scrubbed from every error. It must not log, decide, or touch the cluster.
package gitsource
