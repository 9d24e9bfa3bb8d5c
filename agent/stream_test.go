package agent

import (
	"errors"
	"testing"
	"time"
)

func TestStreamCap(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max       int
		subscribe int
		wantMax   int
	}{
		{"default cap", 0, DefaultMaxSubscribers + 3, DefaultMaxSubscribers},
		{"negative is default", -1, DefaultMaxSubscribers + 1, DefaultMaxSubscribers},
		{"small cap", 2, 5, 2},
		{"below the cap", 10, 4, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStream(tc.max)
			var cancels []func()
			refused := 0
			for range tc.subscribe {
				_, cancel, err := s.Subscribe()
				if err != nil {
					if !errors.Is(err, ErrTooManySubscribers) {
						t.Fatalf("Subscribe: %v, want ErrTooManySubscribers", err)
					}
					refused++
					continue
				}
				cancels = append(cancels, cancel)
			}
			n, max := s.Subscribers()
			wantN := min(tc.subscribe, tc.wantMax)
			if n != wantN || max != tc.wantMax || len(cancels) != wantN {
				t.Fatalf("%d subscribers of at most %d (%d accepted), want %d of %d", n, max, len(cancels), wantN, tc.wantMax)
			}
			if got := s.Refused(); got != uint64(refused) || refused != tc.subscribe-wantN {
				t.Fatalf("Refused() = %d, %d refusals seen, want %d", got, refused, tc.subscribe-wantN)
			}
			// Ending a subscription frees its place, once however often
			// it is ended.
			cancels[0]()
			cancels[0]()
			if _, c, err := s.Subscribe(); err != nil {
				t.Fatalf("Subscribe after one ended: %v", err)
			} else {
				c()
			}
			for _, c := range cancels[1:] {
				c()
			}
			if n, _ := s.Subscribers(); n != 0 {
				t.Fatalf("%d subscribers after all ended", n)
			}
		})
	}
}

func TestStreamFanOut(t *testing.T) {
	s := NewStream(4)
	fast, endFast, err := s.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer endFast()
	slow, endSlow, err := s.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer endSlow()

	pause := Event{Type: Pause, Process: Process{PID: 7, Service: "bad\xffname\x1b[2J"}, Duration: time.Millisecond}
	skipped := []Event{
		{Type: Exit, Process: Process{PID: 7}},
		{Type: PauseTotals, Process: Process{PID: 7}},
		{Type: Request, Process: Process{PID: 7}}, // no pause inside: not what watch shows
	}
	for _, e := range skipped {
		s.Record(e)
	}
	const n = SubscriberBuffer + 10
	for range n {
		s.Record(pause)
		select {
		case e := <-fast:
			if e.Type != Pause || e.Process.Service != LabelValue(pause.Process.Service) {
				t.Fatalf("fast subscriber got %+v, want the sanitised pause", *e)
			}
		default:
			t.Fatal("fast subscriber got nothing for a pause")
		}
	}
	// The slow one never read: its queue holds SubscriberBuffer events,
	// the rest are dropped and counted, and the fast one lost nothing.
	if got := len(slow); got != SubscriberBuffer {
		t.Fatalf("slow subscriber holds %d events, want %d", got, SubscriberBuffer)
	}
	if got := s.Dropped(); got != n-SubscriberBuffer {
		t.Fatalf("Dropped() = %d, want %d", got, n-SubscriberBuffer)
	}
	// Subscribers share one copy of each event: drain both, record one
	// more, and both get the same pointer.
	for len(slow) > 0 {
		<-slow
	}
	s.Record(pause)
	if a, b := <-fast, <-slow; a != b {
		t.Fatal("the two subscribers got separate copies of one event")
	}
}
