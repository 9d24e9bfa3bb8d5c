// Package dashboards builds pausewatch's Grafana dashboards with the
// grafana-foundation-sdk. `go run ./cmd/dashboards` (make dashboards) writes
// them as JSON into the chart's files/dashboards/, the one copy that the
// chart's ConfigMaps, deploy/kubernetes/ and the Prometheus end-to-end test
// read.
package dashboards

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dashboard is one generated dashboard: the file name it is written to
// (without .json) and its builder.
type Dashboard struct {
	Name    string
	Builder *dashboard.DashboardBuilder
}

// All lists every dashboard.
func All() []Dashboard {
	return []Dashboard{{"overview", Overview()}, {"service", Service()}, {"agent", Agent()}}
}

var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// sel is the label selector every workload query carries.
const sel = `namespace=~"$namespace",service=~"$service"`

// Histogram queries work on both kinds of Prometheus: where it keeps the
// classic series (_bucket, _count, _sum) and where it keeps only the native
// histogram (2.40-2.44 with the native-histograms feature drops the classic
// series of a histogram that has native buckets).

// quantile is the q-quantile of metric by the labels in by.
func quantile(q, metric, matchers, by string) string {
	return fmt.Sprintf(`histogram_quantile(%s, sum by (%s) (rate(%s{%s}[$__rate_interval])))`+
		` or histogram_quantile(%s, sum by (%s, le) (rate(%s_bucket{%s}[$__rate_interval])))`,
		q, by, metric, matchers, q, by, metric, matchers)
}

// countRate is observations per second of metric by the labels in by.
func countRate(metric, matchers, by string) string {
	return fmt.Sprintf(`sum by (%s) (rate(%s_count{%s}[$__rate_interval]))`+
		` or sum by (%s) (histogram_count(rate(%s{%s}[$__rate_interval])))`,
		by, metric, matchers, by, metric, matchers)
}

// sumRate is the observed total per second (seconds per second).
func sumRate(metric, matchers, by string) string {
	return fmt.Sprintf(`sum by (%s) (rate(%s_sum{%s}[$__rate_interval]))`+
		` or sum by (%s) (histogram_sum(rate(%s{%s}[$__rate_interval])))`,
		by, metric, matchers, by, metric, matchers)
}

// heatmapQuery is pauses per bucket in each interval; "or on()" keeps one
// kind only where Prometheus has both.
func heatmapQuery(matchers string) string {
	return fmt.Sprintf(`sum by (le) (increase(pausewatch_pause_duration_seconds_bucket{%s}[$__rate_interval]))`+
		` or on() sum(increase(pausewatch_pause_duration_seconds{%s}[$__rate_interval]))`, matchers, matchers)
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(ds).Expr(expr).LegendFormat(legend).Range()
}

func ts(title, desc, unit string, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Datasource(ds).Unit(unit).Min(0).
		FillOpacity(10).Height(8).Span(12)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func stacked(p *timeseries.PanelBuilder) *timeseries.PanelBuilder {
	return p.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
}

func variable(name, label, q string, multi bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).Label(label).Datasource(ds).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc)
	if multi {
		v.Multi(true).IncludeAll(true).AllValue(".*")
	}
	return v
}

func base(uid, title, desc string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).Uid(uid).Description(desc).
		Tags([]string{"pausewatch", "gc", "latency"}).Editable().
		Time("now-1h", "now").Refresh("30s").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(variable("namespace", "Namespace", `label_values(pausewatch_pauses_total, namespace)`, true))
}

func pauseHeatmap(matchers string) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().Title("Pause durations").
		Description("How many stop-the-world pauses of each length, per interval (pausewatch_pause_duration_seconds). Only pauses seen one by one; JVMs read through hsperfdata are not in it.").
		Datasource(ds).Height(8).Span(12).Calculate(false).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
		Color(heatmap.NewHeatmapColorOptionsBuilder().Mode(heatmap.HeatmapColorModeScheme).Scheme("Oranges").Exponent(0.5).Steps(64)).
		CellGap(1).
		WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).Expr(heatmapQuery(matchers)).
			Format(prometheus.PromQueryFormatHeatmap).LegendFormat("{{le}}").Range())
}

