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
		w := fs.Output()
		fmt.Fprintf(w, "usage: ferry %s\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  --%s (env %s)", f.Name, envName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(w, " default %s", f.DefValue)
			}
			fmt.Fprintf(w, "\n      %s\n", f.Usage)
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
//
// Help (-h, --help) prints the usage to the flag set's output and returns
// flag.ErrHelp; run sends it to stdout and exits 0. Other mistakes are told
// in one line, with the flag named as it is written (--bogus), not the
// whole usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if wantsHelp(args) {
		fs.Usage()
		return flag.ErrHelp
	}
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
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err == nil {
		return nil
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s (ferry %s --help lists the flags)", name, fs.Name())
	}
	// "invalid value "x" for flag -max-frame: ..." names flags with one dash.
	return fmt.Errorf("%s: %s", fs.Name(), strings.Replace(msg, "flag -", "flag --", 1))
}

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}
