package prometheus

import (
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pausewatch/pausewatch/agent"
)

// Objective returns the latency objective of a service's port, and whether
// it has one.
type Objective func(service string, port uint16) (time.Duration, bool)

// requestMetrics are the request-latency series and their join with pauses.
type requestMetrics struct {
	duration *prometheus.HistogramVec
	pause    *prometheus.CounterVec
	breaches *prometheus.CounterVec
}

func newRequestMetrics(proc []string) requestMetrics {
	return requestMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pausewatch_request_duration_seconds",
			Help: "Requests served, from their first bytes reaching the socket to the last response write; paused=\"true\" when a stop-the-world pause of the process overlapped.",

			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, append([]string{"runtime", "port", "paused"}, proc...)),
		pause: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_request_pause_seconds_total",
			Help: "Stop-the-world time that fell inside requests (a pause overlapping N requests counts N times).",
		}, append([]string{"runtime", "port"}, proc...)),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_slo_breaches_total",
			Help: "Requests slower than their objective; cause=\"pause\" when they would have met it without the pause time inside them.",
		}, append([]string{"runtime", "port", "cause"}, proc...)),
	}
}

func (r requestMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.duration, r.pause, r.breaches}
}

// requestKey is one service's port: the unit of the report.
type requestKey struct {
	runtime, service, port         string
	namespace, pod, container, pid string
}

// requestSeries keeps what the report needs beyond the Prometheus series.
type requestSeries struct {
	hdr           *hdrhistogram.Histogram // microseconds
	paused        int64
	pauseTime     time.Duration
	pauseBreaches int64
	otherBreaches int64
	objective     time.Duration
	hasObjective  bool
	first, last   time.Time
	pid           uint32
	expireAt      time.Time
	// The series' Prometheus children, resolved once: hashing label
	// values per request was the exporter's largest cost.
	durPaused, durUnpaused   prometheus.Observer
	pauseTotal               prometheus.Counter
	breachPause, breachOther prometheus.Counter
}

// recordRequest aggregates one request; x.mu is held.
func (x *Exporter) recordRequest(e agent.Event) {
	p := e.Process
	k := requestKey{runtime: p.Runtime, service: p.Service, port: strconv.Itoa(int(e.Port)),
		namespace: p.Namespace, pod: p.Pod, container: p.Container}
	if x.opts.PIDLabel {
		k.pid = strconv.FormatUint(uint64(p.PID), 10)
	}
	s := x.requests[k]
	if s == nil {
		if len(x.series)+len(x.requests) >= x.opts.MaxSeries {
			x.dropped.Inc()
			return
		}
		s = &requestSeries{hdr: hdrhistogram.New(hdrMin, hdrMax, hdrDigits), pid: p.PID, first: e.Start}
		if x.opts.Objective != nil {
			s.objective, s.hasObjective = x.opts.Objective(p.Service, e.Port)
		}
		procLabels := []string{k.service, k.namespace, k.pod, k.container}
		if x.opts.PIDLabel {
			procLabels = append(procLabels, k.pid)
		}
		with := func(first ...string) []string { return append(first, procLabels...) }
		s.durPaused = x.req.duration.WithLabelValues(with(k.runtime, k.port, "true")...)
		s.durUnpaused = x.req.duration.WithLabelValues(with(k.runtime, k.port, "false")...)
		s.pauseTotal = x.req.pause.WithLabelValues(with(k.runtime, k.port)...)
		if s.hasObjective {
			s.breachPause = x.req.breaches.WithLabelValues(with(k.runtime, k.port, "pause")...)
			s.breachOther = x.req.breaches.WithLabelValues(with(k.runtime, k.port, "other")...)
		}
		x.requests[k] = s
	}
	s.expireAt = time.Time{}
	s.last = e.Start.Add(e.Duration)
	s.hdr.RecordValue(min(max(e.Duration.Microseconds(), hdrMin), hdrMax))

	obs := s.durUnpaused
	if e.PauseInside > 0 {
		obs = s.durPaused
		s.paused++
		s.pauseTime += e.PauseInside
		s.pauseTotal.Add(e.PauseInside.Seconds())
	}
	if ex := x.pauseExemplar(e); ex != nil {
		obs.(prometheus.ExemplarObserver).ObserveWithExemplar(e.Duration.Seconds(), ex)
	} else {
		obs.Observe(e.Duration.Seconds())
	}
	if !s.hasObjective {
		return
	}
	if breached, cause := agent.Breach(e, s.objective); breached {
		if cause == "pause" {
			s.pauseBreaches++
			s.breachPause.Inc()
		} else {
			s.otherBreaches++
			s.breachOther.Inc()
		}
	}
}

