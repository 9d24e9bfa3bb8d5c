package prometheus

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/pausewatch/pausewatch/agent"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func pause(pid uint32, service, kind, reason string, d time.Duration) agent.Event {
	return agent.Event{
		Type:    agent.Pause,
		Process: agent.Process{PID: pid, Runtime: "go", Method: "uprobe", Service: service},
		Kind:    kind, Reason: reason, Duration: d,
	}
}

func stopping(e agent.Event, d time.Duration) agent.Event {
	e.Stopping = d
	return e
}

// exposition renders the registry in the text format, for golden files.
func exposition(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the exposition (go test -update rewrites it):\n%s", path, got)
	}
}

func TestExposition(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"service.prom", Options{}},
		{"pid.prom", Options{PIDLabel: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := New(tc.opts)
			x.Record(stopping(pause(10, "checkout", "gc", "GC mark termination", 20*time.Microsecond), 8*time.Microsecond))
			x.Record(stopping(pause(10, "checkout", "gc", "GC mark termination", 120*time.Microsecond), 70*time.Microsecond))
			x.Record(stopping(pause(10, "checkout", "gc", "GC sweep termination", 40*time.Microsecond), 30*time.Microsecond))
			x.Record(pause(11, "checkout", "other", "read mem stats", 3*time.Millisecond))
			x.Record(pause(12, "billing", "gc", "GC sweep termination", 2*time.Second))
			py := pause(13, "api", "gc", "gen0", 400*time.Microsecond)
			py.Process.Runtime, py.Process.Method, py.Collected, py.CollectedKnown = "python", "usdt", 120, true
			x.Record(py)
			x.Record(agent.Event{Type: agent.PauseTotals, Process: agent.Process{PID: 14, Runtime: "jvm", Method: "hsperfdata", Service: "orders"},
				Kind: "gc", Count: 3, Duration: 30 * time.Millisecond})
			x.Record(agent.Event{Type: agent.PauseSample, Process: agent.Process{PID: 14, Runtime: "jvm", Method: "hsperfdata", Service: "orders"},
				Kind: "gc", Reason: "G1 Evacuation Pause", Duration: 9 * time.Millisecond})
			golden(t, tc.name, exposition(t, x))
		})
	}
}

func TestCountersSurviveRestart(t *testing.T) {
	x := New(Options{})
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond))
	x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: 10, Service: "checkout"}})
	// The service comes back under a new pid: the same series goes on.
	x.Record(pause(20, "checkout", "gc", "GC mark termination", time.Millisecond))
	if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", "checkout", "", "", "")); got != 2 {
		t.Errorf("pauses_total after restart = %v, want 2", got)
	}
}

func TestPIDSeriesExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	x := New(Options{PIDLabel: true, PIDSeriesTTL: time.Minute, Now: func() time.Time { return now }})
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(11, "checkout", "gc", "GC mark termination", time.Millisecond))
	x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: 10}})

	count := func() int { return testutil.CollectAndCount(x, "pausewatch_pauses_total") }
	now = now.Add(59 * time.Second)
	if n := count(); n != 2 {
		t.Fatalf("before the TTL: %d series, want 2", n)
	}
	now = now.Add(2 * time.Second)
	if n := count(); n != 1 {
		t.Fatalf("after the TTL: %d series, want 1 (pid 11 only)", n)
	}
	if n := len(x.Summaries()); n != 1 {
		t.Errorf("summaries after expiry: %d, want 1", n)
	}
}

