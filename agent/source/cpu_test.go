package source

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
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

// TestCPUSamplerGoGCImplausible: a Go process's GC CPU total is 8 bytes of
// its own memory, so a hostile (or corrupt) process can put anything
// there. A reading that went backwards or grew faster than the node's CPUs
// could is counted and not taken; oscillating between 0 and a huge value
// adds nothing, and a real burst read too early is taken a pass later.
func TestCPUSamplerGoGCImplausible(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir(), pid: 7}
	f.stat(100)
	const addr = 0x4000
	mem := func(v uint64) {
		fd, err := os.OpenFile(filepath.Join(f.root, "7", "mem"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		if _, err := fd.WriteAt(b[:], addr); err != nil {
			t.Fatal(err)
		}
	}
	target := cpuTarget{Process: agent.Process{PID: 7, StartTime: 1, Runtime: "go"}, goGCTotal: addr}
	start := agent.ProcessStart(target.StartTime)
	if start.IsZero() {
		t.Fatal("no start time")
	}
	now := start
	var implausible atomic.Uint64
	cs := &cpuSampler{proc: procFS(f.root), procs: map[uint32]*cpuProc{}, cpus: 2,
		now: func() time.Time { return now }, implausible: &implausible}
	var sum time.Duration
	for i, step := range []struct {
		after       time.Duration // since the previous pass
		total       uint64        // in the process's memory, ns
		gc          time.Duration
		implausible uint64
	}{
		{5 * time.Second, 3e9, 3 * time.Second, 0},              // since its start
		{5 * time.Second, 1 << 62, 0, 1},                        // 146 years in 5 s
		{5 * time.Second, 0, 0, 2},                              // backwards
		{5 * time.Second, 1 << 62, 0, 3},                        // and up again: nothing
		{5 * time.Second, 15e9, 12 * time.Second, 3},            // 12 s in 20 s on 2 CPUs
		{5 * time.Second, 28e9, 0, 4},                           // 13 s in 5 s: too early
		{5 * time.Second, 28e9, 13 * time.Second, 4},            // 13 s in 10 s: taken now
		{5 * time.Second, 1<<63 - 1, 0, 5},                      // would overflow a sum
		{5 * time.Second, 1 << 63, 0, 6},                        // negative as an int64
		{5 * time.Second, 28e9 + 1e6, time.Millisecond, 6},      // on as before
		{0, 28e9 + 1e6, 0, 6},                                   // unchanged: no event
		{time.Hour, 28e9 + 1e6 + 7200e9, 7200 * time.Second, 6}, // 2 CPUs for an hour
	} {
		now = now.Add(step.after)
		mem(step.total)
		var gc time.Duration
		for _, e := range cs.pass([]cpuTarget{target}) {
			if e.GCCPUMethod != agent.GoRuntime {
				t.Errorf("pass %d: method %q", i, e.GCCPUMethod)
			}
			gc += e.GCCPU
		}
		sum += gc
		if gc != step.gc || implausible.Load() != step.implausible {
			t.Errorf("pass %d (total %d): gc %v, implausible %d; want %v, %d", i, step.total, gc, implausible.Load(), step.gc, step.implausible)
		}
	}
	if want := time.Duration(28e9 + 1e6 + 7200e9); sum != want {
		t.Errorf("sum of GC CPU %v, want the last plausible total %v", sum, want)
	}
}

// TestCPUSamplerGCThreadLimit: a process naming thousands of threads like
// collector threads gets at most gcThreadLimit of them read per pass; the
// rest are counted once and cost nothing after.
func TestCPUSamplerGCThreadLimit(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir(), pid: 7}
	f.stat(100)
	var over atomic.Uint64
	cs := &cpuSampler{proc: procFS(f.root), procs: map[uint32]*cpuProc{}, overLimit: &over}
	limit := cs.gcThreadLimit()
	for i := range limit + 10 {
		f.thread(100+i, "GC Thread#"+strconv.Itoa(i), 1e9)
	}
	target := cpuTarget{Process: agent.Process{PID: 7, StartTime: 1, Runtime: "jvm"}, gcThreads: true}
	for pass, want := range []time.Duration{time.Duration(limit) * time.Second, 0} {
		var gc time.Duration
		for _, e := range cs.pass([]cpuTarget{target}) {
			gc += e.GCCPU
		}
		if gc != want || over.Load() != 10 {
			t.Errorf("pass %d: gc %v, over the limit %d; want %v, 10", pass, gc, over.Load(), want)
		}
		if n := len(cs.procs[7].gc); n != limit {
			t.Errorf("pass %d: %d collector threads read, want %d", pass, n, limit)
		}
	}
}
