package source

import (
	"context"
	"errors"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

// This file is discovery: the process table, the initial /proc scan, the
// inspection of processes as they exec or map a file executable (by the
// discovery workers), reconciliation with /proc, and what the table says
// (Status, Resources, Lost).

// process is one tracked (or deliberately untracked) runtime process.
type process struct {
	agent.Process
	file    fileKey
	info    *fileInfo
	retries int
	reasons map[string]bool // distinct reasons seen, bounded; the event loop's
	why     string          // why Method is "none"
	since   time.Time
	pending bool   // waiting for its fallback's file to show (retries)
	stop    func() // stops the fallback poller, if any
}

// tracked says whether p is a runtime process the agent reports on (not
// one still waiting for its runtime to show).
func (p *process) tracked() bool { return p.info.rt != nil && !p.pending }

// Retry delays for a runtime process whose fallback has nothing to read
// yet: a JVM without probes creates its hsperfdata file a little after it
// maps libjvm.so, and no signal announces the file. (A runtime mapped after
// exec is announced: the mapping signal, mapping.go.)
var retryDelays = []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// inspectWhy says why a process is inspected.
type inspectWhy uint8

const (
	inspectSeen   inspectWhy = iota // at the scan, or a record of an unknown pid
	inspectRetry                    // its fallback had nothing to read yet
	inspectMapped                   // it mapped a file executable (mapping.go)
	inspectExec                     // it called execve
)

// inspectQueue holds the pids waiting for a discovery worker, each once:
// an exec storm grows it by at most one entry per pid.
type inspectQueue struct {
	mu    sync.Mutex
	why   map[uint32]inspectWhy
	order []uint32
	wake  chan struct{}
}

func newInspectQueue() *inspectQueue {
	return &inspectQueue{why: map[uint32]inspectWhy{}, wake: make(chan struct{}, 1)}
}

// push queues pid; a pid already queued keeps the strongest reason.
func (q *inspectQueue) push(pid uint32, why inspectWhy) {
	q.mu.Lock()
	if old, ok := q.why[pid]; ok {
		q.why[pid] = max(old, why)
	} else {
		q.why[pid] = why
		q.order = append(q.order, pid)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns the oldest queued pid, waiting for one until ctx is done.
func (q *inspectQueue) pop(ctx context.Context) (uint32, inspectWhy, bool) {
	for {
		q.mu.Lock()
		if len(q.order) > 0 {
			pid := q.order[0]
			q.order = q.order[1:]
			why := q.why[pid]
			delete(q.why, pid)
			more := len(q.order) > 0
			q.mu.Unlock()
			if more { // let another worker take the next one
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return pid, why, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return 0, 0, false
		}
	}
}

// discover is one discovery worker: it inspects queued pids until ctx is
// done and tells the event loop about each.
func (s *Source) discover(ctx context.Context) {
	for {
		pid, why, ok := s.queue.pop(ctx)
		if !ok {
			return
		}
		s.inspect(pid, why)
		select {
		case s.inspected <- pid:
		case <-ctx.Done():
			return
		}
	}
}

// scan inspects every process already running.
func (s *Source) scan() {
	pids, err := s.proc.pids()
	if err != nil {
		s.log.Error("initial process scan", "err", err)
		return
	}
	for _, pid := range pids {
		s.inspect(pid, inspectSeen)
	}
}

// inspect classifies a process and attaches probes to its runtime if
// needed. A process that exits meanwhile is not an error. It runs on the
// discovery workers (and the initial scan), never on the event loop.
func (s *Source) inspect(pid uint32, why inspectWhy) {
	if pid == s.self && s.cfg.SkipSelf {
		return
	}
	if tgid, err := s.proc.tgid(pid); err != nil || tgid != pid {
		return // gone, or a thread
	}
	exePath := s.proc.path(pid, "exe")
	// Opened once: what is parsed and what gets probes is this file, even
	// if the process execs something else meanwhile (see mappedLib).
	exeFile, err := os.Open(exePath)
	if err != nil {
		return // kernel thread or gone
	}
	defer exeFile.Close()
	fi, err := exeFile.Stat()
	if err != nil {
		return
	}
	start, err := s.proc.startTime(pid)
	if err != nil {
		return
	}
	exeKey := statKey(fi)
	if pid != s.self && s.selfExe != nil && exeKey == *s.selfExe {
		// The agent's own subcommands (watch, report) are the operator's
		// tools, not a service: merged into service "pausewatch" they
		// would blur the agent's own pauses and requests.
		return
	}

	s.mu.Lock()
	if s.k == nil {
		s.mu.Unlock()
		return
	}
	old := s.procs[pid]
	same := old != nil && old.StartTime == start
	if why == inspectRetry && !(same && old.pending) {
		s.mu.Unlock()
		return // settled meanwhile
	}
	if same && (why == inspectSeen || why == inspectMapped) && old.info.rt != nil {
		s.mu.Unlock()
		return
	}
	retries := 0
	if same {
		retries = old.retries
	}
	s.mu.Unlock()

	// The executable first (Go, a static CPython, node), then the
	// libraries it has mapped (libjvm.so, libpython, libnode).
	path, key, file := exePath, exeKey, exeFile
	info := s.resolve(key, path, file, true, s.runtimes)
	if info == nil {
		return
	}
	if info.rt == nil {
		for _, rt := range s.runtimes {
			if !s.wants(rt.Name()) {
				continue
			}
			lib, lf, lkey, ok := s.proc.mappedLib(pid, rt.Library)
			if !ok {
				continue
			}
			defer lf.Close()
			li := s.resolve(lkey, lib, lf, false, []Runtime{rt})
			if li == nil {
				continue
			}
			if li.rt == nil {
				s.unpin(lkey, li)
				continue
			}
			s.unpin(key, info)
			path, key, file, info = lib, lkey, lf, li
			break
		}
	}
	if info.rt != nil && !s.wants(info.rt.Name()) {
		s.unpin(key, info)
		return // a runtime the configuration leaves out
	}

	p := &process{file: key, info: info, retries: retries}
	p.PID = pid
	p.StartTime = start
	p.Exe = s.proc.exeName(pid)
	// A runtime with a fallback (the JVM's hsperfdata) and no probes waits
	// for what the fallback reads, which the JVM creates a little after it
	// maps libjvm.so, like for a runtime that is not mapped yet.
	fr, hasFallback := info.rt.(fallbackRuntime)
	var fb fallback
	var fbErr error
	fbLooked := false
	if hasFallback && info.method == MethodNone {
		fb, fbErr = fr.prepareFallback(s.proc, pid)
		fbLooked = true
	}
	// Not a runtime process, or not yet: a runtime library it maps later
	// (dlopen) brings it back through the mapping signal. Only what a
	// fallback reads is waited for.
	canRetry := fbErr != nil && why != inspectSeen && p.retries < len(retryDelays)
	if info.rt == nil || canRetry {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur := s.procs[pid]; cur != nil {
			s.dropLocked(cur)
		}
		if !canRetry {
			s.unpinLocked(key, info)
			if len(s.files) > 4*s.cfg.MaxProcesses {
				s.pruneFiles()
			}
			return
		}
		d := retryDelays[p.retries]
		p.retries++
		p.pending = true
		s.procs[pid] = p // holds the pin
		time.AfterFunc(d, func() { s.queue.push(pid, inspectRetry) })
		return
	}

	s.mu.Lock()
	n := s.trackedCount()
	if cur := s.procs[pid]; cur != nil && cur.tracked() {
		n-- // replaced below
	}
	if n >= s.cfg.MaxProcesses {
		s.dropped++
		s.unpinLocked(key, info)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()

	p.Runtime = info.rt.Name()
	// Every name below is chosen by whoever runs the process: each passes
	// agent.LabelValue (serviceName and exeName do it themselves), and a
	// name that sanitises to nothing falls through to the next.
	p.Service = s.proc.serviceName(pid)
	p.ServiceFromEnv = p.Service != ""
	if p.Service == "" {
		p.Service = agent.LabelValue(info.rt.Service(p.Exe, s.proc.cmdline(pid)))
	}
	if p.Service == "" {
		p.Service = p.Exe
	}
	// Whatever its source, the name is the process's to choose.
	p.Service = labelValue(p.Service)
	if pid == s.self {
		p.Service = "pausewatch"
	}
	p.ContainerID, p.PodUID = s.proc.containerID(pid)

	method, whyNot, err := s.attachFile(info, file)
	if err != nil {
		if _, serr := os.Stat(exePath); serr != nil {
			// The process exited (or is a zombie, whose exe link is
			// gone) while we attached: not an error, and nothing
			// learnt about the file. The next process of it attaches
			// afresh.
			s.mu.Lock()
			if s.files[key] == info {
				delete(s.files, key)
			}
			s.unpinLocked(key, info)
			s.mu.Unlock()
			return
		}
		method, whyNot = MethodNone, err.Error()
		s.markUnprobed(info, whyNot)
		if !errors.Is(err, errNoUprobes) { // said once at start, not per process
			s.log.Warn("attach failed", "pid", pid, "exe", p.Exe, "runtime", p.Runtime, "err", err)
		}
	}
	p.Method = method
	if method == MethodNone && hasFallback {
		// No probes: the runtime's own counters are the next best thing.
		if !fbLooked {
			fb, fbErr = fr.prepareFallback(s.proc, pid) // the probes' attach failed
		}
		if fbErr == nil {
			ctx, cancel := context.WithCancel(s.ctx)
			var m string
			if m, fbErr = fb.start(ctx, p.Process, s.side, s.log); fbErr == nil {
				p.Method, p.stop = m, cancel
			} else {
				cancel()
			}
		}
		var await context.Context
		if fbErr != nil {
			whyNot += "; " + fbErr.Error() + " (looked for again until the process exits)"
			// The JVM may create its file late (a slow start, or seen
			// between its exec and the file): keep looking, in the
			// background, stopped with the process (p.stop).
			var cancel context.CancelFunc
			await, cancel = context.WithCancel(s.ctx)
			p.stop = cancel
		}
		defer func() {
			if await != nil && await.Err() == nil {
				go s.awaitFallback(await, fr, p)
			}
		}()
	}

	s.mu.Lock()
	if s.k == nil {
		s.mu.Unlock()
		if p.stop != nil {
			p.stop()
		}
		s.unpin(key, info)
		return
	}
	if cur := s.procs[pid]; cur != nil {
		s.dropLocked(cur)
	}
	p.why = whyNot
	p.since = time.Now()
	s.procs[pid] = p // holds the pin
	// The agent's own pauses are reported, but not its own requests: a
	// scrape or a `watch` stream is the operator's, and a stream would
	// read as one request lasting minutes.
	if !s.cfg.NoRequests && pid != s.self {
		if err := s.k.trace(pid); err != nil {
			s.log.Warn("request tracing: traced map", "pid", pid, "err", err)
		}
		s.adoptPending = true
		s.pushObjectivesLocked(p)
	}
	if p.Method == MethodNone {
		s.newUnprobed++
	} else {
		s.newTracked++
	}
	s.mu.Unlock()
	if p.Method == MethodNone {
		s.log.Debug("process not probed", "pid", pid, "service", p.Service, "runtime", p.Runtime, "why", whyNot)
	} else {
		// One line per process would flood a busy node's logs (every
		// compiler a build runs is a Go process): DEBUG here, and a
		// periodic INFO summary (logSummary).
		s.log.Debug("tracking process", "pid", pid, "service", p.Service, "runtime", p.Runtime,
			"method", p.Method, "version", info.version)
	}
}

// Delays between looks for a fallback that was not there at inspection:
// doubling from fallbackFirstLook up to fallbackMaxLook, so a JVM that
// never creates its file costs one read of its maps every 10 s.
const (
	fallbackFirstLook = 100 * time.Millisecond
	fallbackMaxLook   = 10 * time.Second
)

// awaitFallback looks for process p's fallback (the JVM's hsperfdata)
// until it is found or ctx is done (p dropped: exited, or the agent
// stopping), and then has it capture p. The poller runs under ctx too,
// so p.stop stops whichever is running.
func (s *Source) awaitFallback(ctx context.Context, fr fallbackRuntime, p *process) {
	d := fallbackFirstLook
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		d = min(2*d, fallbackMaxLook)
		fb, err := fr.prepareFallback(s.proc, p.PID)
		if err != nil {
			continue
		}
		m, err := fb.start(ctx, p.Process, s.side, s.log)
		if err != nil {
			continue
		}
		s.mu.Lock()
		if s.procs[p.PID] == p && ctx.Err() == nil {
			// A new entry, not an update of p: other goroutines read
			// p.Process without s.mu. It takes over p's pin and stop.
			np := *p
			np.Method, np.why = m, ""
			s.procs[p.PID] = &np
			s.newTracked++
		}
		s.mu.Unlock()
		s.log.Debug("fallback found after inspection", "pid", p.PID, "service", p.Service, "method", m)
		return
	}
}

// dropLocked removes p from the table and releases what it held; s.mu is held.
func (s *Source) dropLocked(p *process) {
	if s.procs[p.PID] == p {
		delete(s.procs, p.PID)
	}
	s.unpinLocked(p.file, p.info)
	if p.stop != nil {
		p.stop()
	}
}

// wants says whether the configuration captures a runtime.
func (s *Source) wants(runtime string) bool {
	return len(s.cfg.Runtimes) == 0 || slices.Contains(s.cfg.Runtimes, runtime)
}

func (s *Source) trackedCount() int {
	n := 0
	for _, p := range s.procs {
		if p.tracked() {
			n++
		}
	}
	return n
}

// summaryEvery is how many stats ticks (seconds) pass between INFO
// summaries of the processes tracked.
const summaryEvery = 60

// logSummary logs, when anything changed, how many processes are tracked
// by runtime and method, and how many were newly seen.
func (s *Source) logSummary() {
	s.mu.Lock()
	added, unprobed := s.newTracked, s.newUnprobed
	s.newTracked, s.newUnprobed = 0, 0
	s.mu.Unlock()
	if added == 0 && unprobed == 0 {
		return
	}
	by := map[string]int{}
	for _, p := range s.Status() {
		by[p.Runtime+"/"+p.Method]++
	}
	args := []any{"new_tracked", added, "new_not_probed", unprobed}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k, by[k])
	}
	s.log.Info("processes", args...)
}

// reconcileEvery is how many stats ticks (seconds) pass between checks of
// the process table against /proc.
const reconcileEvery = 5

// reconcile forgets processes that are gone (or whose pid now belongs to
// another process) without the agent having seen their exit: exit records
// are lost when the ring buffer overflows, and each missed one would keep
// a process listed, with its probes and map entries, for ever. It returns
// the runtime processes it forgot.
func (s *Source) reconcile() []*process {
	s.mu.Lock()
	var pids []uint32
	starts := map[uint32]uint64{}
	for pid, p := range s.procs {
		pids = append(pids, pid)
		starts[pid] = p.StartTime
	}
	s.mu.Unlock()
	var gone []*process
	for _, pid := range pids {
		start, err := s.proc.startTime(pid)
		if err == nil && start == starts[pid] {
			continue
		}
		s.mu.Lock()
		same := s.procs[pid] != nil && s.procs[pid].StartTime == starts[pid]
		s.mu.Unlock()
		if !same {
			continue // exited and replaced meanwhile: the exec path handled it
		}
		if p := s.forget(pid); p != nil {
			gone = append(gone, p)
		}
	}
	if len(gone) > 0 {
		s.log.Info("forgot processes whose exit was not seen", "count", len(gone))
	}
	return gone
}

// forget removes an exited process and returns it if it was a runtime process.
func (s *Source) forget(pid uint32) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[pid]
	if p == nil {
		return nil
	}
	s.dropLocked(p)
	if s.k != nil {
		if err := s.k.untrace(pid); err != nil {
			s.log.Warn("request tracing: traced map", "pid", pid, "err", err)
		}
	}
	s.dropObjectivesLocked(pid)
	if !p.tracked() {
		return nil
	}
	s.log.Debug("process exited", "pid", pid, "service", p.Service)
	return p
}

func (s *Source) readStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.k == nil {
		return
	}
	if v, err := s.k.stat(statRingbufLost); err == nil {
		s.lost["ringbuf"] = v
	}
	if v, err := s.k.stat(statUnpairedEnd); err == nil {
		s.lost["unpaired_end"] = v
	}
	if v, err := s.k.stat(statConnLost); err == nil {
		s.lost["connections"] = v
	}
	if v, err := s.k.stat(statUncoveredAccept); err == nil {
		s.lost["io_uring_direct_accept"] = v
	}
	if v, err := s.k.stat(statMappingLimited); err == nil {
		s.lost["mapping_rate_limited"] = v
	}
	if v, err := s.k.stat(statReqUncounted); err == nil {
		s.lost["request_histograms"] = v
	}
	if v, err := s.k.stat(statPauseRate); err == nil {
		s.lost["pause_rate"] = v
	}
	s.lost["max_processes"] = s.dropped
	s.lost["unresolved"] = s.unresolved
	s.lost["other_runtime"] = s.otherRuntime
	s.lost["gc_cpu_implausible"] = s.gcImplausible.Load()
	s.lost["gc_threads_over_limit"] = s.gcThreadsOver.Load()
}

