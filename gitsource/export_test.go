package gitsource

// Protocol is the protocol the source settled on: 0 not yet known, 1 v0,
// 2 v2.
func (s *Source) Protocol() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocol
}
