package server_test

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry/server"
)

// BenchmarkReplay1000 measures catching up: a client that missed 1,000
// events re-joins with its position and receives all of them (the
// requirement is under 100 ms). Each iteration is one reconnecting client,
// from sending the join to reading the ack after the last replayed event;
// replay_ms is the mean.
func BenchmarkReplay1000(b *testing.B) {
	_, url := startServer(b, server.Config{Rate: 1e6, RateBurst: 1e6})
	pub := dial(b, url)
	j := pub.mustAck(frame{"t": "join", "room": "r"})["data"].(map[string]any)
	for i := 0; i < 1000; i++ {
		pub.send(frame{"t": "emit", "room": "r", "event": "e", "data": frame{"i": i, "text": "a chat message of about a hundred bytes, like the ones people send"}})
	}
	pub.mustAck(frame{"t": "rooms"}) // all published
	var total time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		p := dial(b, url)
		b.StartTimer()
		start := time.Now()
		p.send(frame{"t": "join", "id": 1, "room": "r", "since": frame{"epoch": j["epoch"], "seq": 0}})
		events := 0
		for {
			f := p.readWire()
			if f["t"] == "event" {
				events++
			}
			if f["t"] == "ack" {
				break
			}
		}
		total += time.Since(start)
		if events != 1000 {
			b.Fatalf("replayed %d events, want 1000", events)
		}
		b.StopTimer()
		p.ws.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "replay_ms")
}
