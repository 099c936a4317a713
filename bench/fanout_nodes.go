package bench

import (
	"bytes"
	"fmt"
	"time"
)

// Defaults and targets of a fan-out across nodes, from ferry's
// requirements: FanoutRateTarget deliveries/s with p99 under
// FanoutNodesP99TargetMS, the members split evenly over two nodes.
const (
	FanoutNodesP99TargetMS = 30
	// FanoutNodesRate is the events/s that give FanoutRateTarget
	// deliveries/s to 1,000 members.
	FanoutNodesRate = FanoutRateTarget / 1000
)

// NodeFigures are one server's share of a fan-out whose members were
// spread over several (FanoutConfig.Nodes): what its own members received
// and what it cost. Rates, latency and CPU cover the window, the counts
// the whole run, as in FanoutResult.
type NodeFigures struct {
	URL     string `json:"url"`
	PID     int    `json:"pid"`
	Members int    `json:"members"`

	Delivered        int64   `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	LatencyP50MS     float64 `json:"latency_p50_ms"`
	LatencyP90MS     float64 `json:"latency_p90_ms"`
	LatencyP99MS     float64 `json:"latency_p99_ms"`
	LatencyMaxMS     float64 `json:"latency_max_ms"`
	// ServerCPUSeconds is this node's CPU time in the window, and
	// CPUPerDeliveryUS that divided by its own members' deliveries.
	ServerCPUSeconds  float64 `json:"server_cpu_seconds"`
	CPUPerDeliveryUS  float64 `json:"cpu_per_delivery_us"`
	ServerMessagesOut int64   `json:"server_messages_out"`
	ServerWrites      int64   `json:"server_writes"`

	ExpectedTotal int64 `json:"expected_total"`
	ReceivedTotal int64 `json:"received_total"`
	Lost          int64 `json:"lost"`
	Duplicates    int64 `json:"duplicates"`
}

// targets are the servers the members join: cfg.Nodes, or cfg.Target alone.
func (cfg *FanoutConfig) targets() []Target {
	if len(cfg.Nodes) > 0 {
		return cfg.Nodes
	}
	return []Target{cfg.Target}
}

// nodeOf is the index of the node member i joins: members are dealt to the
// nodes in turn, so that each has its share whatever the count.
func nodeOf(member, nodes int) int { return member % nodes }

// membersOn is how many of members land on node i of nodes.
func membersOn(i, members, nodes int) int {
	n := members / nodes
	if i < members%nodes {
		n++
	}
	return n
}

// nodeTally is what the members of one node received, summed over the read
// loops once they have stopped.
type nodeTally struct {
	received   int64
	duplicates int64
	inWindow   int64
	hist       histogram
}

// nodeSample is one node's counters at one instant.
type nodeSample struct {
	delivered   int64
	cpu         time.Duration
	messagesOut float64
	writes      float64
	hasOut      bool
}

// nodeFigures fills in each node's share, when there are several.
func (f *fanoutRun) nodeFigures(res *FanoutResult, s0, s1 fanoutSample, tallies []nodeTally) {
	targets := f.cfg.targets()
	if len(targets) < 2 {
		return
	}
	for i, t := range targets {
		n0, n1, tally := s0.nodes[i], s1.nodes[i], &tallies[i]
		nf := NodeFigures{
			URL: t.URL, PID: t.PID, Members: membersOn(i, f.cfg.Members, len(targets)),
			Delivered:         n1.delivered - n0.delivered,
			LatencyP50MS:      ms(tally.hist.quantile(0.50)),
			LatencyP90MS:      ms(tally.hist.quantile(0.90)),
			LatencyP99MS:      ms(tally.hist.quantile(0.99)),
			LatencyMaxMS:      ms(tally.hist.quantile(1)),
			ServerCPUSeconds:  (n1.cpu - n0.cpu).Seconds(),
			ServerMessagesOut: -1, ServerWrites: -1,
			ReceivedTotal: tally.received,
			Duplicates:    tally.duplicates,
		}
		nf.DeliveriesPerSec = float64(nf.Delivered) / res.Seconds
		if nf.Delivered > 0 {
			nf.CPUPerDeliveryUS = nf.ServerCPUSeconds * 1e6 / float64(nf.Delivered)
		}
		if n0.hasOut && n1.hasOut {
			nf.ServerMessagesOut = int64(n1.messagesOut - n0.messagesOut)
			nf.ServerWrites = int64(n1.writes - n0.writes)
		}
		nf.ExpectedTotal = res.PublishedTotal * int64(nf.Members)
		nf.Lost = nf.ExpectedTotal - nf.ReceivedTotal
		res.Nodes = append(res.Nodes, nf)
	}
}

// seqKey follows the send time in an event's data (see appendEvent).
var seqKey = []byte(`,"seq":`)

// parseStamp reads what follows tsKey in an event's data: the send time,
// then the event's number, `<bts>,"seq":<k>`.
func parseStamp(b []byte) (sent time.Duration, seq int64, ok bool) {
	v, n := leadingDigits(b)
	if n == 0 || !bytes.HasPrefix(b[n:], seqKey) {
		return 0, 0, false
	}
	k, m := leadingDigits(b[n+len(seqKey):])
	return time.Duration(v), k, m > 0
}

// leadingDigits reads the decimal integer at the start of b and returns it
// and how many bytes it took.
func leadingDigits(b []byte) (v int64, n int) {
	for ; n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9'; n++ {
		v = v*10 + int64(b[n]-'0')
	}
	return v, n
}

// seenSet is the events one member has received, a bit per event number:
// it tells a second receipt of an event (a duplicate, which would
// otherwise hide a loss in the totals) from the first. It holds at most
// limit bits, the events the schedule can emit; numbers past it are not
// tracked.
type seenSet struct{ bits []uint64 }

// add records event k and reports whether it was already there.
func (s *seenSet) add(k, limit int64) (dup bool) {
	if k < 0 || k >= limit {
		return false
	}
	if s.bits == nil {
		s.bits = make([]uint64, (limit+63)/64)
	}
	w, bit := k/64, uint64(1)<<(k%64)
	dup = s.bits[w]&bit != 0
	s.bits[w] |= bit
	return dup
}

// scheduleLimit is one more than the largest event number the publishers
// can emit between start and the window's end.
func scheduleLimit(cfg *FanoutConfig, start, winEnd time.Duration) int64 {
	return int64(cfg.Rate)*int64(winEnd-start)/int64(time.Second) + int64(cfg.Burst) + int64(cfg.Publishers) + 1
}

func nodeProblems(res *FanoutResult) []string {
	var p []string
	if res.Duplicates > 0 {
		p = append(p, fmt.Sprintf("%d deliveries were duplicates (an event a member had already received)", res.Duplicates))
	}
	for i, n := range res.Nodes {
		if n.Lost != 0 {
			p = append(p, fmt.Sprintf("node %d (%s): %d of %d deliveries lost", i+1, n.URL, n.Lost, n.ExpectedTotal))
		}
	}
	return p
}
