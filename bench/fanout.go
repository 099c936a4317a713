package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FanoutConfig configures Fanout.
type FanoutConfig struct {
	Target
	// Members is how many connections receive the events. Zero means 1000.
	Members int
	// Publishers is how many connections share the publishing. They are
	// members of the room too but do not receive their own events
	// (except_self). Zero means 1.
	Publishers int
	// Size is the size in bytes of each event's data (a JSON object carrying
	// the send time, a sequence number and padding). Zero means 100; at
	// least MinEventSize.
	Size int
	// Rate is how many events per second all publishers emit together, on a
	// fixed schedule. Every event reaches Members connections, so the
	// delivery rate asked of the server is Rate × Members. Zero means 500.
	Rate int
	// Burst is how many events are scheduled at the same instant: the
	// schedule has Rate/Burst ticks per second. Bursts let a server that
	// batches its writes put several events in one. Zero means 1 (evenly
	// spaced events).
	Burst int
	// Warmup is how long events flow before the measurement starts. Zero
	// means 2s.
	Warmup time.Duration
	// Duration is how long the measurement lasts. Zero means 10s.
	Duration time.Duration
	// Drain bounds the wait for events still in flight once publishing has
	// stopped. Zero means 5s.
	Drain time.Duration
	// Room is the room's name. Empty means "bench".
	Room string
	// DialWorkers is how many connections are opened at once. Zero means 32.
	DialWorkers int
	// ReadLoops is how many epoll loops (goroutines) read the members'
	// sockets. Zero means 2.
	ReadLoops int
	// Peer is the server's kind: PeerFerry (also when empty) or a peer
	// measured the same way for comparison, such as PeerCentrifugo.
	Peer string
	// Nodes, when set, are the servers the members are spread over, in
	// place of Target: ferry nodes sharing the room through one NATS.
	// Member i joins Nodes[i mod len(Nodes)] and the publishers join
	// Nodes[0], so that the members of the other nodes receive each event
	// through the shared journal. The result then has each node's figures
	// too.
	Nodes []Target
	// SharedPIDs are processes the servers depend on, such as the NATS
	// server the nodes share: their CPU time counts as the servers'.
	SharedPIDs []int
	// Progress receives a line now and then while the bench runs; nil is silent.
	Progress io.Writer
}

// MinEventSize is the smallest event data size Fanout can build.
const MinEventSize = 64

// FanoutResult is what Fanout measured. Rates, CPU and counts marked "in
// the window" cover the Duration after the warm-up; the totals cover the
// whole run, drain included.
type FanoutResult struct {
	Members    int     `json:"members"`
	Publishers int     `json:"publishers"`
	Size       int     `json:"size"`
	Rate       int     `json:"rate"`
	Burst      int     `json:"burst"`
	Seconds    float64 `json:"seconds"`

	// Published is the number of events emitted in the window.
	Published int64 `json:"published"`
	// Delivered is the number of events received by members in the window.
	Delivered        int64   `json:"delivered"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// ServerMessagesOut is the growth of the server's
	// ferry_messages_out_total in the window (-1 if not exported).
	ServerMessagesOut int64 `json:"server_messages_out"`
	// ServerWrites is the growth of ferry_writes_total in the window (-1 if
	// not exported): ServerMessagesOut / ServerWrites is how many frames
	// share a system call.
	ServerWrites int64 `json:"server_writes"`

	// Latency from the moment the publisher wrote an event (the time it
	// carries) to its receipt, of events sent in the window, in
	// milliseconds.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP90MS float64 `json:"latency_p90_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	LatencyMaxMS float64 `json:"latency_max_ms"`
	// PublisherLagMaxMS is how far behind its schedule a publisher ever was
	// when it sent an event. The latency does not include it; a large lag
	// means the generator itself lacked CPU and the rate was not what was
	// asked.
	PublisherLagMaxMS float64 `json:"publisher_lag_max_ms"`

	// ServerCPUSeconds is the server's user+system CPU time in the window
	// (zero without a PID), and CPUPerDeliveryUS that divided by Delivered.
	// With several nodes it sums theirs and SharedCPUSeconds.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"`
	// SharedCPUSeconds is the CPU time of FanoutConfig.SharedPIDs in the
	// window.
	SharedCPUSeconds float64 `json:"shared_cpu_seconds"`
	// GeneratorCPUSeconds is this process's CPU time in the window.
	GeneratorCPUSeconds float64 `json:"generator_cpu_seconds"`
	// OtherCPUSeconds is the CPU time that neither the server nor the
	// generator used in the window, out of MachineCPUSeconds (cores ×
	// window): other processes competing with the bench.
	OtherCPUSeconds   float64 `json:"other_cpu_seconds"`
	MachineCPUSeconds float64 `json:"machine_cpu_seconds"`

	// PublishedTotal events were emitted in all; each should reach every
	// member, so ExpectedTotal = PublishedTotal × Members.
	PublishedTotal int64 `json:"published_total"`
	ExpectedTotal  int64 `json:"expected_total"`
	ReceivedTotal  int64 `json:"received_total"`
	Lost           int64 `json:"lost"`
	// Duplicates is how many times a member received an event it already
	// had; ReceivedTotal counts each event once per member.
	Duplicates int64 `json:"duplicates"`
	// Nodes are each server's figures, when the members were spread over
	// several (FanoutConfig.Nodes).
	Nodes []NodeFigures `json:"nodes,omitempty"`
	// Dropped is how many connections the server closed during the bench.
	Dropped int `json:"dropped"`
	// ErrorFrames is how many error frames the publishers received.
	ErrorFrames int64 `json:"error_frames"`
	// Problems lists the checks that failed; empty means no event was lost,
	// no connection dropped and no emit refused.
	Problems []string `json:"problems"`
}

