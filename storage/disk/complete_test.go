package disk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/storagetest"
)

var (
	crashSizes = []int64{storage.MinPartSize, storage.MinPartSize, 1234}
	crashMeta  = storage.Meta{ContentType: "image/png", User: map[string]string{"sha256": "ab"}}
	errCrash   = errors.New("crash")
)

const crashKey = "rooms/r/file.bin"

// crashedUpload stores crashSizes as an upload to crashKey, in a store over
// a new folder, and runs a Complete that stops at step of part, as if the
// process died there. It returns the folder, the upload and the content the
// upload must end up with.
func crashedUpload(t *testing.T, step string, part int) (string, storage.Multipart, *storagetest.Pattern) {
	t.Helper()
	dir := t.TempDir()
	s := newStore(t, dir)
	want := storagetest.NewPattern(42, crashSizes[0]+crashSizes[1]+crashSizes[2])
	m := putParts(t, s, crashKey, want, crashSizes...)
	hit := false
	disk.SetTestHook(s, func(st string, p int) error {
		if st == step && p == part {
			hit = true
			return errCrash
		}
		return nil
	})
	if _, err := m.Complete(context.Background(), crashMeta); !errors.Is(err, errCrash) {
		t.Fatalf("Complete = %v, want the crash", err)
	}
	if !hit {
		t.Fatal("the crash point was never reached")
	}
	return dir, m, want
}

// A completion stopped between any two of its steps is finished by the
// next Complete, in another process, with the right bytes; meanwhile the
// upload reports the parts it is joining and takes no new ones.
func TestCompleteResumesAfterCrash(t *testing.T) {
	points := []struct {
		step string
		part int
	}{
		{disk.StepRenamed, 1},
		{disk.StepAppended, 2},
		{disk.StepRecorded, 2},
		{disk.StepAppended, 3},
		{disk.StepRecorded, 3},
		{disk.StepJoined, 0},
		{disk.StepPlaced, 0},
	}
	for _, pt := range points {
		t.Run(fmt.Sprintf("%s-%d", pt.step, pt.part), func(t *testing.T) {
			ctx := context.Background()
			dir, m, want := crashedUpload(t, pt.step, pt.part)

			restarted := newStore(t, dir)
			r, err := restarted.ResumeMultipart(ctx, crashKey, m.ID())
			if err != nil {
				t.Fatalf("ResumeMultipart after the crash: %v", err)
			}
			parts, err := r.Parts(ctx)
			if err != nil {
				t.Fatalf("Parts after the crash: %v", err)
			}
			if len(parts) != len(crashSizes) || parts[0].Size != crashSizes[0] || parts[2] != (storage.Part{Number: 3, Size: crashSizes[2]}) {
				t.Errorf("Parts after the crash = %v, want the %d being joined", parts, len(crashSizes))
			}
			if err := r.PutPart(ctx, 4, strings.NewReader("late"), 4); err == nil {
				t.Error("PutPart during a completion succeeded")
			}
			info, err := r.Complete(ctx, crashMeta)
			if err != nil {
				t.Fatalf("Complete after the crash: %v", err)
			}
			if info.Size != want.Size() {
				t.Errorf("Complete: size %d, want %d", info.Size, want.Size())
			}
			got := checkContent(t, restarted, crashKey, want).Meta
			if got.ContentType != crashMeta.ContentType || got.User["sha256"] != "ab" {
				t.Errorf("metadata %+v, want %+v", got, crashMeta)
			}
			checkEmpty(t, dir, "uploads", "tmp")
			if _, err := r.Parts(ctx); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Parts of the completed upload = %v, want ErrNotFound", err)
			}
		})
	}
}

// Abort of an upload whose completion stopped halfway removes everything.
func TestAbortAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir, m, _ := crashedUpload(t, disk.StepAppended, 2)
	if err := m.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, dir, "uploads", "tmp", "objects")
}

// A journal that asks for more than the files hold is reported, not
// papered over with a short object.
func TestCompleteDamagedJournal(t *testing.T) {
	ctx := context.Background()
	dir, m, _ := crashedUpload(t, disk.StepRecorded, 2)
	if err := os.Truncate(filepath.Join(dir, "uploads", m.ID(), "joined.data"), 10); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dir)
	r, err := s.ResumeMultipart(ctx, crashKey, m.ID())
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Complete(ctx, crashMeta)
	if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "fewer than") {
		t.Errorf("Complete with joined.data cut short = %v, want an error saying so", err)
	}
	checkEmpty(t, dir, "objects")
}

// Two Completes of one upload at once take turns: while one is joining,
// the other waits, then finds the upload finished.
func TestCompletesOfOneUploadTakeTurns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	want := storagetest.NewPattern(43, crashSizes[0]+crashSizes[1]+crashSizes[2])
	m := putParts(t, s, crashKey, want, crashSizes...)
	other, err := s.ResumeMultipart(ctx, crashKey, m.ID())
	if err != nil {
		t.Fatal(err)
	}
	paused, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var pausing atomic.Bool
	var overlaps atomic.Int32
	disk.SetTestHook(s, func(step string, part int) error {
		if pausing.Load() {
			overlaps.Add(1)
		}
		if step == disk.StepAppended && part == 2 {
			once.Do(func() {
				pausing.Store(true)
				close(paused)
				<-release
				pausing.Store(false)
			})
		}
		return nil
	})
	results := make(chan error, 2)
	complete := func(h storage.Multipart) {
		_, err := h.Complete(ctx, crashMeta)
		results <- err
	}
	go complete(m)
	<-paused
	go complete(other)
	// Time for the second Complete to reach a step, were it let in.
	time.Sleep(500 * time.Millisecond)
	close(release)
	ok := 0
	for range 2 {
		switch err := <-results; {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrNotFound):
			t.Errorf("Complete: %v, want success or ErrNotFound", err)
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("the second Complete went through %d steps while the first was joining", n)
	}
	if ok != 1 {
		t.Errorf("%d Completes succeeded, want 1", ok)
	}
	checkContent(t, s, crashKey, want)
	checkEmpty(t, dir, "uploads", "tmp")
}
