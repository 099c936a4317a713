package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
)

// The bar tells received from stored, and the speed and time left come
// from the last few seconds, in the same binary units as the sizes.
func TestProgressLine(t *testing.T) {
	const mib = 1 << 20
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// received is what the server reported, or the download wrote, at
		// each quarter second.
		received []int64
		stored   int64
		download bool
		want     string
	}{
		{"too early for a speed", []int64{0, mib}, 0, false,
			"f [--                      ] 1.0 MiB received, 0 B stored of 12.0 MiB"},
		{"steady", []int64{0, mib, 2 * mib, 3 * mib, 4 * mib}, 2 * mib, false,
			"f [====----                ] 4.0 MiB received, 2.0 MiB stored of 12.0 MiB, 4.0 MiB/s, ETA 2s"},
		{"resumed lower: counted from there", []int64{6 * mib, 7 * mib, 3 * mib, 3 * mib, 3 * mib, 3 * mib, 3 * mib}, 3 * mib, false,
			"f [======                  ] 3.0 MiB received, 3.0 MiB stored of 12.0 MiB"},
		{"only the last five seconds count", append(make([]int64, 40), mib, 2*mib, 3*mib, 4*mib, 5*mib), 0, false,
			"f [----------              ] 5.0 MiB received, 0 B stored of 12.0 MiB, 1.1 MiB/s, ETA 7s"},
		{"download, too early for a speed", []int64{0, mib}, 0, true,
			"f [==                      ] 1.0 MiB of 12.0 MiB (8%)"},
		{"download, steady", []int64{0, mib, 2 * mib, 3 * mib, 4 * mib}, 0, true,
			"f [========                ] 4.0 MiB of 12.0 MiB (33%), 4.0 MiB/s, ETA 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &progress{name: "f", size: 12 * mib, download: tt.download}
			for i, n := range tt.received {
				b.p = client.Progress{Size: b.size, Received: n, Durable: tt.stored}
				if tt.download {
					b.p.Durable = n
				}
				b.speed.add(start.Add(time.Duration(i)*speedEvery), n)
			}
			if got := b.bar(); got != tt.want {
				t.Errorf("bar\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestProgressWhenNotATerminal(t *testing.T) {
	var out strings.Builder
	b := newProgress(&out, "f", 100)
	b.update(client.Progress{Size: 100, Sent: 10, Received: 5})
	b.last = b.last.Add(-plainReport) // two seconds later
	b.update(client.Progress{Size: 100, Sent: 20, Received: 10, Durable: 5})
	b.finish()
	// The line that the file was stored is send's, on stdout.
	if out.String() != "ferry: f: 10 B received, 5 B stored of 100 B\n" {
		t.Errorf("output %q", out.String())
	}
}

// Off a terminal, a download says nothing while it goes, however long it
// takes: listen says once that the file is saved.
func TestDownloadProgressWhenNotATerminal(t *testing.T) {
	var out strings.Builder
	b := newDownloadProgress(&out, "f", 100)
	for range 10 {
		if _, err := b.Write(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		b.last = b.last.Add(-plainReport) // two seconds later
	}
	b.finish()
	if out.Len() != 0 || b.p.Received != 100 {
		t.Errorf("output %q after %d bytes", out.String(), b.p.Received)
	}
}
