package prometheus

import (
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pausewatch/pausewatch/agent"
)

// This file is the CPU side of the exporter: the GC CPU of each service
// (pausewatch_gc_cpu_seconds_total, by method) and its processes' CPU
// (pausewatch_process_cpu_seconds_total), and the tax report built on them.

type cpuMetrics struct {
	gc, proc *prometheus.CounterVec
}

func newCPUMetrics(proc []string) cpuMetrics {
	return cpuMetrics{
		gc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_gc_cpu_seconds_total",
			Help: "CPU time spent by the garbage collector, by method: gc_threads (the collector's own threads, kernel per-thread accounting), pause_thread (the thread running a collection or a GC safepoint, timed at context switches), runtime (Go's own account).",
		}, append([]string{"runtime", "method"}, proc...)),
		proc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_process_cpu_seconds_total",
			Help: "CPU time (user + system, every thread) of the service's runtime processes, from /proc/<pid>/stat, sampled every 5 s.",
		}, append([]string{"runtime"}, proc...)),
	}
}

func (m cpuMetrics) collectors() []prometheus.Collector { return []prometheus.Collector{m.gc, m.proc} }

// cpuKey is one series of either counter: method is empty for the
// process CPU.
type cpuKey struct {
	runtime, method, service  string
	namespace, pod, container string
	pid                       string
}

func (k cpuKey) labels(pidLabel bool) []string {
	l := []string{k.runtime}
	if k.method != "" {
		l = append(l, k.method)
	}
	l = append(l, k.service, k.namespace, k.pod, k.container)
	if pidLabel {
		l = append(l, k.pid)
	}
	return l
}

func (k cpuKey) identity() identity {
	return identity{k.runtime, k.service, k.namespace, k.pod, k.container}
}

type cpuSeries struct {
	total    time.Duration
	since    time.Time // start of the counting: the window the report's cores are averaged over
	pid      uint32
	expireAt time.Time
	counter  prometheus.Counter
}

// recordCPU counts CPU time of a process: method "" is the process's,
// else its collector's; x.mu is held.
func (x *Exporter) recordCPU(p agent.Process, method string, d time.Duration) {
	if d <= 0 {
		return
	}
	k := cpuKey{runtime: p.Runtime, method: method, service: p.Service,
		namespace: p.Namespace, pod: p.Pod, container: p.Container}
	if x.opts.PIDLabel {
		k.pid = strconv.FormatUint(uint64(p.PID), 10)
	}
	s := x.cpu[k]
	if s == nil {
		if len(x.series)+len(x.cpu) >= x.opts.MaxSeries {
			x.dropped.Inc()
			return
		}
		s = &cpuSeries{since: x.cpuSince(p), pid: p.PID}
		x.cpu[k] = s
	}
	s.expireAt = time.Time{}
	if s.counter == nil {
		vec := x.cpuM.gc
		if method == "" {
			vec = x.cpuM.proc
		}
		s.counter = vec.WithLabelValues(k.labels(x.opts.PIDLabel)...)
	}
	s.total += d
	s.counter.Add(d.Seconds())
}

// cpuSince is when the counting of a process's CPU began: its start (the
// CPU sampler counts a process younger than the agent from there), or the
// exporter's creation for an older one (counted from the sampler's first
// pass, a few seconds later); x.mu is held.
func (x *Exporter) cpuSince(p agent.Process) time.Time {
	now := x.opts.Now()
	since := x.opts.Started(p)
	switch {
	case since.IsZero() || since.After(now):
		return now
	case since.Before(x.created):
		return x.created
	}
	return since
}

// recordCPUEvent takes the CPU of a CPUTime event, and the pausing
// thread's CPU of a collector's pause; x.mu is held.
func (x *Exporter) recordCPUEvent(e agent.Event) {
	switch {
	case e.Type == agent.CPUTime:
		x.recordCPU(e.Process, "", e.CPU)
		if e.GCCPUMethod != "" {
			x.recordCPU(e.Process, e.GCCPUMethod, e.GCCPU)
		}
	case e.Type == agent.Pause && e.Kind == agent.KindGC && e.ThreadCPUKnown:
		x.recordCPU(e.Process, agent.PauseThread, e.ThreadCPU)
	}
}

// expireCPU drops the CPU series whose time has come; x.mu is held.
func (x *Exporter) expireCPU(now time.Time) {
	for k, s := range x.cpu {
		if s.expireAt.IsZero() || now.Before(s.expireAt) {
			continue
		}
		delete(x.cpu, k)
		if k.method == "" {
			x.cpuM.proc.DeleteLabelValues(k.labels(x.opts.PIDLabel)...)
		} else {
			x.cpuM.gc.DeleteLabelValues(k.labels(x.opts.PIDLabel)...)
		}
	}
}

