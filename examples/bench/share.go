package main

// The agent's share of a core on a busy node: the Go server saturated by
// wrk while several Go processes stop the world about 100 times a second
// between them. The budget is at 10k requests/s; a loaded
// 2-core machine may not reach it (wrk cannot pace: its Lua delay()
// collapses to ~1k/s here, and a Go open-loop client costs the server
// its core), so the share is also given scaled to 10k/s, in proportion
// to requests, which overstates the part that pauses and idle cost.

import (
	"context"
	"fmt"
	"time"
)

const (
	pausers    = 4
	pauserRate = 25 // pauses/s each
)

func (b *bench) busyShare(ctx context.Context) error {
	d := 10 * time.Second
	if b.quick {
		d = 2 * time.Second
	}
	srv, err := b.startServer(ctx, "go", "bench-share")
	if err != nil {
		return err
	}
	var hs []*helperProc
	pids := []int{srv.pid}
	for range pausers {
		h, err := b.startHelper([]string{b.self, "-helper", "memstats"}, "OTEL_SERVICE_NAME=bench-pauser",
			fmt.Sprintf("HELPER_RATE=%d", pauserRate), "HELPER_SECONDS=3600")
		if err != nil {
			return err
		}
		hs = append(hs, h)
		pids = append(pids, h.pid)
	}
	a, err := b.startAgent(ctx)
	if err != nil {
		return err
	}
	defer a.stop()
	if err := a.waitTracked(30*time.Second, pids...); err != nil {
		return err
	}
	for _, h := range hs {
		if err := h.write("go\n"); err != nil {
			return err
		}
	}
	if _, err := b.wrk(ctx, srv.url, time.Second, 16, ""); err != nil {
		return err
	}
	mfs, err := a.scrape()
	if err != nil {
		return err
	}
	pause0 := sum(mfs, "pausewatch_pauses_total", "", map[string]string{"service": "bench-pauser"})
	cpu0, err := cpuTime(a.pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	r, err := b.wrk(ctx, srv.url, d, 16, "")
	if err != nil {
		return err
	}
	cpu1, err := cpuTime(a.pid)
	if err != nil {
		return err
	}
	wall := time.Since(t0)
	if mfs, err = a.scrape(); err != nil {
		return err
	}
	pauses := sum(mfs, "pausewatch_pauses_total", "", map[string]string{"service": "bench-pauser"}) - pause0
	_, peak, err := memory(a.pid)
	if err != nil {
		return err
	}
	share := 100 * (cpu1 - cpu0).Seconds() / wall.Seconds()
	b.progress("busy node: agent %.2f %% of a core at %.0f req/s, %.0f pauses/s", share, r.rps, pauses/wall.Seconds())
	b.add("agent CPU on a busy node, share of one core", share, "%",
		fmt.Sprintf("at %.0f req/s and %.0f pauses/s from %d processes, the background included", r.rps, pauses/wall.Seconds(), pausers))
	b.atMost("the same, scaled to 10k req/s", share*10000/r.rps, "%", "in proportion to requests", 1, true)
	b.atMost("agent RSS, peak on the busy node", float64(peak)/(1<<20), "MiB", "", 30, true)
	return nil
}
