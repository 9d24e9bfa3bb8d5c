package examples

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// lateDelay is how long the native hosts below wait after exec before they
// load their runtime: past the 3.2 s over which the agent used to re-read a
// new process's maps (25 ms … 1.6 s, doubling), so only the mapping signal
// can find the runtime.
const lateDelay = "3.5"

// TestLateRuntime: a native host that loads its runtime long after exec
// (a JVM through JNI from a private JDK copy, a libpython through dlopen),
// from a library file of its own that no other process has mapped, so that
// nothing but the mapping signal can lead the agent to it (issue 16, case 5).
func TestLateRuntime(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19731)
	t.Run("hosts", func(t *testing.T) {
		t.Run("jvm", func(t *testing.T) {
			t.Parallel()
			lateJVM(t, a)
		})
		t.Run("python", func(t *testing.T) {
			t.Parallel()
			latePython(t, a)
		})
	})
	// dlopen maps a library's dependencies right after it (libjvm.so:
	// libstdc++, libm, libgcc_s): mappings folded into the window of the
	// first, counted and exported.
	limited := counter(a.metrics(t), "pausewatch_events_lost_total", map[string]string{"source": "mapping_rate_limited"})
	t.Logf("mapping signals folded into a window: %v", limited)
	if limited < 1 {
		t.Errorf("pausewatch_events_lost_total{source=\"mapping_rate_limited\"} = %v, want > 0", limited)
	}
}

// lateJVM: every safepoint the JVM logs after the agent lists it is
// counted, and none that it did not make.
func lateJVM(t *testing.T, a *agentProc) {
	requireJava(t)
	const jdk = "/usr/lib/jvm/java-17-openjdk-amd64"
	if _, err := os.Stat(jdk + "/include/jni.h"); err != nil {
		t.Skipf("%s/include/jni.h not installed (openjdk-17-jdk-headless)", jdk)
	}
	dir := t.TempDir()
	host := filepath.Join(dir, "native-host")
	build(t, "gcc", "-O1", "-I"+jdk+"/include", "-I"+jdk+"/include/linux", "testdata/latedlopen/jvmhost.c", "-ldl", "-o", host)
	classes := filepath.Join(dir, "classes")
	build(t, "javac", "-d", classes, "testdata/JavaChurn.java")
	libjvm := privateJDK(t, jdk, filepath.Join(dir, "jdk"))

	const service = "late-jvm"
	log := filepath.Join(dir, "safepoint.log")
	w := startWorkload(t, exec.Command(host, lateDelay, libjvm, "-Xmx64m", "-Djava.class.path="+classes,
		"-Xlog:safepoint=info:file="+log+":timenanos"), "OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3")
	st := a.waitTracked(t, w.pid, w.started)
	t.Logf("tracked %v after exec: %+v", st.Since.Sub(w.started), st)
	checkMethod(t, st, "usdt")
	since := monoNow() - time.Since(st.Since).Nanoseconds()
	runJava(t, a, &javaProc{workload: w, log: log}, service, "usdt")

	// Over the JVM's whole life: nothing it did not make, and what it
	// made once listed (before that is the agent's reaction time), with
	// runJava's tolerance: one run in eight here missed one safepoint
	// (692 of 693, a 239 ms one, mid-run).
	agentN, _ := a.settledPauses(t, map[string]string{"service": service})
	all, _, _ := safepoints(t, log, 0)
	listed, _, _ := safepoints(t, log, since)
	t.Logf("whole life: agent %v safepoints, -Xlog:safepoint %d (%d after the agent listed it)", agentN, all, listed)
	if int(agentN) > all || (int(agentN) < listed && !within(agentN, float64(listed), 0.02, 1)) {
		t.Errorf("agent %v safepoints, want between %d (after it was listed) and %d (all)", agentN, listed, all)
	}
}

