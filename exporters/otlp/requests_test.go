package otlp

import (
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pausewatch/pausewatch/agent"
)

// The kernel's counts become an exponential histogram of scale 3 whose
// buckets are the SDK's own for the same values (OTLP bucket j holds
// (2^(j/8), 2^((j+1)/8)]), summed across reads, with the pause time and
// the breaches on their counters.
func TestRequestHistogram(t *testing.T) {
	x, collect := manualExporter(t)
	p := agent.Process{PID: 10, Runtime: "go", Method: "uprobe", Service: "checkout"}
	durs := []time.Duration{time.Millisecond, time.Millisecond, 3 * time.Millisecond, 250 * time.Millisecond}
	for _, d := range durs { // one read each
		h := &agent.RequestHists{}
		h.Observe(agent.Event{Type: agent.Request, Duration: d}, 100*time.Millisecond)
		x.Record(agent.Event{Type: agent.RequestCounts, Process: p, Port: 8080, Requests: h})
	}
	rm := collect()
	var dp *metricdata.ExponentialHistogramDataPoint[float64]
	breaches := int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "pausewatch.request.duration":
				d, ok := m.Data.(metricdata.ExponentialHistogram[float64])
				if !ok || len(d.DataPoints) != 1 {
					t.Fatalf("request duration: %T with %d points, want one exponential data point", m.Data, len(d.DataPoints))
				}
				dp = &d.DataPoints[0]
			case "pausewatch.slo.breaches":
				for _, pt := range m.Data.(metricdata.Sum[int64]).DataPoints {
					breaches += pt.Value
				}
			}
		}
	}
	if dp == nil {
		t.Fatal("no pausewatch.request.duration")
	}
	if dp.Count != 4 || math.Abs(dp.Sum-0.255) > 1e-9 || dp.Scale != 3 {
		t.Errorf("count %d sum %v scale %d, want 4, 0.255, 3", dp.Count, dp.Sum, dp.Scale)
	}
	want := map[int32]uint64{}
	for _, d := range durs {
		// The upper-inclusive bucket of v: ceil(log2(v)*8) - 1.
		want[int32(math.Ceil(math.Log2(d.Seconds())*8))-1]++
	}
	got := map[int32]uint64{}
	for i, c := range dp.PositiveBucket.Counts {
		if c > 0 {
			got[dp.PositiveBucket.Offset+int32(i)] = c
		}
	}
	if len(got) != len(want) {
		t.Fatalf("buckets %v, want %v", got, want)
	}
	for j, c := range want {
		if got[j] != c {
			t.Errorf("bucket %d: %d, want %d (all: %v)", j, got[j], c, got)
		}
	}
	if v, _ := dp.Max.Value(); v != 0.25 {
		t.Errorf("max %v, want 0.25", v)
	}
	if breaches != 1 {
		t.Errorf("%d breaches, want 1 (250 ms over 100 ms)", breaches)
	}
}
