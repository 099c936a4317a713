package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// codeConstants reads codes.go and returns the value of every string
// constant whose name starts with "Code": a code added there without a
// sentence fails TestEveryCodeHasASentence.
func codeConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				codes[name.Name] = v
			}
		}
	}
	if len(codes) < 30 {
		t.Fatalf("found only %d codes in codes.go: the parser missed some", len(codes))
	}
	return codes
}

func TestEveryCodeHasASentence(t *testing.T) {
	codes := codeConstants(t)
	table := Sentences()
	values := map[string]bool{}
	for name, code := range codes {
		values[code] = true
		s, ok := table[code]
		if !ok {
			t.Errorf("%s (%q) has no sentence in words.go", name, code)
			continue
		}
		if got := Sentence(code); got != s || got == unknownSentence {
			t.Errorf("Sentence(%q) = %q", code, got)
		}
	}
	for code := range table {
		if !values[code] {
			t.Errorf("words.go has a sentence for %q, which codes.go does not define", code)
		}
	}
}

// TestSentencesArePlain keeps the sentences for people: whole sentences,
// without the codes or the protocol's words in them.
// snake finds a code (type_mismatch) in a sentence.
var snake = regexp.MustCompile(`[a-z]_[a-z]`)

func TestSentencesArePlain(t *testing.T) {
	jargon := []string{"frame", "offset", "chunk", " ack", "protocol", "websocket", "json", "sha256", "sha-256", "http"}
	for code, s := range Sentences() {
		if s == "" || !strings.HasSuffix(s, ".") || strings.ToUpper(s[:1]) != s[:1] {
			t.Errorf("%s: %q is not a sentence", code, s)
		}
		if len(s) > 140 {
			t.Errorf("%s: %q is too long to read at a glance", code, s)
		}
		if snake.MatchString(s) {
			t.Errorf("%s: %q names a code", code, s)
		}
		low := strings.ToLower(s)
		for _, w := range jargon {
			if strings.Contains(low, w) {
				t.Errorf("%s: %q says %q", code, s, w)
			}
		}
	}
}

func TestSentenceOfAnUnknownCode(t *testing.T) {
	if got := Sentence("from_a_newer_server"); got != unknownSentence {
		t.Errorf("Sentence(unknown) = %q", got)
	}
	if Sentence(CodeTypeMismatch) != "This file's contents don't match its name." {
		t.Errorf("type_mismatch: %q", Sentence(CodeTypeMismatch))
	}
}
