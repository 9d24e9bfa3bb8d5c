package examples

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Request latency, end to end: each runtime's example service under the
// open-loop load generator, the agent's server-side view against the
// client's.

var loadgenBin, exampleGoBin string

func buildExamples() error {
	for _, b := range []struct {
		out *string
		pkg string
	}{{&loadgenBin, "./loadgen"}, {&exampleGoBin, "./go"}} {
		*b.out = filepath.Join(buildDir, filepath.Base(b.pkg))
		if out, err := exec.Command("go", "build", "-o", *b.out, b.pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

type server struct {
	cmd  *exec.Cmd
	pid  uint32
	port int
	url  string
	t0   time.Time
}

// startServer runs one runtime's example service and waits until it serves.
func startServer(t *testing.T, runtime, service string, port int, pauses bool) *server {
	t.Helper()
	var cmd *exec.Cmd
	switch runtime {
	case "go":
		args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-churn-mb", "0"}
		if pauses {
			args = append(args, "-pause-every", "250ms", "-ballast-mb", "8")
		}
		cmd = exec.Command(exampleGoBin, args...)
	case "jvm":
		requireJava(t)
		args := []string{"-Xmx512m", "-XX:+UseG1GC", "java/Server.java", fmt.Sprint(port), "--no-churn"}
		if pauses {
			args = append(args, "--pause-every-ms", "250")
		}
		cmd = exec.Command("java", args...)
	case "python":
		args := []string{"python/server.py", fmt.Sprint(port), "--no-churn"}
		if pauses {
			args = append(args, "--pause-every", "0.25")
		}
		cmd = exec.Command("/usr/bin/python3.11", args...)
	case "node":
		if _, err := os.Stat(nodeBin); err != nil {
			t.Skipf("%s not installed", nodeBin)
		}
		args := []string{"node/server.js", fmt.Sprint(port), "--no-churn"}
		if pauses {
			args = append(args, "--pause-every", "0.25")
		}
		cmd = exec.Command(nodeBin, args...)
	}
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+service)
	s := &server{cmd: cmd, port: port, url: fmt.Sprintf("http://127.0.0.1:%d/", port), t0: time.Now()}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s server: %v", runtime, err)
	}
	s.pid = uint32(cmd.Process.Pid)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() { // keep the pipe drained (the pause logs)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
		}
	}()
	for time.Since(s.t0) < 20*time.Second {
		if resp, err := http.Get(s.url); err == nil {
			resp.Body.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s server not serving after 20s", runtime)
	return nil
}

type loadResult struct {
	Sent   int64   `json:"sent"`
	OK     int64   `json:"ok"`
	Errors int64   `json:"errors"`
	Slow   int64   `json:"slow"`
	P50    float64 `json:"p50_seconds"`
	P99    float64 `json:"p99_seconds"`
	Max    float64 `json:"max_seconds"`
	// Every latency the client recorded, µs, 3 significant digits.
	Histogram *hdrhistogram.Snapshot `json:"histogram"`
}

func runLoad(t *testing.T, url string, rate int, d, slow time.Duration) loadResult {
	t.Helper()
	out, err := exec.Command(loadgenBin, "-url", url, "-rate", fmt.Sprint(rate), "-duration", d.String(),
		"-conns", "64", "-slow", slow.String(), "-histogram").Output()
	if err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("loadgen output %q: %v", out, err)
	}
	return r
}

type requestRow struct {
	Service       string  `json:"service"`
	Port          string  `json:"port"`
	Requests      int64   `json:"requests"`
	Min           float64 `json:"min_seconds"`
	Max           float64 `json:"max_seconds"`
	P50           float64 `json:"p50_seconds"`
	P99           float64 `json:"p99_seconds"`
	PausedShare   float64 `json:"paused_share"`
	PauseBreaches int64   `json:"pause_breaches"`
	CPUBreaches   int64   `json:"cpu_breaches"`
	OtherBreaches int64   `json:"other_breaches"`
}

// requestRowAtLeast polls the agent's report until the service's count
// has reached want and then stayed the same for 0.9 s (extras, such as
// copies, would show), or 30 s have passed. Settling alone is not enough:
// the agent's event loop also inspects every new process on the machine,
// and while others' builds run it can fall seconds behind.
func (a *agentProc) requestRowAtLeast(t *testing.T, service string, port int, want int64) requestRow {
	t.Helper()
	var last requestRow
	stable := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var cur requestRow
		for _, r := range a.requestRows(t) {
			if r.Service == service && r.Port == fmt.Sprint(port) {
				cur = r
			}
		}
		if cur.Requests >= want && cur.Requests == last.Requests {
			stable++
			if stable == 3 {
				return cur
			}
		} else {
			stable = 0
		}
		last = cur
		time.Sleep(300 * time.Millisecond)
	}
	return last
}

