package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{2}, Spread{2, 2, 2}},
		{[]float64{3, 1, 2}, Spread{1, 2, 3}},
		{[]float64{4, 1, 3, 2}, Spread{1, 2.5, 4}},
	} {
		in := append([]float64(nil), tc.in...)
		if got := spreadOf(tc.in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("spreadOf sorted its argument: %v, was %v", tc.in, in)
			}
		}
	}
}

// TestReportNotesBusyMachine checks that a run during which other processes
// took much of the machine is flagged, and a quiet one is not.
func TestReportNotesBusyMachine(t *testing.T) {
	for _, tc := range []struct {
		other float64
		note  bool
	}{
		{0.05, false},
		{0.5, true},
		{-1, false}, // unknown
	} {
		r := SendResult{CPUs: 2, Size: 1 << 20, Rounds: []SendRound{{Runs: []SendRun{
			{Kind: KindDirect, Seconds: 1, MBps: 100, OtherCPU: 0, ClientCPU: 1.5, MinIOCPU: 6},
			{Kind: KindBinary, Seconds: 1, MBps: 90, OtherCPU: tc.other, ClientCPU: 1.5, ServerCPU: 1.5, MinIOCPU: 5.5},
		}, BinaryRatio: 0.9}}}
		r.summarize()
		var b bytes.Buffer
		if err := r.Report(&b); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "not reliable"); got != tc.note {
			t.Errorf("other CPU %v s of 2 CPU-seconds: note %v, want %v\n%s", tc.other, got, tc.note, b.String())
		}
		if !strings.Contains(b.String(), "ratio ferry send / direct                min   0.90") {
			t.Errorf("no binary ratio line of 0.90:\n%s", b.String())
		}
		// 7.5 s of CPU for the direct run, 8.5 s for ferry's.
		if !strings.Contains(b.String(), "CPU ratio direct / ferry send            min   0.88") {
			t.Errorf("no CPU ratio line of 0.88:\n%s", b.String())
		}
	}
}

// A round whose CPU figures are not all known has no CPU ratio.
func TestCPURatiosSkipUnknown(t *testing.T) {
	rounds := []SendRound{
		{Runs: []SendRun{{Kind: KindDirect, ClientCPU: 1, MinIOCPU: 3}, {Kind: KindBinary, ClientCPU: 1, ServerCPU: 1, MinIOCPU: 3}}},
		{Runs: []SendRun{{Kind: KindDirect, ClientCPU: 1, MinIOCPU: 3}, {Kind: KindBinary, ClientCPU: 1, ServerCPU: -1, MinIOCPU: 3}}},
		{Runs: []SendRun{{Kind: KindBinary, ClientCPU: 1, ServerCPU: 1, MinIOCPU: 3}, {Kind: KindDirect, ClientCPU: -1, MinIOCPU: 3}}},
	}
	if got := cpuRatios(rounds, KindBinary); len(got) != 1 || got[0] != 0.8 {
		t.Errorf("cpuRatios = %v, want [0.8]", got)
	}
}
