// Package redact is the one place for what may be echoed: text from a
// server, a file or a user made safe for status files, events and logs
// (Text, Quote, Truncate), and secrets that never print (Secret) or are
// scrubbed, in every encoding they could be echoed in, from messages
// (Scrubber). It must not import anything of kvgitops.
package redact
