package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

func (r *SendResult) summarize() {
	pick := func(f func(SendRound) float64) Spread {
		v := make([]float64, len(r.Rounds))
		for i, rd := range r.Rounds {
			v[i] = f(rd)
		}
		return spreadOf(v)
	}
	speed := func(kind string) func(SendRound) float64 {
		return func(rd SendRound) float64 {
			for _, run := range rd.Runs {
				if run.Kind == kind {
					return run.MBps
				}
			}
			return 0
		}
	}
	r.Direct, r.Binary, r.Base64 = pick(speed(KindDirect)), pick(speed(KindBinary)), pick(speed(KindBase64))
	r.BinaryRatio = pick(func(rd SendRound) float64 { return rd.BinaryRatio })
	r.Base64Ratio = pick(func(rd SendRound) float64 { return rd.Base64Ratio })
	r.BinaryCPURatio = spreadOf(cpuRatios(r.Rounds, KindBinary))
	r.Base64CPURatio = spreadOf(cpuRatios(r.Rounds, KindBase64))
}

// cpuRatios returns, for each round whose CPU figures are all known, the
// CPU of its direct run over that of its run of kind.
func cpuRatios(rounds []SendRound, kind string) []float64 {
	var v []float64
	for _, rd := range rounds {
		var direct, ferry float64
		for _, run := range rd.Runs {
			cpu := []float64{run.ClientCPU, run.MinIOCPU}
			if run.Kind != KindDirect {
				cpu = append(cpu, run.ServerCPU)
			}
			total := 0.0
			for _, c := range cpu {
				if c < 0 {
					total = math.NaN()
				}
				total += c
			}
			switch run.Kind {
			case KindDirect:
				direct = total
			case kind:
				ferry = total
			}
		}
		if direct > 0 && ferry > 0 {
			v = append(v, direct/ferry)
		}
	}
	return v
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), v...)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}

// Targets of the send bench: `ferry send`'s throughput as a share of
// minio-go's PutObject of the same file.
const (
	BinaryTarget = 0.90
	Base64Target = 0.70
)

// Report prints the figures: one line per run, then the spread of each
// figure over the rounds.
func (r SendResult) Report(w io.Writer) error {
	var errs []error
	p := func(format string, args ...any) {
		_, err := fmt.Fprintf(w, format+"\n", args...)
		errs = append(errs, err)
	}
	p("file: %d MiB of random bytes on disk, sha256 %s", r.Size>>20, r.SHA256)
	p("%-5s %-6s %8s %7s %10s %10s %9s %9s  %s", "round", "kind", "MB/s", "seconds", "client CPU", "server CPU", "MinIO CPU", "other CPU", "stored")
	for i, rd := range r.Rounds {
		for _, run := range rd.Runs {
			server := cpuString(run.ServerCPU)
			if run.Kind == KindDirect {
				server = "-"
			}
			p("%-5d %-6s %8.0f %7.2f %10s %10s %9s %9s  %d bytes, sha256 ok",
				i+1, run.Kind, run.MBps, run.Seconds, cpuString(run.ClientCPU), server, cpuString(run.MinIOCPU), cpuString(run.OtherCPU), run.Stored)
		}
	}
	if busy := r.busiest(); busy > maxOtherShare {
		p("note: other processes used up to %.0f%% of the machine's CPU during a run; the figures are not reliable", 100*busy)
	}
	sp := func(label string, s Spread, unit string) {
		p("%-40s min %6.2f  median %6.2f  max %6.2f%s", label, s.Min, s.Median, s.Max, unit)
	}
	sp("direct: minio-go PutObject (MB/s)", r.Direct, "")
	sp("ferry send (MB/s)", r.Binary, "")
	sp("ferry send --base64 (MB/s)", r.Base64, "")
	sp("ratio ferry send / direct", r.BinaryRatio, fmt.Sprintf("  (target ≥ %.2f)", BinaryTarget))
	sp("ratio ferry send --base64 / direct", r.Base64Ratio, fmt.Sprintf("  (target ≥ %.2f)", Base64Target))
	sp("CPU ratio direct / ferry send", r.BinaryCPURatio, "  (CPU of all processes per byte)")
	sp("CPU ratio direct / ferry send --base64", r.Base64CPURatio, "")
	return errors.Join(errs...)
}

// maxOtherShare is the share of the machine's CPU that other processes
// may use during a run before the report says the figures are unreliable.
// Quiet, they use a few percent: the kernel's share of loopback traffic and
// write-back.
const maxOtherShare = 0.10

// busiest returns the largest share of the machine's CPU that other
// processes used during a run.
func (r SendResult) busiest() float64 {
	var most float64
	for _, rd := range r.Rounds {
		for _, run := range rd.Runs {
			if run.OtherCPU > 0 && run.Seconds > 0 && r.CPUs > 0 {
				most = max(most, run.OtherCPU/(run.Seconds*float64(r.CPUs)))
			}
		}
	}
	return most
}

func cpuString(s float64) string {
	if s < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2fs", s)
}
