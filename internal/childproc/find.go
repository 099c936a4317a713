package childproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Find returns the program name to run: the one the environment variable
// env names, else $(go env GOPATH)/bin/name (where scripts/test-deps.sh
// installs the tests' servers), else name in PATH. A variable that is set
// but points at nothing usable is an error, not a reason to look further:
// someone meant it.
func Find(env, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("$%s=%q: %w", env, p, err)
		}
		return found, nil
	}
	if gopath := goPath(); gopath != "" {
		if found, err := exec.LookPath(filepath.Join(gopath, "bin", name)); err == nil {
			return found, nil
		}
	}
	return exec.LookPath(name)
}

// goPath asks the go command, which also knows a GOPATH set with `go env -w`;
// without one, the first element of $GOPATH or ~/go.
func goPath() string {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" {
			return filepath.SplitList(p)[0]
		}
	}
	if p := os.Getenv("GOPATH"); p != "" {
		return filepath.SplitList(p)[0]
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go")
	}
	return ""
}

// FreeAddr picks an address on 127.0.0.1 whose port the kernel says is
// free, for a child to listen on. Another process could take it before the
// child binds it; the child then fails, and says so in its log.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
