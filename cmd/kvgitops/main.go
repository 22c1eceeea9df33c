package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // maintenance windows name IANA zones; do not depend on the image having them
)

// version is stamped by the Makefile (-X main.version=...).
var version = "dev"

// Exit codes of every subcommand.
const (
	exitOK      = 0
	exitRefused = 1 // refused, invalid input, or the agent failed
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "plan":
		return planCommand(ctx, args[1:], stdout, stderr)
	case "release":
		return releaseCommand(ctx, args[1:], stdout, stderr)
	case "mirror":
		return mirrorCommand(ctx, args[1:], stdout, stderr)
	case "fleet":
		return fleetCommand(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "kvgitops: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: kvgitops <command> [flags]

Commands:
  run      run the agent: poll Git, plan, execute, commit status
  plan     compute a plan offline (or against a live cluster) and print it
  release  check a kubevirt-operator.yaml as the agent would vet it
  mirror   copy a planned path's images to an air-gapped site's registry, rewrite its manifests
  fleet    fleet status: every cluster of a fleet file, ring by ring
  version  print the version

Run 'kvgitops <command> --help' for the flags of a command.
`)
}

// parseFlags parses args, then fills every flag not given on the command line
// from KVGITOPS_<FLAG_IN_UPPER_SNAKE>. Flags win over the environment.
func parseFlags(fs *flag.FlagSet, args []string, env func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || env == nil {
			return
		}
		name := "KVGITOPS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := env(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// quietFlags makes fs print its flags only when asked for (-h): a wrong
// flag gets one line saying what is wrong (printed by the caller) and a
// pointer to -h, not a page of usage.
func quietFlags(fs *flag.FlagSet, w io.Writer, name string) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
}

// parseCommand parses a command's flags the quiet way, then runs check
// (nil: none). When the command must not go on it reports why and returns
// the exit code, with stop true: 0 for -h, 2 for a usage error.
func parseCommand(fs *flag.FlagSet, args []string, env func(string) (string, bool), stderr io.Writer, check func() error) (code int, stop bool) {
	quietFlags(fs, stderr, fs.Name())
	err := parseFlags(fs, args, env)
	if err == nil && check != nil {
		err = check()
	}
	if err == nil {
		return exitOK, false
	}
	flagError(fs, stderr, fs.Name(), err)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK, true
	}
	return exitUsage, true
}

// problem turns a check's message into an error ("" is none).
func problem(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

// hiddenFlag starts the usage of a flag -h does not list (test hooks).
const hiddenFlag = "testing only:"

// flagError reports a flag error the quiet way; -h prints the flags but
// the hidden ones.
func flagError(fs *flag.FlagSet, w io.Writer, name string, err error) {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(w, "Usage of %s:\n", name)
		shown := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.HasPrefix(f.Usage, hiddenFlag) {
				shown.Var(f.Value, f.Name, f.Usage)
				shown.Lookup(f.Name).DefValue = f.DefValue
			}
		})
		shown.SetOutput(w)
		shown.PrintDefaults()
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s: %s\n", name, line)
	}
	fmt.Fprintf(w, "Run '%s -h' for the flags.\n", name)
}
