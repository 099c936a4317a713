package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fanoutRuns() []FanoutResult {
	var runs []FanoutResult
	for i, rate := range []int{25, 50, 100, 200} {
		runs = append(runs, FanoutResult{
			Members: 1000, Size: 100, Rate: rate,
			LatencyP50MS: 7 + float64(i)*0.3, LatencyP99MS: 15 + float64(i),
			CPUPerDeliveryUS: 10 / float64(i+1),
		})
	}
	return runs
}

func idleRuns() []IdleResult {
	return []IdleResult{
		{Conns: 1000, RSSPerConn: 5.1 * 1024},
		{Conns: 5000, RSSPerConn: 4.4 * 1024},
		{Conns: 10000, RSSPerConn: 4.3 * 1024},
	}
}

func uploadResult() SendResult {
	return SendResult{
		Size:        512 << 20,
		Rounds:      make([]SendRound, 3),
		Direct:      Spread{Min: 290, Median: 310, Max: 330},
		Binary:      Spread{Min: 250, Median: 270, Max: 280},
		Base64:      Spread{Min: 200, Median: 230, Max: 250},
		BinaryRatio: Spread{Min: 0.85, Median: 0.87, Max: 0.9},
		Base64Ratio: Spread{Min: 0.7, Median: 0.74, Max: 0.8},
	}
}

// svgDoc is what a test reads of a chart: the text it shows and the
// outline of every path it draws.
type svgDoc struct {
	texts []string
	paths []string
}

// parseSVG decodes every token of an SVG with encoding/xml, so that a
// chart a browser would refuse fails here.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	var doc svgDoc
	d := xml.NewDecoder(bytes.NewReader(b))
	root, inText := "", false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			inText = tok.Name.Local == "text"
			if tok.Name.Local == "path" {
				for _, a := range tok.Attr {
					if a.Name.Local == "d" {
						doc.paths = append(doc.paths, a.Value)
					}
				}
			}
		case xml.CharData:
			if inText {
				doc.texts = append(doc.texts, strings.TrimSpace(string(tok)))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return doc
}

// changedPaths counts the paths of b that a does not draw.
func changedPaths(a, b svgDoc) int {
	n := 0
	for _, p := range b.paths {
		if !slices.Contains(a.paths, p) {
			n++
		}
	}
	return n
}

// drawn returns a function that draws the results made by results with
// write, changed first by change if it is not nil.
func drawn[T any](results func() T, write func(io.Writer, T) error, change func(T)) func(io.Writer) error {
	return func(w io.Writer) error {
		r := results()
		if change != nil {
			change(r)
		}
		return write(w, r)
	}
}

func fanoutChart(change func([]FanoutResult)) func(io.Writer) error {
	return drawn(fanoutRuns, WriteFanoutChart, change)
}

func idleChart(change func([]IdleResult)) func(io.Writer) error {
	return drawn(idleRuns, WriteIdleChart, change)
}

func uploadChart(change func(*SendResult)) func(io.Writer) error {
	results := func() *SendResult { r := uploadResult(); return &r }
	write := func(w io.Writer, r *SendResult) error { return WriteUploadChart(w, *r) }
	return drawn(results, write, change)
}

