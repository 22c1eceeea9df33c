// Package libnbd stands in for the libnbd Go bindings that KubeVirt's
// virt-launcher imports from v1.8 on, for its NBD backup and block-status
// client only. The module proxy refuses the version KubeVirt pins (403), so
// hack/kubevirt.sh builds the launcher against this package: every call
// returns an error, which only a VM backup would meet (none runs in the
// test ground).
package libnbd

import "errors"

var errUnavailable = errors.New("libnbd: not in this test build")

// Names virt-launcher refers to.
const (
	CONTEXT_BASE_ALLOCATION   = "base:allocation"
	CONTEXT_QEMU_DIRTY_BITMAP = "qemu:dirty-bitmap:"
	STATE_HOLE                = 1
	STATE_ZERO                = 2
	STATE_DIRTY               = 1
)

// LibnbdExtent is one extent of a block-status reply.
type LibnbdExtent struct{ Length, Flags uint64 }

// ExtentCallback64 receives block-status extents.
type ExtentCallback64 func(metacontext string, offset uint64, entries []LibnbdExtent, nbdErr *int) int

// BlockStatus64Optargs and PreadOptargs are the calls' optional arguments.
type (
	BlockStatus64Optargs struct{}
	PreadOptargs         struct{}
)

// Libnbd is a handle that can do nothing.
type Libnbd struct{}

// Create fails: there is no libnbd.
func Create() (*Libnbd, error) { return nil, errUnavailable }

func (*Libnbd) Close() error                              { return nil }
func (*Libnbd) AddMetaContext(string) error               { return errUnavailable }
func (*Libnbd) CanMetaContext(string) (bool, error)       { return false, errUnavailable }
func (*Libnbd) GetSize() (uint64, error)                  { return 0, errUnavailable }
func (*Libnbd) SetExportName(string) error                { return errUnavailable }
func (*Libnbd) ConnectUnix(string) error                  { return errUnavailable }
func (*Libnbd) Pread([]byte, uint64, *PreadOptargs) error { return errUnavailable }
func (*Libnbd) BlockStatus64(uint64, uint64, ExtentCallback64, *BlockStatus64Optargs) error {
	return errUnavailable
}
