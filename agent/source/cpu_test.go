package source

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

func TestIsHotSpotGCThread(t *testing.T) {
	for _, tc := range []struct {
		comm string
		want bool
	}{
		// Names read from JDK 17 here (G1, Parallel, ZGC, Shenandoah), as
		// the kernel keeps them (15 bytes).
		{"GC Thread#0", true},
		{"GC Thread#12", true},
		{"G1 Main Marker", true},
		{"G1 Conc#0", true},
		{"G1 Refine#3", true},
		{"G1 Service", true},
		{"ZWorker#0", true},
		{"ZDriver", true},
		{"ZDirector", true},
		{"RuntimeWorker#1", true},
		{"Shenandoah Cont", true},
		{"Shenandoah GC T", true},
		// The JVM's other threads.
		{"VM Thread", false}, // counted only inside GC safepoints, by the probes
		{"VM Periodic Tas", false},
		{"C2 CompilerThre", false},
		{"java", false},
		{"main", false},
		// Near misses.
		{"GC Thread#", false},
		{"GC Thread#1a", false},
		{"GC Thread#-1", false},
		{"gc thread#0", false},
		{"GC Thread #0", false},
		{"G1 Conc", false},
		{"My GC Thread#0", false},
	} {
		if got := isHotSpotGCThread(tc.comm); got != tc.want {
			t.Errorf("isHotSpotGCThread(%q) = %v, want %v", tc.comm, got, tc.want)
		}
	}
}

func TestParseProcessCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		err        bool
	}{
		{"plain", "42 (java) S 1 42 42 0 -1 4194560 1 0 0 0 250 37 0 0 20 0 30 0 100 0 0", 2870 * time.Millisecond, false},
		// The comm is the process's to choose: spaces and parentheses.
		{"hostile comm", "42 (a) b) 0 0 (c) S 1 42 42 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 30 0 100 0 0", 70 * time.Millisecond, false},
		{"short", "42 (java) S 1 42", 0, true},
		{"no comm", "42 java S", 0, true},
		{"not a number", "42 (java) S 1 42 42 0 -1 4194560 1 0 0 0 x 37 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcessCPU([]byte(tc.stat))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseProcessCPU = %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseSchedstat(t *testing.T) {
	if got, err := parseSchedstat([]byte("329758 132326 1\n")); err != nil || got != 329758 {
		t.Errorf("parseSchedstat = %v, %v", got, err)
	}
	if _, err := parseSchedstat([]byte("\n")); err == nil {
		t.Error("empty schedstat parsed")
	}
}

// fakeProc writes a /proc with one process and its threads.
type fakeProc struct {
	t    *testing.T
	root string
	pid  uint32
}

func (f fakeProc) stat(ticks int) {
	f.write(filepath.Join(strconv.Itoa(int(f.pid)), "stat"),
		"7 (java) S 1 7 7 0 -1 0 0 0 0 0 "+strconv.Itoa(ticks)+" 0 0 0 20 0 3 0 1 0 0")
}

func (f fakeProc) thread(tid int, comm string, ns int64) {
	dir := filepath.Join(strconv.Itoa(int(f.pid)), "task", strconv.Itoa(tid))
	f.write(filepath.Join(dir, "comm"), comm+"\n")
	f.write(filepath.Join(dir, "schedstat"), strconv.FormatInt(ns, 10)+" 0 0\n")
}

func (f fakeProc) gone(tid int) {
	os.RemoveAll(filepath.Join(f.root, strconv.Itoa(int(f.pid)), "task", strconv.Itoa(tid)))
}

func (f fakeProc) write(rel, s string) {
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// TestCPUSamplerPass: deltas per pass; collector threads by name; a new
// thread counts from zero, an exited one stops counting, a reused tid
// whose time went backwards starts again; a process older than the sampler
// counts from its first pass, a younger one from its start.
func TestCPUSamplerPass(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir(), pid: 7}
	f.stat(100)
	f.thread(7, "java", 5e9)
	f.thread(8, "GC Thread#0", 1e9)
	f.thread(9, "G1 Conc#0", 2e9)
	f.thread(10, "VM Thread", 3e9)
	target := cpuTarget{Process: agent.Process{PID: 7, StartTime: 1, Runtime: "jvm"}, gcThreads: true}

	for _, tc := range []struct {
		name    string
		started time.Time // the sampler's start
		cpu, gc time.Duration
	}{
		{"younger than the agent: from its start", time.Time{}, time.Second, 3 * time.Second},
		{"older than the agent: from the first pass", time.Now(), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &cpuSampler{proc: procFS(f.root), started: tc.started, procs: map[uint32]*cpuProc{}}
			ev := cs.pass([]cpuTarget{target})
			var cpu, gc time.Duration
			for _, e := range ev {
				cpu, gc = cpu+e.CPU, gc+e.GCCPU
				if e.Type != agent.CPUTime || e.GCCPUMethod != agent.GCThreads {
					t.Errorf("event %+v", e)
				}
			}
			if cpu != tc.cpu || gc != tc.gc {
				t.Errorf("first pass: cpu %v, gc %v; want %v, %v", cpu, gc, tc.cpu, tc.gc)
			}
		})
	}

	cs := &cpuSampler{proc: procFS(f.root), procs: map[uint32]*cpuProc{}}
	cs.pass([]cpuTarget{target})
	f.stat(150)
	f.thread(8, "GC Thread#0", 1.5e9) // +0.5 s
	f.gone(9)                         // exited: its last interval is lost
	f.thread(11, "GC Thread#1", 0.25e9)
	f.thread(10, "VM Thread", 9e9) // not a collector thread
	ev := cs.pass([]cpuTarget{target})
	if len(ev) != 1 || ev[0].CPU != 500*time.Millisecond || ev[0].GCCPU != 750*time.Millisecond {
		t.Fatalf("second pass: %+v, want cpu 500ms, gc 750ms", ev)
	}
	f.thread(8, "GC Thread#0", 0.1e9) // the tid now names a new thread
	ev = cs.pass([]cpuTarget{target})
	if len(ev) != 1 || ev[0].CPU != 0 || ev[0].GCCPU != 100*time.Millisecond {
		t.Fatalf("third pass: %+v, want gc 100ms", ev)
	}
	if ev := cs.pass([]cpuTarget{target}); len(ev) != 0 {
		t.Errorf("idle pass sent %+v", ev)
	}
	cs.pass(nil)
	if len(cs.procs) != 0 {
		t.Errorf("an untracked process is still remembered")
	}
}