// Overview: what pauses cost every service.
func Overview() *dashboard.DashboardBuilder {
	return base("pausewatch-overview", "pausewatch / Overview",
		"What stop-the-world pauses cost every service: share of wall time stopped, pauses, and the requests and SLO breaches they caused.").
		WithVariable(variable("service", "Service", `label_values(pausewatch_pauses_total{namespace=~"$namespace"}, service)`, true)).
		Link(dashboard.NewDashboardLinkBuilder("pausewatch").Type(dashboard.DashboardLinkTypeDashboards).Tags([]string{"pausewatch"}).AsDropdown(true).IncludeVars(true).KeepTime(true)).
		WithRow(dashboard.NewRowBuilder("GC tax")).
		WithPanel(ts("Share of wall time stopped",
			"Seconds stopped per second, averaged over the processes (pods) of each service: the GC tax.",
			"percentunit",
			query(`avg by (namespace, service, runtime) (sum without (kind, method) (rate(pausewatch_pause_seconds_total{`+sel+`}[$__rate_interval])))`,
				"{{namespace}}/{{service}} ({{runtime}})"))).
		WithPanel(bargauge.NewPanelBuilder().Title("Top services by pause time").
			Description("Seconds stopped over the dashboard's time range, summed over the service's processes.").
			Datasource(ds).Unit("s").Height(8).Span(12).
			DisplayMode(common.BarGaugeDisplayModeGradient).Orientation(common.VizOrientationHorizontal).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).
				Expr(`topk(10, sum by (namespace, service) (increase(pausewatch_pause_seconds_total{` + sel + `}[$__range])))`).
				LegendFormat("{{namespace}}/{{service}}").Instant())).
		WithPanel(pauseHeatmap(sel)).
		WithPanel(ts("Pause p99 by service", "99th percentile of single pauses.", "s",
			query(quantile("0.99", "pausewatch_pause_duration_seconds", sel, "namespace, service"), "{{namespace}}/{{service}}"))).
		WithRow(dashboard.NewRowBuilder("GC CPU")).
		WithPanel(ts("GC CPU in cores",
			"CPU seconds per second the collector spends, by service: its own threads (HotSpot), the thread running a collection or GC safepoint (CPython, HotSpot's VM thread), Go's own account. Node.js and stripped Go binaries are not measured (/api/processes, gc_cpu, says why).",
			"short",
			query(`sum by (namespace, service, runtime) (rate(pausewatch_gc_cpu_seconds_total{`+sel+`}[$__rate_interval]))`,
				"{{namespace}}/{{service}} ({{runtime}})")).Span(8)).
		WithPanel(ts("GC share of the service's CPU",
			"GC CPU over the CPU of the service's runtime processes (user + system, /proc).",
			"percentunit",
			query(`sum by (namespace, service) (rate(pausewatch_gc_cpu_seconds_total{`+sel+`}[$__rate_interval])) / sum by (namespace, service) (rate(pausewatch_process_cpu_seconds_total{`+sel+`}[$__rate_interval]))`,
				"{{namespace}}/{{service}}")).Max(1).Span(8)).
		WithPanel(ts("Cores used, and without GC CPU",
			"The service's cores, and the cores it would use at the same load without its GC CPU (assuming the rest of its work unchanged), for services whose GC CPU is measured.",
			"short",
			query(`sum by (namespace, service) (rate(pausewatch_process_cpu_seconds_total{`+sel+`}[$__rate_interval])) and on (namespace, service) sum by (namespace, service) (pausewatch_gc_cpu_seconds_total{`+sel+`})`,
				"{{namespace}}/{{service}} used"),
			query(`sum by (namespace, service) (rate(pausewatch_process_cpu_seconds_total{`+sel+`}[$__rate_interval])) - sum by (namespace, service) (rate(pausewatch_gc_cpu_seconds_total{`+sel+`}[$__rate_interval]))`,
				"{{namespace}}/{{service}} without GC")).Span(8)).
		WithRow(dashboard.NewRowBuilder("Requests and SLO breaches")).
		WithPanel(stacked(ts("SLO breaches by cause",
			`Requests slower than their objective, per second: "pause" when the request would have met it without the pause time inside it; else "cpu" when without the run-queue wait (CPU starvation, CFS throttling) of the threads serving it; else "other".`,
			"reqps",
			query(`sum by (cause) (rate(pausewatch_slo_breaches_total{`+sel+`}[$__rate_interval]))`, "{{cause}}")))).
		WithPanel(ts("Pause-caused share of SLO breaches", "Of each service's SLO breaches, the share a pause caused.", "percentunit",
			query(`sum by (namespace, service) (rate(pausewatch_slo_breaches_total{cause="pause",`+sel+`}[$__rate_interval])) / sum by (namespace, service) (rate(pausewatch_slo_breaches_total{`+sel+`}[$__rate_interval]))`,
				"{{namespace}}/{{service}}")).Max(1)).
		WithPanel(ts("Request latency p99, paused vs unpaused",
			`paused="true": requests a pause overlapped.`, "s",
			query(quantile("0.99", "pausewatch_request_duration_seconds", sel, "service, paused"), "{{service}} paused={{paused}}").Exemplar(true))).
		WithPanel(ts("Share of requests a pause overlapped", "", "percentunit",
			query(`(`+countRate("pausewatch_request_duration_seconds", `paused="true",`+sel, "namespace, service")+`) / (`+
				countRate("pausewatch_request_duration_seconds", sel, "namespace, service")+`)`, "{{namespace}}/{{service}}")).Max(1)).
		WithRow(dashboard.NewRowBuilder("Agent")).
		WithPanel(stacked(ts("Processes by capture method",
			`method="none": seen but not captured (/api/processes says why).`, "short",
			query(`sum by (runtime, method) (pausewatch_processes)`, "{{runtime}} {{method}}")).Span(8))).
		WithPanel(ts("Events lost", "Events the agent could not count, per second, by source.", "ops",
			query(`sum by (source) (rate(pausewatch_events_lost_total[$__rate_interval]))`, "{{source}}")).Span(8)).
		WithPanel(stat.NewPanelBuilder().Title("Agents with a capture method that does not work").
			Description("pausewatch_capture_available == 0, by method (uprobe_multi is 0 on kernels before 6.6, where perf_uprobe serves).").
			Datasource(ds).Height(8).Span(8).
			WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).
				Expr(`count by (method) (pausewatch_capture_available == 0) or on() vector(0)`).LegendFormat("{{method}}").Instant()))
}

