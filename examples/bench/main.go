// Command bench measures what the pausewatch agent costs (`make bench`):
// CPU time for a fixed amount of work, never throughput alone, with
// runs with and without the agent interleaved, their spread, and the
// machine's noise floor (without against without). It prints a markdown
// table (figure, value, budget, verdict) and the details behind it (per-
// program BPF time, a CPU profile of the agent), ready for the README.
//
// Run as root from the repository root: go run ./examples/bench [-quick]
// [-json file]. Needs wrk, taskset, perl, go (to build the agent and read
// its profile), java and python3.11 for those servers, and bpftrace for
// the peer comparison (skipped, and said so, without it). -quick is a
// smoke test of the harness (< 60 s): its numbers are too short to judge
// a budget by. With -helper this program is one of its own workloads.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

type bench struct {
	root, work string
	quick      bool
	agentBin   string
	exampleGo  string
	self       string
	out        io.Writer
	figures    []figure
	details    []string // markdown sections printed after the table
	cleanups   []func()
}

// figure is one row of the table. Verdict is empty when the issue sets no
// budget for it.
type figure struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Detail  string  `json:"detail,omitempty"`
	Budget  string  `json:"budget,omitempty"`
	Verdict string  `json:"verdict,omitempty"`
	Met     *bool   `json:"met,omitempty"`
}

func main() {
	helper := flag.String("helper", "", "run as a workload (memstats, idle): used by the bench itself")
	quick := flag.Bool("quick", false, "smoke test of the harness, < 60 s: figures too short to judge budgets by")
	root := flag.String("root", ".", "the repository root")
	jsonOut := flag.String("json", "", "also write the figures as JSON to this file")
	only := flag.String("only", "", "comma-separated sections to run (requests, share, syscalls, pauses, discovery); default all")
	flag.Parse()
	if *helper != "" {
		runHelper(*helper)
		return
	}
	if err := run(*quick, *root, *jsonOut, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(quick bool, root, jsonOut, only string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (the agent loads BPF programs; BPF statistics are enabled)")
	}
	for _, tool := range []string{"wrk", "taskset", "perl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (wrk: apt-get install wrk)", tool)
		}
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "examples", "go", "main.go")); err != nil {
		return fmt.Errorf("%s is not the repository root (use -root): %w", root, err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pausewatch-bench")
	if err != nil {
		return err
	}
	b := &bench{root: root, work: work, quick: quick, self: self, out: os.Stdout,
		agentBin: filepath.Join(work, "pausewatch"), exampleGo: filepath.Join(work, "example-go")}
	defer os.RemoveAll(work)
	defer b.runCleanups()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Statistics through BPF_ENABLE_STATS rather than the sysctl: the
	// kernel counts the holders, so our run neither turns them off under
	// someone else nor leaves them on if we die.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer stats.Close()

	for _, p := range [][2]string{{b.agentBin, "./agent/cmd/pausewatch"}, {b.exampleGo, "./examples/go"}} {
		cmd := exec.Command("go", "build", "-o", p[0], p[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", p[1], err, out)
		}
	}

	start, loadBefore := time.Now(), loadAvg()
	sections := []struct {
		name string
		run  func(context.Context) error
	}{
		{"requests", b.requestCosts},
		{"share", b.busyShare},
		{"syscalls", b.syscallCost},
		{"pauses", b.pauseSection},
		{"discovery", b.discovery},
	}
	for _, s := range sections {
		if only != "" && !strings.Contains(","+only+",", ","+s.name+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s (%s elapsed)\n", s.name, time.Since(start).Round(time.Second))
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		b.runCleanups()
	}
	b.print(start, loadBefore)
	if jsonOut != "" {
		j, _ := json.MarshalIndent(b.figures, "", "  ")
		if err := os.WriteFile(jsonOut, j, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) cleanup(f func()) { b.cleanups = append(b.cleanups, f) }

func (b *bench) runCleanups() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
}

// add records a figure without a budget.
func (b *bench) add(name string, v float64, unit, detail string) {
	b.figures = append(b.figures, figure{Name: name, Value: v, Unit: unit, Detail: detail})
}

// atMost records a figure whose budget is v <= limit (strict: v < limit).
func (b *bench) atMost(name string, v float64, unit, detail string, limit float64, strict bool) {
	op := "≤"
	met := v <= limit
	if strict {
		op, met = "<", v < limit
	}
	verdict := "met"
	if !met {
		verdict = fmt.Sprintf("not met: +%s %s (%.1f× the budget)", num(v-limit), unit, v/limit)
	}
	b.figures = append(b.figures, figure{Name: name, Value: v, Unit: unit, Detail: detail,
		Budget: fmt.Sprintf("%s %s %s", op, num(limit), unit), Verdict: verdict, Met: &met})
}

// atMostNet records the median of costs net of a background (or of a
// without-run) as a figure whose budget is <= limit; when the background
// varied more than the cost (a round came out negative) the verdict is
// that it cannot be judged, met or not.
func (b *bench) atMostNet(name string, v []float64, unit, detail string, limit float64) {
	if len(v) > 0 && slices.Min(v) >= 0 {
		b.atMost(name, median(v), unit, detail, limit, false)
		return
	}
	b.figures = append(b.figures, figure{Name: name, Value: median(v), Unit: unit, Detail: detail,
		Budget: fmt.Sprintf("≤ %s %s", num(limit), unit), Verdict: "not judged: the background varied more than the cost (a round came out negative)"})
}

// atLeast records a figure whose budget is v >= limit.
func (b *bench) atLeast(name string, v float64, unit, detail string, limit float64) {
	met := v >= limit
	verdict := "met"
	if !met {
		verdict = fmt.Sprintf("not met: %s %s short (%.0f %%)", num(limit-v), unit, 100*v/limit)
	}
	b.figures = append(b.figures, figure{Name: name, Value: v, Unit: unit, Detail: detail,
		Budget: fmt.Sprintf("≥ %s %s", num(limit), unit), Verdict: verdict, Met: &met})
}

// within records a figure whose budget is |v| <= limit.
func (b *bench) within(name string, v float64, unit, detail string, limit float64) {
	met := v >= -limit && v <= limit
	verdict := "met"
	if !met {
		verdict = fmt.Sprintf("not met: off by %s %s more", num(max(v, -v)-limit), unit)
	}
	b.figures = append(b.figures, figure{Name: name, Value: v, Unit: unit, Detail: detail,
		Budget: fmt.Sprintf("within ±%s %s", num(limit), unit), Verdict: verdict, Met: &met})
}

// num prints three significant digits at most, without an exponent.
func num(v float64) string {
	a := max(v, -v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func (b *bench) print(start time.Time, loadBefore string) {
	w := b.out
	mode := "full"
	if b.quick {
		mode = "quick (a smoke test: too short to judge budgets by)"
	}
	fmt.Fprintf(w, "\n### pausewatch bench, %s\n\n", start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Mode: %s, %s. Load average (1, 5, 15 min) before: %s, after: %s.\n\n",
		machine(), mode, time.Since(start).Round(time.Second), loadBefore, loadAvg())
	fmt.Fprintln(w, "| figure | value | budget | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, f := range b.figures {
		v := num(f.Value) + " " + f.Unit
		if f.Detail != "" {
			v += " (" + f.Detail + ")"
		}
		budget, verdict := f.Budget, f.Verdict
		if budget == "" {
			budget, verdict = "-", "-"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", f.Name, strings.TrimSpace(v), budget, verdict)
	}
	for _, d := range b.details {
		fmt.Fprintf(w, "\n%s\n", d)
	}
}
