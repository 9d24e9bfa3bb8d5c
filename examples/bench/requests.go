package main

// Per-request cost: each runtime's example server saturated by wrk, in
// rounds without and with the agent interleaved (w a w a ... w), so that
// each with-round sits between two without-rounds and slow drifts of the
// machine cancel. In each with-round, the agent's CPU time (utime+stime)
// and the run time of every BPF program it holds are divided by the
// requests the client got answered, less the agent's background: the
// same readings over idle windows just before and after, scaled to the window
// (the agent tracks every process on the machine, and on a shared
// machine those cost it too).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// roundCost is one with-agent round.
type roundCost struct {
	wrk        wrkResult
	agentReqs  float64
	cpu        time.Duration
	bpf        map[string]progStat
	wall       time.Duration
	gcPause    float64 // s the agent's own GC stopped it
	rss, peak  int64
	anon, file int64 // of rss: heap and stacks; the executable's pages
	// The agent's background just before the window, with no request of
	// ours: what the rest of the machine (every process it tracks) costs
	// it, per second of wall time.
	idleCPU float64 // s/s
	idleBPF float64 // ns/s
}

// netCPU and netBPF are the window's cost less the background, µs per
// request.
func (c roundCost) netCPU() float64 {
	return (c.cpu.Seconds() - c.idleCPU*c.wall.Seconds()) * 1e6 / float64(c.wrk.requests)
}

func (c roundCost) netBPF() float64 {
	_, ns := total(c.bpf)
	return (float64(ns) - c.idleBPF*c.wall.Seconds()) / 1e3 / float64(c.wrk.requests)
}

func (b *bench) requestCosts(ctx context.Context) error {
	runtimes := []string{"go", "jvm", "python"}
	rounds, d := 4, 5*time.Second
	if b.quick {
		runtimes, rounds, d = []string{"go"}, 1, 2*time.Second
	}
	for _, rt := range runtimes {
		if err := b.requestCost(ctx, rt, rounds, d); err != nil {
			return fmt.Errorf("%s: %w", rt, err)
		}
	}
	return nil
}

