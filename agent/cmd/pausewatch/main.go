// Command pausewatch is the node agent: it captures every stop-the-world
// pause of the Go (and, as they land, JVM and Python) processes on this
// machine and serves them on Prometheus. `pausewatch watch` prints pauses
// as they happen.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/kube"
	"github.com/pausewatch/pausewatch/agent/source"
	"github.com/pausewatch/pausewatch/exporters/otlp"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "watch" {
		os.Exit(watchMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "report" {
		os.Exit(reportMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("pausewatch", version)
		return
	}
	os.Exit(agentMain(os.Args[1:]))
}

type agentFlags struct {
	listen     string
	pidLabel   bool
	pidTTL     time.Duration
	seriesTTL  time.Duration
	skipSelf   bool
	procFS     string
	maxSeries  int
	maxProcs   int
	logLevel   string
	memLimitMB int64
	pprof      bool
	webConfig  string
	maxStreams int
	noJVMProbe bool
	noRequests bool
	noJVMUSDT  bool
	uprobes    string
	runtimes   string
	ports      portList
	slo        time.Duration
	config     string
	objectives objectives
	selection  *kube.Selection
	kubeconfig string
	nodeName   string
	k8sWait    time.Duration

	otlpEndpoint  string
	otlpProtocol  string
	otlpExplicit  bool
	otlpThreshold time.Duration
	otlpLogRate   float64
	otlpLogBurst  int
}

// Bounds of the numeric flags, with why.
const (
	maxSeriesLimit = 1_000_000 // each series costs ~2 kB on every scrape
	maxProcsLimit  = 1 << 22   // PID_MAX_LIMIT: more pids cannot exist
	maxMemLimitMB  = 1 << 20   // 1 TiB; also keeps MB<<20 far from overflow
	maxLogRate     = 1_000_000 // OTLP log records per second per process
	// Each stream client holds a goroutine, a connection and a queue of
	// agent.SubscriberBuffer events (~30 KiB with the HTTP buffers):
	// 10,000 of them stay within the default memory limit's reach.
	maxStreamClients = 10_000
)

// newAgentFlagSet declares the agent's flags, bound to f. Parse errors and
// usage are not printed by the flag package: agentMain prints usage to
// stdout when asked for it and errors to stderr.
func newAgentFlagSet(f *agentFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("pausewatch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	f.listen = ":9464"
	f.pidTTL = 10 * time.Minute
	f.seriesTTL = time.Hour
	f.procFS = "/proc"
	f.maxSeries, f.maxProcs = 10000, 10000
	f.logLevel = "info"
	f.memLimitMB = 256
	f.runtimes = strings.Join(knownRuntimes, ",")
	f.otlpLogRate, f.otlpLogBurst = 100, 1000
	fs.StringVar(&f.listen, "listen", f.listen, "address to serve /metrics, /healthz, /readyz and /api/ on")
	fs.BoolVar(&f.pidLabel, "pid-label", false, "add a pid label to process series (pids churn: off by default)")
	fs.Var(durationValue{p: &f.pidTTL, positive: true}, "pid-series-ttl", "how long series with a pid label stay after the process exits (a positive `duration` such as 10m)")
	fs.Var(durationValue{p: &f.seriesTTL, positive: true}, "series-ttl", "how long a service's series stay once no process of it is alive, from the last exit (a positive `duration` such as 1h)")
	fs.BoolVar(&f.skipSelf, "skip-self", false, "do not report the agent's own pauses")
	fs.StringVar(&f.procFS, "procfs", f.procFS, "procfs root (the host's /proc); must be a procfs mount")
	fs.Var(intValue[int]{p: &f.maxSeries, min: 1, max: maxSeriesLimit}, "max-series", fmt.Sprintf("bound on pause series, `n` from 1 to %d; past it new series are dropped and counted", maxSeriesLimit))
	fs.Var(intValue[int]{p: &f.maxProcs, min: 1, max: maxProcsLimit}, "max-processes", fmt.Sprintf("bound on tracked processes, `n` from 1 to %d; past it new ones are not tracked and counted", maxProcsLimit))
	fs.Var(stringValue{&f.logLevel, checkLogLevel}, "log-level", "`level`: debug, info, warn or error")
	fs.Var(intValue[int64]{p: &f.memLimitMB, min: 0, max: maxMemLimitMB}, "memory-limit-mb", fmt.Sprintf("soft memory limit of the agent (GOMEMLIMIT) in `MiB`, 0 to %d, 0 for none; GOMEMLIMIT in the environment wins", maxMemLimitMB))
	fs.BoolVar(&f.noJVMProbe, "no-jvm-probes", false, "do not probe libjvm.so (USDT or symbols); JVMs are then read through hsperfdata only")
	fs.BoolVar(&f.noJVMUSDT, "no-jvm-usdt", false, "ignore libjvm.so's USDT notes and probe SafepointSynchronize::begin/end from its symbol table instead")
	fs.StringVar(&f.uprobes, "uprobes", "auto", "how uprobes are attached: auto (uprobe_multi links where the kernel has them and allows it, else perf-PMU uprobes), uprobe_multi or perf_uprobe")
	fs.Var(stringValue{&f.runtimes, checkRuntimes}, "runtimes", "comma-separated `runtimes` to capture: "+strings.Join(knownRuntimes, ", "))
	fs.BoolVar(&f.noRequests, "no-requests", false, "do not measure request latency")
	fs.Var(&f.ports, "ports", fmt.Sprintf("comma-separated local `ports` whose requests are measured, at most %d (default: every port of a tracked process)", maxPorts))
	fs.Var(durationValue{p: &f.slo}, "slo", "default latency objective, a `duration` such as 250ms: a request slower than this is an SLO breach (0: none; per-service objectives go in the config file)")
	fs.StringVar(&f.config, "config", os.Getenv("PAUSEWATCH_CONFIG"), fmt.Sprintf("YAML config file, at most %d bytes (every flag is a key; plus objectives:); flags override the environment (PAUSEWATCH_<FLAG>), which overrides the file", maxConfigBytes))
	fs.Var(stringValue{&f.otlpEndpoint, checkEndpoint}, "otlp-endpoint", "OTLP endpoint `URL` such as http://otel-collector:4318 (sets OTEL_EXPORTER_OTLP_ENDPOINT); OTLP export is on when this or any OTEL_EXPORTER_OTLP_*ENDPOINT is set")
	fs.Var(stringValue{&f.otlpProtocol, oneOf("grpc", "http/protobuf")}, "otlp-protocol", "`protocol`: grpc or http/protobuf (sets OTEL_EXPORTER_OTLP_PROTOCOL; default http/protobuf)")
	fs.BoolVar(&f.otlpExplicit, "otlp-explicit-buckets", false, "export OTLP duration histograms with the explicit Prometheus buckets instead of base-2 exponential ones")
	fs.Var(durationValue{p: &f.otlpThreshold}, "otlp-log-threshold", "pauses shorter than this `duration` get no OTLP log record (0: every pause)")
	fs.Var(rateValue{p: &f.otlpLogRate, max: maxLogRate}, "otlp-log-rate", fmt.Sprintf("OTLP log records per second per process, at most (a `rate` above 0, up to %d; the rest are counted in pausewatch_events_lost_total{source=\"otlp_log_rate\"})", maxLogRate))
	fs.Var(intValue[int]{p: &f.otlpLogBurst, min: 1, max: maxLogRate}, "otlp-log-burst", fmt.Sprintf("OTLP log records a process may send in a burst above --otlp-log-rate, `n` from 1 to %d", maxLogRate))
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` of the API server whose pods name the processes (default: KUBECONFIG, else the in-cluster service account when in a pod; off Kubernetes none is contacted)")
	fs.StringVar(&f.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's `name`: only its pods are watched (default NODE_NAME, set from spec.nodeName by the downward API)")
	f.k8sWait = kube.DefaultWait
	fs.Var(durationValue{p: &f.k8sWait, positive: true}, "k8s-identity-wait", "how long a new container process's events wait for its pod to be known before they are exported without it (a positive `duration`)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles on /debug/pprof/ (for investigating the agent's own cost; off by default: see docs/api.md)")
	fs.StringVar(&f.webConfig, "web.config.file", "", "Prometheus exporter-toolkit web configuration `file`: TLS and basic auth for every endpoint (docs/api.md); read again on every request and connection, so certificates and users can change without a restart")
	f.maxStreams = agent.DefaultMaxSubscribers
	fs.Var(intValue[int]{p: &f.maxStreams, min: 1, max: maxStreamClients}, "max-stream-clients", fmt.Sprintf("most /api/events clients (watch) at once, `n` from 1 to %d; past it a client gets 503", maxStreamClients))
	return fs
}

const agentUsageHead = `Usage: pausewatch [flags]              run the agent
       pausewatch watch [--json]        print pauses (and the requests they slowed) as they happen
       pausewatch report [--json]       per-service latency, pause overlap and SLO breaches
       pausewatch report --tax [--json] per-service GC CPU, time stopped and breaches by cause
       pausewatch version
       (pausewatch watch --help, pausewatch report --help: their flags)

Flags:
`

// printUsage writes head and fs's flags to w.
func printUsage(w io.Writer, head string, fs *flag.FlagSet) {
	fmt.Fprint(w, head)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// The flag package's errors are plain strings (nothing to unwrap), spell
// flags with one dash and say "parse error" for a bad boolean. flagError
// rewrites the two value errors into the form the environment and config
// file errors have, `--slo "5": want ...`, and points at --help.
var (
	badValue = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -([\w-]+): `)
	badBool  = regexp.MustCompile(`^invalid boolean value ("(?:[^"\\]|\\.)*") for -([\w-]+): .*$`)
)

func flagError(cmd string, err error) error {
	msg := err.Error()
	switch {
	case badValue.MatchString(msg):
		msg = badValue.ReplaceAllString(msg, "--$2 $1: ")
	case badBool.MatchString(msg):
		msg = badBool.ReplaceAllString(msg, "--$2 $1: want true or false (or the flag alone)")
	default:
		msg += " (see " + cmd + " --help)"
	}
	return errors.New(msg)
}

// parseAgentFlags returns flag.ErrHelp when help was asked for.
func parseAgentFlags(args []string) (agentFlags, error) {
	var f agentFlags
	fs := newAgentFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, flagError("pausewatch", err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unknown subcommand or argument %q (see pausewatch --help)", fs.Arg(0))
	}
	objs, from, err := applyConfig(fs, f.config)
	if err != nil {
		return f, err
	}
	if f.selection, err = selectionConfig(f.config); err != nil {
		return f, err
	}
	f.objectives = objectives{def: f.slo, list: objs}
	if err := checkProcFS(f.procFS); err != nil {
		return f, fmt.Errorf("%s: %w", from.of("procfs"), err)
	}
	// The toolkit reads the file again on every request; an error there
	// answers 500 to every scrape. Checked once here, it is a start-up
	// error that names the file instead.
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return f, fmt.Errorf("%s %q: %w", from.of("web.config.file"), f.webConfig, err)
		}
	}
	// The SDK reads these itself; a value it cannot parse would leave
	// export on, sending to the SDK's default (localhost), with no error. --otlp-endpoint
	// replaces the first (agentMain sets it), so it is checked only
	// when that flag is not given.
	for i, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if e := os.Getenv(v); e != "" && (i > 0 || f.otlpEndpoint == "") {
			if err := checkEndpoint(e); err != nil {
				return f, fmt.Errorf("environment %s=%q: %w", v, e, err)
			}
		}
	}
	switch f.uprobes {
	case "auto":
		f.uprobes = ""
	case source.CaptureUprobeMulti, source.CapturePerfUprobe:
	default:
		return f, fmt.Errorf("--uprobes %q: want auto, uprobe_multi or perf_uprobe", f.uprobes)
	}
	return f, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func agentMain(args []string) int {
	f, err := parseAgentFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		// Asked for: the answer goes to stdout (pausewatch --help | less).
		var unused agentFlags
		printUsage(os.Stdout, agentUsageHead, newAgentFlagSet(&unused))
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pausewatch:", err)
		return 2
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pausewatch:", err)
		return 2
	}
	slog.SetDefault(log)
	if os.Getenv("GOMEMLIMIT") == "" && f.memLimitMB > 0 {
		debug.SetMemoryLimit(f.memLimitMB << 20)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ident, err := newIdentity(ctx, f, log)
	if err != nil {
		log.Error("kubernetes", "err", err)
		return 2
	}
	// The kernel classifies breaches by the objective of the service as
	// the exporters name it (the pod's name on Kubernetes).
	objective := func(p agent.Process, port uint16) (time.Duration, bool) {
		if ident != nil {
			p, _ = ident.Describe(p)
		}
		return f.objectives.lookup(p.Service, port)
	}
	src := source.New(source.Config{ProcFS: f.procFS, Logger: log, SkipSelf: f.skipSelf, MaxProcesses: f.maxProcs,
		NoJVMProbes: f.noJVMProbe, NoJVMUSDT: f.noJVMUSDT, Runtimes: strings.Split(f.runtimes, ","),
		NoRequests: f.noRequests, Ports: f.ports, Uprobes: f.uprobes,
		Objective: objective, ObjectivePorts: f.objectives.ports()})
	rel := &releaser{min: 100, interval: 5 * time.Second, free: func() {
		debug.FreeOSMemory()
		log.Debug("series expired: freed memory returned to the OS")
	}}
	prom := promexp.New(promexp.Options{PIDLabel: f.pidLabel, PIDSeriesTTL: f.pidTTL, SeriesTTL: f.seriesTTL, MaxSeries: f.maxSeries,
		Objective: f.objectives.lookup, Expired: rel.expired})
	stream := agent.NewStream(f.maxStreams)

	exporters := []agent.Exporter{prom, stream}
	var otlpExp *otlp.Exporter
	if f.otlpEndpoint != "" {
		os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f.otlpEndpoint)
	}
	if f.otlpProtocol != "" {
		os.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", f.otlpProtocol)
	}
	if otlp.Enabled() {
		opts := otlp.Options{PIDLabel: f.pidLabel, LogThreshold: f.otlpThreshold, LogRate: f.otlpLogRate,
			LogBurst: f.otlpLogBurst, Version: version, Flush: src.Flush}
		if f.otlpExplicit {
			opts.ExplicitBuckets = promexp.DurationBuckets
		}
		x, err := otlp.New(ctx, opts)
		if err != nil {
			log.Error("OTLP export", "err", err)
			return 2
		}
		otlpExp = x
		exporters = append(exporters, x)
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := x.Shutdown(sctx); err != nil {
				log.Warn("OTLP shutdown", "err", err)
			}
		}()
		log.Info("OTLP export on")
	}

	health := promexp.NewHealth(version, func() map[promexp.RuntimeMethod]int {
		out := map[promexp.RuntimeMethod]int{}
		for _, p := range src.Status() {
			out[promexp.RuntimeMethod{Runtime: p.Runtime, Method: p.Method}]++
		}
		return out
	}, func() map[string]uint64 {
		lost := src.Lost()
		lost["watch"] = stream.Dropped()
		if otlpExp != nil {
			lost["otlp_log_rate"] = otlpExp.LogsDropped()
		}
		return lost
	})
	health.SetResources(func() map[string]promexp.Resource {
		out := map[string]promexp.Resource{}
		for name, u := range src.Resources() {
			out[name] = promexp.Resource{Used: u.Used, Limit: u.Limit}
		}
		n, max := stream.Subscribers()
		out["stream_clients"] = promexp.Resource{Used: n, Limit: max}
		return out
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prom,
		health,
		captureCollector{src},
		ident.Collector(),
		streamCollector{stream},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		log.Error("listen", "addr", f.listen, "err", err)
		return 1
	}
	srv := &http.Server{
		Handler:           newMux(reg, src, ident, prom, stream, f.pprof),
		ReadHeaderTimeout: 10 * time.Second,
		// Connections that say nothing are closed: without it an idle
		// keep-alive connection is held for ever.
		IdleTimeout: 2 * time.Minute,
		// net/http logs failed TLS handshakes and the like through the
		// standard logger: anyone who can connect could fill the agent's
		// log with them. At DEBUG they are there when looked for.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		// With no web config file, web.Serve is srv.Serve. With one, it
		// wraps the handler in basic auth and serves TLS as the file says,
		// the way every Prometheus exporter does.
		if err := web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &f.webConfig}, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
			stop()
		}
	}()
	log.Info("pausewatch starting", "version", version, "listen", ln.Addr().String())

	runErr := agent.Run(ctx, ident.Wrap(src), exporters...)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	if runErr != nil {
		log.Error("agent stopped", "err", runErr)
		return 1
	}
	log.Info("pausewatch stopped; all probes detached")
	return 0
}

