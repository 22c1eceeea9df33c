package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// commit is stamped by the Makefile (-X main.commit=...); without it the
// Go toolchain's VCS stamp is used, when the build had one.
var commit = ""

// versionLine is what `kvgitops version` prints: the release (stamped by
// the Makefile from the Git tag), the commit and whether the tree was
// modified, the Go version and platform.
func versionLine() string {
	rev, modified := commit, false
	if info, ok := debug.ReadBuildInfo(); ok && rev == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if modified {
		rev += ", modified"
	}
	return fmt.Sprintf("kvgitops %s (commit %s; %s, %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