// tsKey marks the send time inside an event's data; receivers find it with
// bytes.Index rather than decoding JSON, to stay cheap.
var tsKey = []byte(`"bts":`)

// fanoutRun holds the state shared by one run's goroutines.
type fanoutRun struct {
	cfg     FanoutConfig
	dialect dialect
	epoch   time.Time
	// The window, as offsets from epoch, and one more than the largest
	// event number the schedule holds, set before publishing starts and
	// read by every receiver.
	winStart, winEnd, seqLimit atomic.Int64

	readers   sync.WaitGroup
	closing   atomic.Bool
	dropped   atomic.Int64
	dropCause atomic.Value
	errFrames atomic.Int64
	errFirst  atomic.Value
}

func (f *fanoutRun) now() time.Duration { return time.Since(f.epoch) }

// Fanout puts cfg.Members connections in one room, has cfg.Publishers
// connections emit cfg.Rate events per second into it, and measures the
// delivery rate, the latency from send to receipt and the server's CPU time
// per delivery.
func Fanout(ctx context.Context, cfg FanoutConfig) (FanoutResult, error) {
	for _, t := range cfg.targets() {
		if t.TLS() {
			return FanoutResult{}, errors.New("fanout: its members read raw sockets from epoll loops, which cannot speak TLS; measure TLS with bench idle")
		}
	}
	setDefault(&cfg.Members, 1000)
	setDefault(&cfg.Publishers, 1)
	setDefault(&cfg.Size, 100)
	setDefault(&cfg.Rate, 500)
	setDefault(&cfg.Burst, 1)
	setDefault(&cfg.DialWorkers, 32)
	setDefault(&cfg.ReadLoops, 2)
	setDefault(&cfg.Warmup, 2*time.Second)
	setDefault(&cfg.Duration, 10*time.Second)
	setDefault(&cfg.Drain, 5*time.Second)
	if cfg.Room == "" {
		cfg.Room = "bench"
	}
	res := FanoutResult{
		Members: cfg.Members, Publishers: cfg.Publishers, Size: cfg.Size, Rate: cfg.Rate, Burst: cfg.Burst,
		ServerMessagesOut: -1, ServerWrites: -1,
	}
	if cfg.Size < MinEventSize {
		return res, fmt.Errorf("event size %d is below the minimum of %d bytes", cfg.Size, MinEventSize)
	}
	d, err := newDialect(cfg.Peer)
	if err != nil {
		return res, err
	}
	progress := progressFunc(cfg.Progress)
	f := &fanoutRun{cfg: cfg, dialect: d, epoch: time.Now()}

	nodes := len(cfg.targets())
	members, err := newMemberSet(f, cfg.ReadLoops, nodes)
	if err != nil {
		return res, err
	}
	membersOpen := true
	pubs := &publishers{list: make([]*publisher, cfg.Publishers)}
	defer func() {
		f.closing.Store(true)
		if membersOpen {
			members.close()
		}
		pubs.close()
		f.readers.Wait()
	}()

	// Members first, publishers last: joining sends presence to every member,
	// and that storm is over before the first event.
	var joined atomic.Int64
	stop := ticker(ctx, time.Second, func() {
		progress("fanout: %d/%d members joined", joined.Load(), cfg.Members)
	})
	err = parallel(ctx, cfg.Members, cfg.DialWorkers, func(ctx context.Context, i int) error {
		if err := members.join("member-"+strconv.Itoa(i), nodeOf(i, nodes)); err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		joined.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return res, err
	}
	if err := pubs.dial(ctx, f); err != nil {
		return res, err
	}
	progress("fanout: %d members and %d publishers in room %q", cfg.Members, cfg.Publishers, cfg.Room)

	start := f.now() + 100*time.Millisecond
	winStart := start + cfg.Warmup
	winEnd := winStart + cfg.Duration
	f.winStart.Store(int64(winStart))
	f.winEnd.Store(int64(winEnd))
	f.seqLimit.Store(scheduleLimit(&cfg, start, winEnd))
	pubCtx := pubs.start(ctx, f, start)
	defer pubs.stop()
	// abort stops the publishers and explains why the run ended early: the
	// caller's cancellation, else a publisher's own failure, else err (a
	// publisher that only saw this stop says "context canceled", which
	// would hide the reason, such as a server without /metrics).
	abort := func(err error) error {
		perr := pubs.stop()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case perr != nil && !errors.Is(perr, context.Canceled):
			return perr
		}
		return err
	}

	if err := f.sleepUntil(pubCtx, winStart); err != nil {
		return res, abort(err)
	}
	s0, err := f.sample(ctx, members)
	if err != nil {
		return res, abort(err)
	}
	progress("fanout: warm-up over, measuring for %s", cfg.Duration)
	if err := f.sleepUntil(pubCtx, winEnd); err != nil {
		return res, abort(err)
	}
	s1, err := f.sample(ctx, members)
	if err != nil {
		return res, abort(err)
	}
	if err := pubs.wait(); err != nil {
		return res, err
	}

	for _, p := range pubs.list {
		res.PublishedTotal += p.sent
		res.Published += p.window
		res.PublisherLagMaxMS = max(res.PublisherLagMaxMS, ms(p.lagMax))
	}
	res.ExpectedTotal = res.PublishedTotal * int64(cfg.Members)
	progress("fanout: publishing stopped, draining")
	f.drain(ctx, members, res.ExpectedTotal)

	// Stop the loops so that their histograms can be read.
	f.closing.Store(true)
	res.ReceivedTotal = members.received()
	tallies := members.close()
	membersOpen = false
	f.figures(&res, s0, s1, tallies)
	return res, nil
}

