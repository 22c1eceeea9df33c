// Package root finds the module's root directory for tests and tools that
// read files of the repository (deploy/, hack/) or build its binary.
package root

import (
	"fmt"
	"os"
	"path/filepath"
)

// Module is the nearest directory at or above the working directory that
// holds go.mod.
func Module() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for start := dir; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", start)
		}
		dir = parent
	}
}
