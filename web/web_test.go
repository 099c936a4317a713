package web

import (
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFSServesThePage checks that the embedded tree has the page at its root.
func TestFSServesThePage(t *testing.T) {
	for _, name := range append([]string{"index.html", "ferry.js", "style.css"}, pageScripts(t)...) {
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

// pageScripts lists the page's own modules: every .js file but ferry.js,
// the library. app.js is the one index.html loads; it imports the others.
func pageScripts(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(FS(), "*.js")
	if err != nil {
		t.Fatal(err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "ferry.js" })
	if !slices.Contains(names, "app.js") {
		t.Fatalf("no app.js among %v", names)
	}
	return names
}

// TestIDsUsedByTheScriptExist catches a renamed element that the page's
// scripts look up by id (the browser tests rely on the same ids).
func TestIDsUsedByTheScriptExist(t *testing.T) {
	html, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pageScripts(t) {
		js, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\$\('#([a-z-]+)'\)`).FindAllStringSubmatch(string(js), -1) {
			if !strings.Contains(string(html), `id="`+m[1]+`"`) {
				t.Errorf("%s uses #%s, which index.html does not have", name, m[1])
			}
		}
	}
}

// TestEveryScriptIsLoaded: a module nobody imports is dead code, and one
// imported but missing breaks the page.
func TestEveryScriptIsLoaded(t *testing.T) {
	html, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, m := range regexp.MustCompile(`<script type="module" src="([^"]+)"`).FindAllStringSubmatch(string(html), -1) {
		loaded[m[1]] = true
	}
	importRE := regexp.MustCompile(`(?m)^import [^;]*? from '\./([^']+)';|^} from '\./([^']+)';`)
	for _, name := range append(pageScripts(t), "ferry.js") {
		js, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRE.FindAllStringSubmatch(string(js), -1) {
			dep := m[1] + m[2]
			if _, err := fs.Stat(FS(), dep); err != nil {
				t.Errorf("%s imports %s: %v", name, dep, err)
			}
			loaded[dep] = true
		}
	}
	for _, name := range append(pageScripts(t), "ferry.js") {
		if !loaded[name] {
			t.Errorf("%s is neither loaded by index.html nor imported", name)
		}
	}
}

// TestPageWordsMatchProtocol keeps the page's error sentences (words.js)
// the same as protocol/words.go's: same codes, same words.
func TestPageWordsMatchProtocol(t *testing.T) {
	js, err := fs.ReadFile(FS(), "words.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)export const SENTENCES = Object\.freeze\((\{.*?\})\);`).FindSubmatch(js)
	if m == nil {
		t.Fatal("words.js has no `export const SENTENCES = Object.freeze({...});`")
	}
	var page map[string]string
	if err := json.Unmarshal(m[1], &page); err != nil {
		t.Fatalf("words.js's SENTENCES is not JSON: %v", err)
	}
	want := protocol.Sentences()
	for _, code := range slices.Sorted(maps.Keys(want)) {
		if got, ok := page[code]; !ok {
			t.Errorf("words.js has no sentence for %q", code)
		} else if got != want[code] {
			t.Errorf("%s:\n words.js:  %q\n words.go:  %q", code, got, want[code])
		}
	}
	for code := range page {
		if _, ok := want[code]; !ok {
			t.Errorf("words.js has %q, which protocol/words.go does not", code)
		}
	}
	unknown := regexp.MustCompile(`export const UNKNOWN_SENTENCE = '([^']*)';`).FindSubmatch(js)
	if unknown == nil || string(unknown[1]) != protocol.Sentence("a code nobody knows") {
		t.Errorf("words.js's UNKNOWN_SENTENCE differs from protocol.Sentence of an unknown code %q", protocol.Sentence("a code nobody knows"))
	}
}

// TestFerryJS runs the JavaScript unit tests (ferry_test.mjs) and checks the
// page's script parses, when Node.js is installed.
func TestFerryJS(t *testing.T) {
	node := testenv.Program(t, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range pageScripts(t) {
		if out, err := exec.CommandContext(ctx, node, "--check", path.Join("static", name)).CombinedOutput(); err != nil {
			t.Fatalf("static/%s does not parse: %v\n%s", name, err, out)
		}
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
