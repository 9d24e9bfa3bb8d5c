package examples

// End-to-end tests: the real agent binary, real Go programs, the real
// kernel. They need root (BPF, uprobes) and compare what the agent reports
// with each program's own runtime/metrics account of the same pauses.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var agentBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv(containerInitEnv); spec != "" {
		containerInit(spec) // never returns
	}
	if os.Getenv("PAUSEWATCH_INFORMER_HELPER") != "" {
		// A helper process of TestKubeInformerCost: it needs no builds.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pausewatch-e2e")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "pausewatch")
	out, err := exec.Command("go", "build", "-o", agentBin, "../agent/cmd/pausewatch").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build agent: %v\n%s", err, out)
		os.Exit(1)
	}
	buildDir = dir
	if os.Geteuid() == 0 {
		for _, b := range churnBuilds {
			buildChurnMode(fatalTB{}, b.toolchain, b.mode)
		}
		if err := buildExamples(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fatalTB lets TestMain use test helpers: any failure ends the run.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper() {}
func (fatalTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and uprobes")
	}
}

// agentProc is one running agent.
type agentProc struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs the agent on its own port and waits for /readyz.
func startAgent(t *testing.T, port int, args ...string) *agentProc {
	t.Helper()
	return startAgentEnv(t, port, nil, args...)
}

// startAgentEnv is startAgent with extra environment variables.
func startAgentEnv(t *testing.T, port int, env []string, args ...string) *agentProc {
	t.Helper()
	a := launchAgent(t, port, nil, agentBin, env, args...)
	a.waitReady(t)
	return a
}

// launchAgent starts bin as the agent, behind a command prefix (such as
// setpriv) when one is given, and stops it when the test ends.
func launchAgent(t *testing.T, port int, prefix []string, bin string, env []string, args ...string) *agentProc {
	t.Helper()
	addr := freeAddr(t, port)
	a := &agentProc{url: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	argv := append(append(append([]string{}, prefix...), bin, "--listen", addr, "--log-level", "debug"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return runAgent(t, a, cmd)
}

// runAgent starts cmd as agent a (its url set) and stops it when the test
// ends.
func runAgent(t *testing.T, a *agentProc, cmd *exec.Cmd) *agentProc {
	t.Helper()
	a.cmd = cmd
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.logs.String())
		}
	})
	return a
}

// freeAddr returns 127.0.0.1:port, or another free port when that one is
// taken: a second test run (or anything else) on the machine may hold it,
// and an agent that cannot listen would leave the test talking to
// whatever does.
func freeAddr(t *testing.T, port int) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("no free port: %v", err)
		}
	}
	addr = ln.Addr().String()
	ln.Close()
	return addr
}

// waitReady polls /readyz until the agent says ready.
func (a *agentProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(a.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-a.done:
			t.Fatalf("agent exited before ready: %v\n%s", err, a.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("agent not ready after 20s\n%s", a.logs.String())
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agentProc) stop(t *testing.T) {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent exit: %v", err)
		}
		a.done <- err
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		t.Errorf("agent did not stop within 10s of SIGTERM")
	}
}

type processStatus struct {
	PID         uint32    `json:"pid"`
	Runtime     string    `json:"runtime"`
	Method      string    `json:"method"`
	Service     string    `json:"service"`
	Why         string    `json:"why"`
	Version     string    `json:"version"`
	ContainerID string    `json:"container_id"`
	Since       time.Time `json:"since"`
}

func (a *agentProc) processes(t *testing.T) []processStatus {
	t.Helper()
	resp, err := http.Get(a.url + "/api/processes")
	if err != nil {
		t.Fatalf("GET /api/processes: %v", err)
	}
	defer resp.Body.Close()
	var ps []processStatus
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatalf("decode /api/processes: %v", err)
	}
	return ps
}

