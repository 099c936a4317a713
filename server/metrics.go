package server

import (
	"fmt"
	"net/http"
	"sync/atomic"
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

// serveMetrics writes the Prometheus text exposition format.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	st := s.hub.Stats()
	m := &s.metrics
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	for _, x := range []struct {
		name, kind, help string
		value            any
	}{
		{"ferry_connections", "gauge", "Open WebSocket connections.", m.connections.Load()},
		{"ferry_users", "gauge", "Users with at least one open connection.", st.Users},
		{"ferry_rooms", "gauge", "Named rooms with members or history.", st.Rooms},
		{"ferry_history_bytes", "gauge", "Bytes of events all rooms keep for replay, within --history-memory.", st.HistoryBytes},
		{"ferry_connections_accepted_total", "counter", "WebSocket connections accepted.", m.accepted.Load()},
		{"ferry_connections_refused_server_full_total", "counter", "WebSocket handshakes refused at --max-conns.", m.refusedFull.Load()},
		{"ferry_connections_refused_address_total", "counter", "WebSocket handshakes refused at --max-conns-per-ip.", m.refusedAddr.Load()},
		{"ferry_connections_refused_user_total", "counter", "WebSocket handshakes refused at --max-conns-per-user.", m.refusedUser.Load()},
		{"ferry_sockets_refused_total", "counter", "TCP connections closed as accepted, over the caps of the listener (see --max-conns).", m.refusedSockets.Load()},
		{"ferry_messages_in_total", "counter", "WebSocket messages received.", m.messagesIn.Load()},
		{"ferry_messages_out_total", "counter", "WebSocket frames written.", m.messagesOut.Load()},
		{"ferry_bytes_in_total", "counter", "Payload bytes of text frames received.", m.bytesIn.Load()},
		{"ferry_writes_total", "counter", "System calls writing to WebSocket connections (frames out per write shows how well writes are batched).", m.writes.Load()},
		{"ferry_bytes_out_total", "counter", "Bytes written to WebSocket connections.", m.bytesOut.Load()},
		{"ferry_slow_clients_dropped_total", "counter", "Connections dropped because their send queue was full.", m.slow.Load()},
		{"ferry_heartbeat_timeouts_total", "counter", "Connections dropped for not answering pings.", m.timeouts.Load()},
		{"ferry_error_frames_total", "counter", "Error frames sent.", m.errors.Load()},
		{"ferry_pongs_dropped_total", "counter", "Pongs not sent to clients whose send queue was full (pinging without reading).", m.pongsDropped.Load()},
		{"ferry_upload_bytes_total", "counter", "File bytes received in chunks.", m.uploadBytes.Load()},
		{"ferry_uploads_completed_total", "counter", "Uploads stored and announced.", m.uploadsDone.Load()},
		{"ferry_upload_part_memory_bytes", "gauge", "Part memory held by uploads (their windows), within --part-memory.", s.partMemory()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", x.name, x.help, x.name, x.kind, x.name, x.value)
	}
}

// partMemory is the part memory uploads hold, for /metrics.
func (s *Server) partMemory() int64 {
	if s.cfg.Transfer == nil {
		return 0
	}
	return s.cfg.Transfer.PartMemoryInUse()
}
