package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A node without --node makes a name at its first start and keeps it in
// its data folder; --node wins, and a bad one is refused, as is a bad
// saved one.
func TestNodeName(t *testing.T) {
	dir := t.TempDir()
	f := &serveFlags{data: dir}
	first, err := nodeName(f)
	if err != nil || checkNodeName(first) != nil {
		t.Fatalf("%q, %v", first, err)
	}
	if again, err := nodeName(f); err != nil || again != first {
		t.Fatalf("second start: %q, %v; want %q", again, err, first)
	}
	if other, err := nodeName(&serveFlags{data: t.TempDir()}); err != nil || other == first {
		t.Fatalf("another data folder: %q, %v", other, err)
	}
	f.node = "eu-1_a"
	if got, err := nodeName(f); err != nil || got != "eu-1_a" {
		t.Fatalf("--node: %q, %v", got, err)
	}
	for _, bad := range []string{"a.b", "a b", "*", strings.Repeat("x", maxNodeName+1)} {
		f.node = bad
		if _, err := nodeName(f); err == nil || !strings.Contains(err.Error(), "--node") {
			t.Errorf("--node %q: %v", bad, err)
		}
	}
	f.node = ""
	if err := os.WriteFile(filepath.Join(dir, ".ferry", "node"), []byte("no.dots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeName(f); err == nil {
		t.Error("a bad saved name was taken")
	}
}
