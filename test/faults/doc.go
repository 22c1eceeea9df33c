// Package faults tests the agent, the built binary, through faults of the
// control plane itself (docs/reliability.md F6, F7, F23): the apiserver killed
// and restarted mid-hop, etcd stalled. It has its own control plane, with
// etcd compacted every few seconds so that a watch resumed after an outage
// meets 410 Gone, as one would after a long partition.
package faults
