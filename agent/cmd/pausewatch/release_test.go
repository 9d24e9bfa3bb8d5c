package main

import (
	"sync/atomic"
	"testing"
	"time"
)

// Below the threshold nothing is released; past it one release runs at
// once, the next not before the interval, and drops during a wait are
// covered by the release already scheduled.
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
	time.Sleep(400 * time.Millisecond)
	if n := frees.Load(); n != 2 {
		t.Errorf("%d releases, want 2", n)
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
