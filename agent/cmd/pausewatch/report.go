package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pausewatch/pausewatch/agent"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

const reportUsageHead = `Usage: pausewatch report [flags]

Prints, per service and port, what the running agent measured: requests,
p50/p99/p99.9, the share a pause overlapped, SLO breaches by cause, and the
share of wall time paused (see docs/api.md, /api/requests).
With --tax, per service what garbage collection costs it: GC CPU in cores
and as a share of its CPU, share of wall time stopped, breaches by cause,
and the cores it would need without its GC CPU (/api/tax, docs/gccpu.md).

Flags:
`

// maxReportBytes bounds the agent's answer: rows are bounded by the
// agent's --max-series (at most 1,000,000, ~400 bytes each).
const maxReportBytes = 512 << 20

// reportMain prints, per service and port, what the running agent has
// measured: requests, latency quantiles, how many a pause overlapped,
// breaches by cause, and the share of time paused.
func reportMain(args []string) int {
	fs := flag.NewFlagSet("pausewatch report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var cf clientFlags
	cf.register(fs, "the agent to ask, a `URL` (https:// for an agent with a TLS web config)")
	asJSON := fs.Bool("json", false, "print JSON")
	tax := fs.Bool("tax", false, "print the GC tax per service: GC CPU in cores and as a share of CPU, time stopped, breaches by cause")
	client, code := cf.parse(fs, args, reportUsageHead, "", 10*time.Second)
	if client == nil {
		return code
	}
	if *tax {
		return taxMain(context.Background(), client, *asJSON)
	}
	var rows []promexp.RequestSummary
	if !fetchReport(context.Background(), client, "/api/requests", &rows) {
		return 1
	}
	rows = sanitizeRows(rows)
	sort.Slice(rows, func(i, j int) bool {
		if a, b := strings.ToLower(rows[i].Service), strings.ToLower(rows[j].Service); a != b {
			return a < b
		}
		if rows[i].Service != rows[j].Service {
			return rows[i].Service < rows[j].Service
		}
		return rows[i].Port < rows[j].Port
	})
	writeRows(os.Stdout, rows, *asJSON, printReport)
	return 0
}

// writeRows writes the rows of a report as indented JSON or, when asJSON
// is false, as the report's table.
func writeRows[T any](w io.Writer, rows []T, asJSON bool, table func(io.Writer, []T)) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rows)
		return
	}
	table(w, rows)
}

// sanitizeRows passes the rows' strings through agent.LabelValue: they
// come from whatever answers --agent, and both outputs reach a terminal
// (encoding/json leaves U+202E as is).
func sanitizeRows(rows []promexp.RequestSummary) []promexp.RequestSummary {
	for i := range rows {
		r := &rows[i]
		r.Runtime, r.Service, r.Port, r.PID = agent.LabelValue(r.Runtime), agent.LabelValue(r.Service),
			agent.LabelValue(r.Port), agent.LabelValue(r.PID)
	}
	return rows
}

func printReport(w io.Writer, rows []promexp.RequestSummary) {
	ms := func(s float64) string { return fmt.Sprintf("%.2fms", s*1e3) }
	// fit, not %-20.20s: service names come from the processes and may
	// hold wide runes or terminal controls (see fit).
	fmt.Fprintf(w, "%s %s %s %9s %9s %9s %9s %8s %9s %9s %9s %8s\n",
		fit("SERVICE", 20), fit("PORT", 6), fit("RUNTIME", 7), "REQUESTS", "P50", "P99", "P99.9", "PAUSED", "BR:PAUSE", "BR:CPU", "BR:OTHER", "%PAUSED")
	for _, r := range rows {
		fmt.Fprintf(w, "%s %s %s %9d %9s %9s %9s %7.1f%% %9d %9d %9d %7.2f%%\n",
			fit(r.Service, 20), fit(r.Port, 6), fit(r.Runtime, 7), r.Requests, ms(r.P50), ms(r.P99), ms(r.P999),
			100*r.PausedShare, r.PauseBreaches, r.CPUBreaches, r.OtherBreaches, 100*r.WallPausedShare)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "(no requests measured yet)")
	}
}

// fetchReport decodes the agent's JSON answer at path into v, saying on
// stderr why when it cannot; the answer is bounded like any input from a
// process we do not own.
func fetchReport(ctx context.Context, client *agentClient, path string, v any) bool {
	resp, err := client.get(ctx, path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pausewatch report: no agent at %s: %v\n", client.base, err)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "pausewatch report: agent at %s: %v\n", client.base, refusal(resp))
		return false
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReportBytes)).Decode(v); err != nil {
		fmt.Fprintf(os.Stderr, "pausewatch report: bad answer from %s: %v\n", client.base, err)
		return false
	}
	return true
}