// figures fills in what the two samples and the receipts (by node) say,
// and the checks that failed.
func (f *fanoutRun) figures(res *FanoutResult, s0, s1 fanoutSample, tallies []nodeTally) {
	var (
		windowReceived int64
		hist           histogram
	)
	for i := range tallies {
		windowReceived += tallies[i].inWindow
		res.Duplicates += tallies[i].duplicates
		hist.merge(&tallies[i].hist)
	}
	res.Seconds = (s1.at - s0.at).Seconds()
	res.Delivered = s1.delivered - s0.delivered
	res.DeliveriesPerSec = float64(res.Delivered) / res.Seconds
	if s0.hasOut && s1.hasOut {
		res.ServerMessagesOut = int64(s1.messagesOut - s0.messagesOut)
		res.ServerWrites = int64(s1.writes - s0.writes)
	}
	res.LatencyP50MS = ms(hist.quantile(0.50))
	res.LatencyP90MS = ms(hist.quantile(0.90))
	res.LatencyP99MS = ms(hist.quantile(0.99))
	res.LatencyMaxMS = ms(hist.quantile(1))
	if f.measuresCPU() {
		res.ServerCPUSeconds = (s1.serverCPU - s0.serverCPU).Seconds()
		res.SharedCPUSeconds = (s1.sharedCPU - s0.sharedCPU).Seconds()
		if res.Delivered > 0 {
			res.CPUPerDeliveryUS = res.ServerCPUSeconds * 1e6 / float64(res.Delivered)
		}
	}
	res.GeneratorCPUSeconds = (s1.selfCPU - s0.selfCPU).Seconds()
	if s0.machine.Total > 0 && s1.machine.Total > 0 {
		res.MachineCPUSeconds = (s1.machine.Total - s0.machine.Total).Seconds()
		res.OtherCPUSeconds = max(0, (s1.machine.Busy-s0.machine.Busy).Seconds()-res.ServerCPUSeconds-res.GeneratorCPUSeconds)
	}
	res.Lost = res.ExpectedTotal - res.ReceivedTotal
	res.Dropped = int(f.dropped.Load())
	res.ErrorFrames = f.errFrames.Load()

	if res.Lost != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d deliveries lost", res.Lost, res.ExpectedTotal))
	}
	if want := res.Published * int64(f.cfg.Members); windowReceived != want {
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d deliveries of the window's events received", windowReceived, want))
	}
	if res.Dropped > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d connections dropped (first: %v)", res.Dropped, f.dropCause.Load()))
	}
	if res.ErrorFrames > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d error frames (first: %v)", res.ErrorFrames, f.errFirst.Load()))
	}
	f.nodeFigures(res, s0, s1, tallies)
	res.Problems = append(res.Problems, nodeProblems(res)...)
}

