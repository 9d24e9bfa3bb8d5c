package kube

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pausewatch/pausewatch/agent"
)

// Defaults of Options.
const (
	// DefaultWait bounds how long a new container process's events wait
	// for its pod: the kubelet reports a container's id a second or so
	// after it starts, and the informer hears of it within milliseconds.
	DefaultWait = 5 * time.Second
	// DefaultMaxPending bounds the events one process holds while it
	// waits; past it they go out with the identity known by then.
	DefaultMaxPending = 8192
)

// Options configures an Identity.
type Options struct {
	// Pods is the node's pods; nil off Kubernetes (then no process waits).
	Pods *Pods
	// Selection picks the processes reported on; nil: all of them.
	Selection *Selection
	// Wait and MaxPending: see DefaultWait and DefaultMaxPending.
	Wait       time.Duration
	MaxPending int
	// ProcFS is the procfs root the executable's path is read from.
	ProcFS string
	Logger *slog.Logger
}

// Identity sits between a source and the exporters. It gives each event's
// process its pod identity (namespace, pod, container, workload) and
// service name, and drops the events of processes the selection leaves
// out. A new container process's events are held, in order, until its pod
// is known or Wait has passed, so that its series are born with their pod
// labels; no other process's events wait for it.
type Identity struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	procs map[procKey]*procState

	misses, excluded, timeouts atomic.Uint64
	pending                    atomic.Int64
}

type procKey struct {
	pid   uint32
	start uint64
}

type procState struct {
	first    time.Time
	settled  bool // identity final for now: events flow
	exe      string
	pod      *Pod
	ident    agent.Process // the process as exported
	excluded string
	queue    []agent.Event
}

