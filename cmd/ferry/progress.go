package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

// progress shows an upload's or a download's progress on stderr: a bar
// redrawn in place on a terminal. For an upload it shows what the server
// received apart from what it stored: on a slow link the two can be a
// part (8 MiB or more) apart, and what was received is what a resume keeps.
type progress struct {
	w     io.Writer
	tty   bool
	name  string
	size  int64
	last  time.Time // of the last line or redraw
	p     client.Progress
	speed speed
	drawn bool
	// download: the bytes are coming, counted in p.Received (which
	// p.Durable equals); the counts are said as "x of y (n%)". When not on
	// a terminal a download says nothing until its file is saved: listen
	// runs for days with its stderr in a log, and a line every two seconds
	// per file would bury the lines that matter there.
	download bool
}

// Progress redraw and print intervals.
const (
	ttyRedraw   = 100 * time.Millisecond
	plainReport = 2 * time.Second
)

// newProgress returns the progress of an upload; without a terminal it
// prints a line now and then.
func newProgress(w io.Writer, name string, size int64) *progress {
	return &progress{w: w, tty: isTerminal(w), name: name, size: size}
}

// newDownloadProgress returns the progress of a download, which counts the
// bytes written to it.
func newDownloadProgress(w io.Writer, name string, size int64) *progress {
	b := newProgress(w, name, size)
	b.download = true
	return b
}

// isTerminal reports whether w is a terminal (a character device, such as
// a tty; /dev/null is one too, which does no harm) that can take a
// redrawn line.
func isTerminal(w io.Writer) bool {
	if lw, ok := w.(*lockedWriter); ok {
		w = lw.w
	}
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// opened notes that the server granted the upload: the speed counts from
// where it goes on, not from the start of the file.
func (b *progress) opened() {
	b.speed = speed{}
}

func (b *progress) update(p client.Progress) {
	b.p = p
	now := time.Now()
	b.speed.add(now, p.Received)
	switch {
	case b.tty && now.Sub(b.last) >= ttyRedraw:
		b.last = now
		b.drawn = true
		fmt.Fprintf(b.w, "\r\033[K%s", b.bar())
	case !b.tty && !b.download && now.Sub(b.last) >= plainReport && p.Durable < b.size:
		if b.last.IsZero() {
			b.last = now // nothing to say yet for the first two seconds
			return
		}
		b.last = now
		fmt.Fprintf(b.w, "ferry: %s: %s\n", b.name, b.counts())
	}
}

// Write counts the bytes of a download as they are written to its file.
func (b *progress) Write(p []byte) (int, error) {
	n := b.p.Received + int64(len(p))
	b.update(client.Progress{Size: b.size, Sent: n, Received: n, Durable: n})
	return len(p), nil
}

// say prints a line about the upload, clearing the bar first.
func (b *progress) say(format string, args ...any) {
	b.clear()
	fmt.Fprintf(b.w, "ferry: "+format+"\n", args...)
}

// wait reports why the upload pauses.
func (b *progress) wait(reason error) {
	var perr *protocol.Error
	switch {
	case errors.As(reason, &perr) && perr.Code == protocol.CodeBusy:
		b.say("%s: the server is busy; waiting for it", b.name)
	case errors.As(reason, &perr):
		b.say("%s: waiting: %v", b.name, told(perr, protocol.Limits{}))
	default:
		b.say("%s: connection lost; the upload resumes once reconnected", b.name)
	}
}

// finish takes the bar away. It says nothing: the line that tells the
// file was stored is the command's result, printed on stdout, and a second
// one here would tell it twice.
func (b *progress) finish() {
	b.clear()
}

func (b *progress) clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
		b.drawn = false
		b.last = time.Time{}
	}
}

// bar draws what is stored as '=' and what is only received as '-'.
func (b *progress) bar() string {
	const width = 24
	stored, received := width, width
	if b.size > 0 {
		stored = int(b.p.Durable * width / b.size)
		received = max(stored, int(b.p.Received*width/b.size))
	}
	return fmt.Sprintf("%s [%s%s%s] %s", b.name, strings.Repeat("=", stored), strings.Repeat("-", received-stored),
		strings.Repeat(" ", width-received), b.counts())
}

// counts says, in binary units throughout: 161.0 MiB received, 152.0 MiB
// stored of 512.0 MiB, 4.2 MiB/s, ETA 1m24s; for a download, 161.0 MiB of
// 512.0 MiB (31%), 4.2 MiB/s, ETA 1m24s.
func (b *progress) counts() string {
	var s string
	if b.download {
		pct := int64(100)
		if b.size > 0 {
			pct = b.p.Received * 100 / b.size
		}
		s = fmt.Sprintf("%s of %s (%d%%)", sizeString(b.p.Received), sizeString(b.size), pct)
	} else {
		s = fmt.Sprintf("%s received, %s stored of %s", sizeString(b.p.Received), sizeString(b.p.Durable), sizeString(b.size))
	}
	if r := b.speed.rate(); r > 0 {
		left := time.Duration(float64(b.size-b.p.Received) / r * float64(time.Second))
		s += fmt.Sprintf(", %s/s, ETA %v", sizeString(int64(r)), left.Round(time.Second))
	}
	return s
}

// speed measures bytes a second over the last few seconds: a mobile link
// changes speed, and an average since the start would hide it. It keeps
// speedSamples samples, one every speedEvery at most.
type speed struct {
	samples [speedSamples]sample
	n       int // samples taken, up to speedSamples
	next    int // where the next one goes
}

type sample struct {
	t time.Time
	n int64
}

const (
	speedSamples = 20
	speedEvery   = 250 * time.Millisecond
	// speedMin is the shortest span a speed is told from: less is noise.
	speedMin = time.Second
)

func (s *speed) add(t time.Time, n int64) {
	if s.n > 0 {
		newest := s.samples[(s.next+speedSamples-1)%speedSamples]
		if n < newest.n {
			*s = speed{} // a resume went back: count from there
		} else if t.Sub(newest.t) < speedEvery {
			return
		}
	}
	s.samples[s.next] = sample{t, n}
	s.next = (s.next + 1) % speedSamples
	s.n = min(s.n+1, speedSamples)
}

// rate is the speed in bytes a second, 0 while too little was seen.
func (s *speed) rate() float64 {
	if s.n < 2 {
		return 0
	}
	oldest := s.samples[(s.next+speedSamples-s.n)%speedSamples]
	newest := s.samples[(s.next+speedSamples-1)%speedSamples]
	span := newest.t.Sub(oldest.t)
	if span < speedMin {
		return 0
	}
	return float64(newest.n-oldest.n) / span.Seconds()
}

// sizeString formats a byte count for people.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
