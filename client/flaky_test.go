package client

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// Upload finishes over a link that drops every 1-6 MiB, the stored file
// is the one sent, and each drop costs only what was in flight: the client
// resumes at the offset the server grants, right after the last chunk it
// received whole. In flight is the client's send queue (outQueueBytes)
// and the socket buffers on the way; the bound checked is the queue and
// 10 MiB of buffers, far less than the part being filled (a lone upload's
// is one of BigPartSize), which the file is larger than: resuming from
// the last stored part would cost up to a whole part.
func TestUploadOverFlakyLink(t *testing.T) {
	const partSize, bigPartSize = 8 << 20, 32 << 20
	const bound = outQueueBytes + 10<<20
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fs := ferrytest.Start(t, ferrytest.DiskStore(t), transfer.Config{PartSize: partSize, BigPartSize: bigPartSize}, server.Config{})
	link := ferrytest.NewProxy(t, strings.TrimPrefix(fs.URL, "http://"))
	link.CutAfterRandom(1<<20, 6<<20, 7)
	up := dial(t, "ws://"+link.Addr+"/ws", "mobile", withBackoff(Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}))
	if _, err := up.Join(ctx, "share"); err != nil {
		t.Fatal(err)
	}
	for _, b64 := range []bool{false, true} {
		data := randomBytes(40<<20 + 4321)
		var sent int64
		var resent []int64
		opens := 0
		f, err := up.Upload(ctx, "share", bytes.NewReader(data), int64(len(data)), UploadOptions{
			Name: "flaky.bin", Base64: b64,
			OnProgress: func(p Progress) { sent = max(sent, p.Sent) },
			OnOpen: func(_ string, offset int64) {
				if opens++; opens > 1 {
					resent = append(resent, sent-offset)
					sent = offset
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if f.SHA256 != hexSHA(data) || f.Size != int64(len(data)) {
			t.Fatalf("stored %+v, want SHA-256 %s", f, hexSHA(data))
		}
		worst := slices.Max(append(resent, 0))
		t.Logf("base64=%v: %d drops, at most %d KiB re-sent per drop (bound %d MiB; the upload's parts %d MiB)", b64, len(resent), worst>>10, bound>>20, bigPartSize>>20)
		if len(resent) == 0 {
			t.Error("no drop: the link is not flaky")
		}
		if worst >= bound {
			t.Errorf("a drop cost %d bytes: want what was in flight (under %d), never a whole part", worst, bound)
		}
	}
}
