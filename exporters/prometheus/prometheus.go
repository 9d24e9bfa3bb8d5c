// Package prometheus exports pausewatch's events as Prometheus series:
// pause durations as histograms with both classic buckets (10 µs to 10 s,
// fine enough for SLO work) and native buckets, plus exact counters that
// every capture method feeds.
package prometheus

import (
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pausewatch/pausewatch/agent"
)

// DurationBuckets are the classic buckets of every duration histogram:
// from 10 µs (a small Go pause) to 10 s (a full collection of a big heap).
// They are agent.ClassicBuckets, which the request histograms are counted
// in, so that pause and request histograms share their boundaries.
var DurationBuckets = agent.ClassicBuckets

// HDR histogram range and precision: 1 µs to 60 s at 2 significant digits
// keeps one series at about 10 KiB whatever the pause count.
const (
	hdrMin    = 1
	hdrMax    = 60_000_000
	hdrDigits = 2
)

// expireCheckEvery is how many pauses may be recorded between two looks
// at the clock for expiry.
const expireCheckEvery = 256

// Options configure the exporter.
type Options struct {
	// PIDLabel adds a `pid` label to every process series.
	PIDLabel bool
	// PIDSeriesTTL is how long series with a pid label stay after the
	// process exits (default 10 minutes).
	PIDSeriesTTL time.Duration
	// SeriesTTL is how long series keyed by service (no pid label) stay
	// once no process of that service is alive, counted from the last
	// exit (default 1 hour): long enough that a restarting or briefly
	// stopped service keeps its counters, short enough that a node running
	// thousands of short-lived programs (compilers, CLIs) does not keep a
	// series for each for ever. A live but idle service never expires.
	SeriesTTL time.Duration
	// MaxSeries bounds the number of pause series (default 10000). Past it,
	// pauses of new series are counted in pausewatch_series_dropped_total
	// and nowhere else; existing series keep counting.
	MaxSeries int
	// Objective gives the latency objective of a service's port; requests
	// slower than it count as SLO breaches. nil: no objectives.
	Objective Objective
	// Expired, when set, is called with the number of series an expiry
	// sweep dropped (when it dropped any), outside the exporter's lock:
	// the agent returns the memory they held to the OS after a large one.
	Expired func(series int)
	// Now is the clock (tests).
	Now func() time.Time
	// Started says when a process started (default agent.ProcessStart of
	// its StartTime); the report's share of time paused counts a
	// process's wall time from then, or from the exporter's creation if
	// later.
	Started func(agent.Process) time.Time
}

// Exporter aggregates events into Prometheus series. Register it on a
// registry; it is an agent.Exporter and a prometheus.Collector.
type Exporter struct {
	opts Options

	duration *prometheus.HistogramVec
	stopping *prometheus.HistogramVec
	pauses   *prometheus.CounterVec
	seconds  *prometheus.CounterVec
	objects  *prometheus.CounterVec
	dropped  prometheus.Counter

	req  requestMetrics
	cpuM cpuMetrics

	mu       sync.Mutex
	series   map[seriesKey]*series
	requests map[requestKey]*requestSeries
	cpu      map[cpuKey]*cpuSeries
	recent   map[uint32]*recentPauses // per pid, for exemplars
	clean    map[uint32]*cleanProc    // per pid, the last process seen (sanitize)
	// live holds, per process identity, the pids seen alive (an event
	// and no exit yet): series expire only once it is empty.
	live map[identity]map[uint32]struct{}

	lastExpire time.Time
	uncheck    int // pauses recorded since the clock was last looked at
	expired    int // series dropped by expire, not yet told to opts.Expired
	peak       int // most series and request series held since the maps were last rebuilt

	// Wall time the processes were watched, for the report's share of
	// time paused (see wallKey).
	created  time.Time
	watched  map[uint32]*watchedProc
	wallDone map[wallKey]time.Duration
}

// identity is what a process's series share apart from kind, reason,
// method and port: the service and where it runs.
type identity struct {
	runtime, service, namespace, pod, container string
}

func identityOf(p agent.Process) identity {
	return identity{p.Runtime, p.Service, p.Namespace, p.Pod, p.Container}
}

type seriesKey struct {
	runtime, kind, reason, service, method string
	namespace, pod, container              string
	pid                                    string
}

