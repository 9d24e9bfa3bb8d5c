package prometheus

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pausewatch/pausewatch/agent"
)

// Objective returns the latency objective of a service's port, and whether
// it has one.
type Objective func(service string, port uint16) (time.Duration, bool)

// requestMetrics are the request-latency series and their join with pauses.
type requestMetrics struct {
	duration *requestHistograms
	pause    *prometheus.CounterVec
	breaches *prometheus.CounterVec
}

func newRequestMetrics(x *Exporter, proc []string) requestMetrics {
	return requestMetrics{
		duration: &requestHistograms{x: x, desc: prometheus.NewDesc("pausewatch_request_duration_seconds",
			"Requests served, from their first bytes reaching the socket to the last response write; paused=\"true\" when a stop-the-world pause of the process overlapped.",
			append([]string{"runtime", "port", "paused"}, proc...), nil)},
		pause: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_request_pause_seconds_total",
			Help: "Stop-the-world time that fell inside requests (a pause overlapping N requests counts N times).",
		}, append([]string{"runtime", "port"}, proc...)),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_slo_breaches_total",
			Help: "Requests slower than their objective, by cause: \"pause\" when they would have met it without the pause time inside them, else \"cpu\" when without the run-queue wait (CPU starvation, CFS throttling) of the threads serving them, else \"other\".",
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
	// The kernel's histograms summed over the series' processes,
	// unpaused [0] and paused [1], since the series began.
	hist         [2]agent.RequestHist
	labels       []string // the histogram's label values, paused last-but-proc
	created      time.Time
	story        story // the latest request a pause overlapped
	objective    time.Duration
	hasObjective bool
	pid          uint32
	expireAt     time.Time
	// The series' Prometheus children, resolved once.
	pauseTotal                          prometheus.Counter
	breachPause, breachCPU, breachOther prometheus.Counter
}

// requestSeriesOf returns the series of e's process and port, made if
// need be (nil past MaxSeries); x.mu is held.
func (x *Exporter) requestSeriesOf(e agent.Event) *requestSeries {
	p := e.Process
	k := requestKey{runtime: p.Runtime, service: p.Service, port: strconv.Itoa(int(e.Port)),
		namespace: p.Namespace, pod: p.Pod, container: p.Container}
	if x.opts.PIDLabel {
		k.pid = strconv.FormatUint(uint64(p.PID), 10)
	}
	if s := x.requests[k]; s != nil {
		return s
	}
	if len(x.series)+len(x.requests) >= x.opts.MaxSeries {
		x.dropped.Inc()
		return nil
	}
	s := &requestSeries{pid: p.PID, created: x.opts.Now()}
	if x.opts.Objective != nil {
		s.objective, s.hasObjective = x.opts.Objective(p.Service, e.Port)
	}
	procLabels := []string{k.service, k.namespace, k.pod, k.container}
	if x.opts.PIDLabel {
		procLabels = append(procLabels, k.pid)
	}
	with := func(first ...string) []string { return append(first, procLabels...) }
	s.labels = with(k.runtime, k.port, "")
	s.pauseTotal = x.req.pause.WithLabelValues(with(k.runtime, k.port)...)
	if s.hasObjective {
		s.breachPause = x.req.breaches.WithLabelValues(with(k.runtime, k.port, "pause")...)
		s.breachCPU = x.req.breaches.WithLabelValues(with(k.runtime, k.port, "cpu")...)
		s.breachOther = x.req.breaches.WithLabelValues(with(k.runtime, k.port, "other")...)
	}
	x.requests[k] = s
	return s
}

// recordRequests adds the kernel's counts of one process's port since
// its last read; x.mu is held.
func (x *Exporter) recordRequests(e agent.Event) {
	if e.Requests == nil {
		return
	}
	s := x.requestSeriesOf(e)
	if s == nil {
		return
	}
	s.expireAt = time.Time{}
	for i, h := range []*agent.RequestHist{&e.Requests.Unpaused, &e.Requests.Paused} {
		s.hist[i].Add(h)
		if h.PauseInside > 0 {
			s.pauseTotal.Add(max(h.PauseInside, 0).Seconds())
		}
		// Breaches counted in the kernel, by the objective this agent
		// pushed for the process (the same lookup as s.objective).
		if s.hasObjective {
			s.breachPause.Add(float64(h.BreachPause))
			s.breachCPU.Add(float64(h.BreachCPU))
			s.breachOther.Add(float64(h.BreachOther))
		}
	}
}

// story is the latest request a pause overlapped, and that pause: the
// exemplar of the paused half, built when scraped.
type story struct {
	duration time.Duration
	end      time.Time
	pause    pauseRef
}

// recordStory keeps a request that a pause overlapped as the exemplar of
// its half of the histogram, pointing at the pause; x.mu is held.
func (x *Exporter) recordStory(e agent.Event) {
	p, ok := x.pauseOf(e)
	if !ok {
		return
	}
	if s := x.requestSeriesOf(e); s != nil {
		s.story = story{duration: e.Duration, end: e.Start.Add(e.Duration), pause: p}
	}
}

