package otlp

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pausewatch/pausewatch/agent"
)

// cpuInstruments count the GC CPU of each service by method, and its
// processes' CPU, as pausewatch_gc_cpu_seconds_total and
// pausewatch_process_cpu_seconds_total do.
type cpuInstruments struct {
	gc, proc metric.Float64Counter
}

func newCPUInstruments(m metric.Meter) (cpuInstruments, error) {
	var c cpuInstruments
	var err1, err2 error
	c.gc, err1 = m.Float64Counter("pausewatch.gc.cpu.time", metric.WithUnit("s"),
		metric.WithDescription("CPU time spent by the garbage collector, by pausewatch.gc.cpu.method: gc_threads (the collector's own threads), pause_thread (the thread running a collection or a GC safepoint), runtime (Go's own account)."))
	c.proc, err2 = m.Float64Counter("pausewatch.process.cpu.time", metric.WithUnit("s"),
		metric.WithDescription("CPU time (user + system, every thread) of the runtime processes, sampled every 5 s."))
	return c, errors.Join(err1, err2)
}

// record counts the CPU of a CPUTime event. (The pausing thread's CPU of
// a collector's pause is counted with the pause: Record.)
func (c cpuInstruments) record(ctx context.Context, e agent.Event, pa []attribute.KeyValue) {
	if e.CPU > 0 {
		c.proc.Add(ctx, e.CPU.Seconds(), metric.WithAttributes(pa...))
	}
	if e.GCCPUMethod != "" && e.GCCPU > 0 {
		c.gc.Add(ctx, e.GCCPU.Seconds(), metric.WithAttributes(append(pa, attribute.String("pausewatch.gc.cpu.method", e.GCCPUMethod))...))
	}
}
