package agent

import "time"

// EventType says what an Event describes.
type EventType uint8

const (
	// Pause is one stop-the-world pause of one process, seen one by one:
	// it feeds the duration histograms and the counters.
	Pause EventType = iota + 1
	// Exit says the process has exited; exporters expire its per-pid series.
	Exit
	// PauseTotals is Count pauses totalling Duration, from a source that
	// reads counters (hsperfdata): it feeds the counters only.
	PauseTotals
	// PauseSample is one pause seen one by one by a source whose counts
	// come as PauseTotals: it feeds the histograms only, so nothing is
	// counted twice.
	PauseSample
	// Request is one request the process served that has a story: a
	// pause overlapped it or it breached its objective. Start is when its
	// first bytes reached the socket, Duration runs to its last response
	// write, PauseInside is the stop-the-world time of the process within
	// it. It feeds exemplars and streams only: requests are counted by
	// RequestCounts.
	Request
	// RequestCounts is every request of one process's port (Port) since
	// the previous one, aggregated in the kernel (Requests): it feeds the
	// request histograms, pause time inside requests and breach counters.
	RequestCounts
	// CPUTime is a process's CPU time since its previous CPUTime event:
	// CPU for the whole process, GCCPU for its collector threads. Sent
	// every few seconds per process, it feeds counters only.
	CPUTime
	// Sync observes nothing: a source sends it after the events it read
	// when asked to flush (source.Source.Flush), and Run closes its Synced
	// once every exporter has recorded what came before it, instead of
	// handing it on.
	Sync
)

// Pause kinds, the `kind` label.
const (
	KindGC    = "gc"    // a collector's pause
	KindOther = "other" // any other stop-the-world (heap dump, ReadMemStats, safepoint ops...)
)

// An Event is one pause, one request or one CPU sample of one process, or
// the end of a process (Type says which).
// It is a plain value: copy it, keep no pointers into it.
type Event struct {
	Type    EventType
	Process Process
	// Start is the wall-clock start of the pause, converted from the
	// runtime's CLOCK_MONOTONIC timestamp.
	Start time.Time
	// Duration is the whole pause: from the stop request to the world
	// running again, as the runtime itself accounts it.
	Duration time.Duration
	// Stopping is the part of Duration spent bringing threads to a stop
	// (Go's stopping time, the JVM's time to safepoint); 0 when unknown.
	Stopping time.Duration
	// Kind is KindGC or KindOther.
	Kind string
	// Reason is the runtime's own word for the pause ("GC mark
	// termination", "G1CollectForAllocation", "gen2"); a bounded set.
	Reason string
	// Count is the number of pauses a PauseTotals event stands for.
	Count uint64
	// Collected is the number of objects the collection freed, when the
	// runtime says (CPython); CollectedKnown tells.
	Collected      uint64
	CollectedKnown bool
	// Port is the local port a Request was served on.
	Port uint16
	// PauseInside is how much of a Request the process spent stopped.
	PauseInside time.Duration
	// CPUWait is how long the threads serving a Request waited in the run
	// queue within it (runnable, not running: CPU contention or CFS
	// throttling of their cgroup), from the kernel's sched_info.run_delay
	// (bpf/request.c starved); at most Duration.
	CPUWait time.Duration
	// Synced is closed by Run when a Sync event has passed every exporter.
	Synced chan struct{} `json:"-"`
	// Requests is what a RequestCounts event counts. It is the event's
	// own (a new one each time): exporters may keep it.
	Requests *RequestHists
	// ThreadCPU is, for a Pause, the on-CPU time of the thread that ran
	// it (CPython's collector on the calling thread, HotSpot's VM thread),
	// timed at context switches; ThreadCPUKnown tells.
	ThreadCPU      time.Duration
	ThreadCPUKnown bool
	// CPU (a CPUTime event) is the process's CPU time (user + system,
	// every thread) since its previous CPUTime event.
	CPU time.Duration
	// GCCPU (a CPUTime event) is the CPU time of the runtime's collector
	// threads since the previous CPUTime event, measured by GCCPUMethod
	// (GCThreads, GoRuntime); 0 with an empty method when the runtime has
	// none.
	GCCPU       time.Duration
	GCCPUMethod string
}

// GC CPU methods, the `method` label of pausewatch_gc_cpu_seconds_total.
const (
	// GCThreads is the CPU time of the collector's own threads (HotSpot's
	// GC workers, concurrent markers, refiners...) from the kernel's
	// per-thread accounting (/proc/<pid>/task/<tid>/schedstat).
	GCThreads = "gc_threads"
	// PauseThread is the on-CPU time of the thread that runs a collection
	// (CPython) or a GC safepoint (HotSpot's VM thread) during it, timed
	// in the kernel at context switches.
	PauseThread = "pause_thread"
	// GoRuntime is the Go runtime's own account of its GC CPU (assists,
	// mark workers, and pauses as pause time x GOMAXPROCS), read from
	// its memory: what runtime/metrics serves as
	// /cpu/classes/gc/total:cpu-seconds.
	GoRuntime = "runtime"
)

// A Process identifies where an Event happened.
type Process struct {
	PID uint32
	// StartTime is the process start in clock ticks since boot
	// (/proc/<pid>/stat field 22): with PID it tells reused pids apart.
	StartTime uint64
	Runtime   string // the runtime's name: "go", "jvm", "python", "node" (source.RuntimeNames)
	// Method is how the pauses are captured: "uprobe", "usdt",
	// "hsperfdata" or "none".
	Method string
	// Service is OTEL_SERVICE_NAME from the process environment, else
	// (agent/kube) the pod's app.kubernetes.io/name label, its workload's
	// name or its container's name, else the executable name (the main
	// class, jar or script for java and python).
	Service string
	// ServiceFromEnv says Service is the process's own OTEL_SERVICE_NAME,
	// which nothing overrides.
	ServiceFromEnv bool
	// Exe is the executable's base name.
	Exe string
	// ContainerID, Pod, Namespace and Container stay empty off Kubernetes.
	ContainerID string
	Pod         string
	Namespace   string
	Container   string
	// PodUID is read from the cgroup path (the kubelet names the pod's
	// cgroup after it); the rest from the pod object in the API server.
	PodUID string
	// WorkloadKind and Workload name the pod's owner: Deployment (through
	// its ReplicaSet), ReplicaSet, StatefulSet, DaemonSet, Job or CronJob.
	WorkloadKind string
	Workload     string
}
