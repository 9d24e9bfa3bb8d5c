package prometheus

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pausewatch/pausewatch/agent"
)

// scrape collects every metric of x, as a scrape does.
func scrape(x *Exporter) {
	ch := make(chan prometheus.Metric)
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	x.Collect(ch)
	close(ch)
	<-done
}

// TestWallPausedShare: the report's share of time paused is pause time
// over the wall time the service's processes were watched (from their
// start, or the exporter's creation when older, to exit or now), whatever
// the requests do. The case: the share went 42 %, 84 %, 100 % as
// pauses went on after the load stopped; here it must fall instead.
func TestWallPausedShare(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at    time.Duration // after t0
		event agent.Event   // zero Type: no event, read the share
		want  float64       // the share read at this step (-1: no row)
	}
	proc := func(pid uint32, start uint64) agent.Process {
		return agent.Process{PID: pid, StartTime: start, Runtime: "go", Method: "uprobe", Service: "svc"}
	}
	pause := func(p agent.Process, d time.Duration) agent.Event {
		return agent.Event{Type: agent.Pause, Process: p, Kind: agent.KindGC, Reason: "GC", Duration: d}
	}
	req := func(p agent.Process, at time.Duration) agent.Event {
		return counted(agent.Event{Type: agent.Request, Process: p, Port: 8080, Start: t0.Add(at), Duration: time.Millisecond}, 0)
	}
	exit := func(p agent.Process) agent.Event { return agent.Event{Type: agent.Exit, Process: p} }
	read := func(at time.Duration, want float64) step { return step{at: at, want: want} }
	// Process start times, in ticks: started maps them to wall time.
	a, b, old := proc(1, 1000), proc(2, 2000), proc(3, 3000)
	started := map[uint64]time.Time{1000: t0, 2000: t0.Add(10 * time.Second), 3000: t0.Add(-time.Hour)}

	for _, tc := range []struct {
		name    string
		created time.Duration // the exporter's creation, after t0
		pidOpt  bool
		steps   []step
	}{
		{
			name: "load stops, pauses go on: the share falls as wall time grows",
			steps: []step{
				{at: time.Second, event: req(a, time.Second)},
				{at: 2 * time.Second, event: pause(a, 100*time.Millisecond)},
				{at: 2 * time.Second, event: req(a, 2*time.Second)},
				read(2*time.Second, 0.05), // 100 ms of 2 s since the start
				{at: 5 * time.Second, event: pause(a, 100*time.Millisecond)},
				read(5*time.Second, 0.04), // 200 ms of 5 s, though no request since 2 s
				read(10*time.Second, 0.02),
			},
		},
		{
			name: "an exited process's share stays put",
			steps: []step{
				{at: time.Second, event: req(a, time.Second)},
				{at: 4 * time.Second, event: pause(a, 400*time.Millisecond)},
				{at: 8 * time.Second, event: exit(a)},
				read(8*time.Second, 0.05),
				read(100*time.Second, 0.05),
			},
		},
		{
			name: "processes of a service add up: pause over summed wall time",
			steps: []step{
				{at: 10 * time.Second, event: req(a, 10*time.Second)},
				{at: 10 * time.Second, event: pause(a, 300*time.Millisecond)},
				{at: 20 * time.Second, event: pause(b, 300*time.Millisecond)}, // b started at 10 s
				read(20*time.Second, 0.02),                                    // 600 ms of 20 s + 10 s
			},
		},
		{
			name:    "a process older than the agent counts from the agent's start",
			created: 50 * time.Second,
			steps: []step{
				{at: 60 * time.Second, event: req(old, 60*time.Second)},
				{at: 60 * time.Second, event: pause(old, 500*time.Millisecond)},
				read(60*time.Second, 0.05), // 500 ms of 10 s, not of its hour
			},
		},
		{
			name:   "with pid labels, one row per process",
			pidOpt: true,
			steps: []step{
				{at: 20 * time.Second, event: req(b, 20*time.Second)},
				{at: 20 * time.Second, event: pause(a, 2*time.Second)}, // a's pauses are not b's
				{at: 20 * time.Second, event: pause(b, 100*time.Millisecond)},
				read(20*time.Second, 0.01), // b: 100 ms of 10 s
			},
		},
		{
			name: "a service whose series expired starts again",
			steps: []step{
				{at: time.Second, event: req(a, time.Second)},
				{at: time.Second, event: pause(a, 500*time.Millisecond)},
				{at: 10 * time.Second, event: exit(a)},
				read(10*time.Second, 0.05),
				read(3*time.Hour, -1), // past --series-ttl: no row
				// A new process of it, started at 3 h (started() does not
				// know ticks 9000: from its first event on).
				{at: 3 * time.Hour, event: req(proc(9, 9000), 3*time.Hour)},
				{at: 3*time.Hour + 10*time.Second, event: pause(proc(9, 9000), 100*time.Millisecond)},
				read(3*time.Hour+10*time.Second, 0.01),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(tc.created)
			x := New(Options{PIDLabel: tc.pidOpt, SeriesTTL: time.Hour, Now: func() time.Time { return now },
				Started: func(p agent.Process) time.Time { return started[p.StartTime] }})
			for i, s := range tc.steps {
				now = t0.Add(s.at)
				if s.event.Type != 0 {
					x.Record(s.event)
					continue
				}
				scrape(x) // expiry runs at scrape time too
				rows := x.RequestSummaries()
				if s.want < 0 {
					if len(rows) != 0 {
						t.Fatalf("step %d: %d rows, want none (expired)", i, len(rows))
					}
					continue
				}
				if len(rows) != 1 {
					t.Fatalf("step %d: %d rows, want 1: %+v", i, len(rows), rows)
				}
				if got := rows[0].WallPausedShare; math.Abs(got-s.want) > 1e-9 {
					t.Fatalf("step %d at %v: share %.4f, want %.4f", i, s.at, got, s.want)
				}
			}
		})
	}
}