// Lost returns counts of events lost, by where they were lost.
func (s *Source) Lost() map[string]uint64 {
	// The kernel's counters now, not as of the last housekeeping pass: a
	// scrape then sees every loss before it, as it sees every pause.
	s.readStats()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.lost))
	for k, v := range s.lost {
		out[k] = v
	}
	return out
}

// Usage is how much of one bounded resource the source holds: Used of at
// most Limit (0: no fixed bound).
type Usage struct{ Used, Limit int }

// Resources reports the per-process resources the source holds, by name:
// usdt_spec_slots, tracked_processes, attached_files, probe_links. Each is
// released when the processes that needed it exit (or are found gone).
func (s *Source) Resources() map[string]Usage {
	s.mu.Lock()
	out := map[string]Usage{"tracked_processes": {s.trackedCount(), s.cfg.MaxProcesses}}
	files, links := 0, 0
	for _, f := range s.files {
		if len(f.links) > 0 {
			files++
			links += len(f.links)
		}
	}
	specs := s.specs
	s.mu.Unlock()
	out["attached_files"] = Usage{Used: files}
	out["probe_links"] = Usage{Used: links}
	if specs != nil {
		out["usdt_spec_slots"] = Usage{specs.inUse(), int(specs.max)}
	}
	return out
}

// Status lists the runtime processes the source knows, tracked or not. It
// never waits for an attach: s.mu is not held across one.
func (s *Source) Status() []ProcessStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProcessStatus, 0, len(s.procs))
	for _, p := range s.procs {
		if !p.tracked() {
			continue
		}
		// The version comes from the file (a Go binary's build info):
		// another string a process chooses.
		out = append(out, ProcessStatus{Process: p.Process, Why: p.why, Version: agent.LabelValue(p.info.version),
			GCCPU: gcCPUMethods(p), Since: p.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}
