package agent

import (
	"context"
	"errors"
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
