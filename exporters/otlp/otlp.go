// Package otlp exports pausewatch's events through OpenTelemetry: metrics
// (base-2 exponential histograms for durations by default, cumulative
// temporality) and one log record per pause, over OTLP gRPC or
// HTTP/protobuf, configured by the standard OTEL_EXPORTER_OTLP_*
// environment variables. Nothing is sent unless an endpoint is set.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/pausewatch/pausewatch/agent"
)

// Options configure the exporter; the OTEL_* environment does the rest.
type Options struct {
	// ExplicitBuckets exports durations as explicit-bucket histograms
	// (the Prometheus buckets) instead of base-2 exponential ones.
	ExplicitBuckets []float64
	// PIDLabel adds process.pid to data points (pids churn).
	PIDLabel bool
	// LogThreshold: pauses shorter than this get no log record (0: all).
	LogThreshold time.Duration
	// LogRate and LogBurst bound the log records per process per second
	// (token bucket); what the limit drops is counted (LogsDropped).
	LogRate  float64
	LogBurst int
	// Version is the agent's version, for the resource.
	Version string
	// Flush, when set, is called at each collection before the request
	// histograms are read (source.Source.Flush), so that they hold every
	// request served before it; on an error they are read as they are.
	Flush func(context.Context) error
	// MetricReader and LogProcessor, when set, take the place of the OTLP
	// metric and log pipelines: tests read what was recorded from them.
	// The reader must include the producer it is given (WithProducer):
	// it produces the request histograms.
	MetricReader func(sdkmetric.Producer) sdkmetric.Reader
	LogProcessor sdklog.Processor
}