func TestCharts(t *testing.T) {
	tests := []struct {
		name  string
		draw  func(io.Writer) error
		texts []string
		// change draws the same chart with one value changed that moves
		// one point of one series, and nothing else: not the axes' range.
		change func(io.Writer) error
		// moved is how many paths that change must move.
		moved int
	}{{
		name: "fanout latency",
		draw: fanoutChart(nil),
		texts: []string{"Fan-out to 1000 members, 100-byte events", "p50", "p99", "p99 target (< 20 ms)",
			"server CPU per delivery", "delivery latency (ms)", "server CPU per delivery (µs)",
			"delivery rate asked (deliveries/s)", "25k", "200k"},
		change: fanoutChart(func(r []FanoutResult) { r[1].LatencyP50MS += 2 }),
		// The series' line and its dot.
		moved: 2,
	}, {
		name:   "fanout cpu",
		draw:   fanoutChart(nil),
		change: fanoutChart(func(r []FanoutResult) { r[2].CPUPerDeliveryUS++ }),
		moved:  2,
	}, {
		name: "idle",
		draw: idleChart(nil),
		texts: []string{"ferry serve", "target (≤ 8 KiB)", "idle connections, each pinged", "memory per connection (KiB)",
			"1k", "5k", "10k", "5.10 KiB", "4.30 KiB"},
		change: idleChart(func(r []IdleResult) { r[1].RSSPerConn = 3 * 1024 }),
		moved:  2,
	}, {
		name: "upload",
		draw: uploadChart(nil),
		texts: []string{"Upload of 512 MiB into MinIO: median of 3 rounds, whiskers min to max", "throughput (MB/s)",
			"minio-go PutObject (direct)", "ferry send", "ferry send --base64",
			"310 MB/s", "270 MB/s", "0.87 of direct", "(target ≥ 0.90)", "230 MB/s", "0.74 of direct", "(target ≥ 0.70)"},
		change: uploadChart(func(r *SendResult) { r.Binary.Median = 260 }),
		// The bar only: its whisker spans the slowest to the fastest
		// round, which did not change.
		moved: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b bytes.Buffer
			if err := tt.draw(&a); err != nil {
				t.Fatal(err)
			}
			if err := tt.change(&b); err != nil {
				t.Fatal(err)
			}
			da, db := parseSVG(t, a.Bytes()), parseSVG(t, b.Bytes())
			for _, want := range tt.texts {
				if !slices.Contains(da.texts, want) {
					t.Errorf("no text %q in the chart; it shows %q", want, da.texts)
				}
			}
			if got := changedPaths(da, db); got != tt.moved {
				t.Errorf("changing one value moved %d paths, want %d", got, tt.moved)
			}
		})
	}
}

// Each bar stands in its own place: three equal results draw no path
// twice.
func TestUploadChartBarsApart(t *testing.T) {
	var b bytes.Buffer
	err := uploadChart(func(r *SendResult) { r.Binary, r.Base64 = r.Direct, r.Direct })(&b)
	if err != nil {
		t.Fatal(err)
	}
	paths := parseSVG(t, b.Bytes()).paths
	for i, p := range paths {
		if slices.Contains(paths[i+1:], p) {
			t.Fatalf("path %q drawn twice", p)
		}
	}
}

// The order of the runs given does not matter: the lines go from the
// lowest rate or count to the highest.
func TestChartsSortRuns(t *testing.T) {
	var sorted, shuffled bytes.Buffer
	runs := fanoutRuns()
	if err := WriteFanoutChart(&sorted, runs); err != nil {
		t.Fatal(err)
	}
	runs[0], runs[3] = runs[3], runs[0]
	if err := WriteFanoutChart(&shuffled, runs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sorted.Bytes(), shuffled.Bytes()) {
		t.Error("the chart depends on the order of the runs")
	}
}

func TestChartsWithoutResults(t *testing.T) {
	for name, err := range map[string]error{
		"fanout": WriteFanoutChart(io.Discard, nil),
		"idle":   WriteIdleChart(io.Discard, nil),
		"upload": WriteUploadChart(io.Discard, SendResult{}),
	} {
		if err == nil {
			t.Errorf("%s: no error for no results", name)
		}
	}
}

func TestWriteCharts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	up := uploadResult()
	tests := []struct {
		name   string
		fanout []FanoutResult
		idle   []IdleResult
		upload *SendResult
		want   []string
	}{
		{"all", fanoutRuns(), idleRuns(), &up, []string{FanoutChartFile, UploadChartFile, IdleChartFile}},
		{"no upload", fanoutRuns(), idleRuns(), nil, []string{FanoutChartFile, IdleChartFile}},
		{"idle only", nil, idleRuns(), nil, []string{IdleChartFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(dir)
			paths, err := WriteCharts(dir, tt.fanout, tt.idle, tt.upload)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range paths {
				names = append(names, filepath.Base(p))
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				parseSVG(t, b)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names, tt.want) || len(ents) != len(tt.want) {
				t.Errorf("wrote %q (%d files in the folder), want %q", names, len(ents), tt.want)
			}
		})
	}
}

// A chart that cannot be drawn leaves the file of an earlier run alone.
func TestWriteChartsKeepsOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, UploadChartFile)
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCharts(dir, nil, nil, &SendResult{}); err == nil {
		t.Fatal("no error for an upload result without rounds")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("the old chart was overwritten with %q", b)
	}
}
