package server

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferryhq/ferry/protocol"
)

type metrics struct {
	connections atomic.Int64
	accepted    atomic.Uint64
	messagesIn  atomic.Uint64
	messagesOut atomic.Uint64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	writes      atomic.Uint64
	slow        atomic.Uint64
	timeouts    atomic.Uint64
	errors      atomic.Uint64
	uploadBytes atomic.Uint64
	uploadsDone atomic.Uint64
	// pongsDropped counts pongs not queued because the client's queue was
	// full (a client pinging without reading).
	pongsDropped atomic.Uint64
	// Handshakes refused by the connection caps.
	refusedFull, refusedAddr, refusedUser atomic.Uint64
	// TCP connections closed on accept by the listener's caps.
	refusedSockets atomic.Uint64
}

// Histograms, in seconds.
var (
	// latencyBuckets cover what a chat user notices: 0.1 ms to 2.5 s.
	latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// storeBuckets cover a part's trip to storage: 5 ms to 60 s.
	storeBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// histograms are the distributions /metrics reports besides the counters.
type histograms struct {
	// requests times a request from its frame to its answer, by type;
	// byType holds its observer for each of requestTypes and "other",
	// looked up once here rather than at every request.
	requests *prometheus.HistogramVec
	byType   map[string]prometheus.Observer
	// queueWait times frames in a connection's queue: from the moment the
	// queue stops being empty to the write that takes them.
	queueWait prometheus.Histogram
	// partStore times each upload part's store request.
	partStore prometheus.Histogram
	// errors counts error frames by code: how often each limit refuses.
	errors *prometheus.CounterVec
}

func newHistograms() histograms {
	h := histograms{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_request_seconds", Help: "Time from a request frame to its answer being queued, by frame type.",
			Buckets: latencyBuckets,
		}, []string{"type"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_delivery_wait_seconds", Help: "Time frames wait in a connection's queue before a write takes them (the server's share of delivery latency).",
			Buckets: latencyBuckets,
		}),
		partStore: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_upload_part_store_seconds", Help: "Time to store one upload part.",
			Buckets: storeBuckets,
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_errors_total", Help: "Error frames sent, by code (rate_limited, over_quota, busy, ...: how often each limit refuses).",
		}, []string{"code"}),
		byType: make(map[string]prometheus.Observer, len(requestTypes)+1),
	}
	for t := range requestTypes {
		h.byType[t] = h.requests.WithLabelValues(t)
	}
	h.byType["other"] = h.requests.WithLabelValues("other")
	return h
}

// requestTypes are the frame types requests are labelled with; anything
// else is "other", so that clients cannot make up label values.
var requestTypes = map[string]bool{
	protocol.TypeJoin: true, protocol.TypeLeave: true, protocol.TypeRooms: true, protocol.TypeMembers: true,
	protocol.TypeEmit: true, protocol.TypeReceipts: true, protocol.TypeInvite: true, protocol.TypePing: true,
	protocol.TypeUploadOpen: true, protocol.TypeUploadStatus: true, protocol.TypeUploadFinish: true,
	protocol.TypeUploadCancel: true, protocol.TypeFileLink: true, protocol.TypeFiles: true,
}

// observeRequest records a request of type t that arrived at start.
func (s *Server) observeRequest(t string, start time.Time) {
	o, ok := s.hist.byType[t]
	if !ok {
		o = s.hist.byType["other"]
	}
	o.Observe(time.Since(start).Seconds())
}

// PartStored implements transfer.Events: the part store histogram.
func (s *Server) PartStored(d time.Duration) { s.hist.partStore.Observe(d.Seconds()) }

// registry gathers the server's series: its counters and gauges (kept in
// atomics on the hot paths and read at each scrape), its histograms, and
// the Go runtime's and the process's standard collectors.
func (s *Server) registry() *prometheus.Registry {
	m := &s.metrics
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.hist.requests, s.hist.queueWait, s.hist.partStore, s.hist.errors)
	counter := func(name, help string, v func() uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) }))
	}
	gauge := func(name, help string, v func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v))
	}
	gauge("ferry_connections", "Open WebSocket connections.", func() float64 { return float64(m.connections.Load()) })
	gauge("ferry_users", "Users with at least one open connection.", func() float64 { return float64(s.hub.Stats().Users) })
	gauge("ferry_rooms", "Named rooms with members or history.", func() float64 { return float64(s.hub.Stats().Rooms) })
	gauge("ferry_history_bytes", "Bytes of events all rooms keep for replay, within --history-memory.", func() float64 { return float64(s.hub.Stats().HistoryBytes) })
	gauge("ferry_upload_part_memory_bytes", "Part memory held by uploads (their windows), within --part-memory.", func() float64 { return float64(s.partMemory()) })
	counter("ferry_connections_accepted_total", "WebSocket connections accepted.", m.accepted.Load)
	counter("ferry_connections_refused_server_full_total", "WebSocket handshakes refused at --max-conns.", m.refusedFull.Load)
	counter("ferry_connections_refused_address_total", "WebSocket handshakes refused at --max-conns-per-ip.", m.refusedAddr.Load)
	counter("ferry_connections_refused_user_total", "WebSocket handshakes refused at --max-conns-per-user.", m.refusedUser.Load)
	counter("ferry_sockets_refused_total", "TCP connections closed as accepted, over the caps of the listener (see --max-conns).", m.refusedSockets.Load)
	counter("ferry_messages_in_total", "WebSocket messages received.", m.messagesIn.Load)
	counter("ferry_messages_out_total", "WebSocket frames written.", m.messagesOut.Load)
	counter("ferry_bytes_in_total", "Payload bytes of text frames received.", m.bytesIn.Load)
	counter("ferry_writes_total", "System calls writing to WebSocket connections (frames out per write shows how well writes are batched).", m.writes.Load)
	counter("ferry_bytes_out_total", "Bytes written to WebSocket connections.", m.bytesOut.Load)
	counter("ferry_slow_clients_dropped_total", "Connections dropped because their send queue was full.", m.slow.Load)
	counter("ferry_heartbeat_timeouts_total", "Connections dropped for not answering pings.", m.timeouts.Load)
	counter("ferry_error_frames_total", "Error frames sent.", m.errors.Load)
	counter("ferry_pongs_dropped_total", "Pongs not sent to clients whose send queue was over half full (pinging without reading).", m.pongsDropped.Load)
	counter("ferry_upload_bytes_total", "File bytes received in chunks.", m.uploadBytes.Load)
	counter("ferry_uploads_completed_total", "Uploads stored and announced.", m.uploadsDone.Load)
	return reg
}

// partMemory is the part memory uploads hold, for /metrics.
func (s *Server) partMemory() int64 {
	if s.cfg.Transfer == nil {
		return 0
	}
	return s.cfg.Transfer.PartMemoryInUse()
}
