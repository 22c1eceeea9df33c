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
	commit, modified := commit, false
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	if modified {
		commit += ", modified"
	}
	return fmt.Sprintf("kvgitops %s (commit %s; %s, %s/%s)", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