// Enabled reports whether the environment names an OTLP endpoint: only
// then is anything sent.
func Enabled() bool {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// protocol returns the OTLP protocol of a signal: its own variable, else
// the general one, else http/protobuf (the specification's default).
func protocol(signal string) (string, error) {
	v := os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	name := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
	if v == "" {
		v, name = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch v {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("%s=%q: supported are grpc and http/protobuf", name, v)
}

// Exporter is an agent.Exporter sending OTLP.
type Exporter struct {
	opts   Options
	meters *sdkmetric.MeterProvider
	logs   *sdklog.LoggerProvider
	logger otellog.Logger

	pauseDur, stopping          metric.Float64Histogram
	jvmGC                       metric.Float64Histogram
	pauses, collected, breaches metric.Int64Counter
	pauseTime, reqPause         metric.Float64Counter
	cpu                         cpuInstruments

	sets map[uint32]*pauseSets // per pid; Record's goroutine only

	mu      sync.Mutex
	buckets map[uint32]*bucket                // per-process log rate limit
	reqs    map[attribute.Distinct]*reqSeries // request histograms (requests.go)
	dropped atomic.Uint64
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New starts the OTLP pipelines. Call it only when Enabled.
func New(ctx context.Context, opts Options) (*Exporter, error) {
	if opts.LogRate == 0 {
		opts.LogRate = 100
	}
	if opts.LogBurst == 0 {
		opts.LogBurst = 1000
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
		resource.WithHost(),
		resource.WithAttributes(
			attribute.String("service.name", "pausewatch"),
			attribute.String("service.version", opts.Version),
		),
		resource.WithFromEnv(), // the environment overrides the defaults above
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("otlp resource: %w", err)
	}

	x := &Exporter{opts: opts, buckets: map[uint32]*bucket{}, reqs: map[attribute.Distinct]*reqSeries{}, sets: map[uint32]*pauseSets{}}
	var reader sdkmetric.Reader
	if opts.MetricReader != nil {
		reader = opts.MetricReader(reqProducer{x})
	} else {
		mp, err := protocol("METRICS")
		if err != nil {
			return nil, err
		}
		var mexp sdkmetric.Exporter
		if mp == "grpc" {
			mexp, err = otlpmetricgrpc.New(ctx)
		} else {
			mexp, err = otlpmetrichttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter (%s): %w", mp, err)
		}
		// OTEL_METRIC_EXPORT_INTERVAL is read by the periodic reader itself.
		reader = sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithProducer(reqProducer{x}))
	}
	logProc := opts.LogProcessor
	if logProc == nil {
		lp, err := protocol("LOGS")
		if err != nil {
			return nil, err
		}
		var lexp sdklog.Exporter
		if lp == "grpc" {
			lexp, err = otlploggrpc.New(ctx)
		} else {
			lexp, err = otlploghttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp log exporter (%s): %w", lp, err)
		}
		logProc = sdklog.NewBatchProcessor(lexp)
	}

	var agg sdkmetric.Aggregation = sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}
	if len(opts.ExplicitBuckets) > 0 {
		agg = sdkmetric.AggregationExplicitBucketHistogram{Boundaries: opts.ExplicitBuckets}
	}
	durations := sdkmetric.NewView(sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
		sdkmetric.Stream{Aggregation: agg})
	x.meters = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithView(durations),
		sdkmetric.WithReader(reader))
	x.logs = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(logProc))
	x.logger = x.logs.Logger("github.com/pausewatch/pausewatch")

	m := x.meters.Meter("github.com/pausewatch/pausewatch")
	var errs []error
	h := func(name, desc string) metric.Float64Histogram {
		i, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	x.pauseDur = h("pausewatch.pause.duration", "Stop-the-world pauses, seen one by one.")
	x.stopping = h("pausewatch.pause.stopping", "Stopping time of stop-the-world pauses (Go's stopping time, HotSpot's time to safepoint): the part of the pause spent bringing threads to a stop, from pauses that report it.")
	x.jvmGC = h("jvm.gc.duration", "Duration of JVM garbage collection actions (the collector's stop-the-world pauses).")
	x.pauses, err = m.Int64Counter("pausewatch.pause.count", metric.WithUnit("{pause}"), metric.WithDescription("Stop-the-world pauses, every capture method."))
	errs = append(errs, err)
	x.pauseTime, err = m.Float64Counter("pausewatch.pause.time", metric.WithUnit("s"), metric.WithDescription("Time the world was stopped, every capture method."))
	errs = append(errs, err)
	x.collected, err = m.Int64Counter("pausewatch.gc.collected_objects", metric.WithUnit("{object}"), metric.WithDescription("Objects freed by collections (CPython)."))
	errs = append(errs, err)
	x.reqPause, err = m.Float64Counter("pausewatch.request.pause.time", metric.WithUnit("s"), metric.WithDescription("Stop-the-world time inside requests."))
	errs = append(errs, err)
	x.breaches, err = m.Int64Counter("pausewatch.slo.breaches", metric.WithUnit("{request}"), metric.WithDescription("Requests slower than their objective, by cause."))
	errs = append(errs, err)
	x.cpu, err = newCPUInstruments(m)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		x.Shutdown(ctx)
		return nil, fmt.Errorf("otlp instruments: %w", err)
	}
	return x, nil
}

// processAttrs are the data point attributes that say which process an
// event is about (semantic conventions' names where they exist).
func (x *Exporter) processAttrs(p agent.Process) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String("service.name", p.Service),
		attribute.String("process.runtime.name", p.Runtime),
		attribute.String("pausewatch.capture.method", p.Method),
	}
	if x.opts.PIDLabel {
		a = append(a, attribute.Int("process.pid", int(p.PID)))
	}
	return append(a, k8sAttrs(p)...)
}

// workloadAttr is the semantic conventions' attribute naming each kind of
// pod owner the agent resolves (agent/kube).
var workloadAttr = map[string]string{
	"Deployment": "k8s.deployment.name", "ReplicaSet": "k8s.replicaset.name",
	"StatefulSet": "k8s.statefulset.name", "DaemonSet": "k8s.daemonset.name",
	"Job": "k8s.job.name", "CronJob": "k8s.cronjob.name",
}

// k8sAttrs are the container and Kubernetes attributes of a process, the
// ones it has: none off Kubernetes. They add no series beyond the pod's.
func k8sAttrs(p agent.Process) []attribute.KeyValue {
	var a []attribute.KeyValue
	for _, kv := range []struct{ k, v string }{
		{"container.id", p.ContainerID}, {"k8s.namespace.name", p.Namespace},
		{"k8s.pod.name", p.Pod}, {"k8s.pod.uid", p.PodUID}, {"k8s.container.name", p.Container},
		{workloadAttr[p.WorkloadKind], p.Workload},
	} {
		if kv.v != "" && kv.k != "" {
			a = append(a, attribute.String(kv.k, kv.v))
		}
	}
	return a
}

