// Command ferry moves files and media over WebSockets: it runs the server
// (serve), talks to one (send, listen), signs tokens (token) and measures a
// server under load (bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ferryhq/ferry/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		var he *client.HandshakeError
		if errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized {
			fmt.Fprintln(os.Stderr, "ferry: this server wants a valid token: pass --token (or FERRY_TOKEN); `ferry token` makes one from the server's --auth-secret")
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// exitCode lets a sub-command choose the process's exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the server", runServe},
		{"send", "send an event or upload files to a room", runSend},
		{"listen", "print a room's events (and download its files)", runListen},
		{"token", "print a signed token for a user", runToken},
		{"bench", "measure a server: idle connections, fan-out, uploads", runBench},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("missing command")
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return nil
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, "ferry", version())
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if wantsHelp(args[1:]) {
				// Asked for, help is the output: on stdout, and success.
				err := c.run(ctx, args[1:], stdout, stdout)
				if errors.Is(err, flag.ErrHelp) {
					return nil
				}
				return err
			}
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

// version is the module version ferry was built as, with the commit when
// it was built from a checkout ("(devel) 1a2b3c4d5e6f, modified").
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += " " + rev + modified
	}
	return v + " (" + bi.GoVersion + ")"
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ferry <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag can also be set as an environment variable: --max-frame is FERRY_MAX_FRAME.")
	fmt.Fprintln(w, "Run 'ferry <command> --help' for a command's flags, 'ferry --version' for the version.")
}
