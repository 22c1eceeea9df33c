// Command hello is a small program with one module dependency, built by
// hack/release's test for three platforms in place of kvgitops.
package main

import (
	"fmt"

	"github.com/google/go-cmp/cmp"
)

func main() { fmt.Println(cmp.Equal(1, 1)) }