// waitTracked polls until the agent lists pid, and returns how long it took.
func (a *agentProc) waitTracked(t *testing.T, pid uint32, since time.Time) processStatus {
	t.Helper()
	for time.Since(since) < 10*time.Second {
		for _, p := range a.processes(t) {
			if p.PID == pid {
				return p
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d not tracked after 10s", pid)
	return processStatus{}
}

func (a *agentProc) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// counter sums a counter family over the series matching want.
func counter(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	if mf := mfs[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// settledPauses scrapes until the pause counters of service stop moving.
func (a *agentProc) settledPauses(t *testing.T, want map[string]string) (count, secs float64) {
	t.Helper()
	prev := -1.0
	for range 50 {
		mfs := a.metrics(t)
		count = counter(mfs, "pausewatch_pauses_total", want)
		secs = counter(mfs, "pausewatch_pause_seconds_total", want)
		if count == prev {
			return count, secs
		}
		prev = count
		time.Sleep(200 * time.Millisecond)
	}
	return count, secs
}

// account is what the churn program says of its own pauses.
type account struct {
	GCCount    uint64  `json:"gc_count"`
	GCSeconds  float64 `json:"gc_seconds"`
	OtherCount uint64  `json:"other_count"`
	OtherSecs  float64 `json:"other_seconds"`
	Calls      int     `json:"calls"`
	GoVersion  string  `json:"go_version"`
	Metric     string  `json:"metric"`
	// Over the process's whole life (churn's own comments say how).
	LifePauseSeconds float64 `json:"life_pause_seconds"`
	LifeSeconds      float64 `json:"life_seconds"`
	GCCPUSeconds     float64 `json:"gc_cpu_seconds"` // /cpu/classes/gc/total:cpu-seconds, Go 1.20+
}

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// churnMode is one way users build Go binaries, as `go build` arguments
// and environment.
type churnMode struct {
	name string
	args []string
	env  []string
}

// churnModes are the build modes the tests run under the agent: internal
// and external linking, cgo, PIE, static, -trimpath, GOEXPERIMENTs, each
// also stripped of .symtab (-s -w), where the pclntab alone places probes.
var churnModes = map[string]churnMode{
	"":                    {},
	"stripped":            {args: []string{"-ldflags=-s -w"}},
	"cgo":                 {args: []string{"-tags=churncgo"}, env: []string{"CGO_ENABLED=1"}},
	"cgo-stripped":        {args: []string{"-tags=churncgo", "-ldflags=-s -w"}, env: []string{"CGO_ENABLED=1"}},
	"cgo-pie-stripped":    {args: []string{"-tags=churncgo", "-buildmode=pie", "-ldflags=-s -w"}, env: []string{"CGO_ENABLED=1"}},
	"cgo-static-stripped": {args: []string{"-tags=churncgo", "-ldflags=-s -w -extldflags=-static"}, env: []string{"CGO_ENABLED=1"}},
	"pie-stripped":        {args: []string{"-buildmode=pie", "-ldflags=-s -w"}, env: []string{"CGO_ENABLED=0"}},
	"trimpath-stripped":   {args: []string{"-trimpath", "-ldflags=-s -w"}},
	"nogreenteagc":        {args: []string{"-ldflags=-s -w"}, env: []string{"GOEXPERIMENT=nogreenteagc"}},
	"staticlockranking":   {args: []string{"-ldflags=-s -w"}, env: []string{"GOEXPERIMENT=staticlockranking"}},
}

// churnBuilds are built before any test starts an agent: a build runs
// dozens of Go toolchain processes, which a running agent would inspect,
// delaying the tests' own processes.
var churnBuilds = []struct{ toolchain, mode string }{
	{"", ""}, {"", "stripped"}, {"", "cgo"}, {"", "cgo-stripped"}, {"", "cgo-pie-stripped"},
	{"", "cgo-static-stripped"}, {"", "pie-stripped"}, {"", "trimpath-stripped"},
	{"", "nogreenteagc"}, {"", "staticlockranking"},
	{"go1.22.12", ""}, {"go1.22.12", "stripped"}, {"go1.22.12", "cgo-stripped"},
	{"go1.21.13", ""}, {"go1.21.13", "stripped"}, {"go1.21.13", "cgo-stripped"}, {"go1.21.13", "pie-stripped"},
	// Before 1.21: no reason argument, the pause classified by its caller.
	{"go1.20.14", ""}, {"go1.20.14", "stripped"},
	{"go1.19.13", ""}, {"go1.19.13", "stripped"}, {"go1.19.13", "cgo-stripped"},
	{"go1.18.10", ""}, {"go1.18.10", "stripped"}, {"go1.18.10", "pie-stripped"},
	{"go1.17.13", ""}, {"go1.17.13", "stripped"}, {"go1.17.13", "cgo-stripped"},
}

// buildChurn builds testdata/churn with a Go toolchain ("" = the local
// one), stripped or not, once per test binary.
func buildChurn(t testing.TB, toolchain string, stripped bool) string {
	mode := ""
	if stripped {
		mode = "stripped"
	}
	return buildChurnMode(t, toolchain, mode)
}

// buildChurnMode builds testdata/churn with a Go toolchain in one of
// churnModes, once per test binary.
func buildChurnMode(t testing.TB, toolchain, mode string) string {
	t.Helper()
	m, ok := churnModes[mode]
	if !ok {
		t.Fatalf("no churn build mode %q", mode)
	}
	key := toolchain + "-" + mode
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[key]; ok {
		return p
	}
	out := filepath.Join(buildDir, "churn-"+strings.NewReplacer(".", "_").Replace(key))
	args := append([]string{"build", "-o", out}, m.args...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = "testdata/churn"
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod"), m.env...)
	if toolchain != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+toolchain)
		if strings.HasPrefix(toolchain, "go1.19.") {
			// Go 1.19's module index (new then) fails every build here
			// with `import "": import of unknown directory`; off, it builds.
			cmd.Env = append(cmd.Env, "GODEBUG=goindex=0")
		}
	} else {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=local")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build churn with %q (%s): %v\n%s", toolchain, mode, err, b)
	}
	built[key] = out
	return out
}

// workload is a test program that says "ready" on stdout, then waits for
// "go" on stdin (so the agent is attached before it starts), the shape of
// all three runtimes' test programs.
type workload struct {
	cmd     *exec.Cmd
	pid     uint32
	started time.Time
	stdin   io.WriteCloser
	out     *bufio.Scanner
}

// startWorkload starts cmd with extra environment and waits for "ready".
func startWorkload(t *testing.T, cmd *exec.Cmd, env ...string) *workload {
	t.Helper()
	return runWorkload(t, cmd, append(os.Environ(), env...))
}

// runWorkload starts cmd with exactly env and waits for "ready".
func runWorkload(t *testing.T, cmd *exec.Cmd, env []string) *workload {
	t.Helper()
	w := &workload{cmd: cmd}
	cmd.Env = env
	cmd.Stderr = os.Stderr
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	w.pid = uint32(cmd.Process.Pid)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w.out = bufio.NewScanner(stdout)
	if !w.out.Scan() || !strings.HasPrefix(w.out.Text(), "ready") {
		t.Fatalf("%s did not say ready: %q", cmd.Path, w.out.Text())
	}
	return w
}

// churnProc is a running churn program, waiting for "go".
type churnProc struct{ *workload }

func startChurn(t *testing.T, bin, service, mode string, seconds float64) *churnProc {
	t.Helper()
	return &churnProc{startWorkload(t, exec.Command(bin), "OTEL_SERVICE_NAME="+service, "CHURN_MODE="+mode,
		fmt.Sprintf("CHURN_SECONDS=%g", seconds), "GOMAXPROCS=2")}
}

// run lets the program churn and returns its own account.
func (c *churnProc) run(t *testing.T) account {
	t.Helper()
	fmt.Fprintln(c.stdin, "go")
	if !c.out.Scan() {
		t.Fatalf("churn printed no account")
	}
	var a account
	if err := json.Unmarshal(c.out.Bytes(), &a); err != nil {
		t.Fatalf("churn account %q: %v", c.out.Text(), err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("churn exit: %v", err)
	}
	return a
}

func within(got, want, frac, abs float64) bool {
	return math.Abs(got-want) <= math.Max(frac*want, abs)
}

// compareGC checks the agent's GC pauses of a service against the
// program's own account: the same count, total within 20 %.
func compareGC(t *testing.T, a *agentProc, service string, acc account) {
	t.Helper()
	want := map[string]string{"service": service, "kind": "gc"}
	n, secs := a.settledPauses(t, want)
	// On a loaded machine the agent can sit unscheduled longer than the
	// settling interval with events still in its ring buffer: a count
	// short of the runtime's is given a few more seconds to arrive (one
	// past it, or one that never arrives, still fails).
	for deadline := time.Now().Add(3 * time.Second); n < float64(acc.GCCount) && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		n, secs = a.settledPauses(t, want)
	}
	t.Logf("%s (%s, %s): agent %v pauses / %.6fs, runtime %d / %.6fs",
		service, acc.GoVersion, acc.Metric, n, secs, acc.GCCount, acc.GCSeconds)
	if acc.GCCount < 20 {
		t.Fatalf("workload made only %d GC pauses; the comparison needs more", acc.GCCount)
	}
	// The agent counts the process's whole tracked life, the runtime its
	// window from "go" on: a collection between the attach and the
	// program's first read of its metrics is the agent's alone, one pause
	// or both of its two (sweep and mark termination; seen in CI: 1939 vs
	// 1938, and 4136 vs 4134 in 1 of 30 runs at ~1,400 pauses/s). Those
	// are allowed, none missing.
	if n < float64(acc.GCCount) || n > float64(acc.GCCount)+2 {
		t.Errorf("pause count: agent %v, runtime %d (want equal, or up to one collection's two more from before the window)", n, acc.GCCount)
	}
	if !within(secs, acc.GCSeconds, 0.20, 0) {
		t.Errorf("pause total: agent %.6fs, runtime %.6fs (want within 20%%)", secs, acc.GCSeconds)
	}
}

func TestGoPausesMatchRuntime(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19471)
	for _, b := range churnBuilds {
		name := "go1.26"
		if b.toolchain != "" {
			name = b.toolchain[:strings.LastIndex(b.toolchain, ".")]
		}
		if b.mode != "" {
			name += "-" + b.mode
		}
		t.Run(name, func(t *testing.T) {
			bin := buildChurnMode(t, b.toolchain, b.mode)
			service := "churn-" + name
			c := startChurn(t, bin, service, "gc", 3)
			// Started after the agent: tracked within 1 s of its exec.
			p := a.waitTracked(t, c.pid, c.started)
			// Between its fork and its exec the child is a copy of this
			// test binary, which the agent tracks (it follows the forks
			// of traced processes): wait past the exec.
			for self := filepath.Base(os.Args[0]); p.Service == self && time.Since(c.started) < 10*time.Second; {
				time.Sleep(10 * time.Millisecond)
				p = a.waitTracked(t, c.pid, c.started)
			}
			took := p.Since.Sub(c.started)
			t.Logf("tracked pid %d after %v: %+v", c.pid, took, p)
			if took > time.Second {
				t.Errorf("tracked %v after exec, want within 1s", took)
			}
			if p.Method != "uprobe" || p.Runtime != "go" || p.Service != service {
				t.Fatalf("process status %+v, want go/uprobe/%s", p, service)
			}
			compareGC(t, a, service, c.run(t))
		})
	}
}

func TestGoProcessStartedBeforeAgent(t *testing.T) {
	requireRoot(t)
	bin := buildChurn(t, "", false)
	c := startChurn(t, bin, "churn-before", "gc", 3)
	a := startAgent(t, 19472)
	// The first /proc pass is attached before /readyz says ready.
	found := false
	for _, p := range a.processes(t) {
		found = found || p.PID == c.pid
	}
	if !found {
		t.Fatalf("pid %d started before the agent is not tracked once ready", c.pid)
	}
	compareGC(t, a, "churn-before", c.run(t))
}

func TestGoNonGCPause(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19473)
	// The local Go names the reason (stwReason); Go 1.19 (Debian 12's) has
	// none to read: its pauses are classified by their caller, and a
	// non-GC one is "unknown". Before 1.22 runtime/metrics has no account
	// of non-GC pauses, but each ReadMemStats is exactly one.
	for _, tc := range []struct{ toolchain, reason string }{{"", "read mem stats"}, {"go1.19.13", "unknown"}} {
		name := "local"
		if tc.toolchain != "" {
			name = tc.toolchain
		}
		t.Run(name, func(t *testing.T) {
			service := "churn-memstats-" + name
			c := startChurn(t, buildChurnMode(t, tc.toolchain, ""), service, "memstats", 2)
			a.waitTracked(t, c.pid, c.started)
			acc := c.run(t)
			n, secs := a.settledPauses(t, map[string]string{"service": service, "kind": "other"})
			mfs := a.metrics(t)
			var byReason float64
			for _, m := range mfs["pausewatch_pause_duration_seconds"].GetMetric() {
				if labelsMatch(m, map[string]string{"service": service, "kind": "other", "reason": tc.reason}) {
					byReason += float64(m.GetHistogram().GetSampleCount())
				}
			}
			t.Logf("%s: ReadMemStats calls %d; runtime other pauses %d / %.6fs (%s); agent other %v / %.6fs, reason=%q %v",
				acc.GoVersion, acc.Calls, acc.OtherCount, acc.OtherSecs, acc.Metric, n, secs, tc.reason, byReason)
			if acc.Calls < 100 {
				t.Fatalf("only %d ReadMemStats calls", acc.Calls)
			}
			want := float64(acc.OtherCount)
			if tc.toolchain != "" {
				want = float64(acc.Calls)
			}
			if !within(n, want, 0.01, 1) {
				t.Errorf("other pauses: agent %v, want %v", n, want)
			}
			if byReason < float64(acc.Calls) {
				t.Errorf("reason=%q pauses %v, want at least the %d calls", tc.reason, byReason, acc.Calls)
			}
		})
	}
}

// TestDebianPrometheus: the Go programs Debian 12 ships are built with Go
// 1.19 and stripped. Its /usr/bin/prometheus must be probed, and its GC
// pauses counted against its own account: go_gc_duration_seconds_count is
// the number of GC cycles, each of which has exactly one sweep termination
// and at least one mark termination.
func TestDebianPrometheus(t *testing.T) {
	requireRoot(t)
	promBin := requireTool(t, "prometheus", "prometheus")
	a := startAgent(t, 19476)
	dir := t.TempDir()
	const web = "127.0.0.1:19691"
	prom := exec.Command(promBin, "--config.file=/dev/null", "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web)
	prom.Env = append(os.Environ(), "OTEL_SERVICE_NAME=debian-prometheus")
	logs := &syncBuffer{}
	prom.Stdout, prom.Stderr = logs, logs
	started := time.Now()
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	p := a.waitTracked(t, uint32(prom.Process.Pid), started)
	t.Logf("tracked: %+v", p)
	if p.Method != "uprobe" {
		t.Fatalf("%s (%s) listed %q: %s", promBin, p.Version, p.Method, p.Why)
	}
	cycles := func() float64 {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get("http://" + web + "/metrics")
			if err != nil {
				continue
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			mfs, err := parser.TextToMetricFamilies(resp.Body)
			resp.Body.Close()
			if err == nil && mfs["go_gc_duration_seconds"] != nil {
				return float64(mfs["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetSampleCount())
			}
		}
		t.Fatalf("no go_gc_duration_seconds from prometheus at %s", web)
		return 0
	}
	byReason := func() map[string]float64 {
		out := map[string]float64{}
		for _, m := range a.metrics(t)["pausewatch_pause_duration_seconds"].GetMetric() {
			if labelsMatch(m, map[string]string{"service": "debian-prometheus"}) {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						out[l.GetValue()] += float64(m.GetHistogram().GetSampleCount())
					}
				}
			}
		}
		return out
	}
	// A snapshot of both accounts with no GC between the two reads.
	snapshot := func() (float64, map[string]float64) {
		for range 20 {
			c := cycles()
			a.settledPauses(t, map[string]string{"service": "debian-prometheus"})
			r := byReason()
			if cycles() == c {
				return c, r
			}
		}
		t.Fatalf("prometheus kept collecting; no quiet snapshot")
		return 0, nil
	}
	c0, r0 := snapshot()
	// Each request runs runtime.GC(): one full cycle.
	const forced = 20
	for range forced {
		resp, err := http.Get("http://" + web + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatalf("force a GC: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c1, r1 := snapshot()
	sweep := r1["GC sweep termination"] - r0["GC sweep termination"]
	mark := r1["GC mark termination"] - r0["GC mark termination"]
	t.Logf("%s: go_gc_duration_seconds_count +%v; agent: sweep termination +%v, mark termination +%v, by reason %v",
		p.Version, c1-c0, sweep, mark, r1)
	if c1-c0 < forced {
		t.Fatalf("prometheus ran %v GC cycles, want at least the %d forced", c1-c0, forced)
	}
	if sweep != c1-c0 {
		t.Errorf("sweep terminations: agent %v, prometheus's GC cycles %v", sweep, c1-c0)
	}
	if mark < c1-c0 || mark > 2*(c1-c0) {
		t.Errorf("mark terminations: agent %v for %v GC cycles", mark, c1-c0)
	}
}

func TestProcessesExitingDuringAttach(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19475)
	bin := buildChurn(t, "", false)
	// Each starts, says ready and exits at once when its stdin closes:
	// the agent sees the exec and often finds the process already gone.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 40 {
		cmd := exec.CommandContext(ctx, bin)
		cmd.Stdin = strings.NewReader("")
		cmd.Run() // exits non-zero on EOF by design
	}
	resp, err := http.Get(a.url + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent not ready after short-lived processes: %v", err)
	}
	resp.Body.Close()
	if logs := a.logs.String(); strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "level=WARN") {
		t.Errorf("agent logged errors for processes that exited:\n%s", logs)
	}
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