// requestCount is the service's count now (0 before its first request).
func (a *agentProc) requestCount(t *testing.T, service string, port int) int64 {
	t.Helper()
	for _, r := range a.requestRows(t) {
		if r.Service == service && r.Port == fmt.Sprint(port) {
			return r.Requests
		}
	}
	return 0
}

func (a *agentProc) requestRows(t *testing.T) []requestRow {
	t.Helper()
	resp, err := http.Get(a.url + "/api/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []requestRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatalf("/api/requests: %v", err)
	}
	return rows
}

// reqHist is a service's request-duration native histogram as the agent
// exports it (paused="true" and "false" summed): bucket index -> count.
// Bucket i of schema s holds (b^(i-1), b^i], b = 2^(2^-s); the exporter's
// bucket factor 1.1 gives schema 3, each bucket 9.05% wide.
type reqHist struct {
	schema  int32
	zero    uint64
	count   uint64
	buckets map[int]uint64
}

// requestHist scrapes /metrics in the protobuf format (the one that carries
// native histograms) for one service's port.
func (a *agentProc) requestHist(t *testing.T, service string, port int) reqHist {
	t.Helper()
	format := expfmt.NewFormat(expfmt.TypeProtoDelim)
	req, _ := http.NewRequest(http.MethodGet, a.url+"/metrics", nil)
	req.Header.Set("Accept", string(format))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, format)
	h := reqHist{schema: math.MinInt32, buckets: map[int]uint64{}}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode /metrics: %v", err)
		}
		if mf.GetName() != "pausewatch_request_duration_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			if !labelsMatch(m, map[string]string{"service": service, "port": fmt.Sprint(port)}) {
				continue
			}
			mh := m.GetHistogram()
			if mh.Schema == nil {
				t.Fatal("request histogram has no native buckets")
			}
			part := reqHist{schema: mh.GetSchema(), zero: mh.GetZeroCount(), count: mh.GetSampleCount(), buckets: map[int]uint64{}}
			idx, d := 0, 0
			var cnt int64
			for _, sp := range mh.PositiveSpan {
				idx += int(sp.GetOffset())
				for j := 0; j < int(sp.GetLength()); j++ {
					cnt += mh.PositiveDelta[d]
					d++
					part.buckets[idx] += uint64(cnt)
					idx++
				}
			}
			h = h.add(part, 1)
		}
	}
	return h
}

// reschema returns h at a schema no finer than s (two buckets of schema
// s+1 make one of schema s).
func (h reqHist) reschema(s int32) reqHist {
	if h.schema <= s {
		return h
	}
	out := reqHist{schema: s, zero: h.zero, count: h.count, buckets: map[int]uint64{}}
	f := 1 << (h.schema - s)
	for i, c := range h.buckets {
		// ceil(i/f): bucket i's upper bound b^i falls in coarser bucket ceil(i/f).
		j := i / f
		if i%f > 0 {
			j++
		}
		out.buckets[j] += c
	}
	return out
}

// add returns h + sign*o, at the coarser of the two schemas.
func (h reqHist) add(o reqHist, sign int64) reqHist {
	if h.schema == math.MinInt32 {
		h.schema = o.schema
	}
	s := min(h.schema, o.schema)
	h, o = h.reschema(s), o.reschema(s)
	out := reqHist{schema: s, zero: uint64(int64(h.zero) + sign*int64(o.zero)),
		count: uint64(int64(h.count) + sign*int64(o.count)), buckets: map[int]uint64{}}
	for i, c := range h.buckets {
		out.buckets[i] += c
	}
	for i, c := range o.buckets {
		out.buckets[i] = uint64(int64(out.buckets[i]) + sign*int64(c))
	}
	return out
}

