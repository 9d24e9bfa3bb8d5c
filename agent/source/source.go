package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

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
	// Runtimes limits capture to these runtimes (RuntimeNames); all when
	// empty.
	Runtimes []string
	// NoRequests turns request-latency capture off.
	NoRequests bool
	// Ports limits request capture to these local ports (all when empty).
	Ports []uint16
	// Objective gives the latency objective of a service's port (port 0:
	// of every port without one of its own); the kernel classifies each
	// request's breach by it. ObjectivePorts are the ports that have
	// objectives of their own. Nil: no objectives.
	Objective      func(p agent.Process, port uint16) (time.Duration, bool)
	ObjectivePorts []uint16
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
	// GCCPU says how the process's GC CPU is measured (agent.GCThreads,
	// agent.PauseThread, comma-separated), or "none: " and why not.
	GCCPU string `json:"gc_cpu"`
	// Since is when the agent started tracking the process.
	Since time.Time `json:"since"`
}

// Source captures pauses of the processes on this node with BPF.
//
// Three kinds of goroutine share it: the event loop (Run), which decodes
// ring-buffer records and never touches the disk; the discovery workers,
// which read /proc and ELF files and place probes; and housekeeping
// (statistics, summaries, /proc reconciliation). s.mu guards the tables
// and is never held across disk I/O or an attach.
type Source struct {
	cfg      Config
	log      *slog.Logger
	proc     procFS
	self     uint32
	selfExe  *fileKey // the agent's own executable
	runtimes []Runtime
	ready    chan struct{}
	queue    *inspectQueue
	// inspected tells the event loop a pid's inspection is done, so the
	// records that waited for it can go on.
	inspected chan uint32
	side      chan agent.Event // from pollers and housekeeping
	// flush asks the event loop to read the request histograms now
	// (Flush); looping is closed once the loop runs, ended when it returns.
	flush          chan chan struct{}
	looping, ended chan struct{}
	delay          delayHist
	closing        sync.WaitGroup // links being closed in the background

	mu      sync.Mutex
	procs   map[uint32]*process
	files   map[fileKey]*fileInfo
	k       *kernel
	capture *Capture // what can be captured, set once the probes are loaded
	specs   *specAllocator
	ctx     context.Context // Run's, for pollers
	dropped uint64          // processes not tracked because of MaxProcesses
	objGen  uint64          // req_objectives_gen: bumped after each change of req_objectives
	// Processes newly tracked or found unprobeable since the last summary.
	newTracked, newUnprobed int
	idleFiles               int // files with probes and no process (see lingerFor)
	lost                    map[string]uint64
	unresolved              uint64        // records dropped waiting for their process
	otherRuntime            uint64        // pauses of a runtime the process is not tracked for
	gcImplausible           atomic.Uint64 // Go GC CPU readings not taken (cpu.go)
	gcThreadsOver           atomic.Uint64 // collector-named threads past the bound (cpu.go)
	// A process became traced since the last adoption pass: connections
	// it accepted between its exec and then were not seen (adopt.go).
	adoptPending bool
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
		cfg:       cfg,
		log:       cfg.Logger,
		proc:      procFS(cfg.ProcFS),
		self:      selfPID(cfg.ProcFS),
		selfExe:   selfExe,
		runtimes:  runtimeList(cfg),
		ready:     make(chan struct{}),
		queue:     newInspectQueue(),
		inspected: make(chan uint32, 1024),
		side:      make(chan agent.Event, 256),
		flush:     make(chan chan struct{}),
		looping:   make(chan struct{}),
		ended:     make(chan struct{}),
		procs:     make(map[uint32]*process),
		files:     make(map[fileKey]*fileInfo),
		lost:      make(map[string]uint64),
	}
}

