package agent

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// A Stream is an Exporter that fans pauses out to live subscribers (the
// `watch` command). A subscriber that falls behind loses events rather than
// slowing the agent; the losses are counted.
//
// Subscribers are whoever can connect to the agent's port, so everything a
// subscriber costs is bounded: at most Max of them at once (past that
// Subscribe refuses, and the refusals are counted), each with a queue of
// SubscriberBuffer pointers to events shared by all subscribers, not
// copies. 4000 idle subscribers with a 256-event queue of Event values
// each (~360 bytes an event) held ~360 MiB.
type Stream struct {
	max     int
	mu      sync.Mutex
	subs    map[chan *Event]struct{}
	dropped atomic.Uint64
	refused atomic.Uint64
}

// DefaultMaxSubscribers is the subscriber cap when NewStream is given 0:
// an operator runs one or two `watch` at a time; 64 leaves room for many
// and bounds what idle clients hold to a few MiB (connections included).
const DefaultMaxSubscribers = 64

// SubscriberBuffer is how many events a subscriber may have waiting. The
// HTTP stream flushes every 200 ms, so this is the burst one subscriber
// absorbs in 200 ms: above what a Go process under GC churn makes (a few
// pauses per cycle, a few cycles per 100 ms).
const SubscriberBuffer = 256

// ErrTooManySubscribers is what Subscribe returns at the cap.
var ErrTooManySubscribers = errors.New("too many stream subscribers")

// NewStream returns a Stream with no subscribers that admits at most max
// at once (DefaultMaxSubscribers when max is 0 or less).
func NewStream(max int) *Stream {
	if max <= 0 {
		max = DefaultMaxSubscribers
	}
	return &Stream{max: max, subs: make(map[chan *Event]struct{})}
}

// Record implements Exporter.
func (s *Stream) Record(e Event) {
	// Pauses, and the requests a pause slowed: what `watch` shows.
	if e.Type != Pause && e.Type != PauseSample && !(e.Type == Request && e.PauseInside > 0) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) == 0 {
		return
	}
	// Subscribers print what they get to a terminal: sanitised again here,
	// whatever the source did. One copy, shared read-only by every
	// subscriber.
	shared := e.Sanitized()
	for c := range s.subs {
		select {
		case c <- &shared:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of pauses and a function that ends the
// subscription and closes the channel; the events received must not be
// modified (every subscriber shares them). At the cap it returns an error
// wrapping ErrTooManySubscribers.
func (s *Stream) Subscribe() (<-chan *Event, func(), error) {
	s.mu.Lock()
	if len(s.subs) >= s.max {
		s.mu.Unlock()
		s.refused.Add(1)
		return nil, nil, fmt.Errorf("%w: %d of %d", ErrTooManySubscribers, s.max, s.max)
	}
	c := make(chan *Event, SubscriberBuffer)
	s.subs[c] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, c)
			s.mu.Unlock()
			close(c)
		})
	}, nil
}

// Dropped is the number of events subscribers were too slow to take.
func (s *Stream) Dropped() uint64 { return s.dropped.Load() }

// Refused is the number of subscriptions refused at the cap.
func (s *Stream) Refused() uint64 { return s.refused.Load() }

// Subscribers returns the subscribers now, and the cap.
func (s *Stream) Subscribers() (n, max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs), s.max
}
