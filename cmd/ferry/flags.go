package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
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
		fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
	}
	return fs
}

// printFlag writes one flag's entry of a usage: its name, environment
// variable and default, then what it does.
func printFlag(w io.Writer, f *flag.Flag) {
	fmt.Fprintf(w, "  --%s (env %s)", f.Name, envName(f.Name))
	if f.DefValue != "" {
		fmt.Fprintf(w, " default %s", f.DefValue)
	}
	fmt.Fprintf(w, "\n      %s\n", f.Usage)
}

// flagGroup is a heading of a command's usage and the flags under it, in
// the order they are listed.
type flagGroup struct {
	title string
	flags []string
}

// ungrouped is the heading of the flags no group names. A test keeps it
// out of serve's usage; it exists so that a flag forgotten in the table is
// still listed, not hidden.
const ungrouped = "Other"

// groupUsage makes fs's usage list its flags under the groups' headings,
// in the groups' order rather than alphabetically: a command with dozens
// of flags shows the few most people set first.
func groupUsage(fs *flag.FlagSet, synopsis string, groups []flagGroup) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: ferry %s\n", synopsis)
		listed := make(map[string]bool)
		for _, g := range groups {
			fmt.Fprintf(w, "\n%s:\n", g.title)
			for _, name := range g.flags {
				if f := fs.Lookup(name); f != nil && !listed[name] {
					listed[name] = true
					printFlag(w, f)
				}
			}
		}
		var rest []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) {
			if !listed[f.Name] {
				rest = append(rest, f)
			}
		})
		if len(rest) > 0 {
			fmt.Fprintf(w, "\n%s:\n", ungrouped)
			for _, f := range rest {
				printFlag(w, f)
			}
		}
	}
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

// sizeVar defines a flag of a number of bytes, written plainly or with a
// unit, GNU style: K, M, G, T and KiB..TiB are powers of 1024; KB, MB, GB,
// TB powers of 1000; case does not matter ("5GB", "512MiB", "64k",
// "1.5GiB", "1048576"). Its default prints with a unit when it has one.
func sizeVar[T int | int64](fs *flag.FlagSet, p *T, name string, def T, usage string) {
	*p = def
	fs.Var(sizeValue[T]{p}, name, usage)
}

type sizeValue[T int | int64] struct{ p *T }

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

func (v sizeValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	n := int64(*v.p)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (v sizeValue[T]) Set(s string) error {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	f, err := strconv.ParseFloat(t[:i], 64)
	if !ok || err != nil || f < 0 || f*mult >= float64(maxOf[T]()) {
		return fmt.Errorf("%q is not a size: write a number of bytes, or one with a unit such as 64KiB, 512MiB, 5GB", s)
	}
	*v.p = T(f * mult)
	return nil
}

// maxOf is the largest value of T.
func maxOf[T int | int64]() int64 {
	var x T
	if _, isInt := any(x).(int); isInt {
		return math.MaxInt
	}
	return math.MaxInt64
}