// Record implements agent.Exporter.
func (x *Exporter) Record(e agent.Event) {
	// Attribute values come from the watched processes; sources sanitise
	// them, and this (free for clean values) makes sure no event built
	// elsewhere sends invalid UTF-8 or terminal controls to a collector.
	e = e.Sanitized()
	ctx := context.Background()
	switch e.Type {
	case agent.CPUTime:
		x.cpu.record(ctx, e, x.processAttrs(e.Process))
	case agent.Pause, agent.PauseSample, agent.PauseTotals:
		s := x.pauseSetOf(e)
		if e.Type == agent.Pause && e.Kind == agent.KindGC && e.ThreadCPUKnown && e.ThreadCPU > 0 {
			x.cpu.gc.Add(ctx, e.ThreadCPU.Seconds(), s.gcThread...)
		}
		if e.Type != agent.PauseTotals {
			x.pauseDur.Record(ctx, e.Duration.Seconds(), s.reason...)
			if e.Stopping > 0 { // 0: the runtime does not report it
				// Without the reason, as pausewatch_pause_stopping_seconds.
				x.stopping.Record(ctx, e.Stopping.Seconds(), s.kindRec...)
			}
			if e.Process.Runtime == "jvm" && e.Kind == agent.KindGC {
				// Semantic conventions' own JVM metric, where the data allows:
				// the collector's operation as jvm.gc.name.
				x.jvmGC.Record(ctx, e.Duration.Seconds(), s.jvmGC...)
			}
			x.log(e)
		}
		if e.Type != agent.PauseSample {
			n := int64(1)
			if e.Type == agent.PauseTotals {
				n = int64(e.Count)
			}
			x.pauses.Add(ctx, n, s.kindAdd...)
			x.pauseTime.Add(ctx, e.Duration.Seconds(), s.kindAdd...)
		}
		if e.CollectedKnown {
			x.collected.Add(ctx, int64(e.Collected), s.kindAdd...)
		}
	case agent.RequestCounts:
		if e.Requests == nil {
			return
		}
		attrs := append(x.processAttrs(e.Process), attribute.Int("server.port", int(e.Port)))
		for i, h := range []*agent.RequestHist{&e.Requests.Unpaused, &e.Requests.Paused} {
			x.addRequests(append(attrs, attribute.Bool("pausewatch.request.paused", i == 1)), h)
			if h.PauseInside > 0 {
				x.reqPause.Add(ctx, h.PauseInside.Seconds(), metric.WithAttributes(attrs...))
			}
			// Classified in the kernel by the objective the agent pushed.
			if n := h.BreachPause; n > 0 {
				x.breaches.Add(ctx, int64(n), metric.WithAttributes(append(attrs, attribute.String("pausewatch.slo.cause", "pause"))...))
			}
			if n := h.BreachCPU; n > 0 {
				x.breaches.Add(ctx, int64(n), metric.WithAttributes(append(attrs, attribute.String("pausewatch.slo.cause", "cpu"))...))
			}
			if n := h.BreachOther; n > 0 {
				x.breaches.Add(ctx, int64(n), metric.WithAttributes(append(attrs, attribute.String("pausewatch.slo.cause", "other"))...))
			}
		}
	case agent.Exit:
		delete(x.sets, e.Process.PID)
		x.mu.Lock()
		delete(x.buckets, e.Process.PID)
		x.mu.Unlock()
	}
}

// pauseSets are the attribute sets of one process's pause series, made
// once per kind and reason: building, sorting and hashing them on every
// pause was most of Record's cost (15 allocations a pause).
type pauseSets struct {
	proc agent.Process // as the sets were made for it
	by   map[[2]string]*pauseSet
}

