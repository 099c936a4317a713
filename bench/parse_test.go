package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "ws://127.0.0.1:8080", want: "ws://127.0.0.1:8080/ws"},
		{in: "ws://127.0.0.1:8080/ws", want: "ws://127.0.0.1:8080/ws"},
		{in: "http://localhost:9/?x=1", want: "ws://localhost:9/ws"},
		{in: "ws://[::1]:80", want: "ws://[::1]:80/ws"},
		{in: "ws://127.2.3.4:80/other", want: "ws://127.2.3.4:80/other"},
		{in: "ws://10.0.0.1:8080", bad: true},
		{in: "ws://example.com:8080", bad: true},
		{in: "wss://127.0.0.1:8080", want: "wss://127.0.0.1:8080/ws"},
		{in: "https://127.0.0.1:8443/x/ws", want: "wss://127.0.0.1:8443/x/ws"},
		{in: "wss://example.com:443", bad: true},
		{in: "127.0.0.1:8080", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in, 7)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseTarget(%q) = %q, want an error", tt.in, got.URL)
			}
			continue
		}
		if err != nil || got.URL != tt.want || got.PID != 7 {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	tg := Target{URL: "ws://127.0.0.1:8080/ws"}
	if tg.MetricsURL() != "http://127.0.0.1:8080/metrics" || tg.HealthURL() != "http://127.0.0.1:8080/healthz" {
		t.Errorf("MetricsURL %q, HealthURL %q", tg.MetricsURL(), tg.HealthURL())
	}
	if tg := (Target{URL: "wss://127.0.0.1:8443/ws"}); !tg.TLS() || tg.MetricsURL() != "https://127.0.0.1:8443/metrics" {
		t.Errorf("over TLS: TLS %v, MetricsURL %q", tg.TLS(), tg.MetricsURL())
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP ferry_connections Open connections.
# TYPE ferry_connections gauge
ferry_connections 15000
ferry_messages_out_total{shard="a"} 10
ferry_messages_out_total{shard="b",x="}"} 5 1700000000000
bad_line
ferry_ratio 2.5e3
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"ferry_connections":        15000,
		"ferry_messages_out_total": 15,
		"ferry_ratio":              2500,
	} {
		if got, ok := m.Get(name); !ok || got != want {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
	if _, ok := m.Get("bad_line"); ok {
		t.Error("a line without a value was parsed")
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (ferry (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 9 0 100 1000000 2000 18446744073709551615"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3800 * time.Millisecond; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (ferry) S 1 2")); err == nil {
		t.Error("short stat line parsed")
	}
}

func TestAppendEvent(t *testing.T) {
	for _, size := range []int{MinEventSize, 100, 1000} {
		for _, seq := range []int64{0, 7, 123456789} {
			sent := 1234567 * time.Microsecond
			b := appendEvent([]byte("prefix"), sent, seq, size)
			data := b[len("prefix"):]
			if len(data) != size {
				t.Errorf("size %d seq %d: %d bytes", size, seq, len(data))
			}
			var v struct {
				BTS int64 `json:"bts"`
				Seq int64 `json:"seq"`
			}
			if err := json.Unmarshal(data, &v); err != nil || v.BTS != int64(sent) || v.Seq != seq {
				t.Errorf("size %d seq %d: %s decodes to %+v, %v", size, seq, data, v, err)
			}
			i := strings.Index(string(data), string(tsKey))
			if got, k, ok := parseStamp(data[i+len(tsKey):]); !ok || got != sent || k != seq {
				t.Errorf("parseStamp = %v, %d, %v; want %v, %d", got, k, ok, sent, seq)
			}
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	got, err := parseMachineCPU([]byte("cpu  100 10 50 1000 5 1 2 3 0 0\ncpu0 50 5 25 500 2 1 1 1 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := MachineCPU{Busy: 1660 * time.Millisecond, Total: 11710 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestSeenSet(t *testing.T) {
	var s seenSet
	const limit = 130
	for _, k := range []int64{0, 63, 64, 129} {
		if s.add(k, limit) {
			t.Errorf("first receipt of %d counted as a duplicate", k)
		}
		if !s.add(k, limit) {
			t.Errorf("second receipt of %d not counted as a duplicate", k)
		}
	}
	// Past the schedule's numbers: not tracked, never a duplicate.
	for _, k := range []int64{-1, limit, 1 << 40} {
		if s.add(k, limit) || s.add(k, limit) {
			t.Errorf("event %d beyond the limit counted as a duplicate", k)
		}
	}
	if len(s.bits) != 3 {
		t.Errorf("%d words for %d events, want 3", len(s.bits), limit)
	}
}

func TestMembersOnNodes(t *testing.T) {
	for _, tc := range []struct{ members, nodes int }{{1000, 2}, {21, 2}, {7, 3}, {1, 2}, {5, 1}} {
		count := make([]int, tc.nodes)
		for i := range tc.members {
			count[nodeOf(i, tc.nodes)]++
		}
		for n := range tc.nodes {
			if got := membersOn(n, tc.members, tc.nodes); got != count[n] {
				t.Errorf("%d members over %d nodes: membersOn(%d) = %d, %d join it", tc.members, tc.nodes, n, got, count[n])
			}
		}
	}
}

func TestScheduleLimit(t *testing.T) {
	// The publishers' event numbers all fall under the limit.
	cfg := FanoutConfig{Rate: 200, Burst: 4, Publishers: 3}
	start, end := 100*time.Millisecond, 2100*time.Millisecond
	limit := scheduleLimit(&cfg, start, end)
	var last int64 = -1
	for k := int64(0); ; k++ {
		due := start + time.Duration((k-k%int64(cfg.Burst))*int64(time.Second)/int64(cfg.Rate))
		if due >= end {
			break
		}
		last = k
	}
	if last < 0 || last >= limit || limit > last+20 {
		t.Errorf("limit %d for a last event %d: want just above it", limit, last)
	}
}
