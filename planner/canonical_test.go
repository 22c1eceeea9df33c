package planner

import (
	"bytes"
	"fmt"
	"strconv"
)

// Canonical renders d as a desired file with every field explicit. Parsing
// the result gives back an equal Desired.
func (d Desired) Canonical() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: %s\nkind: %s\nspec:\n", DesiredAPIVersion, DesiredKind)
	fmt.Fprintf(&b, "  state: %s\n", d.State)
	if d.State == StatePresent {
		fmt.Fprintf(&b, "  version: %s\n", strconv.Quote(d.Version))
	}
	fmt.Fprintf(&b, "  method: %s\n  pathPolicy: %s\n  approval: %s\n", d.Method, d.PathPolicy, d.Approval)
	if d.ApprovedPlan != "" {
		fmt.Fprintf(&b, "  approvedPlan: %s\n", strconv.Quote(d.ApprovedPlan))
	}
	fmt.Fprintf(&b, "  suspend: %t\n  hopTimeout: %s\n", d.Suspend, d.HopTimeout)
	if w := d.Window; w != nil {
		fmt.Fprintf(&b, "  maintenanceWindow:\n    schedule: %s\n    duration: %s\n    timeZone: %s\n",
			strconv.Quote(w.Schedule), w.Duration, strconv.Quote(w.TimeZone))
	}
	fmt.Fprintf(&b, "  teardown:\n    removeStuckFinalizers: %t\n    allowWorkloadRemoval: %t\n",
		d.Teardown.RemoveStuckFinalizers, d.Teardown.AllowWorkloadRemoval)
	return b.Bytes()
}
