package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// GitEnv isolates git from the machine: no global or system config, no
// prompts, a fixed identity.
func GitEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Platform Team", "GIT_AUTHOR_EMAIL=platform@example.com",
		"GIT_COMMITTER_NAME=Platform Team", "GIT_COMMITTER_EMAIL=platform@example.com",
		"PATH=" + os.Getenv("PATH"),
	}
	return env
}

// Git runs the git CLI in dir with an isolated environment and extra env.
func Git(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(GitEnv(dir), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
