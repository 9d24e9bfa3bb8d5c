package source

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

// This file is the CPU side: every cpuEvery, the CPU time of each tracked
// process (/proc/<pid>/stat, user + system, all threads), and for HotSpot
// the CPU time of its collector threads, found by their names in
// /proc/<pid>/task/<tid>/comm and read from .../schedstat (the kernel's
// exact nanosecond sum). Both go out as CPUTime events holding what was
// used since the previous sample. The GC CPU of the thread running a
// collection (CPython) or a GC safepoint (HotSpot's VM thread) is not here:
// the BPF programs time it per pause (bpf/oncpu.c, Event.ThreadCPU).

// cpuEvery is how often the CPU of tracked processes is sampled. A pass
// reads one small file per process and, for a JVM, two per thread of a
// new thread and one per collector thread (measured: see docs/gccpu.md).
const cpuEvery = 5 * time.Second

// userHZ is the unit of /proc/<pid>/stat's utime and stime (USER_HZ, 100
// on every Linux ABI).
const userHZ = 100

// cpuProc is what the sampler remembers of one process between passes.
type cpuProc struct {
	startTime uint64
	cpu       time.Duration // utime + stime at the last pass
	// goGC is a Go runtime's GC CPU total at the last plausible reading
	// (goGCAt; zero while none was).
	goGC   time.Duration
	goGCAt time.Time
	// gc holds, per collector thread, its CPU time at the last pass;
	// other holds the threads known not to be collector threads, so their
	// names are read once.
	gc    map[uint32]time.Duration
	other map[uint32]bool
}

// cpuSampler samples CPU times; only its own goroutine uses it.
type cpuSampler struct {
	proc procFS
	// started is when the agent began: a process that started more than
	// olderBy before it is counted from its first pass.
	started time.Time
	procs   map[uint32]*cpuProc
	// now is the clock (time.Now when nil); cpus bounds how many seconds
	// a Go runtime's GC CPU grows by per second of wall time
	// (goGCProcsPerCPU x runtime.NumCPU when 0).
	now  func() time.Time
	cpus int
	// implausible counts Go GC CPU readings not taken (goGCPlausible);
	// shared with the Source, which exports it.
	implausible *atomic.Uint64
	// overLimit counts threads named like HotSpot collector threads past
	// gcThreadLimit in one process, whose CPU is not read.
	overLimit *atomic.Uint64
}

// olderBy keeps a process that started just before the agent (or just
// after: start times are rounded down to 10 ms ticks) counted from its
// start: at most this much of its CPU predates the agent.
const olderBy = time.Second

// cpuTarget is one tracked process, as the sampler needs it.
type cpuTarget struct {
	agent.Process
	gcThreads bool   // the runtime's collector threads are known by name (HotSpot)
	goGCTotal uint64 // address of a Go runtime's GC CPU total (gogccpu.go), or 0
}

// sampleCPU runs every cpuEvery until ctx is done. started is when the
// agent began, before its first /proc pass.
func (s *Source) sampleCPU(ctx context.Context, started time.Time) {
	cs := &cpuSampler{proc: s.proc, started: started, procs: map[uint32]*cpuProc{}, implausible: &s.gcImplausible, overLimit: &s.gcThreadsOver}
	t := time.NewTicker(cpuEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		begin := time.Now()
		events := cs.pass(s.cpuTargets())
		s.log.Debug("cpu pass", "processes", len(cs.procs), "took", time.Since(begin))
		for _, e := range events {
			select {
			case s.side <- e:
			case <-ctx.Done():
				return
			}
		}
	}
}

// cpuTargets lists the tracked processes.
func (s *Source) cpuTargets() []cpuTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cpuTarget, 0, len(s.procs))
	for _, p := range s.procs {
		if !p.tracked() || (p.PID == s.self && s.cfg.SkipSelf) {
			continue
		}
		t := cpuTarget{Process: p.Process, gcThreads: p.info.rt.ID() == runtimeJVM}
		if b, ok := p.info.plan.(*goBinary); ok {
			t.goGCTotal = b.gcTotal
		}
		out = append(out, t)
	}
	return out
}

