package bench_test

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/internal/testenv"
)

// TestSend runs one short round against a MinIO of the bench's own and
// checks the report: every run stored and verified the file, every figure
// is positive.
func TestSend(t *testing.T) {
	if _, err := testenv.FindMinIO(); err != nil {
		testenv.Require(t, "minio binary ("+err.Error()+")")
	}
	ferry := testenv.Ferry(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const size = 16 << 20
	var progress bytes.Buffer
	res, err := bench.Send(ctx, bench.SendConfig{Size: size, Rounds: 1, Dir: t.TempDir(), Ferry: ferry, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(res.Rounds) != 1 || len(res.Rounds[0].Runs) != 3 {
		t.Fatalf("rounds %+v, want one round of three runs", res.Rounds)
	}
	var report bytes.Buffer
	if err := res.Report(&report); err != nil {
		t.Fatal(err)
	}
	out := report.String()
	t.Logf("report:\n%s", out)

	run := regexp.MustCompile(`(?m)^1 +(direct|binary|base64) +(\d+) +([\d.]+) .* (\d+) bytes, sha256 ok$`)
	kinds := map[string]bool{}
	for _, m := range run.FindAllStringSubmatch(out, -1) {
		kinds[m[1]] = true
		if mbps, _ := strconv.Atoi(m[2]); mbps <= 0 {
			t.Errorf("%s: %s MB/s", m[1], m[2])
		}
		if secs, _ := strconv.ParseFloat(m[3], 64); secs <= 0 {
			t.Errorf("%s: %s seconds", m[1], m[3])
		}
		if stored, _ := strconv.Atoi(m[4]); stored != size {
			t.Errorf("%s: stored %s bytes, want %d", m[1], m[4], size)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("run lines for %v, want direct, binary and base64", kinds)
	}
	ratio := regexp.MustCompile(`(?m)^ratio ferry send (--base64 )?/ direct +min +([\d.]+) +median +([\d.]+) +max +([\d.]+)`)
	ratios := ratio.FindAllStringSubmatch(out, -1)
	if len(ratios) != 2 {
		t.Fatalf("%d ratio lines, want 2", len(ratios))
	}
	for _, m := range ratios {
		for _, v := range m[2:] {
			if f, _ := strconv.ParseFloat(v, 64); f <= 0 {
				t.Errorf("ratio line %q: %s", strings.TrimSpace(m[0]), v)
			}
		}
	}
	if r := res.Rounds[0].Runs[1]; r.ServerCPU <= 0 {
		t.Errorf("%s run: server CPU %v s, want it read from /proc", r.Kind, r.ServerCPU)
	}
}
