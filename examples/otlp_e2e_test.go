package examples

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

// The OpenTelemetry Collector's own OTLP receiver, in this test process,
// on both protocols.
func startReceiver(t *testing.T, grpcAddr, httpAddr string) (*consumertest.MetricsSink, *consumertest.LogsSink) {
	t.Helper()
	ctx := context.Background()
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = grpcAddr
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = httpAddr
	ms, ls := new(consumertest.MetricsSink), new(consumertest.LogsSink)
	set := receivertest.NewNopSettings(f.Type())
	mr, err := f.CreateMetrics(ctx, set, cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := f.CreateLogs(ctx, set, cfg, ls)
	if err != nil {
		t.Fatal(err)
	}
	host := componenttest.NewNopHost()
	if err := mr.Start(ctx, host); err != nil {
		t.Fatal(err)
	}
	if err := lr.Start(ctx, host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mr.Shutdown(ctx); lr.Shutdown(ctx) })
	return ms, ls
}

func strAttr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// otlpPauseCount is the received count of pausewatch.pause.duration for a
// service: cumulative temporality, so the newest point of each series.
func otlpPauseCount(ms *consumertest.MetricsSink, service string) (count uint64, exponential bool) {
	latest := map[string]uint64{}
	for _, md := range ms.AllMetrics() {
		rms := md.ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			sms := rms.At(i).ScopeMetrics()
			for j := 0; j < sms.Len(); j++ {
				mets := sms.At(j).Metrics()
				for k := 0; k < mets.Len(); k++ {
					m := mets.At(k)
					if m.Name() != "pausewatch.pause.duration" || m.Type() != pmetric.MetricTypeExponentialHistogram {
						continue
					}
					exponential = true
					dps := m.ExponentialHistogram().DataPoints()
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						if strAttr(dp.Attributes(), "service.name") != service {
							continue
						}
						latest[fmt.Sprint(dp.Attributes().AsRaw())] = dp.Count()
					}
				}
			}
		}
	}
	for _, c := range latest {
		count += c
	}
	return count, exponential
}

// otlpPauseLogs counts the pause log records of a service and checks each
// carries what a pause record must.
func otlpPauseLogs(t *testing.T, ls *consumertest.LogsSink, service string) int {
	t.Helper()
	n := 0
	for _, ld := range ls.AllLogs() {
		rls := ld.ResourceLogs()
		for i := 0; i < rls.Len(); i++ {
			sls := rls.At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					lr := lrs.At(k)
					if lr.EventName() != "pausewatch.pause" || strAttr(lr.Attributes(), "service.name") != service {
						continue
					}
					n++
					for _, key := range []string{"pausewatch.pause.duration", "pausewatch.pause.kind", "pausewatch.pause.reason",
						"process.runtime.name", "process.pid"} {
						if _, ok := lr.Attributes().Get(key); !ok {
							t.Errorf("log record without %s: %v", key, lr.Attributes().AsRaw())
							return n
						}
					}
					if lr.Timestamp() == 0 {
						t.Errorf("log record without a timestamp (the pause start)")
						return n
					}
				}
			}
		}
	}
	return n
}

func TestOTLPExport(t *testing.T) {
	requireRoot(t)
	ms, ls := startReceiver(t, "127.0.0.1:19611", "127.0.0.1:19612")
	for _, tc := range []struct{ protocol, endpoint string }{
		{"grpc", "http://127.0.0.1:19611"},
		{"http/protobuf", "http://127.0.0.1:19612"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + tc.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + tc.protocol,
				"OTEL_METRIC_EXPORT_INTERVAL=500", "OTEL_BLRP_SCHEDULE_DELAY=200"}
			a := startAgentEnv(t, 19621, env, "--otlp-log-rate", "1000000", "--otlp-log-burst", "1000000")
			service := "otlp-" + tc.protocol
			c := startChurn(t, buildChurn(t, "", false), service, "gc", 1)
			a.waitTracked(t, c.pid, c.started)
			c.run(t)
			promN, _ := a.settledPauses(t, map[string]string{"service": service})
			var got uint64
			var exp bool
			var logs int
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
				got, exp = otlpPauseCount(ms, service)
				logs = otlpPauseLogs(t, ls, service)
				if float64(got) == promN && float64(logs) == promN {
					break
				}
			}
			t.Logf("%s: Prometheus %v pauses; OTLP histogram count %d (exponential %v), %d log records", tc.protocol, promN, got, exp, logs)
			if promN < 20 {
				t.Fatalf("only %v pauses", promN)
			}
			if float64(got) != promN || !exp {
				t.Errorf("OTLP pause histogram count %d (exponential %v), Prometheus %v", got, exp, promN)
			}
			if float64(logs) != promN {
				t.Errorf("%d pause log records, want one per pause (%v)", logs, promN)
			}
			a.cmd.Process.Signal(syscall.SIGTERM)
		})
	}
}