type series struct {
	total    time.Duration // for the report's share of wall time paused
	hdr      *hdrhistogram.Histogram
	pid      uint32
	expireAt time.Time // zero while the process runs
	// The Prometheus children, resolved on first use and kept: hashing
	// label values on every pause is the exporter's largest cost. They
	// stay nil until used, so no empty series is exported.
	duration        prometheus.Observer
	stopping        prometheus.Observer // shared by the series that differ only in reason and method
	pauses, seconds prometheus.Counter
	objects         prometheus.Counter
}

// New returns an Exporter.
func New(opts Options) *Exporter {
	if opts.PIDSeriesTTL == 0 {
		opts.PIDSeriesTTL = 10 * time.Minute
	}
	if opts.SeriesTTL == 0 {
		opts.SeriesTTL = time.Hour
	}
	if opts.MaxSeries == 0 {
		opts.MaxSeries = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Started == nil {
		opts.Started = func(p agent.Process) time.Time { return agent.ProcessStart(p.StartTime) }
	}
	proc := []string{"service", "namespace", "pod", "container"}
	if opts.PIDLabel {
		proc = append(proc, "pid")
	}
	x := &Exporter{
		opts: opts,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pausewatch_pause_duration_seconds",
			Help: "Stop-the-world pauses, from the stop request to the world running again, as seen one by one.",

			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, append([]string{"runtime", "kind", "reason"}, proc...)),
		// No reason label: how long threads take to stop depends on what
		// they run when the stop is requested (a goroutine in a tight loop,
		// a JIT-compiled counted loop), not on why the world is stopped; and
		// it keeps this histogram to one series per kind and process.
		stopping: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pausewatch_pause_stopping_seconds",
			Help: "Stopping time of stop-the-world pauses (Go's stopping time, HotSpot's time to safepoint): the part of the pause spent bringing threads to a stop, from pauses that report it.",

			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, append([]string{"runtime", "kind"}, proc...)),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_pauses_total",
			Help: "Stop-the-world pauses, by capture method.",
		}, append([]string{"runtime", "kind", "method"}, proc...)),
		seconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_pause_seconds_total",
			Help: "Time the world was stopped, by capture method.",
		}, append([]string{"runtime", "kind", "method"}, proc...)),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pausewatch_gc_collected_objects_total",
			Help: "Objects freed by the collections, where the runtime says (CPython).",
		}, append([]string{"runtime", "kind", "method"}, proc...)),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pausewatch_series_dropped_total",
			Help: "Pauses not exported because the series bound was reached.",
		}),
		cpuM:     newCPUMetrics(proc),
		cpu:      make(map[cpuKey]*cpuSeries),
		series:   make(map[seriesKey]*series),
		requests: make(map[requestKey]*requestSeries),
		recent:   make(map[uint32]*recentPauses),
		clean:    make(map[uint32]*cleanProc),
		live:     make(map[identity]map[uint32]struct{}),
		created:  opts.Now(),
		watched:  make(map[uint32]*watchedProc),
		wallDone: make(map[wallKey]time.Duration),
	}
	x.req = newRequestMetrics(x, proc)
	return x
}

func (x *Exporter) key(e agent.Event) seriesKey {
	k := seriesKey{
		runtime: e.Process.Runtime, kind: e.Kind, reason: e.Reason, service: e.Process.Service,
		method: e.Process.Method, namespace: e.Process.Namespace, pod: e.Process.Pod,
		container: e.Process.Container,
	}
	if x.opts.PIDLabel {
		k.pid = strconv.FormatUint(uint64(e.Process.PID), 10)
	}
	return k
}

func (k seriesKey) histLabels(pidLabel bool) []string {
	l := []string{k.runtime, k.kind, k.reason, k.service, k.namespace, k.pod, k.container}
	if pidLabel {
		l = append(l, k.pid)
	}
	return l
}

func (k seriesKey) stoppingLabels(pidLabel bool) []string {
	l := []string{k.runtime, k.kind, k.service, k.namespace, k.pod, k.container}
	if pidLabel {
		l = append(l, k.pid)
	}
	return l
}