// RequestSummary is one service's port as the agent's report shows it.
type RequestSummary struct {
	Runtime       string  `json:"runtime"`
	Service       string  `json:"service"`
	Port          string  `json:"port"`
	PID           string  `json:"pid,omitempty"`
	Requests      int64   `json:"requests"`
	Min           float64 `json:"min_seconds"`
	P50           float64 `json:"p50_seconds"`
	P99           float64 `json:"p99_seconds"`
	P999          float64 `json:"p999_seconds"`
	Max           float64 `json:"max_seconds"`
	PausedShare   float64 `json:"paused_share"`
	PauseSeconds  float64 `json:"pause_seconds_in_requests"`
	Objective     float64 `json:"objective_seconds,omitempty"`
	PauseBreaches int64   `json:"pause_breaches"`
	OtherBreaches int64   `json:"other_breaches"`
	// WallPausedShare is the share of its processes' watched wall time
	// that the service spent stopped (see wallKey for the window).
	WallPausedShare float64 `json:"wall_paused_share"`
}

// RequestSummaries returns the report rows: latency quantiles, the share
// of requests a pause overlapped, breaches by cause, share of time paused.
func (x *Exporter) RequestSummaries() []RequestSummary {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.opts.Now()
	// Stopped time per service (and pid with PIDLabel), from the pause
	// series, which count every pause since the service's series began.
	stopped := map[wallKey]time.Duration{}
	for k, s := range x.series {
		stopped[wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}] += s.total
	}
	wall := x.walls(now)
	out := make([]RequestSummary, 0, len(x.requests))
	for k, s := range x.requests {
		n := s.hdr.TotalCount()
		if n == 0 {
			continue
		}
		r := RequestSummary{
			Runtime: k.runtime, Service: k.service, Port: k.port, PID: k.pid, Requests: n,
			Min: usSeconds(s.hdr.Min()), P50: usSeconds(s.hdr.ValueAtQuantile(50)), P99: usSeconds(s.hdr.ValueAtQuantile(99)),
			P999: usSeconds(s.hdr.ValueAtQuantile(99.9)), Max: usSeconds(s.hdr.Max()),
			PausedShare: float64(s.paused) / float64(n), PauseSeconds: s.pauseTime.Seconds(),
			PauseBreaches: s.pauseBreaches, OtherBreaches: s.otherBreaches,
		}
		if s.hasObjective {
			r.Objective = s.objective.Seconds()
		}
		wk := wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}
		if w := wall[wk]; w > 0 {
			r.WallPausedShare = min(stopped[wk].Seconds()/w.Seconds(), 1)
		}
		out = append(out, r)
	}
	return out
}

// wallKey is what the report's share of time paused is computed over: a
// service (its identity), or one process of it with PIDLabel. Its wall
// time is, summed over its processes, the time from when the agent began
// watching each (the process's start, or the exporter's creation when the
// process is older) to its exit, or to now while it runs. Its pause time
// is every pause of those processes. Both start again from zero when the
// service's series expire (SeriesTTL after its last process exits).
//
// Before, the wall time was the span from the service's first to its last
// request: pauses outside that span were counted against it, so the share
// grew once the load stopped (42 %, then 84 %, then 100 %, for a process
// paused 6.5 % of its life).
type wallKey struct {
	id  identity
	pid string // with PIDLabel only
}

// watchedProc is a process the exporter has seen an event of and no exit.
type watchedProc struct {
	key       wallKey
	startTime uint64 // Process.StartTime: a reused pid is another process
	since     time.Time
}

