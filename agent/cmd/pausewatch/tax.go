package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pausewatch/pausewatch/agent"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// taxAssumptions are printed under the tax report: what its figures
// assume, so that no one reads more into them.
const taxAssumptions = `Cores are averaged over WINDOW: from the start of the service's first process (or the agent's, if later).
GC CPU by method: gc_threads = the collector's own threads (HotSpot), kernel per-thread accounting;
pause_thread = the thread running a collection (CPython) or a GC safepoint (HotSpot's VM thread),
timed at context switches; runtime = Go's own account (pauses count x GOMAXPROCS). Node.js, and Go
binaries without symbols: not measured (GC shows -, /api/processes' gc_cpu says why).
NO-GC = CORES - GC CORES: the same work without its collector's CPU, assuming the work itself
(allocation, barriers, cache misses after collections) would not change. Breaches by cause (BR:): pause, cpu (run-queue wait,
CFS throttling) or other; pause wins when either alone explains the breach.`

// taxMain prints, per service, what garbage collection costs it.
func taxMain(ctx context.Context, client *agentClient, asJSON bool) int {
	var rows []promexp.TaxSummary
	if !fetchReport(ctx, client, "/api/tax", &rows) {
		return 1
	}
	rows = sanitizeTaxRows(rows)
	sort.Slice(rows, func(i, j int) bool {
		if a, b := strings.ToLower(rows[i].Service), strings.ToLower(rows[j].Service); a != b {
			return a < b
		}
		return rows[i].Runtime+rows[i].PID < rows[j].Runtime+rows[j].PID
	})
	writeRows(os.Stdout, rows, asJSON, printTax)
	return 0
}

// sanitizeTaxRows passes the rows' strings through agent.LabelValue: they
// come from whatever answers --agent and reach a terminal.
func sanitizeTaxRows(rows []promexp.TaxSummary) []promexp.TaxSummary {
	for i := range rows {
		r := &rows[i]
		r.Runtime, r.Service, r.PID = agent.LabelValue(r.Runtime), agent.LabelValue(r.Service), agent.LabelValue(r.PID)
		methods := make(map[string]float64, len(r.GCCPUMethods))
		for m, v := range r.GCCPUMethods {
			methods[agent.LabelValue(m)] = v
		}
		r.GCCPUMethods = methods
	}
	return rows
}

func printTax(w io.Writer, rows []promexp.TaxSummary) {
	fmt.Fprintf(w, "%s %s %8s %8s %8s %6s %8s %9s %9s %9s %8s  %s\n", fit("SERVICE", 20), fit("RUNTIME", 7),
		"WINDOW", "CORES", "GC CORES", "GC%", "%STOPPED", "BR:PAUSE", "BR:CPU", "BR:OTHER", "NO-GC", "GC CPU BY METHOD")
	for _, r := range rows {
		gcCores, gcShare, noGC := "-", "-", "-"
		if r.GCCPUKnown {
			gcCores, gcShare, noGC = fmt.Sprintf("%.3f", r.GCCores), fmt.Sprintf("%.1f%%", 100*r.GCShare), fmt.Sprintf("%.3f", r.CoresWithoutGC)
		}
		methods := make([]string, 0, len(r.GCCPUMethods))
		for m, v := range r.GCCPUMethods {
			methods = append(methods, fmt.Sprintf("%s=%.2fs", m, v))
		}
		sort.Strings(methods)
		fmt.Fprintf(w, "%s %s %7.0fs %8.3f %8s %6s %7.2f%% %9d %9d %9d %8s  %s\n", fit(r.Service, 20), fit(r.Runtime, 7),
			r.Window, r.Cores, gcCores, gcShare, 100*r.WallStoppedShare, r.PauseBreaches, r.CPUBreaches, r.OtherBreaches, noGC,
			strings.Join(methods, " "))
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "(no CPU sampled yet: the agent samples every 5 s)")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, taxAssumptions)
}
