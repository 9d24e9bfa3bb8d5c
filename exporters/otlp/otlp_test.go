package otlp

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pausewatch/pausewatch/agent"
)

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		general, metrics string
		want, err        string
	}{
		{"", "", "http/protobuf", ""},
		{"grpc", "", "grpc", ""},
		{"grpc", "http/protobuf", "http/protobuf", ""}, // the per-signal variable wins
		{"http/json", "", "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"", "thrift", "", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"},
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.general)
		t.Setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", tc.metrics)
		got, err := protocol("METRICS")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: err %v, want one naming %s", tc.general, tc.metrics, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q/%q: %q %v, want %q", tc.general, tc.metrics, got, err, tc.want)
		}
	}
}

func TestEnabled(t *testing.T) {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		t.Setenv(v, "")
	}
	if Enabled() {
		t.Fatal("enabled without an endpoint: nothing may be sent")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318/v1/logs")
	if !Enabled() {
		t.Fatal("a per-signal endpoint must turn export on")
	}
}

func TestLogRateLimit(t *testing.T) {
	x := &Exporter{opts: Options{LogRate: 10, LogBurst: 5}, buckets: map[uint32]*bucket{}}
	t0 := time.Unix(0, 0)
	n := 0
	for range 100 { // a burst: only LogBurst pass
		if x.allow(1, t0) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("burst: %d allowed, want 5", n)
	}
	if !x.allow(2, t0) {
		t.Error("another process has its own bucket")
	}
	// One second later, LogRate more.
	n = 0
	for range 100 {
		if x.allow(1, t0.Add(time.Second)) {
			n++
		}
	}
	if n != 5 { // refilled to the burst cap (10/s for 1 s, capped at 5)
		t.Errorf("after 1s: %d allowed, want 5", n)
	}
}

// manualExporter returns an exporter that drops its logs, shut down when
// the test ends, and collect, which reads its metrics when called.
func manualExporter(t *testing.T) (x *Exporter, collect func() metricdata.ResourceMetrics) {
	t.Helper()
	ctx := context.Background()
	var reader *sdkmetric.ManualReader
	x, err := New(ctx, Options{LogProcessor: discardLogs{}, MetricReader: func(p sdkmetric.Producer) sdkmetric.Reader {
		reader = sdkmetric.NewManualReader(sdkmetric.WithProducer(p))
		return reader
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Shutdown(ctx) })
	return x, func() metricdata.ResourceMetrics {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		return rm
	}
}

type discardLogs struct{}

func (discardLogs) Enabled(context.Context, sdklog.EnabledParameters) bool { return false }
func (discardLogs) OnEmit(context.Context, *sdklog.Record) error           { return nil }
func (discardLogs) Shutdown(context.Context) error                         { return nil }
func (discardLogs) ForceFlush(context.Context) error                       { return nil }

// pausewatch.pause.stopping gets the stopping time of the pauses that report
// it, without the reason, and nothing from the others.
func TestStoppingTime(t *testing.T) {
	x, collect := manualExporter(t)
	p := agent.Process{PID: 10, Runtime: "go", Method: "uprobe", Service: "checkout"}
	x.Record(agent.Event{Type: agent.Pause, Process: p, Kind: "gc", Reason: "GC mark termination", Duration: time.Millisecond, Stopping: 300 * time.Microsecond})
	x.Record(agent.Event{Type: agent.Pause, Process: p, Kind: "gc", Reason: "GC sweep termination", Duration: time.Millisecond, Stopping: 100 * time.Microsecond})
	x.Record(agent.Event{Type: agent.Pause, Process: p, Kind: "other", Reason: "read mem stats", Duration: time.Millisecond})
	x.Record(agent.Event{Type: agent.PauseTotals, Process: p, Kind: "other", Count: 2, Duration: time.Millisecond, Stopping: time.Millisecond})

	rm := collect()
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "pausewatch.pause.stopping" {
				continue
			}
			found = true
			if m.Unit != "s" {
				t.Errorf("unit %q, want s", m.Unit)
			}
			d, ok := m.Data.(metricdata.ExponentialHistogram[float64])
			if !ok {
				t.Fatalf("data %T, want an exponential histogram", m.Data)
			}
			if len(d.DataPoints) != 1 {
				t.Fatalf("%d data points, want 1 (gc, both reasons)", len(d.DataPoints))
			}
			dp := d.DataPoints[0]
			if dp.Count != 2 || math.Abs(dp.Sum-400e-6) > 1e-12 {
				t.Errorf("count %d sum %v, want 2 and 0.0004", dp.Count, dp.Sum)
			}
			if v, _ := dp.Attributes.Value("pausewatch.pause.kind"); v.AsString() != "gc" {
				t.Errorf("kind %q, want gc", v.AsString())
			}
			if dp.Attributes.HasValue("pausewatch.pause.reason") {
				t.Error("stopping time carries the reason")
			}
		}
	}
	if !found {
		t.Error("no pausewatch.pause.stopping")
	}
}

// A process's attribute sets are made once, and made again when its
// identity changes (its pod found after its first pauses) or its pid is
// reused: each pause is counted under the identity it came with.
func TestPauseSetsFollowIdentity(t *testing.T) {
	x, collect := manualExporter(t)
	p := agent.Process{PID: 10, Runtime: "go", Method: "uprobe", Service: "checkout"}
	pause := func(p agent.Process) agent.Event {
		return agent.Event{Type: agent.Pause, Process: p, Kind: "gc", Reason: "GC mark termination", Duration: time.Millisecond}
	}
	x.Record(pause(p))
	x.Record(pause(p))
	inPod := p
	inPod.Namespace, inPod.Pod, inPod.Service = "shop", "checkout-1", "checkout-svc"
	x.Record(pause(inPod))
	x.Record(agent.Event{Type: agent.Exit, Process: inPod})
	reused := agent.Process{PID: 10, Runtime: "go", Method: "uprobe", Service: "other"}
	x.Record(pause(reused))

	got := map[string]int64{}
	for _, sm := range collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "pausewatch.pause.count" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				svc, _ := dp.Attributes.Value("service.name")
				pod, _ := dp.Attributes.Value("k8s.pod.name")
				got[svc.AsString()+"/"+pod.AsString()] += dp.Value
			}
		}
	}
	want := map[string]int64{"checkout/": 2, "checkout-svc/checkout-1": 1, "other/": 1}
	if len(got) != len(want) {
		t.Errorf("pauses by service/pod = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("pauses of %s = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}