// TaxSummary is one row of `pausewatch report --tax`: what garbage
// collection costs a service (or a process of it, with PIDLabel), since
// the agent first saw it (Window).
type TaxSummary struct {
	Runtime string `json:"runtime"`
	Service string `json:"service"`
	PID     string `json:"pid,omitempty"`
	// Window is how long the CPU was counted, in seconds: from the start
	// of the service's first process (or the agent's, if later) to now.
	Window float64 `json:"window_seconds"`
	// CPUSeconds is the CPU time of the service's processes (/proc) in
	// the window; GCCPUSeconds the part spent by the collector, by method.
	CPUSeconds   float64            `json:"cpu_seconds"`
	GCCPUSeconds float64            `json:"gc_cpu_seconds"`
	GCCPUMethods map[string]float64 `json:"gc_cpu_seconds_by_method,omitempty"`
	// Cores and GCCores are CPUSeconds and GCCPUSeconds over Window;
	// GCShare is GCCPUSeconds / CPUSeconds.
	Cores   float64 `json:"cores"`
	GCCores float64 `json:"gc_cores"`
	GCShare float64 `json:"gc_share"`
	// CoresWithoutGC is Cores - GCCores: the cores the service would need
	// at the same load if its collector cost nothing (assumes the work
	// does not change with the collector, see docs/gccpu.md).
	CoresWithoutGC float64 `json:"cores_without_gc"`
	// WallStoppedShare is the share of the processes' watched wall time
	// spent stopped (as /api/requests' wall_paused_share).
	WallStoppedShare float64 `json:"wall_stopped_share"`
	// PauseBreaches, CPUBreaches and OtherBreaches are the SLO breaches
	// of the service's ports, by cause (agent.Breach).
	PauseBreaches int64 `json:"pause_breaches"`
	CPUBreaches   int64 `json:"cpu_breaches"`
	OtherBreaches int64 `json:"other_breaches"`
	// GCCPUKnown says some method has counted collector CPU; when false,
	// GCCPUSeconds is unknown or none was used yet (/api/processes' gc_cpu
	// says which).
	GCCPUKnown bool `json:"gc_cpu_known"`
}

// TaxSummaries returns the tax report's rows, one per service (and pid
// with PIDLabel) that has CPU samples.
func (x *Exporter) TaxSummaries() []TaxSummary {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.opts.Now()
	rows := map[wallKey]*TaxSummary{}
	since := map[wallKey]time.Time{}
	for k, s := range x.cpu {
		wk := wallKey{k.identity(), k.pid}
		r := rows[wk]
		if r == nil {
			r = &TaxSummary{Runtime: k.runtime, Service: k.service, PID: k.pid, GCCPUMethods: map[string]float64{}}
			rows[wk] = r
		}
		if k.method == "" {
			r.CPUSeconds += s.total.Seconds()
			if t, ok := since[wk]; !ok || s.since.Before(t) {
				since[wk] = s.since
			}
			continue
		}
		r.GCCPUSeconds += s.total.Seconds()
		r.GCCPUMethods[k.method] += s.total.Seconds()
	}
	stopped := map[wallKey]time.Duration{}
	for k, s := range x.series {
		stopped[wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}] += s.total
	}
	for k, s := range x.requests {
		if r := rows[wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}]; r != nil {
			r.PauseBreaches += int64(s.hist[0].BreachPause + s.hist[1].BreachPause)
			r.CPUBreaches += int64(s.hist[0].BreachCPU + s.hist[1].BreachCPU)
			r.OtherBreaches += int64(s.hist[0].BreachOther + s.hist[1].BreachOther)
		}
	}
	wall := x.walls(now)
	out := make([]TaxSummary, 0, len(rows))
	for wk, r := range rows {
		t, ok := since[wk]
		if !ok {
			continue // GC CPU without a process sample yet
		}
		r.Window = now.Sub(t).Seconds()
		r.GCCPUKnown = len(r.GCCPUMethods) > 0
		if r.Window > 0 {
			r.Cores = r.CPUSeconds / r.Window
			r.GCCores = r.GCCPUSeconds / r.Window
			r.CoresWithoutGC = max(r.Cores-r.GCCores, 0)
		}
		if r.CPUSeconds > 0 {
			r.GCShare = min(r.GCCPUSeconds/r.CPUSeconds, 1)
		}
		if w := wall[wk]; w > 0 {
			r.WallStoppedShare = min(stopped[wk].Seconds()/w.Seconds(), 1)
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		if out[i].Runtime != out[j].Runtime {
			return out[i].Runtime < out[j].Runtime
		}
		return out[i].PID < out[j].PID
	})
	return out
}
