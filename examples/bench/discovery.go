package main

// Discovery at scale: many Go processes started at once, the time until
// the agent tracks them all, and its memory with them.

import (
	"context"
	"fmt"
	"time"
)

func (b *bench) discovery(ctx context.Context) error {
	n := 200
	if b.quick {
		n = 20
	}
	a, err := b.startAgent(ctx)
	if err != nil {
		return err
	}
	defer a.stop()
	rss0, _, err := memory(a.pid)
	if err != nil {
		return err
	}
	// Started without waiting for each to say ready: all at once, as
	// when a node starts its workloads.
	t0 := time.Now()
	var hs []*helperProc
	var pids []int
	for range n {
		h, err := b.startHelperNoWait([]string{b.self, "-helper", "idle"}, "OTEL_SERVICE_NAME=bench-idle")
		if err != nil {
			return err
		}
		hs = append(hs, h)
		pids = append(pids, h.pid)
	}
	started := time.Since(t0)
	if err := a.waitTracked(2*time.Minute, pids...); err != nil {
		return err
	}
	all := time.Since(t0)
	rss, _, err := memory(a.pid)
	if err != nil {
		return err
	}
	for _, h := range hs {
		h.end()
	}
	b.progress("discovery: %d processes started in %v, all tracked after %v; agent RSS %d -> %d MiB", n, started, all, rss0>>20, rss>>20)
	b.add(fmt.Sprintf("discovery: %d processes started at once, all tracked after", n), all.Seconds(), "s",
		fmt.Sprintf("starting them took %.1f s", started.Seconds()))
	b.atMost(fmt.Sprintf("agent RSS with %d more processes tracked", n), float64(rss)/(1<<20), "MiB",
		fmt.Sprintf("%.0f MiB before them", float64(rss0)/(1<<20)), 30, true)
	return nil
}