// atRank returns the bounds (lo, hi] of the bucket holding the rank-th
// smallest duration (1-based), in seconds.
func (h reqHist) atRank(rank uint64) (lo, hi float64) {
	if rank <= h.zero {
		return 0, 0
	}
	seen := h.zero
	idx := make([]int, 0, len(h.buckets))
	for i := range h.buckets {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	bound := func(i int) float64 { return math.Exp2(float64(i) * math.Exp2(-float64(h.schema))) }
	for _, i := range idx {
		seen += h.buckets[i]
		if seen >= rank {
			return bound(i - 1), bound(i)
		}
	}
	return math.Inf(1), math.Inf(1)
}

// clientAtRank returns the client's rank-th smallest latency (1-based),
// rounded up to its HDR bucket's highest value, in seconds.
func clientAtRank(h *hdrhistogram.Histogram, rank int64) float64 {
	var seen int64
	for _, b := range h.Distribution() {
		seen += b.Count
		if seen >= rank && b.Count > 0 {
			return float64(b.To) / 1e6
		}
	}
	return float64(h.Max()) / 1e6
}

// checkServerWithinClient asserts issue 9's invariant: the agent measures a
// sub-interval of what the client measures (arrival at the server's socket
// to its last write, against intended send to response read), so each of
// its percentiles is at most the client's over the same requests. Both
// histograms cover the same window. Precision: the agent's value is known
// to its native bucket, (lo, hi] (9.05% wide), the client's to 0.1% (HDR,
// 3 digits, taken at its bucket's top): lo must not reach the client's
// value. When the agent counted fewer requests than the client, the
// client's rank moves up by the difference (the missing ones may be the
// fastest).
func checkServerWithinClient(t *testing.T, agent reqHist, client *hdrhistogram.Histogram) (p99lo, p99hi float64) {
	t.Helper()
	rows, violations := serverWithinClient(agent, client)
	for _, r := range rows {
		t.Log(r)
	}
	for _, v := range violations {
		t.Error(v)
	}
	rank := int64(math.Ceil(0.99 * float64(agent.count)))
	return agent.atRank(uint64(rank))
}

// serverWithinClient is checkServerWithinClient's comparison: a line per
// percentile, and one per violation.
func serverWithinClient(agent reqHist, client *hdrhistogram.Histogram) (rows, violations []string) {
	nA, nC := int64(agent.count), client.TotalCount()
	if nA == 0 || nC == 0 {
		return nil, []string{fmt.Sprintf("no requests to compare: agent %d, client %d", nA, nC)}
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		rank := int64(math.Ceil(q * float64(nA)))
		lo, hi := agent.atRank(uint64(rank))
		c := clientAtRank(client, min(rank+max(0, nC-nA), nC))
		rows = append(rows, fmt.Sprintf("p%v: agent in (%.2f, %.2f] ms, client %.2f ms", q*100, lo*1e3, hi*1e3, c*1e3))
		if lo >= c+1e-6 {
			violations = append(violations, fmt.Sprintf("agent p%v above the client's: agent in (%.3f, %.3f] ms, client %.3f ms", q*100, lo*1e3, hi*1e3, c*1e3))
		}
	}
	return rows, violations
}

// The comparison itself, on synthetic histograms: it must catch a server
// view above the client's at any percentile, and pass an honest one.
func TestServerWithinClientCheck(t *testing.T) {
	hist := func(durs []float64) reqHist { // schema 3, as the exporter's factor 1.1 gives
		h := reqHist{schema: 3, buckets: map[int]uint64{}}
		for _, d := range durs {
			h.buckets[int(math.Ceil(math.Log2(d)*8))]++
			h.count++
		}
		return h
	}
	client := hdrhistogram.New(1, 60_000_000, 3)
	var server, late, slowTail []float64
	for i := 1; i <= 1000; i++ {
		c := float64(i) * 1e-4 // 0.1 .. 100 ms
		client.RecordValue(int64(c * 1e6))
		server = append(server, c*0.7) // a sub-interval of each
		late = append(late, c*1.15)    // every one 15% above the client's
		if i > 985 {
			slowTail = append(slowTail, c*1.5) // only the slowest 1.5%: p99 and p99.9
		} else {
			slowTail = append(slowTail, c*0.7)
		}
	}
	if _, v := serverWithinClient(hist(server), client); len(v) > 0 {
		t.Errorf("honest server view flagged: %v", v)
	}
	if _, v := serverWithinClient(hist(late), client); len(v) != 4 {
		t.Errorf("server 15%% above the client: %d violations, want all 4 percentiles: %v", len(v), v)
	}
	if _, v := serverWithinClient(hist(slowTail), client); len(v) != 2 {
		t.Errorf("server tail above the client's: %d violations, want p99 and p99.9: %v", len(v), v)
	}
	// 30 requests the agent missed: the client's rank moves up by 30.
	if _, v := serverWithinClient(hist(server[30:]), client); len(v) > 0 {
		t.Errorf("missing requests flagged: %v", v)
	}
}

// startHog keeps every CPU busy until stopped (or the test ends): the
// invariant must hold when the server, the agent and the client all wait
// for a CPU.
func startHog(t *testing.T) (stopHog func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < goruntime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			goruntime.LockOSThread()
			for n := 0; ; n++ {
				if n%1_000_000 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	var once sync.Once
	stopHog = func() { once.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopHog)
	return stopHog
}

func TestRequestLatency(t *testing.T) {
	requireRoot(t)
	const slo = 15 * time.Millisecond
	a := startAgent(t, freePort(t), "--slo", slo.String())
	for _, runtime := range []string{"go", "jvm", "python", "node"} {
		// The "other" breaches the machine alone causes (the steady run's,
		// when it ran): on a shared machine they are not the pauses' and
		// not the agent's to attribute.
		var background int64
		for _, mode := range []string{"steady", "pauses", "pauses+hog"} {
			name := runtime + "/" + mode
			pauses, hog := mode != "steady", mode == "pauses+hog"
			t.Run(name, func(t *testing.T) {
				service := "req-" + strings.NewReplacer("/", "-", "+", "-").Replace(name)
				port := freePort(t)
				s := startServer(t, runtime, service, port, pauses)
				a.waitTracked(t, s.pid, s.t0)
				// Warm up (JIT, caches), then measure a clean window. Each
				// load run has connections of its own; when they close,
				// all their requests are reported (the agent reports a
				// keep-alive connection's request when the next one
				// arrives or the connection closes).
				initial := a.requestCount(t, service, port)
				warm := runLoad(t, s.url, 100, time.Second, slo)
				before := a.requestRowAtLeast(t, service, port, initial+warm.OK)
				histBefore := a.requestHist(t, service, port)
				stopHog := func() {}
				if hog {
					stopHog = startHog(t)
				}
				load := runLoad(t, s.url, 150, 4*time.Second, slo)
				// The hog is for the measured load; the agent then gets
				// the CPU to report every request before they are counted.
				stopHog()
				after := a.requestRowAtLeast(t, service, port, before.Requests+load.OK)
				window := a.requestHist(t, service, port).add(histBefore, -1)

				n := after.Requests - before.Requests
				pb := after.PauseBreaches - before.PauseBreaches
				cb := after.CPUBreaches - before.CPUBreaches
				ob := after.OtherBreaches - before.OtherBreaches
				t.Logf("client: %d ok, p50 %.2fms p99 %.2fms, %d slower than %v", load.OK, load.P50*1e3, load.P99*1e3, load.Slow, slo)
				t.Logf("agent:  %d requests, %.1f%% overlapped a pause (whole run), breaches: %d pause, %d cpu, %d other; whole-run p99 %.2fms (warm-up included: not comparable)",
					n, 100*after.PausedShare, pb, cb, ob, after.P99*1e3)
				if load.Errors > 0 {
					t.Fatalf("client saw %d errors", load.Errors)
				}
				if !within(float64(n), float64(load.OK), 0.03, 0) {
					t.Errorf("request count: agent %d, client %d (want within 3%%)", n, load.OK)
				}
				if int64(window.count) != n {
					t.Errorf("histogram window holds %d requests, the report %d", window.count, n)
				}
				if load.Histogram == nil {
					t.Fatal("loadgen gave no histogram")
				}
				client := hdrhistogram.Import(load.Histogram)
				// Over the same window, every percentile of the server's
				// view is at most the client's.
				p99lo, p99hi := checkServerWithinClient(t, window, client)
				if hog {
					// A hog slows everything, the client most: breaches
					// are no longer the pauses' alone; only the invariant
					// and the counts are asserted.
					return
				}
				if pauses {
					total := pb + cb + ob
					if !within(float64(total), float64(load.Slow), 0.30, 2) {
						t.Errorf("breaches: agent %d, client slow %d (want within 30%%)", total, load.Slow)
					}
					// Most breaches are the pauses'. Not all: by the rule
					// (duration minus the pause inside it over the
					// objective) the queueing a pause leaves behind is
					// "other" (Python's threads convoy on the GIL after a
					// collection: 15-50 of 130-230 breaches here), and so
					// is what the machine alone causes (the steady run's).
					// Breaches the machine's CPU contention explains (cpu)
					// are not the pauses' either.
					if total == 0 || float64(pb) < 0.6*float64(total-cb-min(ob, background)) {
						t.Errorf("pause-caused breaches %d of %d (%d cpu, %d other, %d of them as many as without pauses), want at least 60%% of the rest",
							pb, total, cb, ob, min(ob, background))
					}
					// At the tail the pauses dominate: the server's p99 is
					// near the client's (an agent that cut requests short
					// would be far below). Near, not equal: on this shared
					// 2-core machine the client's own wait for a CPU after
					// the response adds to its tail (seen: 420 vs 560 ms
					// for Go while others' builds ran; 57 vs 99 ms for the
					// JVM in a quiet CI run, its p90 31 vs 32 ms), so
					// within 10 ms or half.
					if p99hi < min(load.P99-0.010, 0.5*load.P99) {
						t.Errorf("agent p99 in (%.2f, %.2f] ms vs client %.2f ms: want within 10ms or 50%% when pauses dominate", p99lo*1e3, p99hi*1e3, load.P99*1e3)
					}
				} else {
					background = ob
					if pb > load.Slow {
						// Without deliberate pauses only the runtime's own
						// collections remain; a rare one can still break the
						// objective, and then the client saw that request slow too.
						t.Errorf("%d pause-caused breaches with deliberate pauses off, more than the %d slow requests the client saw", pb, load.Slow)
					}
				}
			})
		}
	}
}

// TestRequestCountAtScrape: a scrape counts every request served before it,
// exactly, however soon after them it comes. Requests are counted in the
// kernel and read by the agent once a second; a scrape makes it read first
// (source.Source.Flush). One keep-alive connection: a request is complete
// in the kernel when the next one arrives, so after each burst exactly one
// request (the burst's last) is still open, and the count is known.
func TestRequestCountAtScrape(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, freePort(t))
	port := freePort(t)
	const service = "req-at-scrape"
	s := startServer(t, "go", service, port, false)
	a.waitTracked(t, s.pid, s.t0)
	// startServer's probes left an idle connection with a request open:
	// closed, it is complete, and the count settles.
	http.DefaultClient.CloseIdleConnections()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	get := func() {
		t.Helper()
		resp, err := client.Get(s.url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get() // open until the first of the next burst arrives
	base := a.requestRowAtLeast(t, service, port, 1).Requests
	want := map[string]string{"service": service, "port": fmt.Sprint(port)}
	const burst = 300
	for round := int64(1); round <= 4; round++ {
		for range burst {
			get()
		}
		// At once: no wait for the agent's next read.
		got := a.requestCount(t, service, port) - base
		var scraped float64
		if mf := a.metrics(t)["pausewatch_request_duration_seconds"]; mf != nil {
			for _, m := range mf.GetMetric() {
				if labelsMatch(m, want) {
					scraped += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		if got != round*burst || int64(scraped)-base != round*burst {
			t.Errorf("after %d requests: /api/requests counts %d, /metrics %d (want both exact)", round*burst, got, int64(scraped)-base)
		}
	}
}