// measuresCPU reports whether the servers' CPU is read: when every one has
// a PID.
func (f *fanoutRun) measuresCPU() bool {
	for _, t := range f.cfg.targets() {
		if t.PID == 0 {
			return false
		}
	}
	return true
}

func (f *fanoutRun) connEnded(err error) {
	if f.closing.Load() {
		return
	}
	f.dropped.Add(1)
	f.dropCause.CompareAndSwap(nil, err.Error())
}

// fanoutSample is the counters at one instant: of every server together
// (serverCPU includes sharedCPU), and of each in nodes.
type fanoutSample struct {
	at          time.Duration
	delivered   int64
	serverCPU   time.Duration
	sharedCPU   time.Duration
	selfCPU     time.Duration
	messagesOut float64
	writes      float64
	hasOut      bool
	machine     MachineCPU
	nodes       []nodeSample
}

func (f *fanoutRun) sample(ctx context.Context, members *memberSet) (fanoutSample, error) {
	s := fanoutSample{at: f.now(), hasOut: true}
	cpu := f.measuresCPU()
	// Every node's receipts first, so that they add up to the total at
	// one instant; then the slower reads.
	for i := range f.cfg.targets() {
		s.nodes = append(s.nodes, nodeSample{delivered: members.receivedOn(i)})
		s.delivered += s.nodes[i].delivered
	}
	for i, t := range f.cfg.targets() {
		n := &s.nodes[i]
		if cpu {
			c, err := ReadCPU(t.PID)
			if err != nil {
				return s, err
			}
			n.cpu = c
		}
		m, err := ScrapeMetrics(ctx, httpClient, t.MetricsURL())
		if err != nil {
			return s, fmt.Errorf("metrics: %w", err)
		}
		var hasWrites bool
		n.messagesOut, n.hasOut = m.Get("ferry_messages_out_total")
		n.writes, hasWrites = m.Get("ferry_writes_total")
		n.hasOut = n.hasOut && hasWrites
		s.serverCPU += n.cpu
		s.messagesOut += n.messagesOut
		s.writes += n.writes
		s.hasOut = s.hasOut && n.hasOut
	}
	for _, pid := range f.cfg.SharedPIDs {
		c, err := ReadCPU(pid)
		if err != nil {
			return s, err
		}
		s.sharedCPU += c
	}
	s.serverCPU += s.sharedCPU
	if c, err := ReadCPU(os.Getpid()); err == nil {
		s.selfCPU = c
	}
	if m, err := ReadMachineCPU(); err == nil {
		s.machine = m
	}
	return s, nil
}

// drain waits until every expected delivery arrived, or until nothing has
// arrived for cfg.Drain.
func (f *fanoutRun) drain(ctx context.Context, members *memberSet, expected int64) {
	last, lastChange := int64(-1), time.Now()
	for {
		got := members.received()
		if got >= expected {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > f.cfg.Drain {
			return
		}
		if sleep(ctx, 20*time.Millisecond) != nil {
			return
		}
	}
}

func (f *fanoutRun) sleepUntil(ctx context.Context, at time.Duration) error {
	return sleep(ctx, at-f.now())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
