package otlp

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pausewatch/pausewatch/agent"
)

// Record of one pause, below the log threshold: the OTLP exporter's share
// of the agent's cost per pause when OTLP export is on.
func BenchmarkRecordPause(b *testing.B) {
	x, err := New(context.Background(), Options{LogThreshold: time.Hour, LogProcessor: discardLogs{},
		MetricReader: func(p sdkmetric.Producer) sdkmetric.Reader {
			return sdkmetric.NewManualReader(sdkmetric.WithProducer(p))
		}})
	if err != nil {
		b.Fatal(err)
	}
	e := agent.Event{Type: agent.Pause, Start: time.Now(), Duration: 40 * time.Microsecond, Stopping: 5 * time.Microsecond,
		Process: agent.Process{PID: 42, Runtime: "go", Method: "uprobe", Service: "svc"},
		Kind:    agent.KindOther, Reason: "ReadMemStats"}
	x.Record(e)
	b.ReportAllocs()
	for b.Loop() {
		x.Record(e)
	}
}
