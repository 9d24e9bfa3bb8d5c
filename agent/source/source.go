package source

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent"
)

// Config configures the BPF source.
type Config struct {
	// ProcFS is the procfs root, "/proc" unless set (tests, or a host
	// /proc mounted elsewhere in a container).
	ProcFS string
	Logger *slog.Logger
	// SkipSelf leaves the agent's own pauses out.
	SkipSelf bool
	// MaxProcesses bounds how many processes are tracked at once; past it
	// new processes are listed as untracked and counted. 0 means 10000.
	MaxProcesses int
	// NoJVMProbes skips the JVM's USDT and symbol probes, leaving the
	// hsperfdata poller (for checking it, or where uprobes are unwanted).
	NoJVMProbes bool
	// NoJVMUSDT ignores libjvm's USDT notes and uses the symbol uprobes.
	NoJVMUSDT bool
	// Runtimes limits capture to these runtimes ("go", "jvm", "python");
	// all when empty.
	Runtimes []string
	// NoRequests turns request-latency capture off.
	NoRequests bool
	// Ports limits request capture to these local ports (all when empty).
	Ports []uint16
	// Uprobes forces one way of attaching uprobes, "uprobe_multi" or
	// "perf_uprobe"; empty: uprobe_multi where it works, else perf-PMU
	// uprobes. Forcing perf_uprobe tests what older kernels get.
	Uprobes string
}

// Method names, the `method` label.
const (
	MethodUprobe     = "uprobe"
	MethodUSDT       = "usdt"
	MethodHsperfdata = "hsperfdata"
	MethodNone       = "none"
)

// ProcessStatus says how one runtime process is (or is not) captured.
type ProcessStatus struct {
	agent.Process
	// Why is set when Method is "none": what stopped the capture.
	Why     string `json:"why,omitempty"`
	Version string `json:"version,omitempty"`
	// Since is when the agent started tracking the process.
	Since time.Time `json:"since"`
}

// Source captures pauses of the processes on this node with BPF.
type Source struct {
	cfg   Config
	log   *slog.Logger
	proc  procFS
	self  uint32
	ready chan struct{}

	mu      sync.Mutex
	procs   map[uint32]*process
	files   map[fileKey]*fileInfo
	k       *kernel
	capture *Capture // what can be captured, set once the probes are loaded
	specs   *specAllocator
	ctx     context.Context  // Run's, for pollers
	polled  chan agent.Event // from hsperfdata pollers
	dropped uint64           // processes not tracked because of MaxProcesses
	selfExe *fileKey         // the agent's own executable
	// Processes newly tracked or found unprobeable since the last summary.
	newTracked, newUnprobed int
	lost                    map[string]uint64
}

