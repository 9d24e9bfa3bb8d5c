package otlp

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pausewatch/pausewatch/agent"
)

// TestGCCPU: the GC CPU counter takes each method as the Prometheus one
// does (a GC pause's thread CPU, a CPUTime event's collector CPU), not a
// non-GC pause's; the process CPU counter takes CPUTime events.
func TestGCCPU(t *testing.T) {
	x, collect := manualExporter(t)
	p := agent.Process{PID: 10, Runtime: "jvm", Method: "usdt", Service: "checkout"}
	x.Record(agent.Event{Type: agent.CPUTime, Process: p, CPU: 3 * time.Second, GCCPU: time.Second, GCCPUMethod: agent.GCThreads})
	x.Record(agent.Event{Type: agent.Pause, Process: p, Kind: agent.KindGC, Reason: "G1CollectForAllocation",
		Duration: time.Second, ThreadCPU: 250 * time.Millisecond, ThreadCPUKnown: true})
	x.Record(agent.Event{Type: agent.Pause, Process: p, Kind: agent.KindOther, Reason: "Cleanup",
		Duration: time.Second, ThreadCPU: 100 * time.Millisecond, ThreadCPUKnown: true})

	rm := collect()
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[float64])
			if !ok || (m.Name != "pausewatch.gc.cpu.time" && m.Name != "pausewatch.process.cpu.time") {
				continue
			}
			for _, dp := range sum.DataPoints {
				method, _ := dp.Attributes.Value("pausewatch.gc.cpu.method")
				got[m.Name+" "+method.AsString()] += dp.Value
			}
		}
	}
	want := map[string]float64{"pausewatch.process.cpu.time ": 3, "pausewatch.gc.cpu.time gc_threads": 1, "pausewatch.gc.cpu.time pause_thread": 0.25}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
