package rooms_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/rooms"
)

// syncDeliveries is deliveries safe for concurrent use.
type syncDeliveries struct {
	mu sync.Mutex
	*deliveries
}

func (d *syncDeliveries) Deliver(msg *rooms.Message) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deliveries.Deliver(msg)
}

func (d *syncDeliveries) CatchUp(msg *rooms.Message) bool { return d.Deliver(msg) }

func (d *syncDeliveries) saw(s string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.live {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// Joins, leaves and sweeps racing on a room never split it in two: a
// member who joined an empty room while the last one left it, or while the
// sweep looked at it, is in the room everyone else joins.
func TestJoinRacingLeaveAndSweep(t *testing.T) {
	h := rooms.New(rooms.Config{HistorySize: -1})
	for round := range 2000 {
		name := fmt.Sprintf("r%d", round)
		a := &syncDeliveries{deliveries: newDeliveries(fmt.Sprintf("a%d", round), "alice")}
		b := &syncDeliveries{deliveries: newDeliveries(fmt.Sprintf("b%d", round), "bob")}
		churn := &syncDeliveries{deliveries: newDeliveries(fmt.Sprintf("c%d", round), "carol")}
		for _, m := range []rooms.Member{a, b, churn} {
			h.Register(m)
		}
		if _, err := h.Join(churn, name, nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := h.Leave(churn, name); err != nil {
				t.Error(err)
			}
		})
		wg.Go(h.Sweep)
		wg.Go(func() {
			if _, err := h.Join(a, name, nil); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if _, err := h.Join(b, name, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Emit(a, rooms.Target{Room: name}, "e", []byte(`"`+name+`"`), rooms.EmitOptions{}); err != nil {
			t.Fatal(err)
		}
		if !b.saw(`"data":"` + name + `"`) {
			t.Fatalf("round %d: bob is not in the room alice joined", round)
		}
		for _, m := range []rooms.Member{a, b, churn} {
			h.Unregister(m)
		}
	}
	if n := h.Stats().Rooms; n != 0 {
		t.Fatalf("%d rooms left after everyone left", n)
	}
}