// newMux routes every endpoint; /debug/pprof only when withPprof (the
// net/http/pprof import registers on http.DefaultServeMux, which the agent
// never serves).
func newMux(reg *prometheus.Registry, src *source.Source, ident *kube.Identity, prom *promexp.Exporter, stream *agent.Stream, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux.Handle("/metrics", flushed(src, promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-src.Ready():
		default:
			http.Error(w, "probes loading", http.StatusServiceUnavailable)
			return
		}
		// Ready means every configured runtime can be captured by at least
		// one method; an agent that cannot capture some runtime at all (no
		// uprobes: no Go, no Python) must not look healthy.
		if cp := src.Capture(); cp != nil && len(cp.Unready) > 0 {
			http.Error(w, fmt.Sprintf("not ready: no capture method for %s; missing: %s",
				strings.Join(cp.Unready, ", "), strings.Join(cp.Missing, "; ")), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.Capture())
	})
	mux.HandleFunc("/api/processes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, processesJSON(src.Status(), ident))
	})
	mux.HandleFunc("/api/pauses", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, prom.Summaries())
	})
	mux.Handle("/api/requests", flushed(src, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, prom.RequestSummaries())
	})))
	mux.Handle("/api/tax", flushed(src, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, prom.TaxSummaries())
	})))
	mux.HandleFunc("/api/events", func(w http.ResponseWriter, r *http.Request) {
		serveEvents(w, r, stream)
	})
	return mux
}

