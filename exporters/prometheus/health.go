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

	procDesc, lostDesc, buildDesc *prometheus.Desc
	version                       string
}

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
			"Events lost, by where: ringbuf (kernel buffer full), unpaired_end (pause end without its begin), max_processes (tracking bound), watch (slow watch subscriber).",
			[]string{"source"}, nil),
		buildDesc: prometheus.NewDesc("pausewatch_build_info",
			"The agent's version; always 1.", []string{"version"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (h *Health) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.procDesc
	ch <- h.lostDesc
	ch <- h.buildDesc
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
}
