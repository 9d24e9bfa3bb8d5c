// Package exporters_test drives agent.Events with arbitrary strings,
// durations, ports and types through every exporter at once: what a
// watched process chooses must never crash the agent nor reach a label,
// an attribute or a JSON answer unsanitised (issue 9).
package exporters_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/exporters/otlp"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// checkValue fails unless s is what agent.LabelValue promises.
func checkValue(t *testing.T, where, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s: %q is not valid UTF-8", where, s)
	}
	if len(s) > agent.MaxLabelBytes {
		t.Errorf("%s: %q is %d bytes, over %d", where, s, len(s), agent.MaxLabelBytes)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Errorf("%s: %q holds %U", where, s, r)
		}
	}
}

// logRecorder is an OTLP log processor that keeps the records emitted.
type logRecorder struct {
	mu      sync.Mutex
	records []sdklog.Record
}

func (l *logRecorder) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (l *logRecorder) OnEmit(_ context.Context, r *sdklog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) Shutdown(context.Context) error   { return nil }
func (l *logRecorder) ForceFlush(context.Context) error { return nil }

// events is the sequence each input is recorded as: the event as fuzzed
// (any type, valid or not), then as a pause and a request overlapping it
// (so the request's exemplar names the pause), that request's counts as
// the kernel's histograms give them, as counter totals, and the process's
// exit.
func events(e agent.Event) []agent.Event {
	pause, req, counts, totals, exit := e, e, e, e, e
	pause.Type = agent.Pause
	req.Type = agent.Request
	counts.Type, counts.Requests = agent.RequestCounts, &agent.RequestHists{}
	counts.Requests.Observe(req, time.Duration(e.Stopping))
	totals.Type = agent.PauseTotals
	exit.Type = agent.Exit
	return []agent.Event{e, pause, req, counts, totals, exit}
}

