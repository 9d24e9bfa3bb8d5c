package examples

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gcCPU is the agent's GC CPU of a service by one method, in seconds.
func (a *agentProc) gcCPU(t *testing.T, service, method string) float64 {
	t.Helper()
	return counter(a.metrics(t), "pausewatch_gc_cpu_seconds_total", map[string]string{"service": service, "method": method})
}

// gcCPUStatus returns /api/processes' gc_cpu of pid.
func (a *agentProc) gcCPUStatus(t *testing.T, pid uint32) string {
	t.Helper()
	resp, err := http.Get(a.url + "/api/processes")
	if err != nil {
		t.Fatalf("GET /api/processes: %v", err)
	}
	defer resp.Body.Close()
	var ps []struct {
		PID   uint32 `json:"pid"`
		GCCPU string `json:"gc_cpu"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatalf("decode /api/processes: %v", err)
	}
	for _, p := range ps {
		if p.PID == pid {
			return p.GCCPU
		}
	}
	t.Fatalf("pid %d not in /api/processes", pid)
	return ""
}

// TestPythonGCCPU: the CPU time of CPython's collections, as the agent
// times the collecting thread on and off the CPU in the kernel, matches
// the interpreter's own account within 10 %: gc.callbacks reading the
// thread's CPU clock (time.thread_time) at the start and end of each
// collection, over the same collections. It is never more than the
// collections' wall time. Debian's 3.11 through its USDT probes, and a
// pyenv 3.13 through the collector's uprobe and uretprobe (whose automatic
// calls choose their generation, or return without collecting, inside).
func TestPythonGCCPU(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19521)
	for _, tc := range []struct{ name, interp string }{
		{"debian-3.11-usdt", "/usr/bin/python3.11"},
		{"pyenv-3.13-uprobe", filepath.Join(pyenvVersions, "3.13.0", "bin", "python")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.interp); err != nil {
				t.Skipf("%s not installed", tc.interp)
			}
			pythonGCCPU(t, a, tc.interp, "py-gccpu-"+tc.name)
		})
	}
}

func pythonGCCPU(t *testing.T, a *agentProc, interp, service string) {
	w := startWorkload(t, exec.Command(interp, "testdata/pygccpu.py"), "OTEL_SERVICE_NAME="+service, "GCCPU_SECONDS=5")
	a.waitTracked(t, w.pid, w.started)
	if st := a.gcCPUStatus(t, w.pid); st != "pause_thread" {
		t.Errorf("gc_cpu of the interpreter %q, want pause_thread", st)
	}
	want := map[string]string{"service": service}
	_, pausedBefore := a.settledPauses(t, want)
	before := a.gcCPU(t, service, "pause_thread")
	fmt.Fprintln(w.stdin, "go")
	if !w.out.Scan() {
		t.Fatal("python printed no account")
	}
	var acc struct {
		Count   int     `json:"count"`
		CPU     float64 `json:"cpu_seconds"`
		Wall    float64 `json:"wall_seconds"`
		Version string  `json:"version"`
	}
	if err := json.Unmarshal(w.out.Bytes(), &acc); err != nil {
		t.Fatalf("account %q: %v", w.out.Text(), err)
	}
	_, pausedAfter := a.settledPauses(t, want)
	got := a.gcCPU(t, service, "pause_thread") - before
	paused := pausedAfter - pausedBefore
	t.Logf("CPython %s: %d collections; agent GC CPU %.4fs (paused %.4fs); gc.callbacks thread_time %.4fs (wall %.4fs)",
		acc.Version, acc.Count, got, paused, acc.CPU, acc.Wall)
	if acc.Count < 100 || acc.CPU < 0.1 {
		t.Fatalf("workload made %d collections, %.3fs of CPU: too little to compare", acc.Count, acc.CPU)
	}
	if !within(got, acc.CPU, 0.10, 0) {
		t.Errorf("GC CPU: agent %.4fs, gc.callbacks %.4fs (want within 10%%)", got, acc.CPU)
	}
	if got > paused*1.001 {
		t.Errorf("GC CPU %.4fs above the collections' wall time %.4fs", got, paused)
	}
	w.stdin.Close()
}

// javaThreadLine is one thread of jcmd Thread.print. A Java thread has a
// number (#N) after its name; the JVM's own threads (the VM thread, its
// periodic task thread and the collector's threads) have none.
var javaThreadLine = regexp.MustCompile(`^"(.*)" (#\d+ )?.*cpu=([0-9.]+)ms .*nid=(0x[0-9a-f]+|\d+) `)

// jvmGCThreads lists the collector's threads as the JVM itself prints them:
// its non-Java threads other than the VM thread and the periodic task
// thread (HotSpot prints the collector's threads, print_gc_threads_on,
// among these). It returns their tids and the JVM's own CPU figure.
func jvmGCThreads(t *testing.T, pid uint32) (names []string, tids []uint32, jvmCPU float64) {
	t.Helper()
	out, err := exec.Command("jcmd", strconv.Itoa(int(pid)), "Thread.print").Output()
	if err != nil {
		t.Fatalf("jcmd %d Thread.print: %v", pid, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := javaThreadLine.FindStringSubmatch(line)
		if m == nil || m[2] != "" || m[1] == "VM Thread" || m[1] == "VM Periodic Task Thread" {
			continue
		}
		tid, err := strconv.ParseUint(m[4], 0, 32)
		if err != nil {
			t.Fatalf("nid in %q: %v", line, err)
		}
		ms, _ := strconv.ParseFloat(m[3], 64)
		names, tids, jvmCPU = append(names, m[1]), append(tids, uint32(tid)), jvmCPU+ms/1e3
	}
	return names, tids, jvmCPU
}

// kernelCPU sums the kernel's CPU time of threads of pid (schedstat).
func kernelCPU(t *testing.T, pid uint32, tids []uint32) float64 {
	t.Helper()
	var sum float64
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
		if err != nil {
			t.Fatalf("schedstat of %d/%d: %v", pid, tid, err)
		}
		ns, err := strconv.ParseUint(strings.Fields(string(b))[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += float64(ns) / 1e9
	}
	return sum
}

// gcCPULine is one line of -Xlog:gc+cpu: the process's CPU time (times())
// over one collection's pause.
var gcCPULine = regexp.MustCompile(`User=([0-9.]+)s Sys=([0-9.]+)s Real=([0-9.]+)s`)

// TestJVMGCCPU: the CPU time of HotSpot's collector threads, as the agent
// finds them by name and reads the kernel's per-thread accounting, matches
// within 10 % the same threads as the JVM lists them (jcmd Thread.print,
// with their tids) and the kernel's time of those, for G1 (parallel
// workers, concurrent markers, refinement, service thread) and Parallel.
// With the Parallel collector every bit of collector work happens in its
// pauses, and the JIT is off (-Xint), so the process's CPU time over the
// pauses (-Xlog:gc+cpu) is the collector's: the agent's two methods
// together (collector threads, and the VM thread inside GC safepoints)
// match it within 10 %.
func TestJVMGCCPU(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	classes := t.TempDir()
	if out, err := exec.Command("javac", "-d", classes, "testdata/GCCPU.java").CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	a := startAgent(t, 19522)
	cpuLog := filepath.Join(t.TempDir(), "gc-cpu.log")
	jvms := []struct {
		service string
		args    []string
	}{
		{"jvm-gccpu-g1", []string{"-XX:+UseG1GC"}},
		{"jvm-gccpu-parallel", []string{"-XX:+UseParallelGC", "-Xint", "-Xmn16m", "-Xlog:gc+cpu=info:file=" + cpuLog}},
	}
	var procs []*workload
	for _, j := range jvms {
		args := append(append([]string{"-Xmx256m"}, j.args...), "-cp", classes, "GCCPU")
		w := startWorkload(t, exec.Command("java", args...), "OTEL_SERVICE_NAME="+j.service, "GCCPU_SECONDS=6")
		a.waitTracked(t, w.pid, w.started)
		if st := a.gcCPUStatus(t, w.pid); st != "gc_threads,pause_thread" {
			t.Errorf("%s: gc_cpu %q, want gc_threads,pause_thread", j.service, st)
		}
		procs = append(procs, w)
	}
	for _, w := range procs {
		fmt.Fprintln(w.stdin, "go")
	}
	for i, w := range procs {
		if !w.out.Scan() || !strings.HasPrefix(w.out.Text(), "done") {
			t.Fatalf("%s did not finish: %q", jvms[i].service, w.out.Text())
		}
	}
	// The collector threads idle now; wait for the agent's next samples.
	time.Sleep(11 * time.Second)
	for i, w := range procs {
		service := jvms[i].service
		names, tids, jvmCPU := jvmGCThreads(t, w.pid)
		kernel := kernelCPU(t, w.pid, tids)
		got := a.gcCPU(t, service, "gc_threads")
		vm := a.gcCPU(t, service, "pause_thread")
		t.Logf("%s: agent gc_threads %.3fs, pause_thread (VM thread) %.3fs; JVM's GC threads %v: kernel %.3fs, jcmd cpu= %.3fs",
			service, got, vm, names, kernel, jvmCPU)
		if kernel < 0.2 {
			t.Fatalf("%s: collector threads used %.3fs: too little to compare", service, kernel)
		}
		if !within(got, kernel, 0.10, 0) {
			t.Errorf("%s: collector threads' CPU: agent %.3fs, kernel for the threads jcmd lists %.3fs (want within 10%%)", service, got, kernel)
		}
		if vm <= 0 {
			t.Errorf("%s: no VM-thread CPU inside GC safepoints", service)
		}
		// The tax row: the process's CPU as the kernel has it for the
		// whole process (the JVM idles now), the GC CPU as above.
		row := a.taxRow(t, service)
		procCPU := processCPU(t, w.pid)
		t.Logf("%s: /api/tax %+v; /proc/%d/stat utime+stime %.2fs", service, row, w.pid, procCPU)
		if !within(row.CPUSeconds, procCPU, 0.10, 0.05) {
			t.Errorf("%s: process CPU in /api/tax %.3fs, /proc/%d/stat %.3fs (want within 10%%)", service, row.CPUSeconds, w.pid, procCPU)
		}
		if !within(row.GCCPUSeconds, got+vm, 0.01, 0.02) || row.GCCPUSeconds > row.CPUSeconds*1.05 ||
			!within(row.CoresWithoutGC, row.Cores-row.GCCores, 0, 1e-9) {
			t.Errorf("%s: tax row %+v does not add up (GC CPU %.3fs)", service, row, got+vm)
		}
	}
	b, err := os.ReadFile(cpuLog)
	if err != nil {
		t.Fatal(err)
	}
	var stw float64
	var n int
	for _, m := range gcCPULine.FindAllStringSubmatch(string(b), -1) {
		u, _ := strconv.ParseFloat(m[1], 64)
		s, _ := strconv.ParseFloat(m[2], 64)
		stw += u + s
		n++
	}
	service := jvms[1].service
	got := a.gcCPU(t, service, "gc_threads") + a.gcCPU(t, service, "pause_thread")
	t.Logf("%s: %d collections, -Xlog:gc+cpu User+Sys %.3fs; agent %.3fs", service, n, stw, got)
	// times() counts in 10 ms ticks: the sum needs some length.
	if n < 5 || stw < 0.2 {
		t.Fatalf("only %d collections, %.3fs logged: too little to compare", n, stw)
	}
	if !within(got, stw, 0.10, 0) {
		t.Errorf("%s: GC CPU agent %.3fs, -Xlog:gc+cpu over the pauses %.3fs (want within 10%%)", service, got, stw)
	}
	for _, w := range procs {
		w.stdin.Close()
	}
}

// TestGoGCCPU: the agent reads the Go runtime's own GC CPU account
// (work.cpuStats.gcTotalTime, at the address the offset table gives for
// the binary's version) and it matches what the same process reads from
// runtime/metrics, /cpu/classes/gc/total:cpu-seconds, within 10 %: both
// are the runtime's sum, whose pause part is pause time x GOMAXPROCS, so
// they compare as they are. One binary per toolchain of three table rows;
// a stripped binary (no runtime.work symbol) and a position-independent
// one say why not in /api/processes, and their pauses are still captured.
func TestGoGCCPU(t *testing.T) {
	requireRoot(t)
	type run struct {
		name, toolchain, mode string
		bin                   string
		c                     *churnProc
	}
	runs := []*run{{name: "go1.26", mode: ""}, {name: "go1.22", toolchain: "go1.22.12"}, {name: "go1.20", toolchain: "go1.20.14"},
		{name: "go1.26-stripped", mode: "stripped"}, {name: "go1.26-pie", mode: "pie-stripped"}}
	for _, r := range runs {
		r.bin = buildChurnMode(t, r.toolchain, r.mode)
	}
	a := startAgent(t, 19523)
	for _, r := range runs {
		r.c = &churnProc{startWorkload(t, exec.Command(r.bin), "OTEL_SERVICE_NAME=gccpu-"+r.name, "CHURN_MODE=gc",
			"CHURN_SECONDS=3", "GOMAXPROCS=2", "CHURN_WAIT=1")}
		a.waitTracked(t, r.c.pid, r.c.started)
		st := a.gcCPUStatus(t, r.c.pid)
		if want := "runtime"; r.mode != "" && !strings.HasPrefix(st, "none: ") || r.mode == "" && st != want {
			t.Errorf("%s: gc_cpu %q", r.name, st)
		}
		t.Logf("%s: gc_cpu %q", r.name, st)
	}
	for _, r := range runs {
		fmt.Fprintln(r.c.stdin, "go")
	}
	accounts := map[string]account{}
	for _, r := range runs {
		if !r.c.out.Scan() {
			t.Fatalf("%s printed no account", r.name)
		}
		var acc account
		if err := json.Unmarshal(r.c.out.Bytes(), &acc); err != nil {
			t.Fatalf("%s account %q: %v", r.name, r.c.out.Text(), err)
		}
		accounts[r.name] = acc
	}
	// The programs idle now, their totals final: two CPU passes later the
	// agent has read them.
	time.Sleep(11 * time.Second)
	for _, r := range runs {
		acc := accounts[r.name]
		got := a.gcCPU(t, "gccpu-"+r.name, "runtime")
		t.Logf("%s (%s): agent %.4fs, runtime/metrics %.4fs, %d GC pauses", r.name, acc.GoVersion, got, acc.GCCPUSeconds, acc.GCCount)
		if r.mode != "" {
			if got != 0 {
				t.Errorf("%s: GC CPU %v from a binary the agent says it cannot read", r.name, got)
			}
			if acc.GCCount > 0 && counter(a.metrics(t), "pausewatch_pauses_total", map[string]string{"service": "gccpu-" + r.name}) == 0 {
				t.Errorf("%s: no pauses captured", r.name)
			}
			continue
		}
		if acc.GCCPUSeconds < 0.05 {
			t.Fatalf("%s: the runtime counted %.4fs of GC CPU: too little to compare", r.name, acc.GCCPUSeconds)
		}
		if !within(got, acc.GCCPUSeconds, 0.10, 0) {
			t.Errorf("%s: GC CPU agent %.4fs, runtime/metrics %.4fs (want within 10%%)", r.name, got, acc.GCCPUSeconds)
		}
	}
	for _, r := range runs {
		r.c.stdin.Close()
	}
}

// taxRow is the /api/tax row of a service.
func (a *agentProc) taxRow(t *testing.T, service string) taxRow {
	t.Helper()
	resp, err := http.Get(a.url + "/api/tax")
	if err != nil {
		t.Fatalf("GET /api/tax: %v", err)
	}
	defer resp.Body.Close()
	var rows []taxRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatalf("decode /api/tax: %v", err)
	}
	for _, r := range rows {
		if r.Service == service {
			return r
		}
	}
	t.Fatalf("no /api/tax row for %s in %+v", service, rows)
	return taxRow{}
}

type taxRow struct {
	Service        string  `json:"service"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	GCCPUSeconds   float64 `json:"gc_cpu_seconds"`
	Cores          float64 `json:"cores"`
	GCCores        float64 `json:"gc_cores"`
	GCShare        float64 `json:"gc_share"`
	CoresWithoutGC float64 `json:"cores_without_gc"`
}

// processCPU is utime + stime of a process, as the test reads it.
func processCPU(t *testing.T, pid uint32) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}
