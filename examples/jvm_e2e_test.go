package examples

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// javaProc is a running JavaChurn, waiting for "go".
type javaProc struct {
	*workload
	log string
}

func requireJava(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("java not installed (apt-get install openjdk-17-jdk-headless)")
	}
}

func startJava(t *testing.T, service string, jvmArgs ...string) *javaProc {
	t.Helper()
	log := filepath.Join(t.TempDir(), "safepoint.log")
	args := append([]string{"-Xmx64m", "-Xlog:safepoint=info:file=" + log + ":timenanos"}, jvmArgs...)
	w := startWorkload(t, exec.Command("java", append(args, "testdata/JavaChurn.java")...),
		"OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3")
	return &javaProc{workload: w, log: log}
}

func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

var safepointLine = regexp.MustCompile(`^\[(\d+)ns\] Safepoint "([^"]+)".*Total: (\d+) ns`)

// safepoints reads -Xlog:safepoint and returns the count and total of the
// safepoints that ended after from (CLOCK_MONOTONIC ns).
func safepoints(t *testing.T, path string, from int64) (n int, total time.Duration, ops map[string]int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read safepoint log: %v", err)
	}
	ops = map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		m := safepointLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, _ := strconv.ParseInt(m[1], 10, 64)
		if at < from {
			continue
		}
		ns, _ := strconv.ParseInt(m[3], 10, 64)
		n++
		total += time.Duration(ns)
		ops[m[2]]++
	}
	return n, total, ops
}

// runJava lets a tracked JVM churn and compares the agent's counters for
// its service with the JVM's own safepoint log over the same window.
func runJava(t *testing.T, a *agentProc, j *javaProc, service, wantMethod string) {
	t.Helper()
	want := map[string]string{"service": service}
	// Let anything from startup drain, then take the baseline.
	time.Sleep(300 * time.Millisecond)
	n0, s0 := a.settledPauses(t, want)
	from := monoNow()
	fmt.Fprintln(j.stdin, "go")
	if !j.out.Scan() || j.out.Text() != "done" {
		t.Fatalf("java did not finish: %q", j.out.Text())
	}
	// The JVM idles until stdin closes: give pollers time to read the end.
	time.Sleep(500 * time.Millisecond)
	n1, s1 := a.settledPauses(t, want)
	j.stdin.Close()
	j.cmd.Wait()

	count, total, ops := safepoints(t, j.log, from)
	agentN, agentS := n1-n0, s1-s0
	t.Logf("%s (%s): agent %v safepoints / %.6fs, -Xlog:safepoint %d / %.6fs; operations %v",
		service, wantMethod, agentN, agentS, count, total.Seconds(), ops)
	if count < 50 {
		t.Fatalf("workload made only %d safepoints", count)
	}
	if !within(agentN, float64(count), 0.02, 1) {
		t.Errorf("safepoint count: agent %v, JVM %d (want within 2%%)", agentN, count)
	}
	if !within(agentS, total.Seconds(), 0.10, 0) {
		t.Errorf("safepoint total: agent %.6fs, JVM %.6fs (want within 10%%)", agentS, total.Seconds())
	}
}

func checkMethod(t *testing.T, p processStatus, method string) {
	t.Helper()
	if p.Runtime != "jvm" || p.Method != method {
		t.Fatalf("process status %+v, want jvm/%s", p, method)
	}
}

func TestJVMSafepointsMatchLog(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	a := startAgent(t, 19481)
	for _, tc := range []struct {
		name string
		gc   string
	}{
		{"g1", "-XX:+UseG1GC"},
		{"parallel", "-XX:+UseParallelGC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			service := "jvm-" + tc.name
			j := startJava(t, service, tc.gc)
			p := a.waitTracked(t, j.pid, j.started)
			took := p.Since.Sub(j.started)
			t.Logf("tracked after %v: %+v", took, p)
			if took > time.Second {
				t.Errorf("tracked %v after exec, want within 1s", took)
			}
			checkMethod(t, p, "usdt")
			runJava(t, a, j, service, "usdt")

			// The cause: collections are named by their VM operation.
			mfs := a.metrics(t)
			var gcOps int
			for _, m := range mfs["pausewatch_pause_duration_seconds"].GetMetric() {
				if labelsMatch(m, map[string]string{"service": service, "kind": "gc"}) {
					for _, l := range m.GetLabel() {
						if l.GetName() == "reason" && (strings.HasPrefix(l.GetValue(), "G1") || strings.HasPrefix(l.GetValue(), "Parallel")) {
							gcOps += int(m.GetHistogram().GetSampleCount())
						}
					}
				}
			}
			if gcOps == 0 {
				t.Errorf("no kind=gc pause carries a collector's VM operation as reason")
			}
		})
	}
}

func TestJVMStartedBeforeAgent(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	j := startJava(t, "jvm-before", "-XX:+UseG1GC")
	a := startAgent(t, 19482)
	checkMethod(t, a.waitTracked(t, j.pid, time.Now()), "usdt")
	runJava(t, a, j, "jvm-before", "usdt")
}

func TestJVMHsperfdataFallback(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	a := startAgent(t, 19483, "--no-jvm-probes")
	j := startJava(t, "jvm-hsperf", "-XX:+UseG1GC")
	checkMethod(t, a.waitTracked(t, j.pid, j.started), "hsperfdata")
	runJava(t, a, j, "jvm-hsperf", "hsperfdata")
}