// pass samples every target once and returns one CPUTime event per
// process that used CPU since the last pass. A process seen for the first
// time counts from its start if it started after the agent (its whole
// life was watched), else from now: CPU used before the agent ran would
// land in one sample and read as a burst.
func (cs *cpuSampler) pass(targets []cpuTarget) []agent.Event {
	var out []agent.Event
	seen := make(map[uint32]bool, len(targets))
	for _, t := range targets {
		seen[t.PID] = true
		cpu, err := cs.proc.processCPU(t.PID)
		if err != nil {
			continue // exited; its exit event clears it below
		}
		cp := cs.procs[t.PID]
		baseline := false
		if cp == nil || cp.startTime != t.StartTime {
			cp = &cpuProc{startTime: t.StartTime, gc: map[uint32]time.Duration{}, other: map[uint32]bool{}}
			cs.procs[t.PID] = cp
			if start := agent.ProcessStart(t.StartTime); start.IsZero() || start.Before(cs.started.Add(-olderBy)) {
				cp.cpu, baseline = cpu, true
			}
		}
		e := agent.Event{Type: agent.CPUTime, Process: t.Process, CPU: max(cpu-cp.cpu, 0)}
		cp.cpu = cpu
		switch {
		case t.gcThreads:
			e.GCCPU = cs.gcThreads(t.PID, cp, baseline)
			e.GCCPUMethod = agent.GCThreads
		case t.goGCTotal != 0:
			if read, err := cs.proc.readGoGCTotal(t.PID, t.goGCTotal); err == nil {
				e.GCCPU, e.GCCPUMethod = cs.goGC(t.Process, cp, read, baseline), agent.GoRuntime
			}
		}
		if e.CPU > 0 || e.GCCPU > 0 {
			out = append(out, e)
		}
	}
	for pid := range cs.procs {
		if !seen[pid] {
			delete(cs.procs, pid)
		}
	}
	return out
}

// goGC takes a Go runtime's GC CPU total (since the process's start,
// updated at cycle ends) and returns what it grew by since the last
// plausible reading. The 8 bytes are the process's own memory, so any
// value can be there: a reading is taken only when the total did not go
// backwards and grew by at most cs.cpus seconds per second of wall time
// since the last one taken. The runtime times its mark workers and pauses
// per P (a pause counts its length x GOMAXPROCS), so its total grows by at
// most GOMAXPROCS per second; the bound allows GOMAXPROCS up to
// goGCProcsPerCPU times the node's CPUs, and a burst read before it fits
// is taken a pass or more later, not lost. Other readings are counted
// (cs.implausible) and change nothing. baseline: remember a plausible
// reading without counting it.
func (cs *cpuSampler) goGC(p agent.Process, cp *cpuProc, read uint64, baseline bool) time.Duration {
	now := cs.clock()
	last, at := cp.goGC, cp.goGCAt
	if at.IsZero() {
		// Nothing taken yet: the total is since the process's start.
		last, at = 0, agent.ProcessStart(p.StartTime)
	}
	cpus := cs.cpus
	if cpus <= 0 {
		cpus = goGCProcsPerCPU * runtime.NumCPU()
	}
	// Start times are in 10 ms ticks: a second of slack.
	limit := (now.Sub(at) + time.Second) * time.Duration(cpus)
	if at.IsZero() || now.Before(at) {
		limit = -1 // the start is unknown: no bound to check against
	}
	total := time.Duration(read)
	if read > math.MaxInt64 || total < last || (limit >= 0 && total-last > limit) {
		if cs.implausible != nil {
			cs.implausible.Add(1)
		}
		return 0
	}
	cp.goGC, cp.goGCAt = total, now
	if baseline {
		return 0
	}
	return total - last
}

// goGCProcsPerCPU is how far above the node's CPUs a Go process's
// GOMAXPROCS may be before its GC CPU readings can look implausible.
const goGCProcsPerCPU = 4

func (cs *cpuSampler) clock() time.Time {
	if cs.now != nil {
		return cs.now()
	}
	return time.Now()
}

// gcThreadLimit bounds the collector threads read per process: every
// pass reads each one's schedstat, and a thread's name is the process's
// to choose (measured: 3,000 threads named "GC Thread#N" in one process
// made a pass take 80-230 ms). HotSpot sizes its pools from the CPUs it
// may use: ParallelGCThreads 8 + 5/8 of the CPUs past 8, about a quarter
// of that concurrent, as many refinement threads, and a few single ones;
// the bound is well above that, past it threads are counted
// (cs.overLimit) and not read.
func (cs *cpuSampler) gcThreadLimit() int {
	return max(64, 4*runtime.NumCPU())
}

// gcThreads returns the CPU time the collector threads of pid used since
// the last pass. baseline: remember the current values without counting
// them. A collector thread that exits between two passes loses its last
// interval (at most cpuEvery of it); a tid reused within the process for
// another collector thread is noticed when its time goes backwards.
func (cs *cpuSampler) gcThreads(pid uint32, cp *cpuProc, baseline bool) time.Duration {
	tids, err := cs.proc.tids(pid)
	if err != nil {
		return 0
	}
	live := make(map[uint32]bool, len(tids))
	var used time.Duration
	for _, tid := range tids {
		live[tid] = true
		if cp.other[tid] {
			continue
		}
		last, known := cp.gc[tid]
		if !known {
			comm, err := os.ReadFile(cs.proc.path(pid, "task", strconv.FormatUint(uint64(tid), 10), "comm"))
			if err != nil {
				continue
			}
			if !isHotSpotGCThread(string(bytes.TrimSuffix(comm, []byte("\n")))) {
				cp.other[tid] = true
				continue
			}
			if len(cp.gc) >= cs.gcThreadLimit() {
				// Named like a collector thread, but more than HotSpot
				// starts on this node: read no more of them.
				cp.other[tid] = true
				if cs.overLimit != nil {
					cs.overLimit.Add(1)
				}
				continue
			}
		}
		run, err := cs.proc.threadRuntime(pid, tid)
		if err != nil {
			continue
		}
		if run < last {
			last = 0
		}
		if known || !baseline {
			used += run - last
		}
		cp.gc[tid] = run
	}
	for tid := range cp.gc {
		if !live[tid] {
			delete(cp.gc, tid)
		}
	}
	for tid := range cp.other {
		if !live[tid] {
			delete(cp.other, tid)
		}
	}
	return used
}

