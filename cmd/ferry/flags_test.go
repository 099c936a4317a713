package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// Sizes take units, GNU style, from flags and from the environment.
func TestSizeFlags(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "64k": 64 << 10, "64KiB": 64 << 10, "512MiB": 512 << 20, "512m": 512 << 20,
		"5GB": 5e9, "5gb": 5e9, "2G": 2 << 30, "1.5GiB": 3 << 29, "1TB": 1e12, " 10 MB ": 10e6, "0": 0,
	} {
		var v int64
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		sizeVar(fs, &v, "size", 7, "")
		if err := fs.Parse([]string{"--size", in}); err != nil || v != want {
			t.Errorf("%q: %d, %v; want %d", in, v, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "-1", "5XB", "1e3", "9999999999TB"} {
		var v int
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sizeVar(fs, &v, "size", 7, "")
		if err := fs.Parse([]string{"--size", bad}); err == nil {
			t.Errorf("%q accepted as %d", bad, v)
		}
	}
	var v int
	fs := newFlagSet("serve", "serve", io.Discard)
	sizeVar(fs, &v, "max-frame", 1<<20, "")
	if d := fs.Lookup("max-frame").DefValue; d != "1MiB" {
		t.Errorf("default prints as %q, want 1MiB", d)
	}
	t.Setenv("FERRY_MAX_FRAME", "2MiB")
	if err := parseFlags(fs, nil); err != nil || v != 2<<20 {
		t.Errorf("from the environment: %d, %v", v, err)
	}
}

// A grouped usage lists the flags under their headings, in the groups'
// order, and a flag no group names under "Other" rather than nowhere.
func TestGroupUsage(t *testing.T) {
	var out strings.Builder
	fs := newFlagSet("x", "x [flags]", &out)
	fs.String("b", "", "the b flag")
	fs.String("a", "A", "the a flag")
	fs.String("forgotten", "", "in no group")
	groupUsage(fs, "x [flags]", []flagGroup{{"First", []string{"b"}}, {"Second", []string{"a"}}})
	fs.Usage()
	want := `usage: ferry x [flags]

First:
  --b (env FERRY_B)
      the b flag

Second:
  --a (env FERRY_A) default A
      the a flag

Other:
  --forgotten (env FERRY_FORGOTTEN)
      in no group
`
	if out.String() != want {
		t.Errorf("usage\n%s\nwant\n%s", out.String(), want)
	}
}
