package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxNodeName bounds --node: it goes into NATS subjects and keys.
const maxNodeName = 64

// nodeName returns the name this node keeps its direct messages under
// among the nodes on one NATS (--node): given, or else the one saved in
// <data>/.ferry/node, made at the first start. Each node has its own data
// folder, so each gets its own name, and keeps it across restarts: its
// waiting messages and its user-room epoch are found again under it.
func nodeName(f *serveFlags) (string, error) {
	if f.node != "" {
		if err := checkNodeName(f.node); err != nil {
			return "", fmt.Errorf("--node: %w", err)
		}
		return f.node, nil
	}
	path := filepath.Join(f.data, ".ferry", "node")
	b, err := os.ReadFile(path)
	if err == nil {
		name := strings.TrimSpace(string(b))
		if err := checkNodeName(name); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return name, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	name := strings.ToLower(rand.Text()[:16])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save the node's name: %w", err)
	}
	return name, nil
}

// checkNodeName accepts 1 to maxNodeName letters, digits, - and _.
func checkNodeName(s string) error {
	if s == "" || len(s) > maxNodeName {
		return fmt.Errorf("a node name has 1 to %d characters", maxNodeName)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q: a node name has letters, digits, - and _ only", s)
		}
	}
	return nil
}