// HotSpot's collector threads, as the JVM names them (JDK 11-21) and the
// kernel keeps the names: cut to 15 bytes. Named workers end in #N.
// Matching is exact: a thread's name is the process's to choose, and a
// Java thread named like one of these would be counted as one (the only
// effect: its own service's GC CPU reads higher).
var (
	hotSpotGCNames = map[string]bool{
		"G1 Main Marker":  true, // G1 concurrent mark control
		"G1 Service":      true, // G1 periodic tasks (JDK 17+)
		"G1 Young RemSet": true, // "G1 Young RemSet Sampling" (JDK 11-16)
		"ZDirector":       true,
		"ZDriver":         true,
		"ZDriverMajor":    true, // generational ZGC (JDK 21+)
		"ZDriverMinor":    true,
		"ZStat":           true,
		"ZUncommitter":    true,
		"ZUnmapper":       true,
		"Shenandoah Cont": true, // "Shenandoah Control Thread"
		"Shenandoah GC T": true, // "Shenandoah GC Threads#N"
		"Shenandoah Unco": true, // "Shenandoah Uncommit Thread"
	}
	hotSpotGCWorkers = []string{
		"GC Thread",     // G1 and Parallel workers
		"G1 Conc",       // G1 concurrent markers
		"G1 Refine",     // G1 concurrent refinement
		"ZWorker",       // ZGC workers
		"ZWorkerYoung",  // generational ZGC (JDK 21+)
		"ZWorkerOld",    //
		"RuntimeWorker", // ZGC's safepoint workers, listed with its GC threads
	}
)

// isHotSpotGCThread says whether a thread name (comm) is one of HotSpot's
// collector threads.
func isHotSpotGCThread(comm string) bool {
	if hotSpotGCNames[comm] {
		return true
	}
	prefix, n, ok := strings.Cut(comm, "#")
	if !ok || n == "" {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, w := range hotSpotGCWorkers {
		if prefix == w {
			return true
		}
	}
	return false
}

// processCPU returns utime + stime of a process, every thread, from
// /proc/<pid>/stat.
func (p procFS) processCPU(pid uint32) (time.Duration, error) {
	b, err := os.ReadFile(p.path(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseProcessCPU(b)
}

// parseProcessCPU reads fields 14 and 15 (utime, stime) of a stat line.
func parseProcessCPU(stat []byte) (time.Duration, error) {
	fields, err := statFields(stat, 13)
	if err != nil {
		return 0, err
	}
	// fields[0] is field 3, so 14 and 15 are [11:13].
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: cpu time: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// tids lists the threads of a process.
func (p procFS) tids(pid uint32) ([]uint32, error) {
	ents, err := os.ReadDir(p.path(pid, "task"))
	if err != nil {
		return nil, err
	}
	out := make([]uint32, 0, len(ents))
	for _, e := range ents {
		if v, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			out = append(out, uint32(v))
		}
	}
	return out, nil
}

// threadRuntime returns a thread's time on a CPU (the first field of
// /proc/<pid>/task/<tid>/schedstat, se.sum_exec_runtime, in ns).
func (p procFS) threadRuntime(pid, tid uint32) (time.Duration, error) {
	b, err := os.ReadFile(p.path(pid, "task", strconv.FormatUint(uint64(tid), 10), "schedstat"))
	if err != nil {
		return 0, err
	}
	return parseSchedstat(b)
}

func parseSchedstat(b []byte) (time.Duration, error) {
	f, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	v, err := strconv.ParseUint(f, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(v), nil
}

// gcCPUMethods says how a process's GC CPU is measured, or "none: " and
// why not (/api/processes).
func gcCPUMethods(p *process) string {
	probed := p.Method == MethodUprobe || p.Method == MethodUSDT
	switch p.info.rt.ID() {
	case runtimeJVM:
		if probed {
			return agent.GCThreads + "," + agent.PauseThread
		}
		return agent.GCThreads + " (the VM thread's part needs the safepoint probes)"
	case runtimePython:
		if probed {
			return agent.PauseThread
		}
	case runtimeGo:
		if b, ok := p.info.plan.(*goBinary); ok {
			if b.gcTotal != 0 {
				return agent.GoRuntime
			}
			return b.gcCPUWhy
		}
	case runtimeNode:
		return "none: V8's GC helper threads are not told apart (every thread is named after the process)"
	}
	return "none: no collection probes"
}