// TestLateRuntimeBeforeAgent: a process the agent's first /proc pass saw
// without a runtime is found when it loads one.
func TestLateRuntimeBeforeAgent(t *testing.T) {
	requireRoot(t)
	host, private := pyHost(t)
	cmd := exec.Command(host, "-", private)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	a := startAgent(t, 19732)
	w := &workload{cmd: cmd, pid: uint32(cmd.Process.Pid), started: time.Now(), stdin: stdin, out: bufio.NewScanner(stdout)}
	fmt.Fprintln(stdin, "load")
	if !w.out.Scan() || w.out.Text() != "ready" {
		t.Fatalf("the host did not say ready: %q", w.out.Text())
	}
	countPython(t, a, w)
}

// latePython: every collection of a libpython loaded late is counted.
func latePython(t *testing.T, a *agentProc) {
	host, private := pyHost(t)
	countPython(t, a, startWorkload(t, exec.Command(host, lateDelay, private)))
}

// pyHost builds the host that dlopens libpython and a private copy of the
// library, and returns their paths.
func pyHost(t *testing.T) (host, lib string) {
	t.Helper()
	const system = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
	if _, err := os.Stat(system); err != nil {
		t.Skipf("%s not installed (libpython3.11)", system)
	}
	dir := t.TempDir()
	host = filepath.Join(dir, "native-host")
	build(t, "gcc", "-O1", "testdata/latedlopen/pyhost.c", "-ldl", "-o", host)
	lib = filepath.Join(dir, "libpython3.11.so.1.0")
	copyFile(t, system, lib)
	return host, lib
}

// countPython waits until the agent lists the host, then compares the
// agent's count of 200 collections with gc.callbacks'.
func countPython(t *testing.T, a *agentProc, w *workload) {
	t.Helper()
	st := a.waitTracked(t, w.pid, w.started)
	t.Logf("tracked %v after the host started (or was told to load): %+v", st.Since.Sub(w.started), st)
	// No OTEL_SERVICE_NAME: a host embedding CPython is named by its
	// executable, not by its first argument.
	if st.Runtime != "python" || st.Method != "usdt" || st.Service != "native-host" {
		t.Fatalf("status %+v, want python/usdt, service native-host", st)
	}
	countCollections(t, a, w, "native-host", map[string]string{"service": "native-host", "runtime": "python"})
}

// countCollections tells a host embedding CPython to run its collections
// and then exit, and compares the agent's count of them (the pause series
// want) with the host's gc.callbacks count.
func countCollections(t *testing.T, a *agentProc, w *workload, host string, want map[string]string) {
	t.Helper()
	before, _ := a.settledPauses(t, want)
	fmt.Fprintln(w.stdin, "go")
	if !w.out.Scan() {
		t.Fatal("the host printed no count")
	}
	seen, err := strconv.Atoi(w.out.Text())
	if err != nil || seen < 200 {
		t.Fatalf("gc.callbacks count %q", w.out.Text())
	}
	after, _ := a.settledPauses(t, want)
	w.stdin.Close()
	w.cmd.Wait()
	t.Logf("%s: agent %v collections, gc.callbacks %d", host, after-before, seen)
	if int(after-before) != seen {
		t.Errorf("collections: agent %v, gc.callbacks %d", after-before, seen)
	}
}

// privateJDK lays out a JDK at dir whose libjvm.so is a copy (an inode of
// its own, which no other JVM on the machine maps) and whose other files
// are links to jdk's, and returns the copy's path. The JVM finds its home
// from where libjvm.so lies.
func privateJDK(t *testing.T, jdk, dir string) string {
	t.Helper()
	link := func(from, to string) {
		ents, err := os.ReadDir(from)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			switch e.Name() {
			case "lib", "server", "libjvm.so":
				continue
			}
			if err := os.Symlink(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	server := filepath.Join(dir, "lib", "server")
	if err := os.MkdirAll(server, 0o755); err != nil {
		t.Fatal(err)
	}
	link(jdk, dir)
	link(filepath.Join(jdk, "lib"), filepath.Join(dir, "lib"))
	link(filepath.Join(jdk, "lib", "server"), server)
	libjvm := filepath.Join(server, "libjvm.so")
	copyFile(t, filepath.Join(jdk, "lib", "server", "libjvm.so"), libjvm)
	return libjvm
}

func build(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}
