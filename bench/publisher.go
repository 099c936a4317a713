package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// publishers are the connections that emit a fan-out's events, on a fixed
// schedule shared between them.
type publishers struct {
	list []*publisher

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

type publisher struct {
	c      *websocket.Conn
	sent   int64
	window int64
	lagMax time.Duration
}

// dial connects every publisher and joins it to the room. Their own events
// are not sent back to them (except_self); watchPublisher reads the rest.
func (ps *publishers) dial(ctx context.Context, f *fanoutRun) error {
	d := newDialer(4096, 1024)
	for i := range ps.list {
		c, err := f.dialect.dialPublisher(ctx, d, f.cfg.targets()[0].URL, "publisher-"+strconv.Itoa(i), f.cfg.Room)
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		ps.list[i] = &publisher{c: c}
		f.readers.Go(func() { f.watchPublisher(c) })
	}
	return nil
}

// start runs the publishers from start on; the context it returns ends when
// one of them fails.
func (ps *publishers) start(ctx context.Context, f *fanoutRun, start time.Duration) context.Context {
	ctx, ps.cancel = context.WithCancel(ctx)
	for i, p := range ps.list {
		ps.wg.Go(func() {
			if err := f.publish(ctx, p, i, start); err != nil {
				if cause := f.dropCause.Load(); cause != nil {
					err = fmt.Errorf("%w (a connection ended: %v)", err, cause)
				}
				ps.once.Do(func() { ps.err = fmt.Errorf("publisher %d: %w", i, err) })
				ps.cancel()
			}
		})
	}
	return ctx
}

// wait waits for the publishers to reach the end of their schedule.
func (ps *publishers) wait() error {
	ps.wg.Wait()
	return ps.err
}

// stop ends the publishers early; it is safe to call more than once.
func (ps *publishers) stop() error {
	if ps.cancel != nil {
		ps.cancel()
	}
	return ps.wait()
}

func (ps *publishers) close() {
	var all []*websocket.Conn
	for _, p := range ps.list {
		if p != nil {
			all = append(all, p.c)
		}
	}
	closeAll(all)
}

// watchPublisher reads what the server sends a publisher: presence frames,
// and error frames if it refuses an emit.
func (f *fanoutRun) watchPublisher(c *websocket.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := readFrame(c, buf)
		if err != nil {
			f.connEnded(err)
			return
		}
		if a := f.dialect.answer(buf[:n]); a != nil {
			_ = c.WriteMessage(websocket.TextMessage, a)
		}
		if f.dialect.isError(buf[:n]) {
			f.errFrames.Add(1)
			f.errFirst.CompareAndSwap(nil, string(buf[:n]))
		}
	}
}

// publish emits events i, i+P, i+2P, ... (P publishers), event k at
// start + (k - k mod Burst)/Rate, until the window ends. The schedule does
// not wait for the server's answers (there are none: emits carry no id), so
// the offered load stays what was asked; an event that cannot be sent on
// time is sent late, right away, and the lag is reported.
func (f *fanoutRun) publish(ctx context.Context, p *publisher, idx int, start time.Duration) error {
	cfg := f.cfg
	winStart, winEnd := time.Duration(f.winStart.Load()), time.Duration(f.winEnd.Load())
	var frame []byte
	for k := int64(idx); ; k += int64(cfg.Publishers) {
		due := start + time.Duration((k-k%int64(cfg.Burst))*int64(time.Second)/int64(cfg.Rate))
		if due >= winEnd {
			return nil
		}
		if wait := due - f.now(); wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
		}
		sent := f.now()
		if lag := sent - due; lag > p.lagMax {
			p.lagMax = lag
		}
		frame = f.dialect.appendPublish(frame[:0], cfg.Room, k, func(b []byte) []byte {
			return appendEvent(b, sent, k, cfg.Size)
		})
		if err := p.c.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if err := p.c.WriteMessage(websocket.TextMessage, frame); err != nil {
			return err
		}
		p.sent++
		if sent >= winStart && sent < winEnd {
			p.window++
		}
	}
}

// appendEvent appends an event's data, exactly size bytes long:
// {"bts":<send time>,"seq":<k>,"p":"xxx..."}.
func appendEvent(b []byte, sent time.Duration, seq int64, size int) []byte {
	n0 := len(b)
	b = append(b, '{')
	b = append(b, tsKey...)
	b = strconv.AppendInt(b, int64(sent), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"p":"`...)
	for len(b)-n0 < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}
