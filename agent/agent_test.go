package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// sliceSource sends fixed events, then waits for ctx or fails.
type sliceSource struct {
	events []Event
	err    error
}

func (s sliceSource) Run(ctx context.Context, out chan<- Event) error {
	for _, e := range s.events {
		out <- e
	}
	if s.err != nil {
		return s.err
	}
	<-ctx.Done()
	return nil
}

type recorder []Event

func (r *recorder) Record(e Event) { *r = append(*r, e) }

func TestRun(t *testing.T) {
	evs := []Event{
		{Type: Pause, Process: Process{PID: 1}, Kind: KindGC, Duration: time.Millisecond},
		{Type: Exit, Process: Process{PID: 1}},
	}
	t.Run("fan out until cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		var a, b recorder
		if err := Run(ctx, sliceSource{events: evs}, &a, &b); err != nil {
			t.Fatal(err)
		}
		if len(a) != 2 || len(b) != 2 || a[0] != evs[0] || b[1] != evs[1] {
			t.Errorf("exporters got %v and %v", a, b)
		}
	})
	t.Run("sync is closed after what came before it, and recorded by no exporter", func(t *testing.T) {
		synced := make(chan struct{})
		var a recorder
		err := Run(context.Background(), sliceSource{events: []Event{evs[0], {Type: Sync, Synced: synced}}, err: errors.New("done")}, &a)
		if err == nil {
			t.Fatal("want the source's error")
		}
		select {
		case <-synced:
		default:
			t.Fatal("Synced not closed")
		}
		if len(a) != 1 || a[0] != evs[0] {
			t.Errorf("exporter got %v, want the pause alone", a)
		}
	})
	t.Run("source failure is returned", func(t *testing.T) {
		boom := errors.New("boom")
		var a recorder
		err := Run(context.Background(), sliceSource{events: evs[:1], err: boom}, &a)
		if !errors.Is(err, boom) || len(a) != 1 {
			t.Errorf("err %v, events %d", err, len(a))
		}
	})
}

func TestStream(t *testing.T) {
	s := NewStream(0)
	c, cancel, err := s.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	s.Record(Event{Type: Exit}) // not a pause: not streamed
	for i := range 300 {        // the subscriber buffer holds 256
		s.Record(Event{Type: Pause, Process: Process{PID: uint32(i)}})
	}
	if got := s.Dropped(); got != 300-256 {
		t.Errorf("dropped %d, want %d", got, 300-256)
	}
	if e := <-c; e.Process.PID != 0 {
		t.Errorf("first event pid %d", e.Process.PID)
	}
	cancel()
	cancel()                     // idempotent
	s.Record(Event{Type: Pause}) // no subscriber left, a closed channel is not written to
}

// TestReasonCap: one process adds at most MaxReasonsPerProcess reasons;
// the rest become "other", known ones stay, and an exit frees the pid.
func TestReasonCap(t *testing.T) {
	var evs []Event
	pause := func(pid uint32, reason string) Event {
		return Event{Type: Pause, Process: Process{PID: pid}, Kind: KindGC, Reason: reason, Duration: time.Millisecond}
	}
	for i := range MaxReasonsPerProcess + 10 {
		evs = append(evs, pause(1, fmt.Sprint("cause-", i)))
	}
	evs = append(evs, pause(1, "cause-0"), pause(2, "cause-99"), Event{Type: Exit, Process: Process{PID: 1}}, pause(1, "cause-99"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var r recorder
	if err := Run(ctx, sliceSource{events: evs}, &r); err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for i, e := range r[:MaxReasonsPerProcess+10] {
		distinct[e.Reason] = true
		if want := fmt.Sprint("cause-", i); i < MaxReasonsPerProcess && e.Reason != want {
			t.Errorf("event %d: reason %q, want %q", i, e.Reason, want)
		}
	}
	if len(distinct) != MaxReasonsPerProcess+1 || !distinct[OtherReason] {
		t.Errorf("%d distinct reasons from pid 1, want %d and %q", len(distinct), MaxReasonsPerProcess+1, OtherReason)
	}
	tail := r[MaxReasonsPerProcess+10:]
	for i, want := range []string{"cause-0", "cause-99", "", "cause-99"} {
		if tail[i].Reason != want {
			t.Errorf("tail event %d: reason %q, want %q (a known reason stays, other pids and a reused pid start afresh)", i, tail[i].Reason, want)
		}
	}
}
