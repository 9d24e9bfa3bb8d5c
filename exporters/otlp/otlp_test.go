package otlp

import (
	"strings"
	"testing"
	"time"
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