// pauseSet holds the options as the slices the instruments take: a
// variadic argument built per call is an allocation per call.
type pauseSet struct {
	kindRec  []metric.RecordOption // process, kind
	kindAdd  []metric.AddOption
	reason   []metric.RecordOption // process, kind, reason
	jvmGC    []metric.RecordOption // jvm.gc.name, jvm.gc.action, service.name
	gcThread []metric.AddOption    // process, pause_thread GC CPU method
}

// pauseSetOf returns the attribute sets of e's pause series. A process
// whose identity changed (its pod found late) gets its sets made afresh;
// its entry goes at its exit. Reasons are bounded per process
// (agent.MaxReasonsPerProcess), so is what one process holds.
func (x *Exporter) pauseSetOf(e agent.Event) *pauseSet {
	ps := x.sets[e.Process.PID]
	if ps == nil || ps.proc != e.Process {
		ps = &pauseSets{proc: e.Process, by: map[[2]string]*pauseSet{}}
		x.sets[e.Process.PID] = ps
	}
	k := [2]string{e.Kind, e.Reason}
	if s := ps.by[k]; s != nil {
		return s
	}
	pa := x.processAttrs(e.Process)
	attrs := append(pa, attribute.String("pausewatch.pause.kind", e.Kind))
	kind := metric.WithAttributeSet(attribute.NewSet(attrs...))
	s := &pauseSet{
		kindRec: []metric.RecordOption{kind},
		kindAdd: []metric.AddOption{kind},
		reason:  []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(append(attrs[:len(attrs):len(attrs)], attribute.String("pausewatch.pause.reason", e.Reason))...))},
		jvmGC: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("jvm.gc.name", e.Reason),
			attribute.String("jvm.gc.action", "end of GC pause"), attribute.String("service.name", e.Process.Service)))},
		gcThread: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(append(pa[:len(pa):len(pa)], attribute.String("pausewatch.gc.cpu.method", agent.PauseThread))...))},
	}
	ps.by[k] = s
	return s
}

// allow takes a token from the process's bucket.
func (x *Exporter) allow(pid uint32, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := x.buckets[pid]
	if b == nil {
		b = &bucket{tokens: float64(x.opts.LogBurst), last: now}
		x.buckets[pid] = b
	}
	b.tokens = min(float64(x.opts.LogBurst), b.tokens+now.Sub(b.last).Seconds()*x.opts.LogRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// log emits the pause's log record, within the threshold and rate limit.
func (x *Exporter) log(e agent.Event) {
	if e.Duration < x.opts.LogThreshold {
		return
	}
	if !x.allow(e.Process.PID, time.Now()) {
		x.dropped.Add(1)
		return
	}
	var r otellog.Record
	r.SetEventName("pausewatch.pause")
	r.SetTimestamp(e.Start)
	r.SetObservedTimestamp(time.Now())
	r.SetSeverity(otellog.SeverityInfo)
	r.SetBody(attribute.StringValue(fmt.Sprintf("%s %s pause (%s) of %s", e.Process.Runtime, e.Kind, e.Reason, e.Duration)))
	r.AddAttributes(
		attribute.Float64("pausewatch.pause.duration", e.Duration.Seconds()),
		attribute.String("pausewatch.pause.kind", e.Kind),
		attribute.String("pausewatch.pause.reason", e.Reason),
		attribute.String("process.runtime.name", e.Process.Runtime),
		attribute.String("service.name", e.Process.Service),
		attribute.Int64("process.pid", int64(e.Process.PID)),
		attribute.String("pausewatch.capture.method", e.Process.Method),
	)
	if e.Stopping > 0 {
		r.AddAttributes(attribute.Float64("pausewatch.pause.stopping", e.Stopping.Seconds()))
	}
	r.AddAttributes(k8sAttrs(e.Process)...)
	x.logger.Emit(context.Background(), r)
}

// LogsDropped is the number of pause log records the rate limit dropped.
func (x *Exporter) LogsDropped() uint64 { return x.dropped.Load() }

// Shutdown flushes and stops both pipelines.
func (x *Exporter) Shutdown(ctx context.Context) error {
	var errs []error
	if x.meters != nil {
		errs = append(errs, x.meters.Shutdown(ctx))
	}
	if x.logs != nil {
		errs = append(errs, x.logs.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