func FuzzExporters(f *testing.F) {
	// The cases; testdata/fuzz/FuzzExporters holds more.
	f.Add("bad\xff", "python3.11", "gen2", "gc", "python", "usdt", "", uint32(42), int64(1e9), int64(250e3), int64(0), int64(100e3), uint16(8080), uint8(agent.Pause), uint64(1), uint64(12), true, false)
	f.Add("a\nb\"c{d}", "java\x1b[2J", "G1\u202eCollect", "other", "jvm", "hsperfdata", "0123abc", uint32(1), int64(0), int64(-5), int64(-1), int64(-7), uint16(0), uint8(agent.PauseTotals), uint64(1<<63), uint64(1<<64-1), false, true)
	f.Add(strings.Repeat("é", 6000), strings.Repeat("x", 10_000), strings.Repeat("\xe2\x82", 50), "", "go", "uprobe", strings.Repeat("\x00", 10), uint32(1<<32-1), int64(-1e18), int64(1<<62), int64(1<<62), int64(1<<62), uint16(1<<16-1), uint8(agent.Request), uint64(0), uint64(0), true, true)
	f.Fuzz(func(t *testing.T, service, exe, reason, kind, runtime, method, container string,
		pid uint32, startNs, dur, stopping, inside int64, port uint16, typ uint8,
		count, collected uint64, collectedKnown, pidLabel bool) {
		raw := agent.Event{
			Type: agent.EventType(typ),
			Process: agent.Process{PID: pid, Runtime: runtime, Method: method, Service: service, Exe: exe,
				ContainerID: container, Pod: container, Namespace: kind, Container: reason},
			Start: time.Unix(0, startNs), Duration: time.Duration(dur), Stopping: time.Duration(stopping),
			Kind: kind, Reason: reason, Count: count, Collected: collected, CollectedKnown: collectedKnown,
			Port: port, PauseInside: time.Duration(inside),
		}
		want := raw.Sanitized()
		evs := events(raw)
		objective := func(string, uint16) (time.Duration, bool) { return time.Microsecond, true }

		// Prometheus: a pedantic registry checks the series are consistent;
		// both encodings must succeed and the text must parse back.
		prom := promexp.New(promexp.Options{PIDLabel: pidLabel, Objective: objective})
		stream := agent.NewStream(1)
		sub, cancel, err := stream.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		for _, e := range evs {
			prom.Record(e)
			stream.Record(e)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(prom)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		services := 0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					checkValue(t, mf.GetName()+" label "+l.GetName(), l.GetValue())
					if l.GetName() == "service" {
						services++
						if l.GetValue() != want.Process.Service {
							t.Errorf("%s: service %q, want %q", mf.GetName(), l.GetValue(), want.Process.Service)
						}
					}
				}
				var exemplars []*dto.Exemplar
				for _, b := range m.GetHistogram().GetBucket() {
					exemplars = append(exemplars, b.GetExemplar())
				}
				exemplars = append(exemplars, m.GetHistogram().GetExemplars()...)
				for _, ex := range exemplars {
					for _, l := range ex.GetLabel() {
						checkValue(t, mf.GetName()+" exemplar "+l.GetName(), l.GetValue())
					}
				}
			}
		}
		if services == 0 {
			t.Error("no series carries the service: the events were not exported")
		}
		for _, format := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeTextPlain), expfmt.NewFormat(expfmt.TypeOpenMetrics)} {
			var buf bytes.Buffer
			enc := expfmt.NewEncoder(&buf, format)
			for _, mf := range mfs {
				if err := enc.Encode(mf); err != nil {
					t.Fatalf("encode %s: %v", format, err)
				}
			}
			if format == expfmt.NewFormat(expfmt.TypeTextPlain) {
				p := expfmt.NewTextParser(model.UTF8Validation)
				if _, err := p.TextToMetricFamilies(&buf); err != nil {
					t.Fatalf("the scrape does not parse back: %v", err)
				}
			}
		}

		// The JSON APIs (/api/pauses, /api/requests) and the live stream
		// (/api/events, `watch`).
		for name, v := range map[string]any{"pauses": prom.Summaries(), "requests": prom.RequestSummaries()} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("/api/%s: %v", name, err)
			}
			var rows []map[string]any
			if err := json.Unmarshal(b, &rows); err != nil {
				t.Fatalf("/api/%s does not decode: %v", name, err)
			}
			for _, row := range rows {
				for k, v := range row {
					if s, ok := v.(string); ok {
						checkValue(t, "/api/"+name+" "+k, s)
					}
				}
				if row["service"] != want.Process.Service {
					t.Errorf("/api/%s: service %q, want %q", name, row["service"], want.Process.Service)
				}
			}
		}
		for {
			select {
			case e := <-sub:
				if e.Process != want.Process || e.Reason != want.Reason || e.Kind != want.Kind {
					t.Errorf("stream: %+v, want the sanitised %+v", e, want)
				}
				if _, err := json.Marshal(e); err != nil {
					t.Errorf("stream event: %v", err)
				}
				continue
			default:
			}
			break
		}

		// OTLP: the record path into an in-memory reader and log processor,
		// where every string attribute must be sanitised (a protobuf string
		// field must be UTF-8, or the whole batch is refused).
		var reader *sdkmetric.ManualReader
		mkReader := func(p sdkmetric.Producer) sdkmetric.Reader {
			reader = sdkmetric.NewManualReader(sdkmetric.WithProducer(p))
			return reader
		}
		logs := &logRecorder{}
		ctx := context.Background()
		ox, err := otlp.New(ctx, otlp.Options{PIDLabel: pidLabel,
			MetricReader: mkReader, LogProcessor: logs})
		if err != nil {
			t.Fatalf("otlp: %v", err)
		}
		defer ox.Shutdown(ctx)
		for _, e := range evs {
			ox.Record(e)
		}
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatalf("otlp collect: %v", err)
		}
		points := 0
		checkSet := func(metric string, s attribute.Set) {
			points++
			for it := s.Iter(); it.Next(); {
				kv := it.Attribute()
				if kv.Value.Type() == attribute.STRING {
					checkValue(t, metric+" "+string(kv.Key), kv.Value.AsString())
				}
				if kv.Key == "service.name" && kv.Value.AsString() != want.Process.Service {
					t.Errorf("%s: service.name %q, want %q", metric, kv.Value.AsString(), want.Process.Service)
				}
			}
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Histogram[float64]:
					for _, p := range d.DataPoints {
						checkSet(m.Name, p.Attributes)
					}
				case metricdata.ExponentialHistogram[float64]:
					for _, p := range d.DataPoints {
						checkSet(m.Name, p.Attributes)
					}
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						checkSet(m.Name, p.Attributes)
					}
				case metricdata.Sum[float64]:
					for _, p := range d.DataPoints {
						checkSet(m.Name, p.Attributes)
					}
				default:
					t.Errorf("%s: data of type %T not checked", m.Name, m.Data)
				}
			}
		}
		if points == 0 {
			t.Error("otlp: no data points: the events were not exported")
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		for _, r := range logs.records {
			body := r.Body().AsString()
			if !utf8.ValidString(body) || strings.ContainsFunc(body, func(r rune) bool {
				return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
			}) {
				t.Errorf("otlp log body %q", body)
			}
			r.WalkAttributes(func(kv attribute.KeyValue) bool {
				if kv.Value.Type() == attribute.STRING {
					checkValue(t, "otlp log "+string(kv.Key), kv.Value.AsString())
				}
				return true
			})
		}
	})
}