// New returns an Identity; Wrap puts it in front of a source.
func New(opts Options) *Identity {
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.ProcFS == "" {
		opts.ProcFS = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Identity{opts: opts, log: opts.Logger, procs: map[procKey]*procState{}}
}

// Wrap returns a source that sends src's events through the Identity.
func (x *Identity) Wrap(src agent.Source) agent.Source { return wrapped{x, src} }

type wrapped struct {
	x   *Identity
	src agent.Source
}

func (w wrapped) Run(ctx context.Context, out chan<- agent.Event) error {
	return w.x.run(ctx, w.src, out)
}

func (x *Identity) run(ctx context.Context, src agent.Source, out chan<- agent.Event) error {
	in := make(chan agent.Event, 1024)
	errc := make(chan error, 1)
	go func() {
		errc <- src.Run(ctx, in)
		close(in)
	}()
	var changed <-chan struct{}
	if x.opts.Pods != nil {
		changed = x.opts.Pods.Changed()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var buf []agent.Event
	emit := func(evs []agent.Event) {
		for _, e := range evs {
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}
	for {
		select {
		case e, ok := <-in:
			if !ok {
				// The source stopped: what is held goes out as it is.
				emit(x.flushAll())
				return <-errc
			}
			if e.Type == agent.Sync {
				// A barrier, of no process: it follows what came before
				// it (a process waiting for its pod keeps its events).
				emit([]agent.Event{e})
				continue
			}
			// One buffer for every event: a slice per event was an
			// allocation per pause.
			buf = x.handle(buf[:0], e, time.Now)
			emit(buf)
		case <-changed:
			emit(x.recheck(time.Now()))
		case now := <-tick.C:
			emit(x.recheck(now))
		}
	}
}

// handle appends to out the events ready to go out once e is in. The
// clock (now) is read only for a process that waits for its pod.
func (x *Identity) handle(out []agent.Event, e agent.Event, now func() time.Time) []agent.Event {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := procKey{e.Process.PID, e.Process.StartTime}
	st := x.procs[k]
	if st == nil {
		st = &procState{first: now(), exe: x.exePath(e.Process)}
		x.procs[k] = st
		x.pending.Add(1)
	}
	if x.lookup(st, e.Process) || e.Type == agent.Exit || (!st.settled && now().Sub(st.first) >= x.opts.Wait) {
		// Found, nothing to wait for, or the process is gone (nothing
		// more will be learnt by waiting), or the wait is over.
		out = x.settle(out, st, e.Process)
	}
	if e.Type == agent.Exit {
		delete(x.procs, k)
		return x.ready(out, st, e)
	}
	if !st.settled {
		st.queue = append(st.queue, e)
		if len(st.queue) >= x.opts.MaxPending {
			return x.settle(out, st, e.Process)
		}
		return out
	}
	return x.ready(out, st, e)
}

// lookup finds the process's pod, and says whether its identity is as
// complete as it will get: its pod and container are known, it is in no
// container, or the agent is off Kubernetes. A settled process whose pod
// was not found (or whose container status came late) takes the pod when
// it appears: the one identity change allowed.
func (x *Identity) lookup(st *procState, p agent.Process) bool {
	inContainer := p.ContainerID != "" || p.PodUID != ""
	if x.opts.Pods == nil || !inContainer {
		return true
	}
	if st.settled && st.pod != nil && st.ident.Container != "" {
		// Known: kept whatever the API server says or fails to say, so
		// an outage or a deleted pod does not change a live process's
		// identity.
		return true
	}
	pod := x.opts.Pods.Lookup(p.PodUID, p.ContainerID)
	if pod == nil {
		return false
	}
	if st.settled && pod != st.pod {
		st.pod = pod
		x.apply(st, p)
	}
	st.pod = pod
	return pod.ContainerName(p.ContainerID) != ""
}

// ready appends e with the process's identity to out, unless it is
// excluded.
func (x *Identity) ready(out []agent.Event, st *procState, e agent.Event) []agent.Event {
	if st.excluded != "" {
		if e.Type != agent.Exit {
			x.excluded.Add(1)
		}
		return out
	}
	if x.opts.Pods != nil && st.pod == nil && e.Process.ContainerID != "" && e.Type != agent.Exit {
		x.misses.Add(1)
	}
	e.Process = st.ident
	return append(out, e)
}

// settle ends a process's wait and appends its held events to out.
func (x *Identity) settle(out []agent.Event, st *procState, p agent.Process) []agent.Event {
	if st.settled {
		return out
	}
	st.settled = true
	x.pending.Add(-1)
	x.apply(st, p)
	if x.opts.Pods != nil && (p.ContainerID != "" || p.PodUID != "") && (st.pod == nil || st.ident.Container == "") {
		x.timeouts.Add(1)
		x.log.Debug("pod identity incomplete when the wait ended; exporting what is known", "pid", p.PID,
			"container_id", p.ContainerID, "pod_uid", p.PodUID, "pod", st.ident.Pod)
	}
	q := st.queue
	st.queue = nil
	for _, e := range q {
		out = x.ready(out, st, e)
	}
	return out
}

// apply computes the exported identity and the selection verdict.
func (x *Identity) apply(st *procState, p agent.Process) {
	st.ident = Apply(p, st.pod)
	st.excluded = x.opts.Selection.Excluded(Subject{Runtime: p.Runtime, ExePath: st.exe, Pod: st.pod})
}

// recheck settles the waiting processes whose pod has come or whose wait
// is over, and returns their held events.
func (x *Identity) recheck(now time.Time) []agent.Event {
	if x.pending.Load() == 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []agent.Event
	for _, st := range x.procs {
		if st.settled || len(st.queue) == 0 {
			continue
		}
		p := st.queue[0].Process
		if x.lookup(st, p) || now.Sub(st.first) >= x.opts.Wait {
			out = x.settle(out, st, p)
		}
	}
	return out
}

// flushAll settles every waiting process.
func (x *Identity) flushAll() []agent.Event {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []agent.Event
	for _, st := range x.procs {
		if !st.settled && len(st.queue) > 0 {
			out = x.settle(out, st, st.queue[0].Process)
		}
	}
	return out
}

func (x *Identity) exePath(p agent.Process) string {
	if !x.opts.Selection.NeedsExePath() {
		return p.Exe
	}
	t, err := os.Readlink(filepath.Join(x.opts.ProcFS, strconv.FormatUint(uint64(p.PID), 10), "exe"))
	if err != nil {
		return p.Exe
	}
	return agent.LabelValue(strings.TrimSuffix(t, " (deleted)"))
}

// Describe answers for /api/processes: the process as it is exported, and
// why the selection leaves it out ("" when it does not).
func (x *Identity) Describe(p agent.Process) (agent.Process, string) {
	x.mu.Lock()
	st := x.procs[procKey{p.PID, p.StartTime}]
	if st != nil && st.settled {
		ident, why := st.ident, st.excluded
		x.mu.Unlock()
		ident.Method = p.Method // the source's word on capture is newer
		return ident, why
	}
	x.mu.Unlock()
	var pod *Pod
	if x.opts.Pods != nil && (p.ContainerID != "" || p.PodUID != "") {
		pod = x.opts.Pods.Lookup(p.PodUID, p.ContainerID)
	}
	return Apply(p, pod), x.opts.Selection.Excluded(Subject{Runtime: p.Runtime, ExePath: x.exePath(p), Pod: pod})
}

// Apply returns p with the pod's identity and the service name the chain
// gives: the process's own OTEL_SERVICE_NAME; else the pod's
// app.kubernetes.io/name label, else its workload's name, else its
// container's name; else what the source found (the executable, or the
// main class, jar or script).
func Apply(p agent.Process, pod *Pod) agent.Process {
	if pod == nil {
		return p
	}
	p.Namespace, p.Pod, p.PodUID = pod.Namespace, pod.Name, pod.UID
	p.Container = pod.ContainerName(p.ContainerID)
	p.WorkloadKind, p.Workload = pod.WorkloadKind, pod.Workload
	if p.ServiceFromEnv {
		return p
	}
	for _, s := range []string{pod.Labels["app.kubernetes.io/name"], pod.Workload, p.Container} {
		if s != "" {
			p.Service = s
			break
		}
	}
	return p
}

var (
	descReachable = prometheus.NewDesc("pausewatch_k8s_api_reachable",
		"1 when the agent's last list or watch of this node's pods succeeded; 0 while the API server is unreachable (processes keep their last known pod identity).", nil, nil)
	descAPIErrors = prometheus.NewDesc("pausewatch_k8s_api_errors_total",
		"List and watch calls to the API server that failed.", nil, nil)
	descPods = prometheus.NewDesc("pausewatch_k8s_pods",
		"Pods of this node the agent knows, deleted ones still kept included.", nil, nil)
	descMisses = prometheus.NewDesc("pausewatch_k8s_lookup_misses_total",
		"Events of container processes exported without their pod's identity (the pod was not found within the wait, or the API server was unreachable).", nil, nil)
	descTimeouts = prometheus.NewDesc("pausewatch_k8s_identity_wait_timeouts_total",
		"Container processes whose pod was not known when their wait for it ended.", nil, nil)
	descPending = prometheus.NewDesc("pausewatch_k8s_identity_pending_processes",
		"Container processes whose events are held until their pod is known.", nil, nil)
	descExcluded = prometheus.NewDesc("pausewatch_selection_excluded_events_total",
		"Events of processes the selection in the config file leaves out.", nil, nil)
)

// DescribeMetrics sends the descriptions of the Identity's metrics.
func (x *Identity) DescribeMetrics(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReachable, descAPIErrors, descPods, descMisses, descTimeouts, descPending, descExcluded} {
		ch <- d
	}
}

// Collector returns the Identity's metrics as a prometheus.Collector.
func (x *Identity) Collector() prometheus.Collector { return collector{x} }

type collector struct{ x *Identity }

func (c collector) Describe(ch chan<- *prometheus.Desc) { c.x.DescribeMetrics(ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	x := c.x
	ch <- prometheus.MustNewConstMetric(descExcluded, prometheus.CounterValue, float64(x.excluded.Load()))
	if x.opts.Pods == nil {
		return // off Kubernetes: no k8s series at all
	}
	up := 0.0
	if x.opts.Pods.Reachable() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descReachable, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descAPIErrors, prometheus.CounterValue, float64(x.opts.Pods.Errors()))
	ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(x.opts.Pods.Len()))
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(x.misses.Load()))
	ch <- prometheus.MustNewConstMetric(descTimeouts, prometheus.CounterValue, float64(x.timeouts.Load()))
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(x.pending.Load()))
}
