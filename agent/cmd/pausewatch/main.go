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
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pausewatch/pausewatch/agent"
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
	skipSelf   bool
	procFS     string
	maxSeries  int
	maxProcs   int
	logLevel   string
	memLimitMB int64
	pprof      bool
	noJVMProbe bool
	noRequests bool
	noJVMUSDT  bool
	uprobes    string
	runtimes   string
	ports      portList
	slo        time.Duration
	config     string
	objectives objectives

	otlpEndpoint  string
	otlpProtocol  string
	otlpExplicit  bool
	otlpThreshold time.Duration
	otlpLogRate   float64
	otlpLogBurst  int
}

func parseAgentFlags(args []string) (agentFlags, error) {
	var f agentFlags
	fs := flag.NewFlagSet("pausewatch", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pausewatch [flags]        run the agent\n       pausewatch watch [--json]  print pauses (and the requests they slowed) as they happen\n       pausewatch report [--json] per-service latency, pause overlap and SLO breaches\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&f.listen, "listen", ":9464", "address to serve /metrics, /healthz, /readyz and /api/ on")
	fs.BoolVar(&f.pidLabel, "pid-label", false, "add a pid label to process series (pids churn: off by default)")
	fs.DurationVar(&f.pidTTL, "pid-series-ttl", 10*time.Minute, "how long series with a pid label stay after the process exits")
	fs.BoolVar(&f.skipSelf, "skip-self", false, "do not report the agent's own pauses")
	fs.StringVar(&f.procFS, "procfs", "/proc", "procfs root (the host's /proc)")
	fs.IntVar(&f.maxSeries, "max-series", 10000, "bound on pause series; past it new series are dropped and counted")
	fs.IntVar(&f.maxProcs, "max-processes", 10000, "bound on tracked processes; past it new ones are not tracked and counted")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Int64Var(&f.memLimitMB, "memory-limit-mb", 256, "soft memory limit of the agent (GOMEMLIMIT), 0 for none; GOMEMLIMIT in the environment wins")
	fs.BoolVar(&f.noJVMProbe, "no-jvm-probes", false, "do not probe libjvm.so (USDT or symbols); JVMs are then read through hsperfdata only")
	fs.BoolVar(&f.noJVMUSDT, "no-jvm-usdt", false, "ignore libjvm.so's USDT notes and probe SafepointSynchronize::begin/end from its symbol table instead")
	fs.StringVar(&f.uprobes, "uprobes", "auto", "how uprobes are attached: auto (uprobe_multi links where the kernel has them and allows it, else perf-PMU uprobes), uprobe_multi or perf_uprobe")
	fs.StringVar(&f.runtimes, "runtimes", "go,jvm,python", "comma-separated runtimes to capture")
	fs.BoolVar(&f.noRequests, "no-requests", false, "do not measure request latency")
	fs.Var(&f.ports, "ports", "comma-separated local ports whose requests are measured (default: every port of a tracked process)")
	fs.DurationVar(&f.slo, "slo", 0, "default latency objective: a request slower than this is an SLO breach (0: none; per-service objectives go in the config file)")
	fs.StringVar(&f.config, "config", os.Getenv("PAUSEWATCH_CONFIG"), "YAML config file (every flag is a key; plus objectives:); flags override the environment (PAUSEWATCH_<FLAG>), which overrides the file")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OTLP endpoint (sets OTEL_EXPORTER_OTLP_ENDPOINT); OTLP export is on when this or any OTEL_EXPORTER_OTLP_*ENDPOINT is set")
	fs.StringVar(&f.otlpProtocol, "otlp-protocol", "", "grpc or http/protobuf (sets OTEL_EXPORTER_OTLP_PROTOCOL; default http/protobuf)")
	fs.BoolVar(&f.otlpExplicit, "otlp-explicit-buckets", false, "export OTLP duration histograms with the explicit Prometheus buckets instead of base-2 exponential ones")
	fs.DurationVar(&f.otlpThreshold, "otlp-log-threshold", 0, "pauses shorter than this get no OTLP log record (0: every pause)")
	fs.Float64Var(&f.otlpLogRate, "otlp-log-rate", 100, "OTLP log records per second per process, at most (the rest are counted in pausewatch_events_lost_total{source=\"otlp_log_rate\"})")
	fs.IntVar(&f.otlpLogBurst, "otlp-log-burst", 1000, "OTLP log records a process may send in a burst above --otlp-log-rate")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles on /debug/pprof/ (for investigating the agent's own cost)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unknown subcommand or argument %q", fs.Arg(0))
	}
	objs, err := applyConfig(fs, f.config)
	if err != nil {
		return f, err
	}
	if f.slo < 0 {
		return f, fmt.Errorf("--slo must not be negative, got %s", f.slo)
	}
	f.objectives = objectives{def: f.slo, list: objs}
	for _, r := range strings.Split(f.runtimes, ",") {
		if r != "go" && r != "jvm" && r != "python" {
			return f, fmt.Errorf("--runtimes: unknown runtime %q (go, jvm, python)", r)
		}
	}
	switch f.uprobes {
	case "auto":
		f.uprobes = ""
	case source.CaptureUprobeMulti, source.CapturePerfUprobe:
	default:
		return f, fmt.Errorf("--uprobes %q: auto, uprobe_multi or perf_uprobe", f.uprobes)
	}
	if f.otlpLogRate <= 0 || f.otlpLogBurst <= 0 {
		return f, errors.New("--otlp-log-rate and --otlp-log-burst must be positive")
	}
	if f.otlpProtocol != "" && f.otlpProtocol != "grpc" && f.otlpProtocol != "http/protobuf" {
		return f, fmt.Errorf("--otlp-protocol %q: supported are grpc and http/protobuf", f.otlpProtocol)
	}
	if f.pidTTL <= 0 {
		return f, fmt.Errorf("--pid-series-ttl must be positive, got %s", f.pidTTL)
	}
	if f.maxSeries <= 0 || f.maxProcs <= 0 {
		return f, errors.New("--max-series and --max-processes must be positive")
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

	src := source.New(source.Config{ProcFS: f.procFS, Logger: log, SkipSelf: f.skipSelf, MaxProcesses: f.maxProcs,
		NoJVMProbes: f.noJVMProbe, NoJVMUSDT: f.noJVMUSDT, Runtimes: strings.Split(f.runtimes, ","),
		NoRequests: f.noRequests, Ports: f.ports, Uprobes: f.uprobes})
	prom := promexp.New(promexp.Options{PIDLabel: f.pidLabel, PIDSeriesTTL: f.pidTTL, MaxSeries: f.maxSeries,
		Objective: f.objectives.lookup})
	stream := agent.NewStream()

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
			LogBurst: f.otlpLogBurst, Objective: f.objectives.lookup, Version: version}
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prom,
		promexp.NewHealth(version, func() map[promexp.RuntimeMethod]int {
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
		}),
		captureCollector{src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		log.Error("listen", "addr", f.listen, "err", err)
		return 1
	}
	mux := newMux(reg, src, prom, stream)
	if f.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
			stop()
		}
	}()
	log.Info("pausewatch starting", "version", version, "listen", ln.Addr().String())

	runErr := agent.Run(ctx, src, exporters...)
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

func newMux(reg *prometheus.Registry, src *source.Source, prom *promexp.Exporter, stream *agent.Stream) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
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
		writeJSON(w, src.Status())
	})
	mux.HandleFunc("/api/pauses", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, prom.Summaries())
	})
	mux.HandleFunc("/api/requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, prom.RequestSummaries())
	})
	mux.HandleFunc("/api/events", func(w http.ResponseWriter, r *http.Request) {
		serveEvents(w, r, stream)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

var captureDesc = prometheus.NewDesc("pausewatch_capture_available",
	"1 when a capture method works with the agent's privileges and kernel, else 0 (/api/status and the start-up log say why): "+
		"uprobe_multi and perf_uprobe (Go, Python, JVM probes), hsperfdata (JVM counters), requests (request tracepoints).",
	[]string{"method"}, nil)

// captureCollector exports what the start-up trials found.
type captureCollector struct{ src *source.Source }

func (c captureCollector) Describe(ch chan<- *prometheus.Desc) { ch <- captureDesc }

func (c captureCollector) Collect(ch chan<- prometheus.Metric) {
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