// Service: one service in detail.
func Service() *dashboard.DashboardBuilder {
	return base("pausewatch-service", "pausewatch / Service",
		"One service: its pauses by reason and kind, their stopping time, and the latency of its requests by port.").
		WithVariable(variable("service", "Service", `label_values(pausewatch_pauses_total{namespace=~"$namespace"}, service)`, false)).
		Link(dashboard.NewDashboardLinkBuilder("pausewatch").Type(dashboard.DashboardLinkTypeDashboards).Tags([]string{"pausewatch"}).AsDropdown(true).IncludeVars(true).KeepTime(true)).
		WithRow(dashboard.NewRowBuilder("Pauses")).
		WithPanel(stacked(ts("Pauses per second by reason and kind", "", "ops",
			query(countRate("pausewatch_pause_duration_seconds", sel, "kind, reason"), "{{kind}}: {{reason}}")))).
		WithPanel(stacked(ts("Time stopped by reason", "Seconds stopped per second, by the runtime's reason.", "percentunit",
			query(sumRate("pausewatch_pause_duration_seconds", sel, "kind, reason"), "{{kind}}: {{reason}}")))).
		WithPanel(ts("Pause p99 by reason", "", "s",
			query(quantile("0.99", "pausewatch_pause_duration_seconds", sel, "reason"), "{{reason}}"))).
		WithPanel(ts("Pauses per second by capture method", "Every capture method counts here, hsperfdata included.", "ops",
			query(`sum by (runtime, kind, method) (rate(pausewatch_pauses_total{`+sel+`}[$__rate_interval]))`, "{{runtime}} {{kind}} ({{method}})"))).
		WithPanel(pauseHeatmap(sel)).
		WithPanel(ts("Stopping time p99 by runtime",
			"99th percentile of the stopping time: the part of each pause spent bringing threads to a stop (Go 1.23+ stopping time, HotSpot time to safepoint; pausewatch_pause_stopping_seconds). Only pauses whose runtime reports it. A long stopping time beside a short pause points at threads slow to reach a stop (loops without preemption points or safepoint polls), not at the collector.", "s",
			query(quantile("0.99", "pausewatch_pause_stopping_seconds", sel, "runtime"), "{{runtime}}"))).
		WithRow(dashboard.NewRowBuilder("Requests")).
		WithPanel(ts("Request latency by port", "p50 and p99 of every request, per port.", "s",
			query(quantile("0.5", "pausewatch_request_duration_seconds", sel, "port"), "p50 :{{port}}"),
			query(quantile("0.99", "pausewatch_request_duration_seconds", sel, "port"), "p99 :{{port}}"))).
		WithPanel(ts("Request latency p99 by port, paused vs unpaused", "", "s",
			query(quantile("0.99", "pausewatch_request_duration_seconds", sel, "port, paused"), ":{{port}} paused={{paused}}").Exemplar(true))).
		WithPanel(ts("Requests per second by port", "", "reqps",
			query(countRate("pausewatch_request_duration_seconds", sel, "port"), ":{{port}}"))).
		WithPanel(stacked(ts("SLO breaches by port and cause", "", "reqps",
			query(`sum by (port, cause) (rate(pausewatch_slo_breaches_total{`+sel+`}[$__rate_interval]))`, ":{{port}} {{cause}}")))).
		WithPanel(ts("Pause time inside requests by port", "Seconds of pause inside requests, per second.", "s",
			query(`sum by (port) (rate(pausewatch_request_pause_seconds_total{`+sel+`}[$__rate_interval]))`, ":{{port}}")))
}