// flushWait bounds how long a scrape waits for the kernel's request
// counts (source.Source.Flush) before it is served with what the agent has,
// at most a second old.
const flushWait = 2 * time.Second

// flushed serves h once the request histograms have been read from the
// kernel and recorded: a scrape then counts every request served before
// it, as a client counting its own requests would, instead of lagging by
// up to the read interval.
func flushed(src *source.Source, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), flushWait)
		src.Flush(ctx)
		cancel()
		h.ServeHTTP(w, r)
	})
}

// processJSON is one row of /api/processes. source.ProcessStatus embeds
// agent.Process, whose fields carry no JSON tags (it is the event model,
// not a wire type), so encoding it directly gave "PID" and "StartTime"
// beside "version" and "since". Every JSON API of the agent uses
// snake_case names with units in the name where there is one.
type processJSON struct {
	PID       uint32 `json:"pid"`
	StartTime uint64 `json:"start_time_ticks"` // /proc/<pid>/stat field 22: tells reused pids apart
	Runtime   string `json:"runtime"`
	Method    string `json:"method"`
	Service   string `json:"service"`
	Exe       string `json:"exe"`
	// Kubernetes identity; empty off Kubernetes.
	ContainerID  string `json:"container_id"`
	Pod          string `json:"pod"`
	Namespace    string `json:"namespace"`
	Container    string `json:"container"`
	PodUID       string `json:"pod_uid"`
	WorkloadKind string `json:"workload_kind"` // Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet
	Workload     string `json:"workload"`
	// ServiceFromEnv: the service name is the process's OTEL_SERVICE_NAME.
	ServiceFromEnv bool `json:"service_from_env"`
	// Excluded says why the selection in the config file leaves the
	// process out (its events are dropped); empty when it is reported.
	Excluded string `json:"excluded,omitempty"`
	Why      string `json:"why,omitempty"` // set when method is "none"
	Version  string `json:"version,omitempty"`
	// GCCPU says how the process's GC CPU is measured ("gc_threads",
	// "pause_thread", comma-separated), or "none: " and why not.
	GCCPU string    `json:"gc_cpu"`
	Since time.Time `json:"since"`
}