// sameStopping says whether two series share their stopping-time series.
func (k seriesKey) sameStopping(o seriesKey) bool {
	k.reason, k.method, o.reason, o.method = "", "", "", ""
	return k == o
}

func (k seriesKey) countLabels(pidLabel bool) []string {
	l := []string{k.runtime, k.kind, k.method, k.service, k.namespace, k.pod, k.container}
	if pidLabel {
		l = append(l, k.pid)
	}
	return l
}

// Record implements agent.Exporter.
func (x *Exporter) Record(e agent.Event) {
	// client_golang panics on a label value that is not valid UTF-8, and
	// the values come from the watched processes. Sources sanitise them
	// already; doing it again here (free for clean values) means no event,
	// however built, can take the agent down.
	x.mu.Lock()
	defer x.unlock()
	fresh := x.sanitize(&e)
	// Expiry walks every series: once a second is enough, not per event.
	// Nor is a clock read per pause (15 % of Record here): pauses look
	// at the clock every expireCheckEvery, other events (CPU samples,
	// request counts: every few seconds per process) and scrapes always.
	x.uncheck++
	if e.Type != agent.Pause || x.uncheck >= expireCheckEvery {
		x.uncheck = 0
		if now := x.opts.Now(); now.Sub(x.lastExpire) >= time.Second {
			x.expire()
			x.lastExpire = now
		}
	}
	// A process as last seen has been made alive and watched already:
	// only its exit undoes either, and drops it from x.clean.
	if !x.opts.PIDLabel && e.Type != agent.Exit && fresh {
		x.alive(e.Process)
	}
	if e.Type == agent.Exit {
		delete(x.clean, e.Process.PID)
		x.unwatch(e.Process.PID, e.Process.StartTime)
	} else if fresh {
		x.watch(e.Process)
	}
	switch e.Type {
	case agent.Exit:
		delete(x.recent, e.Process.PID)
		if !x.opts.PIDLabel {
			x.exited(e.Process)
			return
		}
		at := x.opts.Now().Add(x.opts.PIDSeriesTTL)
		for s := range x.expiries {
			if s.pid == e.Process.PID {
				*s.at = at
			}
		}
		delete(x.recent, e.Process.PID)
	case agent.RequestCounts:
		x.recordRequests(e)
	case agent.Request:
		x.recordStory(e)
	case agent.CPUTime:
		x.recordCPUEvent(e)
	case agent.Pause, agent.PauseSample, agent.PauseTotals:
		x.recordCPUEvent(e)
		k := x.key(e)
		s := x.series[k]
		if s == nil {
			if len(x.series) >= x.opts.MaxSeries {
				x.dropped.Inc()
				return
			}
			s = &series{hdr: hdrhistogram.New(hdrMin, hdrMax, hdrDigits), pid: e.Process.PID}
			x.series[k] = s
		}
		// A pid series that sees pauses again belongs to a live process.
		s.expireAt = time.Time{}
		sec := e.Duration.Seconds()
		if e.Type == agent.Pause {
			x.rememberPause(e)
		}
		if e.Type != agent.PauseTotals {
			s.hdr.RecordValue(min(max(e.Duration.Microseconds(), hdrMin), hdrMax))
			if s.duration == nil {
				s.duration = x.duration.WithLabelValues(k.histLabels(x.opts.PIDLabel)...)
			}
			s.duration.Observe(sec)
			// Only pauses whose runtime reports their stopping time (Go
			// 1.23+, HotSpot with RuntimeService in .symtab): 0 means unknown.
			if e.Stopping > 0 {
				if s.stopping == nil {
					s.stopping = x.stopping.WithLabelValues(k.stoppingLabels(x.opts.PIDLabel)...)
				}
				s.stopping.Observe(e.Stopping.Seconds())
			}
		}
		if e.Type != agent.PauseSample {
			s.total += e.Duration
			n := 1.0
			if e.Type == agent.PauseTotals {
				n = float64(e.Count)
			}
			if s.pauses == nil {
				s.pauses = x.pauses.WithLabelValues(k.countLabels(x.opts.PIDLabel)...)
				s.seconds = x.seconds.WithLabelValues(k.countLabels(x.opts.PIDLabel)...)
			}
			s.pauses.Add(n)
			s.seconds.Add(sec)
		}
		if e.CollectedKnown {
			if s.objects == nil {
				s.objects = x.objects.WithLabelValues(k.countLabels(x.opts.PIDLabel)...)
			}
			s.objects.Add(float64(e.Collected))
		}
	}
}