// New returns a Source; nothing touches the kernel before Run.
func New(cfg Config) *Source {
	if cfg.ProcFS == "" {
		cfg.ProcFS = "/proc"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxProcesses == 0 {
		cfg.MaxProcesses = 10000
	}
	var selfExe *fileKey
	if fi, err := os.Stat("/proc/self/exe"); err == nil {
		k := statKey(fi)
		selfExe = &k
	}
	return &Source{
		cfg:     cfg,
		log:     cfg.Logger,
		proc:    procFS(cfg.ProcFS),
		self:    uint32(os.Getpid()),
		selfExe: selfExe,
		ready:   make(chan struct{}),
		procs:   make(map[uint32]*process),
		files:   make(map[fileKey]*fileInfo),
		lost:    make(map[string]uint64),
		polled:  make(chan agent.Event, 256),
	}
}

// Ready is closed once the BPF programs are loaded and the first /proc pass
// has been attached. That the agent can capture anything is Capture's to say.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Capture says what the agent can capture with its privileges and kernel;
// nil until the probes are loaded.
func (s *Source) Capture() *Capture {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.capture
}

// logCapture says at start what is missing and what that disables.
func (s *Source) logCapture(cp *Capture, caps capSet) {
	s.log.Info("capture methods", "uprobes", cp.Uprobes, "uid", os.Geteuid(), "capabilities", fmt.Sprintf("%#x", uint64(caps)))
	for _, m := range cp.Missing {
		s.log.Warn("missing: " + m)
	}
	if len(cp.Unready) > 0 {
		s.log.Error("no capture method for these runtimes; /readyz reports not ready", "runtimes", strings.Join(cp.Unready, ","))
	}
}

// fileKey identifies an executable by inode: uprobes bind to inodes, so one
// attach covers every process (in any container) running that file.
type fileKey struct{ dev, ino uint64 }

// fileInfo is what one executable turned out to be, and its probes.
type fileInfo struct {
	runtime string // "" when no supported runtime was found
	method  string
	why     string // when method is "none"
	version string
	minor   int // Go minor version
	golang  *goBinary
	jvm     *jvmLib
	python  *pyBinary
	links   []link.Link
	slots   []uint64 // usdt_specs slots the links read
	refs    int
}

// File kinds: what to look for in a file.
const (
	fileExe       = iota // the process's executable: Go? CPython?
	fileLibjvm           // a mapped libjvm.so
	fileLibpython        // a mapped libpython3.X.so
)

func isLibjvm(base string) bool { return base == "libjvm.so" }

// isLibpython: libpython3.X.so, and libpython2.7.so so that Python 2 is
// listed (as not captured, with why) rather than not seen at all.
func isLibpython(base string) bool {
	return strings.HasPrefix(base, "libpython") && strings.Contains(base, ".so")
}

// process is one tracked (or deliberately untracked) runtime process.
type process struct {
	agent.Process
	file    fileKey
	info    *fileInfo
	retries int
	reasons map[string]bool // distinct JVM reasons seen, bounded
	why     string          // why Method is "none"
	since   time.Time
	pending bool   // waiting for its runtime to show (retries)
	stop    func() // stops the hsperfdata poller, if any
}

// pollInterval bounds how long an event can sit in the ring buffer.
const pollInterval = 100 * time.Millisecond

// tracked says whether p is a runtime process the agent reports on (not
// one still waiting for its runtime to show).
func (p *process) tracked() bool { return p.info.runtime != "" && !p.pending }

// Retry delays for a process whose runtime was not visible at exec:
// the java launcher dlopens libjvm.so and a shared-library Python maps
// libpython after exec, so the memory maps are read again before giving up.
var retryDelays = []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// Run loads the probes, tracks processes and sends one Event per pause (and
// one per exit of a tracked process) to out until ctx is done. Everything it
// put in the kernel is gone when it returns.
func (s *Source) Run(ctx context.Context, out chan<- agent.Event) error {
	caps, err := ownCaps()
	if err != nil {
		return err
	}
	// Name what is missing rather than let the first bpf() call fail with
	// a bare "operation not permitted".
	if miss := missingLoadCaps(caps); miss != "" {
		return fmt.Errorf("missing %s: the agent's BPF maps and programs (tracepoints, uprobes) cannot be loaded, so nothing can be captured "+
			"(effective capabilities %#x; see docs/deploy.md)", miss, uint64(caps))
	}
	memlockErr := liftMemlock()
	if memlockErr != nil {
		s.log.Warn("memlock limit not raised; BPF loads fail if this kernel (before 5.11) still counts them against it", "err", memlockErr)
	}
	mode, whyMulti, whyPerf := chooseUprobes(caps, s.cfg.Uprobes)
	k, err := loadKernel(s.cfg.Ports, mode)
	if err != nil {
		if memlockErr != nil {
			return fmt.Errorf("%w (and %v)", err, memlockErr)
		}
		return err
	}
	cp := s.assess(caps, mode, whyMulti, whyPerf, k.requestErr)
	s.logCapture(cp, caps)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.ctx = ctx
	s.k = k
	s.capture = cp
	s.specs = newSpecAllocator(k.objs.UsdtSpecs, k.objs.UsdtSpecs.MaxEntries())
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		// All at once, so that their grace periods overlap (closeLinks).
		all := k.links
		for _, f := range s.files {
			all = append(all, f.links...)
			f.links = nil
		}
		k.links = nil
		s.k = nil
		s.mu.Unlock()
		closeLinks(all)
		k.close()
	}()

	rd, err := ringbuf.NewReader(k.objs.Events)
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	defer rd.Close()
	records := make(chan bpfPwEvent, 4096)
	readErr := make(chan error, 1)
	go func() {
		defer close(records)
		var rec ringbuf.Record
		for {
			// The BPF side wakes us only for batches; poll for the rest.
			rd.SetDeadline(time.Now().Add(pollInterval))
			err := rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					readErr <- fmt.Errorf("read ring buffer: %w", err)
				}
				return
			}
			e, err := decodeEvent(rec.RawSample)
			if err != nil {
				readErr <- err
				return
			}
			records <- e
		}
	}()

	switch {
	case s.cfg.NoRequests:
	case k.requestErr != nil:
		s.log.Error("request latency capture unavailable; pauses are still captured", "err", k.requestErr)
	default:
		s.log.Info("request latency capture", "start", k.requestMethod)
	}
	// Exec events that arrive during the scan are handled after it; a pid
	// seen twice is simply inspected twice.
	s.scan()
	close(s.ready)
	s.log.Info("probes loaded, initial /proc pass attached", "processes", len(s.Status()))

	// send hands an event on, unless the agent is stopping.
	send := func(ev agent.Event) {
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	retry := make(chan uint32, 256)
	statsTick := time.NewTicker(time.Second)
	defer statsTick.Stop()
	ticks := 0
	for {
		select {
		case <-ctx.Done():
			rd.Close()
			return nil
		case err := <-readErr:
			return err
		case pid := <-retry:
			s.mu.Lock()
			p := s.procs[pid]
			s.mu.Unlock()
			if p != nil && p.pending {
				s.inspect(pid, true, retry)
			}
		case <-statsTick.C:
			s.readStats()
			if ticks%summaryEvery == 0 {
				s.logSummary()
			}
			if ticks++; ticks%reconcileEvery == 0 {
				for _, p := range s.reconcile() {
					send(agent.Event{Type: agent.Exit, Process: p.Process})
				}
			}
		case e := <-s.polled:
			send(e)
		case e, ok := <-records:
			if !ok {
				return nil
			}
			switch e.Type {
			case eventExec:
				s.inspect(e.Pid, true, retry)
			case eventExit:
				if p := s.forget(e.Pid); p != nil {
					send(agent.Event{Type: agent.Exit, Process: p.Process})
				}
			case eventRequest:
				if ev, ok := s.requestEvent(e); ok {
					send(ev)
				}
			case eventPause:
				if ev, ok := s.pauseEvent(e); ok {
					send(ev)
				}
			}
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
		s.inspect(pid, false, nil)
	}
}

// inspect classifies a process and attaches probes to its runtime if
// needed. A process that exits meanwhile is not an error.
func (s *Source) inspect(pid uint32, fromExec bool, retry chan<- uint32) {
	if pid == s.self && s.cfg.SkipSelf {
		return
	}
	if tgid, err := s.proc.tgid(pid); err != nil || tgid != pid {
		return // gone, or a thread
	}
	exePath := s.proc.path(pid, "exe")
	fi, err := os.Stat(exePath)
	if err != nil {
		return // kernel thread or gone
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
	defer s.mu.Unlock()
	if s.k == nil {
		return
	}
	old := s.procs[pid]
	if old != nil && old.StartTime == start && !fromExec && old.info.runtime != "" {
		return
	}
	if old != nil {
		s.release(old)
		if old.stop != nil {
			old.stop()
		}
		delete(s.procs, pid)
	}

	// The executable first (Go), then the libraries it has mapped (JVM).
	path, key := exePath, exeKey
	info := s.fileInfo(key, path, fileExe)
	if info == nil {
		return
	}
	for _, l := range []struct {
		runtime string
		match   func(string) bool
		kind    int
	}{{"jvm", isLibjvm, fileLibjvm}, {"python", isLibpython, fileLibpython}} {
		if info.runtime != "" {
			break
		}
		if !s.wants(l.runtime) {
			continue
		}
		if lib, lkey, ok := s.proc.mappedLib(pid, l.match); ok {
			if li := s.fileInfo(lkey, lib, l.kind); li != nil {
				path, key, info = lib, lkey, li
			}
		}
	}

	if info.runtime != "" && !s.wants(info.runtime) {
		return // a runtime the configuration leaves out
	}
	p := &process{file: key, info: info}
	if old != nil && old.StartTime == start {
		p.retries = old.retries
	}
	p.PID = pid
	p.StartTime = start
	p.Exe = s.proc.exeName(pid)
	// A JVM without probes is read through hsperfdata, which the JVM
	// creates a little after it maps libjvm.so: wait for it like for a
	// runtime that is not mapped yet.
	var hsperf perfMapping
	var hsperfErr error
	hsperfLooked := false
	if info.runtime == "jvm" && info.method == MethodNone {
		hsperf, hsperfErr = s.proc.hsperfdataMapping(pid)
		hsperfLooked = true
	}
	canRetry := fromExec && retry != nil && p.retries < len(retryDelays)
	if info.runtime == "" || (hsperfErr != nil && canRetry) {
		// Not (yet) a runtime process: the java launcher dlopens libjvm.so
		// after exec, so look again a few times before giving up.
		if canRetry {
			d := retryDelays[p.retries]
			p.retries++
			p.pending = true
			s.procs[pid] = p
			info.refs++
			time.AfterFunc(d, func() {
				select {
				case retry <- pid:
				default:
				}
			})
		}
		if len(s.files) > 4*s.cfg.MaxProcesses {
			s.pruneFiles()
		}
		return
	}
	if s.trackedCount() >= s.cfg.MaxProcesses {
		s.dropped++
		return
	}
	p.Runtime = info.runtime
	p.Method = info.method
	// Every name below is chosen by whoever runs the process: each passes
	// agent.LabelValue (serviceName and exeName do it themselves), and a
	// name that sanitises to nothing falls through to the next.
	p.Service = s.proc.serviceName(pid)
	p.ServiceFromEnv = p.Service != ""
	if p.Service == "" && info.runtime == "jvm" {
		p.Service = agent.LabelValue(javaService(p.Exe, s.proc.cmdline(pid)))
	}
	if p.Service == "" && info.runtime == "python" {
		p.Service = agent.LabelValue(pythonService(s.proc.cmdline(pid)))
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
	why := info.why
	if info.method != MethodNone && info.links == nil {
		if err := s.attach(path, info); err != nil {
			if _, serr := os.Stat(exePath); serr != nil {
				// The process exited (or is a zombie, whose exe link is
				// gone) while we attached: not an error, and nothing
				// learnt about the file. The next process of it attaches
				// afresh.
				delete(s.files, key)
				return
			}
			info.method, info.why = MethodNone, err.Error()
			p.Method, why = MethodNone, info.why
			if !errors.Is(err, errNoUprobes) { // said once at start, not per process
				s.log.Warn("attach failed", "pid", pid, "exe", p.Exe, "runtime", info.runtime, "err", err)
			}
		}
	}
	if p.Method == MethodNone && info.runtime == "jvm" {
		// No probes: the JVM's own counters are the next best thing.
		if !hsperfLooked {
			hsperf, hsperfErr = s.proc.hsperfdataMapping(pid) // the probes' attach failed
		}
		if hsperfErr == nil {
			hsperfErr = s.startHsperfdata(p, hsperf)
		}
		if hsperfErr == nil {
			p.Method = MethodHsperfdata
		} else {
			why += "; hsperfdata: " + hsperfErr.Error()
		}
	}
	info.refs++
	s.procs[pid] = p
	p.why = why
	p.since = time.Now()
	if !s.cfg.NoRequests {
		if err := s.k.objs.Traced.Put(pid, uint8(1)); err != nil {
			s.log.Warn("request tracing: traced map", "pid", pid, "err", err)
		}
	}
	if p.Method == MethodNone {
		s.log.Debug("process not probed", "pid", pid, "service", p.Service, "runtime", p.Runtime, "why", why)
		s.newUnprobed++
	} else {
		// One line per process would flood a busy node's logs (every
		// compiler a build runs is a Go process): DEBUG here, and a
		// periodic INFO summary (logSummary).
		s.log.Debug("tracking process", "pid", pid, "service", p.Service, "runtime", p.Runtime,
			"method", p.Method, "version", info.version)
		s.newTracked++
	}
}

// wants says whether the configuration captures a runtime.
func (s *Source) wants(runtime string) bool {
	if len(s.cfg.Runtimes) == 0 {
		return true
	}
	for _, r := range s.cfg.Runtimes {
		if r == runtime {
			return true
		}
	}
	return false
}

func statKey(fi os.FileInfo) fileKey {
	st := fi.Sys().(*syscall.Stat_t)
	return fileKey{uint64(st.Dev), st.Ino}
}

// fileInfo returns what a file is, reading it once per inode; s.mu is held.
// nil when it could not be read (the process is gone): nothing is cached.
func (s *Source) fileInfo(key fileKey, path string, kind int) *fileInfo {
	if info := s.files[key]; info != nil {
		return info
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var info *fileInfo
	switch kind {
	case fileExe:
		info = classifyGo(f)
		if info.runtime == "" {
			// A statically linked interpreter; one that needs libpython
			// is found through its maps instead.
			if ef, err := elf.NewFile(f); err == nil && !needsLibpython(ef) {
				info = classifyPython(ef, readlinkOr(path))
			}
		}
	case fileLibpython:
		ef, err := elf.NewFile(f)
		if err != nil {
			info = &fileInfo{runtime: "python", method: MethodNone, why: fmt.Sprintf("read %s: %v", path, err)}
			break
		}
		info = classifyPython(ef, path)
	case fileLibjvm:
		info = &fileInfo{runtime: "jvm"}
		ef, err := elf.NewFile(f)
		if err != nil {
			info.method, info.why = MethodNone, fmt.Sprintf("read libjvm.so: %v", err)
			break
		}
		if s.cfg.NoJVMProbes {
			info.method, info.why = MethodNone, "JVM probes disabled by configuration"
			break
		}
		lib, err := inspectJVM(ef, s.cfg.NoJVMUSDT)
		if err != nil {
			info.method, info.why = MethodNone, err.Error()
			break
		}
		info.method, info.jvm = lib.method, lib
	}
	s.files[key] = info
	return info
}

func classifyPython(f *elf.File, name string) *fileInfo {
	b, err := inspectPython(f, name)
	if errors.Is(err, errNotPython) {
		return &fileInfo{}
	}
	if err != nil {
		return &fileInfo{runtime: "python", method: MethodNone, why: err.Error()}
	}
	return &fileInfo{runtime: "python", method: b.method, version: b.version, python: b}
}

func needsLibpython(f *elf.File) bool {
	libs, _ := f.ImportedLibraries()
	for _, l := range libs {
		if isLibpython(l) {
			return true
		}
	}
	return false
}

// readlinkOr resolves /proc/<pid>/exe to the executable's path, for its name.
func readlinkOr(path string) string {
	if t, err := os.Readlink(path); err == nil {
		return t
	}
	return path
}

func classifyGo(f *os.File) *fileInfo {
	b, err := inspectGo(f)
	switch {
	case err == nil:
		return &fileInfo{runtime: "go", method: MethodUprobe, version: b.version, minor: b.minor, golang: b}
	case errors.Is(err, errNotGo):
		return &fileInfo{}
	default:
		var uv *unsupportedGoError
		info := &fileInfo{runtime: "go", method: MethodNone, why: err.Error()}
		if errors.As(err, &uv) {
			info.version = uv.version
		}
		return info
	}
}

// attach puts the runtime's probes on a file; s.mu is held.
func (s *Source) attach(path string, info *fileInfo) error {
	if s.k.uprobes == uprobeNone {
		return errNoUprobes
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return fmt.Errorf("open executable for uprobes: %w", err)
	}
	p := &probeSet{ex: ex, specs: s.specs, multi: s.k.uprobes == uprobeMulti}
	var links []link.Link
	switch {
	case info.golang != nil:
		links, err = attachGo(p, info.golang, &s.k.objs)
	case info.jvm != nil:
		links, err = attachJVM(p, info.jvm, &s.k.objs)
	case info.python != nil:
		links, err = attachPython(p, info.python, &s.k.objs)
	default:
		return errors.New("nothing to attach")
	}
	if err != nil {
		return err
	}
	info.links, info.slots = links, p.slots
	return nil
}

// release drops a process's hold on its executable's probes; s.mu is held.
func (s *Source) release(p *process) {
	p.info.refs--
	if p.info.refs <= 0 && p.info.links != nil {
		closeLinks(p.info.links)
		p.info.links = nil
		s.specs.release(p.info.slots)
		p.info.slots = nil
		// The next process of this file attaches again.
		delete(s.files, p.file)
	}
}

func (s *Source) pruneFiles() {
	for k, f := range s.files {
		if f.refs <= 0 {
			delete(s.files, k)
		}
	}
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
	delete(s.procs, pid)
	s.release(p)
	if p.stop != nil {
		p.stop()
	}
	if s.k != nil {
		s.k.objs.Traced.Delete(pid)
	}
	if !p.tracked() {
		return nil
	}
	s.log.Debug("process exited", "pid", pid, "service", p.Service)
	return p
}

// pauseEvent turns a BPF pause record into an Event.
func (s *Source) pauseEvent(e bpfPwEvent) (agent.Event, bool) {
	s.mu.Lock()
	p := s.procs[e.Pid]
	s.mu.Unlock()
	if p == nil || p.info.runtime == "" || p.Method == MethodHsperfdata {
		// A process of an attached file that we have not seen yet (its
		// exec record may still be queued): look at it now.
		s.inspect(e.Pid, false, nil)
		s.mu.Lock()
		p = s.procs[e.Pid]
		s.mu.Unlock()
		if p == nil || p.info.runtime == "" || p.Method == MethodHsperfdata {
			return agent.Event{}, false
		}
	}
	if p.PID == s.self && s.cfg.SkipSelf {
		return agent.Event{}, false
	}
	ev := agent.Event{
		Type:     agent.Pause,
		Process:  p.Process,
		Start:    monoToWall(e.StartNs),
		Duration: time.Duration(e.DurationNs),
		Stopping: time.Duration(e.StoppingNs),
	}
	switch e.Runtime {
	case runtimeGo:
		if p.info.golang != nil && p.info.minor < goReasonMinor {
			ev.Reason, ev.Kind = p.info.golang.reasonFromCaller(e.Aux, e.Flags&eventFlagAux != 0)
		} else {
			ev.Reason, ev.Kind = goReason(p.info.minor, e.Reason)
		}
	case runtimeJVM:
		ev.Reason, ev.Kind = jvmReason(e.Reason, cString(e.Detail[:]))
		s.mu.Lock()
		if p.reasons == nil {
			p.reasons = map[string]bool{}
		}
		if !p.reasons[ev.Reason] {
			if len(p.reasons) >= maxJVMReasons {
				ev.Reason = "other"
			} else {
				p.reasons[ev.Reason] = true
			}
		}
		s.mu.Unlock()
	case runtimePython:
		ev.Reason, ev.Kind = pyReason(e.Reason), agent.KindGC
		if e.Flags&eventFlagAux != 0 {
			ev.Collected, ev.CollectedKnown = e.Aux, true
		}
	default:
		ev.Reason, ev.Kind = "unknown ("+strconv.Itoa(int(e.Reason))+")", agent.KindOther
	}
	return ev, true
}

// requestEvent turns a BPF request record into an Event.
func (s *Source) requestEvent(e bpfPwEvent) (agent.Event, bool) {
	s.mu.Lock()
	p := s.procs[e.Pid]
	s.mu.Unlock()
	if p == nil || p.info.runtime == "" {
		return agent.Event{}, false
	}
	return agent.Event{
		Type:        agent.Request,
		Process:     p.Process,
		Start:       monoToWall(e.StartNs),
		Duration:    time.Duration(e.DurationNs),
		Port:        uint16(e.Reason),
		PauseInside: time.Duration(e.Aux),
	}, true
}

// monoToWall converts a CLOCK_MONOTONIC timestamp to wall-clock time. The
// offset between the clocks is read again at most every 100 ms: one clock
// read per event was a measurable share of the agent's cost.
func monoToWall(ns uint64) time.Time {
	off := clockOffset.Load()
	if off == nil || time.Since(off.at) > 100*time.Millisecond {
		var ts unix.Timespec
		now := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return now
		}
		off = &monoOffset{at: now, wallMinusMono: now.UnixNano() - ts.Nano()}
		clockOffset.Store(off)
	}
	return time.Unix(0, off.wallMinusMono+int64(ns))
}

type monoOffset struct {
	at            time.Time
	wallMinusMono int64
}

var clockOffset atomic.Pointer[monoOffset]

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
	s.lost["max_processes"] = s.dropped
}

// Lost returns counts of events lost, by where they were lost.
func (s *Source) Lost() map[string]uint64 {
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
	defer s.mu.Unlock()
	out := map[string]Usage{"tracked_processes": {s.trackedCount(), s.cfg.MaxProcesses}}
	files, links := 0, 0
	for _, f := range s.files {
		if len(f.links) > 0 {
			files++
			links += len(f.links)
		}
	}
	out["attached_files"] = Usage{Used: files}
	out["probe_links"] = Usage{Used: links}
	if s.specs != nil {
		out["usdt_spec_slots"] = Usage{s.specs.inUse(), int(s.specs.max)}
	}
	return out
}

// Status lists the runtime processes the source knows, tracked or not.
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
		out = append(out, ProcessStatus{Process: p.Process, Why: p.why, Version: agent.LabelValue(p.info.version), Since: p.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}
