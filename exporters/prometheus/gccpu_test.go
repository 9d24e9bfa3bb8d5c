package prometheus

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pausewatch/pausewatch/agent"
)

// TestGCCPU: the GC CPU counter takes the collector threads' CPU of
// CPUTime events and the pausing thread's CPU of GC pauses only (not of
// other safepoints, not unknown); the tax row divides them by the window
// and the process CPU; series expire with the service's.
func TestGCCPU(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	x := New(Options{Now: func() time.Time { return now }, SeriesTTL: time.Minute,
		Started: func(agent.Process) time.Time { return t0 }})
	p := agent.Process{PID: 7, StartTime: 1, Runtime: "jvm", Method: "usdt", Service: "svc"}
	pause := func(kind string, cpu time.Duration, known bool) agent.Event {
		return agent.Event{Type: agent.Pause, Process: p, Kind: kind, Reason: "r", Duration: 2 * cpu,
			ThreadCPU: cpu, ThreadCPUKnown: known}
	}
	for _, e := range []agent.Event{
		{Type: agent.CPUTime, Process: p, CPU: 4 * time.Second, GCCPU: time.Second, GCCPUMethod: agent.GCThreads},
		pause(agent.KindGC, 500*time.Millisecond, true),
		pause(agent.KindOther, 300*time.Millisecond, true), // a safepoint that is not a collection
		pause(agent.KindGC, 300*time.Millisecond, false),   // CPU unknown
	} {
		x.Record(e)
	}
	now = t0.Add(10 * time.Second)
	x.Record(agent.Event{Type: agent.CPUTime, Process: p, CPU: 4 * time.Second, GCCPU: time.Second, GCCPUMethod: agent.GCThreads})

	for method, want := range map[string]float64{agent.GCThreads: 2, agent.PauseThread: 0.5} {
		got := testutil.ToFloat64(x.cpuM.gc.WithLabelValues("jvm", method, "svc", "", "", ""))
		if got != want {
			t.Errorf("gc cpu %s = %v, want %v", method, got, want)
		}
	}
	if got := testutil.ToFloat64(x.cpuM.proc.WithLabelValues("jvm", "svc", "", "", "")); got != 8 {
		t.Errorf("process cpu = %v, want 8", got)
	}
	// Described and collected by the exporter, not only held in its vectors.
	if n := testutil.CollectAndCount(x, "pausewatch_gc_cpu_seconds_total", "pausewatch_process_cpu_seconds_total"); n != 3 {
		t.Errorf("the exporter serves %d CPU series, want 3 (two GC methods, the process)", n)
	}
	rows := x.TaxSummaries()
	if len(rows) != 1 {
		t.Fatalf("tax rows %+v", rows)
	}
	r := rows[0]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if r.Window != 10 || !near(r.GCCPUSeconds, 2.5) || r.CPUSeconds != 8 || !near(r.GCCores, 0.25) ||
		!near(r.Cores, 0.8) || !near(r.CoresWithoutGC, 0.55) || !near(r.GCShare, 2.5/8) || !r.GCCPUKnown {
		t.Errorf("tax row %+v", r)
	}
	// Paused 2*(0.5+0.3+0.3) = 2.2 s of 10 s watched.
	if !near(r.WallStoppedShare, 0.22) {
		t.Errorf("wall stopped share %v, want 0.22", r.WallStoppedShare)
	}

	x.Record(agent.Event{Type: agent.Exit, Process: p})
	now = now.Add(2 * time.Minute)
	scrape(x)
	if n := testutil.CollectAndCount(x.cpuM.gc) + testutil.CollectAndCount(x.cpuM.proc); n != 0 || len(x.cpu) != 0 {
		t.Errorf("%d CPU series (%d kept) after the service expired", n, len(x.cpu))
	}
}