func (b *bench) requestCost(ctx context.Context, rt string, rounds int, d time.Duration) error {
	if rt == "jvm" {
		if _, err := exec.LookPath("java"); err != nil {
			b.details = append(b.details, "JVM: not measured: java is not installed.")
			return nil
		}
	}
	service := "bench-" + rt
	srv, err := b.startServer(ctx, rt, service)
	if err != nil {
		return err
	}
	// Warm up without the agent: the JVM compiles its hot paths, every
	// server grows its buffers.
	warm := 2 * time.Second
	if rt == "jvm" {
		warm = 8 * time.Second
	}
	if _, err := b.wrk(ctx, srv.url, warm, 16, ""); err != nil {
		return err
	}
	var without []wrkResult
	var with []roundCost
	for i := 0; ; i++ {
		r, err := b.wrk(ctx, srv.url, d, 16, "")
		if err != nil {
			return err
		}
		without = append(without, r)
		b.progress("%s round %d without agent: %.0f req/s, p99 %.2f ms", rt, i, r.rps, r.p99)
		if i == rounds {
			break
		}
		c, err := b.withAgent(ctx, srv, d)
		if err != nil {
			return err
		}
		with = append(with, c)
		b.progress("%s round %d with agent: %.0f req/s, p99 %.2f ms, agent %v CPU, %d/%.0f requests",
			rt, i, c.wrk.rps, c.wrk.p99, c.cpu, c.wrk.requests, c.agentReqs)
	}

	name := map[string]string{"go": "Go", "jvm": "JVM", "python": "Python"}[rt]
	var cpuPer, bpfPer, cpuNet, bpfNet, idle, rates, counts, rps, p99 []float64
	progs := map[string]progStat{}
	var reqs int64
	for i, c := range with {
		n := float64(c.wrk.requests)
		reqs += c.wrk.requests
		cpuPer = append(cpuPer, c.cpu.Seconds()*1e6/n)
		_, ns := total(c.bpf)
		bpfPer = append(bpfPer, float64(ns)/1e3/n)
		cpuNet = append(cpuNet, c.netCPU())
		bpfNet = append(bpfNet, c.netBPF())
		idle = append(idle, 100*c.idleCPU)
		rates = append(rates, c.wrk.rps)
		counts = append(counts, 100*(c.agentReqs-n)/n)
		rps = append(rps, c.wrk.rps/((without[i].rps+without[i+1].rps)/2))
		p99 = append(p99, c.wrk.p99/((without[i].p99+without[i+1].p99)/2))
		for k, s := range c.bpf {
			t := progs[k]
			t.name, t.runs, t.ns = k, t.runs+s.runs, t.ns+s.ns
			progs[k] = t
		}
	}
	var noiseRPS, noiseP99 []float64
	for i := 1; i < len(without); i++ {
		noiseRPS = append(noiseRPS, without[i].rps/without[i-1].rps)
		noiseP99 = append(noiseP99, without[i].p99/without[i-1].p99)
	}
	rate := median(rates)
	b.atMostNet(name+": agent CPU per request", cpuNet, "µs",
		fmt.Sprintf("%s at %.0f req/s, net of the background; %s µs with it", spread(cpuNet), rate, num(median(cpuPer))), 1)
	b.atMostNet(name+": BPF per request", bpfNet, "µs",
		fmt.Sprintf("%s, net of the background; %s µs with it", spread(bpfNet), num(median(bpfPer))), 1.5)
	b.add(name+": agent CPU with no request of ours (the background)", median(idle), "% of a core",
		spread(idle)+"; the other processes on the machine it tracks")
	if rt == "go" {
		b.atLeast(name+": request rate the cost was measured at", rate, "req/s", spread(rates), 10000)
	}
	b.within(name+": requests counted by the agent vs the client", worst(counts), "%", fmt.Sprintf("worst of %d rounds, %d requests", len(counts), reqs), 1)
	b.add(name+": throughput with/without the agent", median(rps), "",
		fmt.Sprintf("%s; noise floor without/without %s", spread(rps), spread(noiseRPS)))
	b.add(name+": p99 with/without the agent", median(p99), "",
		fmt.Sprintf("%s; noise floor without/without %s; p99 without %.2f ms", spread(p99), spread(noiseP99), median(p99sOf(without))))

	b.details = append(b.details, progTable(name, progs, float64(reqs)))
	if rt == "go" {
		var gc, wall float64
		var top roundCost
		for _, c := range with {
			gc += c.gcPause
			wall += c.wall.Seconds()
			if c.peak > top.peak {
				top = c
			}
		}
		b.atMost("agent RSS, peak under the Go load", float64(top.peak)/(1<<20), "MiB",
			fmt.Sprintf("at the round's end %.0f MiB: %.0f anonymous, %.0f file-backed (the executable)",
				float64(top.rss)/(1<<20), float64(top.anon)/(1<<20), float64(top.file)/(1<<20)), 30, true)
		b.add("agent's own GC pauses, share of its time under the Go load", 100*gc/wall, "%", "go_gc_duration_seconds")
		if !b.quick {
			if err := b.profile(ctx, srv, d); err != nil {
				return fmt.Errorf("profile: %w", err)
			}
		}
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	return nil
}

// withAgent is one with-agent round: the agent starts (as a fresh
// process each round: the without-rounds have none), tracks the server,
// sees a warm-up, then the measured window runs.
func (b *bench) withAgent(ctx context.Context, srv *server, d time.Duration) (roundCost, error) {
	var c roundCost
	a, err := b.startAgent(ctx)
	if err != nil {
		return c, err
	}
	defer a.stop()
	if err := a.waitTracked(30*time.Second, srv.pid); err != nil {
		return c, err
	}
	// Connections wrk opens from now on are the agent's to see.
	if _, err := b.wrk(ctx, srv.url, time.Second, 16, ""); err != nil {
		return c, err
	}
	reqs := func() (float64, error) { return a.requests(srv.service, srv.port) }
	n0, err := settled(reqs)
	if err != nil {
		return c, err
	}
	mfs, err := a.scrape()
	if err != nil {
		return c, err
	}
	gc0 := sum(mfs, "go_gc_duration_seconds", "sum", nil)
	names := map[uint32]string{}
	reading := func() (p map[uint32]progStat, cpu time.Duration, t time.Time, err error) {
		if p, err = bpfPrograms(a.pid, names); err != nil {
			return nil, 0, t, err
		}
		cpu, err = cpuTime(a.pid)
		return p, cpu, time.Now(), err
	}
	pi, cpui, ti, err := reading()
	if err != nil {
		return c, err
	}
	time.Sleep(d / 2)
	p0, cpu0, t0, err := reading()
	if err != nil {
		return c, err
	}
	if c.wrk, err = b.wrk(ctx, srv.url, d, 16, ""); err != nil {
		return c, err
	}
	// The agent's share of the window includes draining what the last
	// requests left in the ring buffer.
	time.Sleep(500 * time.Millisecond)
	p1, cpu1, t1, err := reading()
	if err != nil {
		return c, err
	}
	c.wall = t1.Sub(t0)
	c.cpu = cpu1 - cpu0
	c.bpf = bpfDelta(p0, p1)
	// The background again after the window: around it, not only
	// before, so that a drift of the machine's other work cancels.
	time.Sleep(d / 2)
	p2, cpu2, t2, err := reading()
	if err != nil {
		return c, err
	}
	idleWall := t0.Sub(ti).Seconds() + t2.Sub(t1).Seconds()
	c.idleCPU = ((cpu0 - cpui) + (cpu2 - cpu1)).Seconds() / idleWall
	_, before := total(bpfDelta(pi, p0))
	_, after := total(bpfDelta(p1, p2))
	c.idleBPF = float64(before+after) / idleWall
	n1, err := settled(reqs)
	if err != nil {
		return c, err
	}
	c.agentReqs = n1 - n0
	if mfs, err = a.scrape(); err != nil {
		return c, err
	}
	c.gcPause = sum(mfs, "go_gc_duration_seconds", "sum", nil) - gc0
	m, err := status(a.pid, "VmRSS", "VmHWM", "RssAnon", "RssFile")
	c.rss, c.peak, c.anon, c.file = m["VmRSS"], m["VmHWM"], m["RssAnon"], m["RssFile"]
	return c, err
}

// profile is a CPU profile of the agent during one more with-agent
// window (not one of the measured rounds: profiling costs CPU too), its
// top functions by own time.
func (b *bench) profile(ctx context.Context, srv *server, d time.Duration) error {
	a, err := b.startAgent(ctx, "--pprof")
	if err != nil {
		return err
	}
	defer a.stop()
	if err := a.waitTracked(30*time.Second, srv.pid); err != nil {
		return err
	}
	secs := int(d.Seconds())
	prof := make(chan error, 1)
	file := filepath.Join(b.work, "agent.pprof")
	go func() {
		body, err := a.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
		if err == nil {
			err = os.WriteFile(file, body, 0o644)
		}
		prof <- err
	}()
	if _, err := b.wrk(ctx, srv.url, d+time.Second, 16, ""); err != nil {
		return err
	}
	if err := <-prof; err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", b.agentBin, file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	// Keep the summary line and the table, not the file names.
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	b.details = append(b.details, fmt.Sprintf("Agent CPU profile under the Go load (%d s, `go tool pprof -top`):\n\n```\n%s\n```", secs, strings.Join(keep, "\n")))
	return nil
}

// progTable is the BPF time of each program over the with-agent rounds,
// per request served, largest first.
func progTable(name string, progs map[string]progStat, reqs float64) string {
	ps := make([]progStat, 0, len(progs))
	var all uint64
	for _, p := range progs {
		if p.runs > 0 {
			ps = append(ps, p)
			all += p.ns
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].ns > ps[j].ns })
	var s strings.Builder
	fmt.Fprintf(&s, "BPF time per program under the %s load (all with-agent rounds, %.0f requests; bpf_stats run time of the programs the agent holds, background included):\n\n", name, reqs)
	fmt.Fprintln(&s, "| program | runs per request | ns per run | µs per request | share |")
	fmt.Fprintln(&s, "|---|---|---|---|---|")
	for _, p := range ps {
		fmt.Fprintf(&s, "| %s | %s | %.0f | %s | %.0f %% |\n", p.name, num(float64(p.runs)/reqs), float64(p.ns)/float64(p.runs),
			num(float64(p.ns)/1e3/reqs), 100*float64(p.ns)/float64(max(all, 1)))
	}
	return strings.TrimRight(s.String(), "\n")
}

func p99sOf(rs []wrkResult) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, r.p99)
	}
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "min..max over n", or "1 round".
func spread(v []float64) string {
	switch len(v) {
	case 0:
		return "none"
	case 1:
		return "1 round"
	}
	return fmt.Sprintf("%s..%s over %d", num(slices.Min(v)), num(slices.Max(v)), len(v))
}

// worst is the value farthest from zero.
func worst(v []float64) float64 {
	w := 0.0
	for _, x := range v {
		if max(x, -x) > max(w, -w) {
			w = x
		}
	}
	return w
}