// selfPID is the agent's pid as procfs numbers it. Every pid the agent
// compares with its own comes from procfs or from BPF (root-namespace
// tgids), so in a container with a pid namespace of its own and the
// host's /proc mounted at --procfs (pid 1 to itself, another pid on the
// host) os.Getpid would name another process: its own pauses were never
// reported and the host's pid 1 was named "pausewatch". procfs's "self"
// link is the reader's pid in the pid namespace that procfs belongs to.
func selfPID(procfs string) uint32 {
	if l, err := os.Readlink(filepath.Join(procfs, "self")); err == nil {
		if pid, err := strconv.ParseUint(l, 10, 32); err == nil {
			return uint32(pid)
		}
	}
	return uint32(os.Getpid())
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

// discoveryWorkers is how many files are read and attached at once: ELF
// parsing is CPU-bound, and the agent should not take a node's cores.
const discoveryWorkers = 2

// Run loads the probes, tracks processes and sends one Event per pause (and
// one per exit of a tracked process) to out until ctx is done. Everything it
// put in the kernel is gone when it returns.
func (s *Source) Run(ctx context.Context, out chan<- agent.Event) error {
	started := time.Now() // before the first /proc pass: see sampleCPU
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
	var workers sync.WaitGroup
	defer func() {
		cancel()
		workers.Wait() // no attach is under way past this
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
		s.closing.Wait()
		k.close()
	}()

	rd, err := ringbuf.NewReader(k.objs.Events)
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	defer rd.Close()
	// As many records in flight as the 4,096 of one record per send.
	records := make(chan []record, 8)
	free := make(chan []record, 8)
	readErr := make(chan error, 1)
	go readRecords(rd, records, free, readErr)

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
	if !s.cfg.NoRequests && k.requestErr == nil {
		// After the scan has marked the processes already running as
		// traced, and before ready: their requests count from here.
		t0 := time.Now()
		if conns, procs, err := k.adoptConns(); err != nil {
			s.log.Error("connections open before the agent are not measured", "err", err)
		} else {
			s.log.Info("adopted connections open before the agent", "connections", conns, "processes", procs, "took", time.Since(t0))
		}
	}
	for range discoveryWorkers {
		workers.Go(func() { s.discover(ctx) })
	}
	workers.Go(func() { s.housekeeping(ctx) })
	workers.Go(func() { s.sampleCPU(ctx, started) })
	close(s.ready)
	s.log.Info("probes loaded, initial /proc pass attached", "processes", len(s.Status()))
	return s.loop(ctx, rd, records, free, readErr, out)
}

// housekeeping reads the kernel's counters, logs the summaries and
// reconciles the process table with /proc, off the event loop.
func (s *Source) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for ticks := 0; ; ticks++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.readStats()
		s.sweepIdle()
		s.adoptLate()
		if ticks%summaryEvery == 0 {
			s.logSummary()
		}
		if (ticks+1)%reconcileEvery == 0 {
			for _, p := range s.reconcile() {
				select {
				case s.side <- agent.Event{Type: agent.Exit, Process: p.Process}:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// readRecords reads the ring buffer until it is closed, in batches: the
// records that are there at once go out in one slice, stamped with one
// clock read (when they were read: the start of the delay EventDelay
// measures). A channel send and a clock read per record were a
// measurable share of the agent's cost per pause. Slices come back
// through free for reuse.
func readRecords(rd *ringbuf.Reader, batches chan<- []record, free chan []record, readErr chan<- error) {
	defer close(batches)
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
		var batch []record
		select {
		case batch = <-free:
		default:
			batch = make([]record, 0, maxBatch)
		}
		at := time.Now()
		for {
			r, err := decodeRecord(rec.RawSample, at)
			if err != nil {
				readErr <- err
				return
			}
			batch = append(batch, r)
			if len(batch) == maxBatch || rd.AvailableBytes() == 0 {
				break
			}
			if err = rd.ReadInto(&rec); err != nil {
				// Closed meanwhile, or a record that cannot be read:
				// the batch goes out, and the next read, at the same
				// place in the ring, says why.
				break
			}
		}
		batches <- batch
	}
}

// maxBatch bounds the records read before they are handed on: about a
// wakeup's worth (WAKEUP_BYTES in bpf/pausewatch.c over a pause record).
const maxBatch = 512

// pollInterval bounds how long an event can sit in the ring buffer.
const pollInterval = 100 * time.Millisecond