// TestJVMHsperfdataLate: a JVM that maps its hsperfdata file seconds
// after libjvm.so (an LD_PRELOAD library holds it back 6 s, longer than
// discovery's retries of a process whose runtime is not ready) is looked
// at again until the file is there, and then read. Without the second
// look it stays method "none" (checked: still none 28 s after exec).
func TestJVMHsperfdataLate(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	lib := filepath.Join(t.TempDir(), "latehsperf.so")
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-O2", "-o", lib, "testdata/latehsperf.c", "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("build latehsperf.so: %v\n%s", err, out)
	}
	a := startAgent(t, 19487, "--no-jvm-probes")
	const service = "jvm-hsperf-late"
	log := filepath.Join(t.TempDir(), "safepoint.log")
	w := startWorkload(t, exec.Command("java", "-Xmx64m", "-Xlog:safepoint=info:file="+log+":timenanos", "-XX:+UseG1GC", "testdata/JavaChurn.java"),
		"OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3", "LD_PRELOAD="+lib, "LATE_HSPERF_SECONDS=6")
	j := &javaProc{workload: w, log: log}
	ready := time.Since(j.started)
	if ready < 6*time.Second {
		t.Fatalf("the JVM was ready %v after its start: the preload did not hold its hsperfdata back", ready)
	}
	var p processStatus
	for deadline := time.Now().Add(20 * time.Second); p.Method != "hsperfdata" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, q := range a.processes(t) {
			if q.PID == j.pid {
				p = q
			}
		}
	}
	t.Logf("ready %v after exec; read through hsperfdata %v after exec: %+v", ready.Round(time.Millisecond), time.Since(j.started).Round(time.Millisecond), p)
	checkMethod(t, p, "hsperfdata")
	runJava(t, a, j, service, "hsperfdata")
}

func TestJVMWithoutPerfDataOrProbes(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	a := startAgent(t, 19484, "--no-jvm-probes")
	j := startJava(t, "jvm-none", "-XX:-UsePerfData")
	p := a.waitTracked(t, j.pid, j.started)
	checkMethod(t, p, "none")
	if !strings.Contains(p.Why, "hsperfdata") {
		t.Errorf("why = %q, want it to say hsperfdata is missing", p.Why)
	}
}

// The symbol fallback (what builds without USDT notes get), forced on
// Debian's libjvm, against the same log.
func TestJVMSymbolFallback(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	a := startAgent(t, 19485, "--no-jvm-usdt")
	j := startJava(t, "jvm-symbols", "-XX:+UseG1GC")
	checkMethod(t, a.waitTracked(t, j.pid, j.started), "uprobe")
	runJava(t, a, j, "jvm-symbols", "uprobe")
}

// startJavaPidNS starts JavaChurn as pid 1 of a new pid namespace whose
// /tmp is tmp (bind-mounted in a private mount namespace, so JVMs of other
// tests on the machine, which may be pid 1 of their own namespace too,
// cannot take /tmp/hsperfdata_root/1 first). It returns the JVM's pid
// as the agent sees it, and the path of its JVM warnings log.
func startJavaPidNS(t *testing.T, tmp, name, service string) (*javaProc, string) {
	t.Helper()
	// Inside, the host's tmp is /tmp: the logs are written there.
	args := []string{"--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
		`mount --bind "$0" /tmp && exec java "$@"`, tmp,
		"-Xmx64m", "-Xlog:disable", "-Xlog:all=warning:file=/tmp/" + name + "-warnings.log",
		"-Xlog:safepoint=info:file=/tmp/" + name + "-safepoint.log:timenanos",
		"-XX:+UseG1GC", "testdata/JavaChurn.java"}
	w := startWorkload(t, exec.Command("unshare", args...), "OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3")
	if got := w.out.Text(); got != "ready 1" {
		t.Fatalf("%s: %q, want the JVM to be pid 1 in its namespace", name, got)
	}
	// The JVM is the child unshare forked (sh exec'd it).
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", w.pid, w.pid))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		t.Fatalf("children of unshare %q: %v", b, err)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) != "java" {
		t.Fatalf("pid %d runs %q, want java", pid, exe)
	}
	w.pid = uint32(pid)
	return &javaProc{workload: w, log: filepath.Join(tmp, name+"-safepoint.log")}, filepath.Join(tmp, name+"-warnings.log")
}

// Two JVMs, each pid 1 of its own pid namespace, sharing /tmp: the second
// cannot create /tmp/hsperfdata_root/1 (the first holds it) and keeps its
// counters in private memory. It must not be credited with the first's
// safepoints (issue 16 case 2): it has no hsperfdata, so method none.
func TestJVMHsperfdataSharedTmpPidNamespaces(t *testing.T) {
	requireRoot(t)
	requireJava(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	tmp := t.TempDir()
	a := startAgent(t, 19486, "--no-jvm-probes")
	first, _ := startJavaPidNS(t, tmp, "first", "jvm-ns-first")
	checkMethod(t, a.waitTracked(t, first.pid, first.started), "hsperfdata")
	second, warnings := startJavaPidNS(t, tmp, "second", "jvm-ns-second")
	b, err := os.ReadFile(warnings)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "/tmp/hsperfdata_root/1 because it is locked by another process") {
		t.Fatalf("the second JVM did not find the first's file locked; its warnings: %q", b)
	}
	p := a.waitTracked(t, second.pid, second.started)
	t.Logf("second JVM: %+v", p)
	checkMethod(t, p, "none")
	if !strings.Contains(p.Why, "no hsperfdata file in its memory maps") {
		t.Errorf("why = %q, want it to say the JVM has no hsperfdata file mapped", p.Why)
	}

	runJava(t, a, first, "jvm-ns-first", "hsperfdata")
	mfs := a.metrics(t)
	if n := counter(mfs, "pausewatch_pauses_total", map[string]string{"service": "jvm-ns-second"}); n != 0 {
		t.Errorf("second JVM credited with %v safepoints, want 0 (the first's are not its own)", n)
	}
	second.stdin.Close()
}
