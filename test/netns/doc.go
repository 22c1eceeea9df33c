// Package netns makes named network namespaces for tests (ip netns): a
// namespace with loopback up, sockets made inside it from the test's own
// process (Listen, Dial), and its removal. The real node (test/cluster)
// and the pod stand-in (test/podrun) put what they start inside one, so
// nothing they run listens outside it and two of them never collide.
//
// Needs root and iproute2 (make deps).
//
// Must not: leave a namespace or its /run/netns mount behind after Delete.
package netns
