package agent

import (
	"sync"
	"sync/atomic"
)

// A Stream is an Exporter that fans pauses out to live subscribers (the
// `watch` command). A subscriber that falls behind loses events rather than
// slowing the agent; the losses are counted.
type Stream struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	dropped atomic.Uint64
}

// NewStream returns a Stream with no subscribers.
func NewStream() *Stream {
	return &Stream{subs: make(map[chan Event]struct{})}
}

// Record implements Exporter.
func (s *Stream) Record(e Event) {
	// Pauses, and the requests a pause slowed: what `watch` shows.
	if e.Type != Pause && e.Type != PauseSample && !(e.Type == Request && e.PauseInside > 0) {
		return
	}
	// Subscribers print what they get to a terminal: sanitised again here,
	// whatever the source did.
	e = e.Sanitized()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.subs {
		select {
		case c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of pauses and a function that ends the
// subscription and closes the channel.
func (s *Stream) Subscribe() (<-chan Event, func()) {
	c := make(chan Event, 256)
	s.mu.Lock()
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
	}
}

// Dropped is the number of events subscribers were too slow to take.
func (s *Stream) Dropped() uint64 { return s.dropped.Load() }
