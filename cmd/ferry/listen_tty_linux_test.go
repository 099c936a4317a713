package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// On a terminal, listen --out draws each download's progress in place, as
// send draws an upload's: the bytes, the share done, the speed and the
// time left, in binary units; once the file is saved the bar gives way to
// the one line that says so.
func TestListenDownloadProgressOnATerminal(t *testing.T) {
	t.Setenv("TERM", "xterm")
	term := openTerminal(t)
	s := startFileFerry(t, diskStore(t))
	// 2.5 MiB at 1 MiB/s: long enough for a speed, told after a second.
	slow := slowDownloads(t, s.URL, 1<<20)
	data := randomData(5 << 19)
	path := writeFile(t, t.TempDir(), "big.bin", data)
	out := filepath.Join(t.TempDir(), "inbox")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout safeBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"listen", "--server", slow, "--room", "share", "--out", out}, &stdout, term.tty)
	}()
	waitOutput(t, &term.screen, "listening")
	if _, stderr, err := send(t, "--server", s.URL, "--room", "share", path); err != nil {
		t.Fatalf("send: %v\nstderr: %s", err, stderr)
	}
	waitFile(t, filepath.Join(out, "big.bin"), data)
	waitOutput(t, &term.screen, "ferry: saved ")
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not stop")
	}
	term.close()

	screen := term.screen.String()
	bar := regexp.MustCompile(`\r\x1b\[Kbig\.bin \[=* *\] (\d+ B|\d+\.\d [KM]iB) of 2\.5 MiB \(\d+%\), \d+\.\d [KM]iB/s, ETA [0-9hms]+`)
	if !bar.MatchString(screen) {
		t.Errorf("no bar with the bytes, share, speed and time left matching %s on the terminal:\n%q", bar, screen)
	}
	// The bar is wiped before the line, which comes once.
	saved := "\r\x1b[Kferry: saved " + filepath.Join(out, "big.bin") + " (2.5 MiB from "
	if !strings.Contains(screen, saved) || strings.Count(screen, "ferry: saved ") != 1 {
		t.Errorf("want the bar wiped and one line %q on the terminal:\n%q", saved, screen)
	}
	if strings.Contains(screen, "ferry: big.bin: ") {
		t.Errorf("progress told in lines on a terminal:\n%q", screen)
	}
}
