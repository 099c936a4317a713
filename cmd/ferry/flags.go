package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlagSet returns a flag set for a sub-command whose usage lists each flag
// with its environment variable.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ferry %s\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s (env %s)", f.Name, envName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(stderr, " default %s", f.DefValue)
			}
			fmt.Fprintf(stderr, "\n      %s\n", f.Usage)
		})
	}
	return fs
}

// envName maps a flag name to its environment variable: max-frame → FERRY_MAX_FRAME.
func envName(flagName string) string {
	return "FERRY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags sets every flag not given on the command line from its
// environment variable, then parses args. Command-line flags win.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && bad == nil {
			if err := f.Value.Set(v); err != nil {
				bad = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if bad != nil {
		return bad
	}
	return fs.Parse(args)
}