// cleanProc is a process as an event carried it and as sanitised.
type cleanProc struct{ raw, clean agent.Process }

// sanitize passes e through agent.LabelValue (client_golang panics on a
// label value that is not valid UTF-8, and the values come from the
// watched processes), the process's strings from a cache per pid: a
// process equal to the one cached sanitises the same. It reports whether
// the process is not the one last seen with its pid; x.mu is held.
func (x *Exporter) sanitize(e *agent.Event) (fresh bool) {
	c := x.clean[e.Process.PID]
	if c == nil || c.raw != e.Process {
		c = &cleanProc{raw: e.Process, clean: e.Process.Sanitized()}
		x.clean[e.Process.PID] = c
		fresh = true
	}
	*e = e.SanitizedWith(c.clean)
	return fresh
}

// alive notes a process of an identity as running, and keeps every series
// of the identity from expiring; x.mu is held.
func (x *Exporter) alive(p agent.Process) {
	id := identityOf(p)
	pids := x.live[id]
	if _, ok := pids[p.PID]; ok {
		return
	}
	if pids == nil {
		pids = map[uint32]struct{}{}
		x.live[id] = pids
	}
	pids[p.PID] = struct{}{}
	x.setExpiry(id, time.Time{})
}

// exited notes the exit of a process; when it was the identity's last,
// the identity's series expire SeriesTTL from now; x.mu is held.
func (x *Exporter) exited(p agent.Process) {
	id := identityOf(p)
	pids, ok := x.live[id]
	if !ok {
		return // never seen alive: it has no series
	}
	delete(pids, p.PID)
	if len(pids) > 0 {
		return
	}
	delete(x.live, id)
	x.setExpiry(id, x.opts.Now().Add(x.opts.SeriesTTL))
}

// setExpiry sets when every series of an identity expires (zero: never).
func (x *Exporter) setExpiry(id identity, at time.Time) {
	for s := range x.expiries {
		if s.id == id {
			*s.at = at
		}
	}
}

// expiry is where one series of any kind keeps when it expires, with
// what an exit or an identity's liveness selects it by.
type expiry struct {
	id  identity
	pid uint32
	at  *time.Time
}

// expiries yields the expiry of every pause, request and CPU series: a
// process's exit and its identity's liveness concern all three kinds
// alike, and a kind left out would outlive its process; x.mu is held.
func (x *Exporter) expiries(yield func(expiry) bool) {
	for k, s := range x.series {
		if !yield(expiry{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, s.pid, &s.expireAt}) {
			return
		}
	}
	for k, s := range x.requests {
		if !yield(expiry{identity{k.runtime, k.service, k.namespace, k.pod, k.container}, s.pid, &s.expireAt}) {
			return
		}
	}
	for k, s := range x.cpu {
		if !yield(expiry{k.identity(), s.pid, &s.expireAt}) {
			return
		}
	}
}

// Live is the number of process identities with a live process, and the
// number of series kept: what stays bounded on a busy node.
func (x *Exporter) Live() (identities, series int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.live), len(x.series) + len(x.requests) + len(x.cpu)
}