// exemplar is the story as a Prometheus exemplar.
func (st story) exemplar() *dto.Exemplar {
	if st.end.IsZero() {
		return nil
	}
	return &dto.Exemplar{
		// Exemplar labels are limited to 128 runes in all, names included,
		// and an invalid one panics: cut on a rune, never inside one.
		Label: []*dto.LabelPair{
			{Name: proto.String("pause_reason"), Value: proto.String(firstRunes(st.pause.reason, 48))},
			{Name: proto.String("pause_start"), Value: proto.String(strconv.FormatFloat(float64(st.pause.start.UnixNano())/1e9, 'f', 6, 64))},
		},
		Value: proto.Float64(st.duration.Seconds()), Timestamp: timestamppb.New(st.end),
	}
}

// requestHistograms is pausewatch_request_duration_seconds: the kernel's
// histograms of each series as one classic and native histogram each,
// exact in both forms (agent.RequestBounds).
type requestHistograms struct {
	x    *Exporter
	desc *prometheus.Desc
}

func (r *requestHistograms) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *requestHistograms) Collect(ch chan<- prometheus.Metric) {
	r.x.mu.Lock()
	defer r.x.mu.Unlock()
	for _, s := range r.x.requests {
		for i, paused := range []string{"false", "true"} {
			labels := append([]string(nil), s.labels...)
			labels[2] = paused
			m := &requestHistogram{desc: r.desc, labels: prometheus.MakeLabelPairs(r.desc, labels),
				h: s.hist[i], created: s.created}
			if i == 1 {
				m.exemplar = s.story.exemplar()
			}
			ch <- m
		}
	}
}

// requestHistogram is one series' histogram as a Prometheus metric: the
// classic buckets and the native ones of agent.NativeSchema together, as
// client_golang's own histograms write them.
type requestHistogram struct {
	desc     *prometheus.Desc
	labels   []*dto.LabelPair
	h        agent.RequestHist
	created  time.Time
	exemplar *dto.Exemplar
}

func (m *requestHistogram) Desc() *prometheus.Desc { return m.desc }

func (m *requestHistogram) Write(out *dto.Metric) error {
	cum := make([]uint64, len(agent.ClassicBuckets))
	n := m.h.Classic(cum)
	h := &dto.Histogram{
		SampleCount:      proto.Uint64(n),
		SampleSum:        proto.Float64(m.h.Sum.Seconds()),
		Schema:           proto.Int32(agent.NativeSchema),
		ZeroThreshold:    proto.Float64(agent.RequestZeroThreshold),
		CreatedTimestamp: timestamppb.New(m.created),
	}
	for i, le := range agent.ClassicBuckets {
		b := &dto.Bucket{CumulativeCount: proto.Uint64(cum[i]), UpperBound: proto.Float64(le)}
		if ex := m.exemplar; ex != nil && ex.GetValue() <= le && (i == 0 || ex.GetValue() > agent.ClassicBuckets[i-1]) {
			b.Exemplar = ex
		}
		h.Bucket = append(h.Bucket, b)
	}
	// Native buckets as spans of deltas (the exposition's encoding).
	var prev int64
	next := 0 // the index after the last bucket written
	m.h.Native(func(idx int, c uint64, zero bool) {
		if zero {
			h.ZeroCount = proto.Uint64(c)
			return
		}
		if len(h.PositiveSpan) == 0 || idx != next {
			off := int32(idx)
			if len(h.PositiveSpan) > 0 {
				off = int32(idx - next)
			}
			h.PositiveSpan = append(h.PositiveSpan, &dto.BucketSpan{Offset: proto.Int32(off), Length: proto.Uint32(0)})
		}
		sp := h.PositiveSpan[len(h.PositiveSpan)-1]
		sp.Length = proto.Uint32(sp.GetLength() + 1)
		h.PositiveDelta = append(h.PositiveDelta, int64(c)-prev)
		prev = int64(c)
		next = idx + 1
	})
	if len(h.PositiveSpan) == 0 && h.GetZeroCount() == 0 {
		// An empty native histogram still says it is one (as
		// client_golang writes it): a span of length 0.
		h.PositiveSpan = []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(0)}}
	}
	if m.exemplar != nil {
		h.Exemplars = []*dto.Exemplar{m.exemplar}
	}
	out.Label = m.labels
	out.Histogram = h
	return nil
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
	CPUBreaches   int64   `json:"cpu_breaches"`
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
		var h agent.RequestHist
		h.Add(&s.hist[0])
		h.Add(&s.hist[1])
		n := int64(h.Count())
		if n == 0 {
			continue
		}
		r := RequestSummary{
			Runtime: k.runtime, Service: k.service, Port: k.port, PID: k.pid, Requests: n,
			Min: h.Min.Seconds(), P50: h.Quantile(0.5), P99: h.Quantile(0.99),
			P999: h.Quantile(0.999), Max: h.Max.Seconds(),
			PausedShare: float64(s.hist[1].Count()) / float64(n), PauseSeconds: h.PauseInside.Seconds(),
			PauseBreaches: int64(h.BreachPause), CPUBreaches: int64(h.BreachCPU), OtherBreaches: int64(h.BreachOther),
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

// pauseOf finds the pause that overlapped a request the most among the
// process's recent pauses; x.mu is held.
func (x *Exporter) pauseOf(e agent.Event) (pauseRef, bool) {
	if e.PauseInside <= 0 {
		return pauseRef{}, false
	}
	r := x.recent[e.Process.PID]
	if r == nil {
		return pauseRef{}, false
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
		if o := hi.Sub(lo); o > bestOverlap {
			best, bestOverlap = p, o
		}
	}
	return best, bestOverlap > 0
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