// Series keyed by service expire SeriesTTL after the last process of the
// service exits; a live (even idle) or restarted service keeps them.
func TestServiceSeriesExpireAfterLastExit(t *testing.T) {
	now := time.Unix(1000, 0)
	x := New(Options{SeriesTTL: time.Hour, Now: func() time.Time { return now }})
	exit := func(pid uint32, service string) {
		x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: pid, Runtime: "go", Method: "uprobe", Service: service}})
	}
	req := pause(12, "api", "", "", 0)
	req.Type, req.Port, req.Duration = agent.Request, 8080, time.Millisecond
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(11, "checkout", "other", "read mem stats", time.Millisecond))
	x.Record(pause(12, "api", "gc", "GC mark termination", time.Millisecond))
	x.Record(counted(req, 0))
	x.Record(pause(13, "compile", "gc", "GC mark termination", time.Millisecond))
	count := func(name string) int { return testutil.CollectAndCount(x, name) }
	if n := count("pausewatch_pauses_total"); n != 4 {
		t.Fatalf("%d pause counter series, want 4", n)
	}

	exit(10, "checkout") // pid 11 of checkout lives on
	exit(13, "compile")  // the last (only) compile
	exit(12, "api")
	now = now.Add(30 * time.Minute)
	x.Record(pause(14, "api", "gc", "GC mark termination", time.Millisecond)) // api restarted in time
	now = now.Add(31 * time.Minute)
	if n := count("pausewatch_pauses_total"); n != 3 {
		t.Fatalf("after the TTL: %d pause counter series, want 3 (checkout gc and other, api)", n)
	}
	if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", "api", "", "", "")); got != 2 {
		t.Errorf("api pauses_total across its restart = %v, want 2", got)
	}
	if n := count("pausewatch_request_duration_seconds"); n == 0 {
		t.Errorf("api's request series expired while api runs again")
	}
	exit(14, "api")
	exit(11, "checkout")
	now = now.Add(61 * time.Minute)
	if n := count("pausewatch_pauses_total") + count("pausewatch_request_duration_seconds"); n != 0 {
		t.Errorf("%d series left an hour after every process exited", n)
	}
	if ids, series := x.Live(); ids != 0 || series != 0 {
		t.Errorf("live identities %d, series %d; want 0, 0", ids, series)
	}
}