// watch notes a process as watched from its start (or the exporter's
// creation); x.mu is held.
func (x *Exporter) watch(p agent.Process) {
	if w := x.watched[p.PID]; w != nil {
		if w.startTime == p.StartTime {
			return
		}
		x.unwatch(p.PID, w.startTime) // its exit was missed: the pid is reused
	}
	wk := wallKey{id: identityOf(p)}
	if x.opts.PIDLabel {
		wk.pid = strconv.FormatUint(uint64(p.PID), 10)
	}
	now := x.opts.Now()
	since := x.opts.Started(p)
	switch {
	case since.IsZero() || since.After(now):
		since = now // unknown start: from the first event on
	case since.Before(x.created):
		since = x.created // pauses before the agent ran were not seen
	}
	x.watched[p.PID] = &watchedProc{key: wk, startTime: p.StartTime, since: since}
}

// unwatch adds an exited process's watched time to its key's; x.mu is
// held.
func (x *Exporter) unwatch(pid uint32, startTime uint64) {
	w := x.watched[pid]
	if w == nil || w.startTime != startTime {
		return
	}
	delete(x.watched, pid)
	x.wallDone[w.key] += max(x.opts.Now().Sub(w.since), 0)
}

// walls returns every key's watched wall time up to now; x.mu is held.
func (x *Exporter) walls(now time.Time) map[wallKey]time.Duration {
	out := make(map[wallKey]time.Duration, len(x.wallDone)+len(x.watched))
	for k, d := range x.wallDone {
		out[k] = d
	}
	for _, w := range x.watched {
		out[w.key] += max(now.Sub(w.since), 0)
	}
	return out
}

// forgetWalls drops the wall time of keys that have no series left and no
// process watched, so that a service's share starts again with its new
// series; x.mu is held.
func (x *Exporter) forgetWalls() {
	if len(x.wallDone) == 0 {
		return
	}
	kept := map[wallKey]bool{}
	for k := range x.series {
		kept[wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}] = true
	}
	for k := range x.requests {
		kept[wallKey{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, k.pid}] = true
	}
	for k := range x.cpu {
		kept[wallKey{k.identity(), k.pid}] = true
	}
	for _, w := range x.watched {
		kept[w.key] = true
	}
	for k := range x.wallDone {
		if !kept[k] {
			delete(x.wallDone, k)
		}
	}
}

func usSeconds(us int64) float64 { return float64(us) / 1e6 }

// recentPauses is a small ring of a process's last pauses: enough to name
// the pause inside a request that just ended.
type recentPauses struct {
	p    [16]pauseRef
	next int
}

type pauseRef struct {
	start, end time.Time
	reason     string
}

// rememberPause keeps a pause for the exemplars; x.mu is held.
func (x *Exporter) rememberPause(e agent.Event) {
	r := x.recent[e.Process.PID]
	if r == nil {
		r = &recentPauses{}
		x.recent[e.Process.PID] = r
	}
	r.p[r.next%len(r.p)] = pauseRef{start: e.Start, end: e.Start.Add(e.Duration), reason: e.Reason}
	r.next++
}

// pauseExemplar points a request that a pause overlapped at that pause
// (the longest overlap among the process's recent pauses); x.mu is held.
func (x *Exporter) pauseExemplar(e agent.Event) prometheus.Labels {
	if e.PauseInside <= 0 {
		return nil
	}
	r := x.recent[e.Process.PID]
	if r == nil {
		return nil
	}
	end := e.Start.Add(e.Duration)
	var best pauseRef
	var bestOverlap time.Duration
	for _, p := range r.p {
		if p.end.IsZero() {
			continue
		}
		lo, hi := p.start, p.end
		if e.Start.After(lo) {
			lo = e.Start
		}
		if end.Before(hi) {
			hi = end
		}
		o := hi.Sub(lo)
		if o > bestOverlap {
			best, bestOverlap = p, o
		}
	}
	if bestOverlap <= 0 {
		return nil
	}
	return prometheus.Labels{
		// Exemplar labels are limited to 128 runes in all, names included,
		// and an invalid one panics: cut on a rune, never inside one.
		"pause_reason": firstRunes(best.reason, 48),
		"pause_start":  strconv.FormatFloat(float64(best.start.UnixNano())/1e9, 'f', 6, 64),
	}
}

// firstRunes returns the first n runes of s.
func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
