package web

import (
	"context"
	"github.com/ferryhq/ferry/internal/testenv"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFSServesThePage checks that the embedded tree has the page at its root.
func TestFSServesThePage(t *testing.T) {
	for _, name := range []string{"index.html", "ferry.js", "app.js", "style.css"} {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
	if _, err := fs.Stat(FS(), "static"); err == nil {
		t.Error(`FS() still has the "static" prefix`)
	}
}

// externalRef finds references that a browser would fetch from another host.
var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*["'](https?:)?//|@import\s+url\(\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|\bimport\s+[^;]*?from\s+["'](https?:)?//|\bimport\(\s*["'](https?:)?//`)

// TestNothingFromElsewhere keeps the page usable on a network without
// internet: no CDN, no web font, no remote script.
func TestNothingFromElsewhere(t *testing.T) {
	err := fs.WalkDir(FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS(), path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if externalRef.MatchString(line) {
				t.Errorf("%s refers to another host: %s", path, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIDsUsedByTheScriptExist catches a renamed element that app.js looks up
// by id (the browser tests rely on the same ids).
func TestIDsUsedByTheScriptExist(t *testing.T) {
	html, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	js, err := fs.ReadFile(FS(), "app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$\('#([a-z-]+)'\)`).FindAllStringSubmatch(string(js), -1) {
		if !strings.Contains(string(html), `id="`+m[1]+`"`) {
			t.Errorf("app.js uses #%s, which index.html does not have", m[1])
		}
	}
}

// TestFerryJS runs the JavaScript unit tests (ferry_test.mjs) and checks the
// page's script parses, when Node.js is installed.
func TestFerryJS(t *testing.T) {
	node := testenv.Program(t, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, node, "--check", "static/app.js").CombinedOutput(); err != nil {
		t.Fatalf("static/app.js does not parse: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, node, "--test", "ferry_test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test ferry_test.mjs: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^# fail 0$`).Match(out) || regexp.MustCompile(`(?m)^# pass 0$`).Match(out) {
		t.Fatalf("unexpected test summary:\n%s", out)
	}
	t.Logf("%s", regexp.MustCompile(`(?m)^# (pass|fail) \d+$`).FindAll(out, -1))
}