func TestSeriesBound(t *testing.T) {
	x := New(Options{MaxSeries: 2})
	x.Record(pause(1, "a", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(2, "b", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(3, "c", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(1, "a", "gc", "GC mark termination", time.Millisecond)) // existing series still counts
	if got := testutil.ToFloat64(x.dropped); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", "a", "", "", "")); got != 2 {
		t.Errorf("series a = %v, want 2", got)
	}
}

func TestSummaries(t *testing.T) {
	x := New(Options{})
	for i := 1; i <= 100; i++ {
		x.Record(pause(1, "a", "gc", "GC mark termination", time.Duration(i)*time.Microsecond))
	}
	s := x.Summaries()
	if len(s) != 1 || s[0].Count != 100 {
		t.Fatalf("summaries %+v", s)
	}
	// 2 significant digits: within 1 % of the exact quantiles.
	for _, q := range []struct {
		name      string
		got, want float64
	}{{"p50", s[0].P50, 50e-6}, {"p99", s[0].P99, 99e-6}, {"max", s[0].Max, 100e-6}} {
		if d := q.got/q.want - 1; d > 0.01 || d < -0.01 {
			t.Errorf("%s = %v, want %v ±1%%", q.name, q.got, q.want)
		}
	}
}

func TestHealth(t *testing.T) {
	h := NewHealth("v1", func() map[RuntimeMethod]int {
		return map[RuntimeMethod]int{{"go", "uprobe"}: 3, {"go", "none"}: 1}
	}, func() map[string]uint64 { return map[string]uint64{"ringbuf": 5} })
	want := `
# HELP pausewatch_events_lost_total Events lost, by where: ringbuf (kernel buffer full), unpaired_end (pause end without its begin), connections (connection or listening-port table full), io_uring_direct_accept (connections accepted by io_uring into a fixed-file slot: their requests are not measured), request_histograms (requests not counted: the kernel's request histogram table was full), max_processes (tracking bound), unresolved (pauses of a process discovery did not resolve in time), watch (slow watch subscriber), otlp_log_rate (OTLP log records past --otlp-log-rate), mapping_rate_limited (executable mappings folded into a window of the mapping signal, looked at once with its follow-up), other_runtime (pauses of a second runtime in a process tracked for another), gc_cpu_implausible (Go GC CPU readings not taken: backwards or faster than the CPUs allow), gc_threads_over_limit (threads named like JVM collector threads past the per-process bound: their CPU is not read), pause_rate (pauses of a process past its budget of 20,000 records a second: counted here, not sent).
# TYPE pausewatch_events_lost_total counter
pausewatch_events_lost_total{source="ringbuf"} 5
# HELP pausewatch_processes Runtime processes the agent knows, by capture method (none: seen but not captured; see /api/processes for why).
# TYPE pausewatch_processes gauge
pausewatch_processes{method="none",runtime="go"} 1
pausewatch_processes{method="uprobe",runtime="go"} 3
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(want), "pausewatch_processes", "pausewatch_events_lost_total"); err != nil {
		t.Error(err)
	}
}

func TestNativeHistogram(t *testing.T) {
	x := New(Options{})
	for _, d := range []time.Duration{20 * time.Microsecond, 21 * time.Microsecond, 5 * time.Millisecond} {
		x.Record(pause(1, "a", "gc", "GC mark termination", d))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(x)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pausewatch_pause_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		// Factor 1.1 asks for schema 3 (2^(1/8) ≈ 1.09); classic buckets stay too.
		if h.GetSchema() != 3 || len(h.GetPositiveSpan()) == 0 || len(h.GetBucket()) != len(DurationBuckets) {
			t.Errorf("schema %d, %d spans, %d classic buckets", h.GetSchema(), len(h.GetPositiveSpan()), len(h.GetBucket()))
		}
		var n int64
		for _, d := range h.GetPositiveDelta() {
			n += d
			if n < 0 {
				t.Fatal("negative native bucket count")
			}
		}
		return
	}
	t.Fatal("no pausewatch_pause_duration_seconds family")
}

func TestRequestExemplarPointsAtPause(t *testing.T) {
	x := New(Options{Objective: func(string, uint16) (time.Duration, bool) { return 10 * time.Millisecond, true }})
	t0 := time.Unix(1700000000, 0)
	proc := agent.Process{PID: 5, Runtime: "go", Method: "uprobe", Service: "api"}
	x.Record(agent.Event{Type: agent.Pause, Process: proc, Kind: "other", Reason: "write heap dump", Start: t0, Duration: 40 * time.Millisecond})
	slow := agent.Event{Type: agent.Request, Process: proc, Port: 8080, Start: t0.Add(-5 * time.Millisecond),
		Duration: 50 * time.Millisecond, PauseInside: 40 * time.Millisecond}
	x.Record(slow) // its story: the exemplar
	x.Record(counted(slow, 10*time.Millisecond))
	x.Record(counted(agent.Event{Type: agent.Request, Process: proc, Port: 8080, Start: t0.Add(time.Second), Duration: time.Millisecond}, 10*time.Millisecond))

	reg := prometheus.NewRegistry()
	reg.MustRegister(x)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "pausewatch_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					labels := map[string]string{}
					for _, l := range ex.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["pause_reason"] != "write heap dump" || labels["pause_start"] != "1700000000.000000" {
						t.Errorf("exemplar %v", labels)
					}
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("no exemplar on the paused request")
	}
	if got := testutil.ToFloat64(x.req.breaches.WithLabelValues("go", "8080", "pause", "api", "", "", "")); got != 1 {
		t.Errorf("pause breaches %v, want 1", got)
	}
}

// A pid reused after its series expired: the new process's pauses are
// exported, though the old series shared its label children.
func TestPIDReuseAfterExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	x := New(Options{PIDLabel: true, PIDSeriesTTL: time.Minute, Now: func() time.Time { return now }})
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond))
	x.Record(pause(10, "checkout", "gc", "GC sweep termination", time.Millisecond))
	x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: 10}})
	now = now.Add(30 * time.Second)
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond)) // pid 10 again
	now = now.Add(40 * time.Second)                                                // the sweep series expires
	testutil.CollectAndCount(x)
	x.Record(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond))
	if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", "checkout", "", "", "", "10")); got != 1 {
		t.Errorf("pauses_total of the reused pid = %v, want 1 (counted again from the expiry)", got)
	}
}

// A burst of short-lived services: once their series expire, Expired is
// told how many went, and the tables rebuilt smaller still count the
// service that runs on.
func TestExpiredBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	var told []int
	x := New(Options{SeriesTTL: time.Minute, Now: func() time.Time { return now },
		Expired: func(n int) { told = append(told, n) }})
	x.Record(pause(1, "api", "gc", "GC mark termination", time.Millisecond))
	const n = 600
	for i := range n {
		pid := uint32(100 + i)
		x.Record(pause(pid, fmt.Sprintf("cli-%d", i), "gc", "GC mark termination", time.Millisecond))
		x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: pid, Runtime: "go", Method: "uprobe", Service: fmt.Sprintf("cli-%d", i)}})
	}
	if c := testutil.CollectAndCount(x, "pausewatch_pauses_total"); c != n+1 || len(told) != 0 {
		t.Fatalf("%d pause counter series, Expired told %v; want %d, nothing", c, told, n+1)
	}
	now = now.Add(2 * time.Minute)
	if c := testutil.CollectAndCount(x, "pausewatch_pauses_total"); c != 1 {
		t.Fatalf("after the TTL: %d pause counter series, want 1 (api)", c)
	}
	sum := 0
	for _, v := range told {
		sum += v
	}
	if sum != n {
		t.Errorf("Expired told %v, %d series in all; want %d", told, sum, n)
	}
	if x.peak != 1 {
		t.Errorf("tables not rebuilt: peak %d, want 1", x.peak)
	}
	x.Record(pause(1, "api", "gc", "GC mark termination", time.Millisecond))
	if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", "api", "", "", "")); got != 2 {
		t.Errorf("api pauses_total across the rebuild = %v, want 2", got)
	}
	if ids, series := x.Live(); ids != 1 || series != 1 {
		t.Errorf("live identities %d, series %d; want 1, 1", ids, series)
	}
}

// The stopping-time histogram takes only pauses that report their stopping
// time, one series per runtime, kind and process whatever the reason, and
// stays while any series that feeds it does.
func TestStoppingTime(t *testing.T) {
	now := time.Unix(1000, 0)
	x := New(Options{PIDLabel: true, PIDSeriesTTL: time.Minute, Now: func() time.Time { return now }})
	x.Record(stopping(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond), 300*time.Microsecond))
	x.Record(stopping(pause(10, "checkout", "gc", "GC sweep termination", time.Millisecond), 100*time.Microsecond))
	x.Record(pause(10, "checkout", "other", "read mem stats", time.Millisecond)) // Go before 1.23: unknown
	x.Record(agent.Event{Type: agent.PauseTotals, Process: agent.Process{PID: 14, Runtime: "jvm", Method: "hsperfdata", Service: "orders"},
		Kind: "gc", Count: 3, Duration: 30 * time.Millisecond, Stopping: time.Millisecond}) // counters only

	count := func() int { return testutil.CollectAndCount(x, "pausewatch_pause_stopping_seconds") }
	if n := count(); n != 1 {
		t.Fatalf("%d stopping series, want 1 (go gc of pid 10)", n)
	}
	h := x.stopping.WithLabelValues("go", "gc", "checkout", "", "", "", "10").(prometheus.Histogram)
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		t.Fatal(err)
	}
	if c, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); c != 2 || math.Abs(sum-400e-6) > 1e-12 {
		t.Errorf("stopping histogram: count %d sum %v, want 2 and 0.0004", c, sum)
	}

	// pid 10 exits and comes back (pid reuse) with a mark termination only:
	// the sweep series expires, the stopping series it shared stays.
	x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: 10}})
	now = now.Add(30 * time.Second)
	x.Record(stopping(pause(10, "checkout", "gc", "GC mark termination", time.Millisecond), 200*time.Microsecond))
	now = now.Add(40 * time.Second)
	if n := count(); n != 1 {
		t.Fatalf("after the sweep series expired: %d stopping series, want 1", n)
	}
	if err := x.stopping.WithLabelValues("go", "gc", "checkout", "", "", "", "10").(prometheus.Histogram).Write(m); err != nil {
		t.Fatal(err)
	}
	if c := m.GetHistogram().GetSampleCount(); c != 3 {
		t.Errorf("stopping count after a sharing series expired = %d, want 3", c)
	}
	// Once every series of the pid is gone, so is the stopping series.
	x.Record(agent.Event{Type: agent.Exit, Process: agent.Process{PID: 10}})
	now = now.Add(2 * time.Minute)
	if n := count(); n != 0 {
		t.Errorf("after every series expired: %d stopping series, want 0", n)
	}
}

// counted is the RequestCounts event of the one request e, as the source
// reads it from the kernel's histograms.
func counted(e agent.Event, objective time.Duration) agent.Event {
	h := &agent.RequestHists{}
	h.Observe(e, objective)
	return agent.Event{Type: agent.RequestCounts, Process: e.Process, Port: e.Port, Start: e.Start, Requests: h}
}

// Each cause reaches its own series, and the report's row.
func TestBreachCauses(t *testing.T) {
	const obj = 10 * time.Millisecond
	x := New(Options{Objective: func(string, uint16) (time.Duration, bool) { return obj, true }})
	proc := agent.Process{PID: 6, Runtime: "go", Method: "uprobe", Service: "api"}
	ms := time.Millisecond
	for _, r := range []struct{ d, pause, cpu time.Duration }{
		{30 * ms, 25 * ms, 25 * ms}, // either explains it: pause
		{30 * ms, 0, 22 * ms},       // cpu
		{30 * ms, 0, 22 * ms},       // cpu
		{30 * ms, 12 * ms, 12 * ms}, // neither alone: other
		{5 * ms, 0, 4 * ms},         // within the objective
	} {
		x.Record(counted(agent.Event{Type: agent.Request, Process: proc, Port: 8080, Duration: r.d, PauseInside: r.pause, CPUWait: r.cpu}, obj))
	}
	for cause, want := range map[string]float64{"pause": 1, "cpu": 2, "other": 1} {
		if got := testutil.ToFloat64(x.req.breaches.WithLabelValues("go", "8080", cause, "api", "", "", "")); got != want {
			t.Errorf("%s breaches %v, want %v", cause, got, want)
		}
	}
	rows := x.RequestSummaries()
	if len(rows) != 1 || rows[0].PauseBreaches != 1 || rows[0].CPUBreaches != 2 || rows[0].OtherBreaches != 1 {
		t.Errorf("report rows %+v", rows)
	}
}

// The sanitised process is cached per pid: a hostile name is cleaned on
// every pause, not only the first, and a pid that comes back as another
// process (or with its pod found) is counted under its own name.
func TestSanitizedProcessCache(t *testing.T) {
	x := New(Options{})
	hostile := pause(7, "svc\xff\u202e", "gc", "GC mark termination", time.Millisecond)
	x.Record(hostile)
	x.Record(hostile)
	x.Record(pause(7, "renamed", "gc", "GC mark termination", time.Millisecond))
	x.Record(agent.Event{Type: agent.Exit, Process: hostile.Process})
	x.Record(hostile)
	clean := agent.LabelValue(hostile.Process.Service)
	for _, tc := range []struct {
		service string
		want    float64
	}{{clean, 3}, {"renamed", 1}} {
		if got := testutil.ToFloat64(x.pauses.WithLabelValues("go", "gc", "uprobe", tc.service, "", "", "")); got != tc.want {
			t.Errorf("pauses of %q = %v, want %v", tc.service, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(x.pauses); n != 2 {
		t.Errorf("%d pause counter series, want 2", n)
	}
}
