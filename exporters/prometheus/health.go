package prometheus

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RuntimeMethod is one row of pausewatch_processes.
type RuntimeMethod struct{ Runtime, Method string }

// Health exports the agent's own state, apart from the workload series:
// which processes are captured by which method, and what was lost.
type Health struct {
	processes func() map[RuntimeMethod]int
	lost      func() map[string]uint64
	resources func() map[string]Resource

	procDesc, lostDesc, buildDesc *prometheus.Desc
	usedDesc, limitDesc           *prometheus.Desc
	version                       string
}

// Resource is how much of one bounded per-process resource the agent holds
// (kernel map slots, tracked processes, probes): Used now, of at most
// Limit (0 when unbounded).
type Resource struct{ Used, Limit int }

// SetResources adds pausewatch_resource_used and pausewatch_resource_limit,
// read from f at scrape time, so an operator sees a bound coming before it
// is reached, and sees usage return to baseline as processes exit.
func (h *Health) SetResources(f func() map[string]Resource) { h.resources = f }

// NewHealth returns a collector reading the agent's state at scrape time.
func NewHealth(version string, processes func() map[RuntimeMethod]int, lost func() map[string]uint64) *Health {
	return &Health{
		processes: processes,
		lost:      lost,
		version:   version,
		procDesc: prometheus.NewDesc("pausewatch_processes",
			"Runtime processes the agent knows, by capture method (none: seen but not captured; see /api/processes for why).",
			[]string{"runtime", "method"}, nil),
		lostDesc: prometheus.NewDesc("pausewatch_events_lost_total",
			"Events lost, by where: ringbuf (kernel buffer full), unpaired_end (pause end without its begin), connections (connection or listening-port table full), io_uring_direct_accept (connections accepted by io_uring into a fixed-file slot: their requests are not measured), request_histograms (requests not counted: the kernel's request histogram table was full), max_processes (tracking bound), unresolved (pauses of a process discovery did not resolve in time), watch (slow watch subscriber), otlp_log_rate (OTLP log records past --otlp-log-rate), mapping_rate_limited (executable mappings folded into a window of the mapping signal, looked at once with its follow-up), other_runtime (pauses of a second runtime in a process tracked for another), gc_cpu_implausible (Go GC CPU readings not taken: backwards or faster than the CPUs allow), gc_threads_over_limit (threads named like JVM collector threads past the per-process bound: their CPU is not read), pause_rate (pauses of a process past its budget of 20,000 records a second: counted here, not sent).",
			[]string{"source"}, nil),
		usedDesc: prometheus.NewDesc("pausewatch_resource_used",
			"Bounded resources the agent holds for the processes it tracks, by resource: usdt_spec_slots (USDT argument specs in the kernel), tracked_processes, attached_files (executables and libraries with probes), probe_links.",
			[]string{"resource"}, nil),
		limitDesc: prometheus.NewDesc("pausewatch_resource_limit",
			"The bound of each resource in pausewatch_resource_used, where it has one.",
			[]string{"resource"}, nil),
		buildDesc: prometheus.NewDesc("pausewatch_build_info",
			"The agent's version; always 1.", []string{"version"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (h *Health) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.procDesc
	ch <- h.lostDesc
	ch <- h.buildDesc
	ch <- h.usedDesc
	ch <- h.limitDesc
}

// Collect implements prometheus.Collector.
func (h *Health) Collect(ch chan<- prometheus.Metric) {
	for rm, n := range h.processes() {
		ch <- prometheus.MustNewConstMetric(h.procDesc, prometheus.GaugeValue, float64(n), rm.Runtime, rm.Method)
	}
	for src, n := range h.lost() {
		ch <- prometheus.MustNewConstMetric(h.lostDesc, prometheus.CounterValue, float64(n), src)
	}
	ch <- prometheus.MustNewConstMetric(h.buildDesc, prometheus.GaugeValue, 1, h.version)
	if h.resources == nil {
		return
	}
	for name, r := range h.resources() {
		ch <- prometheus.MustNewConstMetric(h.usedDesc, prometheus.GaugeValue, float64(r.Used), name)
		if r.Limit > 0 {
			ch <- prometheus.MustNewConstMetric(h.limitDesc, prometheus.GaugeValue, float64(r.Limit), name)
		}
	}
}
