package main

import (
	"sync"
	"time"
)

// releaser gives freed heap back to the OS after expiry sweeps have
// dropped many series (a burst of short-lived services has gone). The
// runtime otherwise keeps those pages until its background scavenger
// returns them, slowly, and an agent that has settled allocates too little
// to collect the dropped series at all: its RSS stays near the burst's
// peak. The release (debug.FreeOSMemory: a full GC, then every free page
// returned) runs at most once per interval, off the caller's goroutine,
// when min series have been dropped since the last, or any within three
// intervals of it.
type releaser struct {
	min      int           // series dropped since the last release that call for one
	interval time.Duration // between releases
	free     func()

	mu        sync.Mutex
	pending   int
	last      time.Time
	scheduled bool
}

// expired is the Prometheus exporter's Expired hook.
func (r *releaser) expired(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending += n
	// The stragglers of a burst, dropped soon after its release, are
	// released too.
	straggler := r.pending > 0 && !r.last.IsZero() && time.Since(r.last) < 3*r.interval
	if r.scheduled || (r.pending < r.min && !straggler) {
		return
	}
	r.scheduled = true
	time.AfterFunc(max(r.interval-time.Since(r.last), 0), r.release)
}

func (r *releaser) release() {
	r.mu.Lock()
	r.pending = 0 // series dropped from here on call for the next one
	r.mu.Unlock()
	r.free()
	r.mu.Lock()
	r.last, r.scheduled = time.Now(), false
	r.mu.Unlock()
}
