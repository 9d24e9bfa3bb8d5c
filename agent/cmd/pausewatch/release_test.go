package main

import (
	"sync/atomic"
	"testing"
	"time"
)

// Below the threshold nothing is released; past it one release runs at
// once, the next not before the interval, drops during a wait are covered
// by the release already scheduled, and a straggler soon after a release
// gets one of its own.
func TestReleaser(t *testing.T) {
	var frees atomic.Int32
	r := &releaser{min: 100, interval: 300 * time.Millisecond, free: func() { frees.Add(1) }}
	r.expired(60)
	time.Sleep(50 * time.Millisecond)
	if n := frees.Load(); n != 0 {
		t.Fatalf("%d releases for 60 series dropped, want none", n)
	}
	start := time.Now()
	r.expired(50)
	waitFor(t, func() bool { return frees.Load() == 1 })
	r.expired(500)
	r.expired(500)
	waitFor(t, func() bool { return frees.Load() == 2 })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("second release %v after the first, want at least the 300ms interval", d)
	}
	r.expired(1) // a straggler of the same burst
	waitFor(t, func() bool { return frees.Load() == 3 })
	time.Sleep(1200 * time.Millisecond) // past three intervals
	r.expired(1)
	time.Sleep(400 * time.Millisecond)
	if n := frees.Load(); n != 3 {
		t.Errorf("%d releases, want 3: one series, long after a burst, calls for none", n)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