// agentOnly keeps the agent's own go_/process_ series: those of targets that
// also export pausewatch_build_info.
const agentOnly = ` and on (instance, job) pausewatch_build_info{instance=~"$instance"}`

// Agent: the agents' own health.
func Agent() *dashboard.DashboardBuilder {
	inst := `instance=~"$instance"`
	return dashboard.NewDashboardBuilder("pausewatch / Agent").Uid("pausewatch-agent").
		Description("The agents themselves: what they capture and how, what they lose, what they cost.").
		Tags([]string{"pausewatch", "gc", "latency"}).Editable().
		Time("now-1h", "now").Refresh("30s").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(variable("instance", "Agent", `label_values(pausewatch_build_info, instance)`, true)).
		Link(dashboard.NewDashboardLinkBuilder("pausewatch").Type(dashboard.DashboardLinkTypeDashboards).Tags([]string{"pausewatch"}).AsDropdown(true).IncludeVars(true).KeepTime(true)).
		WithRow(dashboard.NewRowBuilder("Capture")).
		WithPanel(stacked(ts("Processes by runtime and capture method", "", "short",
			query(`sum by (runtime, method) (pausewatch_processes{`+inst+`})`, "{{runtime}} {{method}}")))).
		WithPanel(ts("Processes not captured, by agent",
			`method="none": the agent saw the process but cannot capture it; /api/processes on that agent gives "why" for each.`, "short",
			query(`sum by (instance, runtime) (pausewatch_processes{method="none",`+inst+`})`, "{{instance}} {{runtime}}"))).
		WithPanel(stat.NewPanelBuilder().Title("Capture methods that work").
			Description("Agents where each method works (pausewatch_capture_available == 1), of all agents. uprobe_multi needs Linux 6.6+, perf_uprobe CAP_SYS_ADMIN on recent kernels; one of the two is enough.").
			Datasource(ds).Height(8).Span(12).
			WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).
				Expr(`sum by (method) (pausewatch_capture_available{` + inst + `})`).LegendFormat("{{method}}").Instant())).
		WithPanel(ts("Events lost by source", "ringbuf, connections, max_processes undercount the metrics; unpaired_end counts probes attached mid-pause; watch and otlp_log_rate are slow clients and rate limits.", "ops",
			query(`sum by (source) (rate(pausewatch_events_lost_total{`+inst+`}[$__rate_interval]))`, "{{source}}"))).
		WithRow(dashboard.NewRowBuilder("Cost and bounds")).
		WithPanel(ts("Agent CPU", "CPU seconds per second of each agent.", "percentunit",
			query(`rate(process_cpu_seconds_total{`+inst+`}[$__rate_interval])`+agentOnly, "{{instance}}")).Span(8)).
		WithPanel(ts("Agent resident memory", "", "bytes",
			query(`process_resident_memory_bytes{`+inst+`}`+agentOnly, "{{instance}}")).Span(8)).
		WithPanel(ts("Bounded tables: share used", "pausewatch_resource_used / pausewatch_resource_limit: past 1 new processes or specs are dropped and counted.", "percentunit",
			query(`max by (resource) (pausewatch_resource_used{`+inst+`} / pausewatch_resource_limit{`+inst+`})`, "{{resource}}")).Max(1).Span(8)).
		WithPanel(ts("Pause series dropped", "Pauses of new series not exported because --max-series was reached, per second.", "ops",
			query(`sum by (instance) (rate(pausewatch_series_dropped_total{`+inst+`}[$__rate_interval]))`, "{{instance}}")).Span(12)).
		WithPanel(stat.NewPanelBuilder().Title("Agent versions").Description("Agents per version.").
			Datasource(ds).Height(8).Span(12).
			WithTarget(prometheus.NewDataqueryBuilder().Datasource(ds).
				Expr(`count by (version) (pausewatch_build_info{` + inst + `})`).LegendFormat("{{version}}").Instant()))
}

// Exprs lists every query of a built dashboard's panels, by panel title.
func Exprs(d dashboard.Dashboard) map[string][]string {
	out := map[string][]string{}
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		for _, t := range p.Panel.Targets {
			switch q := t.(type) {
			case *prometheus.Dataquery:
				out[*p.Panel.Title] = append(out[*p.Panel.Title], strings.TrimSpace(q.Expr))
			case prometheus.Dataquery:
				out[*p.Panel.Title] = append(out[*p.Panel.Title], strings.TrimSpace(q.Expr))
			default:
				out[*p.Panel.Title] = append(out[*p.Panel.Title], fmt.Sprintf("unknown query type %T", t))
			}
		}
	}
	return out
}

// JSON builds a dashboard and returns it indented, with a final newline.
func JSON(b *dashboard.DashboardBuilder) ([]byte, error) {
	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Instantiate replaces Grafana's variables in a query by what they stand
// for with every namespace and service selected and a 1m rate interval, as
// the tests send queries to Prometheus.
func Instantiate(q string) string {
	return strings.NewReplacer("$namespace", ".*", "$service", ".*", "$instance", ".*",
		"$__rate_interval", "1m", "$__range", "5m").Replace(q)
}