func processesJSON(st []source.ProcessStatus, ident *kube.Identity) []processJSON {
	out := make([]processJSON, 0, len(st))
	for _, p := range st {
		var excluded string
		if ident != nil {
			p.Process, excluded = ident.Describe(p.Process)
		}
		out = append(out, processJSON{
			PodUID: p.PodUID, WorkloadKind: p.WorkloadKind, Workload: p.Workload, ServiceFromEnv: p.ServiceFromEnv, Excluded: excluded,
			PID: p.PID, StartTime: p.StartTime, Runtime: p.Runtime, Method: p.Method, Service: p.Service, Exe: p.Exe,
			ContainerID: p.ContainerID, Pod: p.Pod, Namespace: p.Namespace, Container: p.Container,
			Why: p.Why, Version: p.Version, GCCPU: p.GCCPU, Since: p.Since.UTC(),
		})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

var (
	streamClientsRefused = prometheus.NewDesc("pausewatch_stream_clients_refused_total",
		"/api/events clients refused (503) because --max-stream-clients were already connected; the connected ones are pausewatch_resource_used{resource=\"stream_clients\"}.",
		nil, nil)
)

// streamCollector exports the stream's refusals.
type streamCollector struct{ s *agent.Stream }

func (c streamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- streamClientsRefused }

func (c streamCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(streamClientsRefused, prometheus.CounterValue, float64(c.s.Refused()))
}

var captureDesc = prometheus.NewDesc("pausewatch_capture_available",
	"1 when a capture method works with the agent's privileges and kernel, else 0 (/api/status and the start-up log say why): "+
		"uprobe_multi and perf_uprobe (Go, Python, JVM probes), hsperfdata (JVM counters), requests (request tracepoints).",
	[]string{"method"}, nil)

// captureCollector exports what the start-up trials found.
type captureCollector struct{ src *source.Source }

var delayDesc = prometheus.NewDesc("pausewatch_event_delay_seconds",
	"Delay from reading a pause record off the ring buffer to handing its event to the exporters: the agent's own added latency.", nil, nil)

func (c captureCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- captureDesc
	ch <- delayDesc
}

func (c captureCollector) Collect(ch chan<- prometheus.Metric) {
	buckets, n, sum := c.src.EventDelay()
	ch <- prometheus.MustNewConstHistogram(delayDesc, n, sum, buckets)
	cp := c.src.Capture()
	if cp == nil {
		return // not loaded yet: nothing known
	}
	for m, why := range cp.Methods {
		v := 0.0
		if why == "" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(captureDesc, prometheus.GaugeValue, v, m)
	}
}