// expire drops series whose processes exited more than their TTL ago; x.mu is held.
func (x *Exporter) expire() {
	now := x.opts.Now()
	before := len(x.series) + len(x.requests) + len(x.cpu)
	x.expireCPU(now)
	for k, s := range x.series {
		if s.expireAt.IsZero() || now.Before(s.expireAt) {
			continue
		}
		delete(x.series, k)
		x.duration.DeleteLabelValues(k.histLabels(x.opts.PIDLabel)...)
		x.pauses.DeleteLabelValues(k.countLabels(x.opts.PIDLabel)...)
		x.seconds.DeleteLabelValues(k.countLabels(x.opts.PIDLabel)...)
		x.objects.DeleteLabelValues(k.countLabels(x.opts.PIDLabel)...)
		shared := false
		for other := range x.series {
			shared = shared || other.sameStopping(k)
		}
		if !shared {
			x.stopping.DeleteLabelValues(k.stoppingLabels(x.opts.PIDLabel)...)
		}
		// A live series of a reused pid may share those children: it
		// resolves them again on its next pause.
		for _, other := range x.series {
			if other.pid == s.pid {
				other.duration, other.stopping, other.pauses, other.seconds, other.objects = nil, nil, nil, nil, nil
			}
		}
	}
	for k, s := range x.requests {
		if s.expireAt.IsZero() || now.Before(s.expireAt) {
			continue
		}
		delete(x.requests, k)
		match := prometheus.Labels{"runtime": k.runtime, "service": k.service, "port": k.port,
			"namespace": k.namespace, "pod": k.pod, "container": k.container}
		if x.opts.PIDLabel {
			match["pid"] = k.pid
		}
		x.req.pause.DeletePartialMatch(match)
		x.req.breaches.DeletePartialMatch(match)
	}
	x.forgetWalls()
	x.expired += before - len(x.series) - len(x.requests) - len(x.cpu)
	x.shrink()
}

// shrink rebuilds the tables once they hold a quarter of what they grew
// to, from at least 256 series: Go maps never give back their buckets,
// and a burst of short-lived services would otherwise keep the memory of
// its largest moment for the agent's lifetime; x.mu is held.
func (x *Exporter) shrink() {
	n := len(x.series) + len(x.requests) + len(x.cpu)
	x.peak = max(x.peak, n)
	if x.peak < 256 || n > x.peak/4 {
		return
	}
	x.peak = n
	x.series = rebuilt(x.series)
	x.requests = rebuilt(x.requests)
	x.cpu = rebuilt(x.cpu)
	x.recent = rebuilt(x.recent)
	x.clean = rebuilt(x.clean)
	x.live = rebuilt(x.live)
	x.watched = rebuilt(x.watched)
	x.wallDone = rebuilt(x.wallDone)
}

// rebuilt copies m into a map sized for what it holds.
func rebuilt[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// unlock releases x.mu, then tells opts.Expired of the series dropped.
func (x *Exporter) unlock() {
	n := x.expired
	x.expired = 0
	x.mu.Unlock()
	if n > 0 && x.opts.Expired != nil {
		x.opts.Expired(n)
	}
}

// collectors are the exporter's metric families: Describe and Collect
// walk this one list, so a family cannot be collected undescribed.
func (x *Exporter) collectors() []prometheus.Collector {
	return slices.Concat([]prometheus.Collector{x.duration, x.stopping, x.pauses, x.seconds, x.objects, x.dropped},
		x.req.collectors(), x.cpuM.collectors())
}

// Describe implements prometheus.Collector.
func (x *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range x.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (x *Exporter) Collect(ch chan<- prometheus.Metric) {
	x.mu.Lock()
	x.expire()
	x.unlock()
	for _, c := range x.collectors() {
		c.Collect(ch)
	}
}

// Summary is one pause series as the agent's own HDR histogram sees it.
type Summary struct {
	Runtime string  `json:"runtime"`
	Kind    string  `json:"kind"`
	Reason  string  `json:"reason"`
	Service string  `json:"service"`
	Method  string  `json:"method"`
	PID     string  `json:"pid,omitempty"`
	Count   int64   `json:"count"`
	P50     float64 `json:"p50_seconds"`
	P99     float64 `json:"p99_seconds"`
	P999    float64 `json:"p999_seconds"`
	Max     float64 `json:"max_seconds"`
}

// Summaries returns quantiles of every pause series.
func (x *Exporter) Summaries() []Summary {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Summary, 0, len(x.series))
	sec := func(us int64) float64 { return math.Round(float64(us)) / 1e6 }
	for k, s := range x.series {
		if s.hdr.TotalCount() == 0 {
			continue // counters only (hsperfdata totals)
		}
		out = append(out, Summary{
			Runtime: k.runtime, Kind: k.kind, Reason: k.reason, Service: k.service, Method: k.method, PID: k.pid,
			Count: s.hdr.TotalCount(),
			P50:   sec(s.hdr.ValueAtQuantile(50)), P99: sec(s.hdr.ValueAtQuantile(99)),
			P999: sec(s.hdr.ValueAtQuantile(99.9)), Max: sec(s.hdr.Max()),
		})
	}
	return out
}
