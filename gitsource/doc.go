// Package gitsource is everything kvgitops does with Git, on go-git v5.
//
// It speaks the agent's language: revisions are strings
// ("main@sha1:<hex>"), files are bytes, and a status update is "write this
// file with this message". Nothing of go-git leaks out of it.
//
// It speaks protocol v2 where the server does (git 2.18 and every large
// host): a poll is one ls-refs for the one branch, so its cost does not grow
// with the repository's refs; a read after a change fetches the commit with
// its root tree (filter tree:1), then only the trees on the desired file's
// path and its one blob, so its cost does not grow with the repository's
// files. A server that answers in v0 is remembered and served by go-git:
// one reference advertisement per poll, a depth-1 fetch with blob:limit
// where the server filters. Either way packs are read object by object
// into an in-memory store within caps on inflated bytes (blobs over the cap
// are hashed as they stream past and dropped), the pack checksum is
// verified, and there is no worktree, no tags, no submodules; a symlink or
// other non-regular file at the desired path is an error. Writing builds
// the status commit from objects (blob, trees, commit), pushes it with the
// old head as precondition, skips it when the bytes are unchanged, and on a
// rejected push re-fetches and re-applies on the new head, never forcing.
// Optionally it verifies that the commit that set the desired file is signed
// by a trusted OpenPGP or SSH key, and refuses history that no longer
// descends from what was applied.
//
// Only https:// and ssh:// remotes are accepted, credentials come from a
// mounted Secret with Flux's key names (read again for each request or
// connection when its files change, so a rotated token works at once), SSH
// requires known_hosts, every
// network operation has its own deadline and byte cap, and credentials are
// scrubbed from every error. It must not log, decide, or touch the cluster.
package gitsource
