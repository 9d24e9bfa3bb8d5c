package prometheus

import (
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

// Record of one pause of a live process whose series exist: the
// exporter's share of the agent's cost per pause. No allocation.
func BenchmarkRecordPause(b *testing.B) {
	goPause := stopping(pause(42, "svc", agent.KindOther, "ReadMemStats", 40*time.Microsecond), 5*time.Microsecond)
	goPause.Start = time.Now()
	pyPause := agent.Event{Type: agent.Pause, Start: time.Now(), Duration: 300 * time.Microsecond,
		Process: agent.Process{PID: 43, Runtime: "python", Method: "usdt", Service: "py"},
		Kind:    agent.KindGC, Reason: "gen0", Collected: 12, CollectedKnown: true,
		ThreadCPU: 250 * time.Microsecond, ThreadCPUKnown: true}
	for _, tt := range []struct {
		name string
		e    agent.Event
	}{{"go", goPause}, {"python", pyPause}} {
		b.Run(tt.name, func(b *testing.B) {
			x := New(Options{})
			x.Record(tt.e)
			b.ReportAllocs()
			for b.Loop() {
				x.Record(tt.e)
			}
		})
	}
}
