package examples

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// The exposition passes promtool's lint, and a real Prometheus server with
// native histograms scrapes the agent and computes sane quantiles from them.
// Then every query of the shipped dashboards and every rule runs against two
// real Prometheus servers scraping the agent while it watches real
// workloads: one keeping native histograms (2.42 with the feature flag keeps
// only those) and one keeping the classic series.
func TestPrometheusScrapesNativeHistograms(t *testing.T) {
	requireRoot(t)
	promtool := requireTool(t, "promtool", "prometheus")
	promBin := requireTool(t, "prometheus", "prometheus")
	// Ports that are free now (another test run on the machine may hold the
	// preferred ones).
	port := func(preferred int) int {
		_, p, _ := strings.Cut(freeAddr(t, preferred), ":")
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	agentPort, steadyPort, pausePort := 19631, port(18691), port(18692)
	nativePort, classicPort := port(19690), port(19691)
	cfgDir := t.TempDir()
	agentCfg := filepath.Join(cfgDir, "agent.yaml")
	// Requests of the steady server all breach their 1µs objective, whatever
	// pauses they overlap (cause "other"); the pausing server's breach 15ms
	// because of its deliberate pauses (cause "pause").
	os.WriteFile(agentCfg, []byte(fmt.Sprintf("slo: 15ms\nobjectives:\n  - port: %d\n    objective: 1us\n", steadyPort)), 0o644)
	a := startAgent(t, agentPort, "--config", agentCfg)

	c := startChurn(t, buildChurn(t, "", false), "prom-native", "gc", 8)
	a.waitTracked(t, c.pid, c.started)
	fmt.Fprintln(c.stdin, "go")

	// promtool check metrics reads the text exposition on stdin.
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = bytesReader(body)
	if out, err := lint.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	rules, err := filepath.Abs("../deploy/helm/pausewatch/files/pausewatch.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	startProm := func(port int, native bool) *syncBuffer {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "prometheus.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: pausewatch
    static_configs:
      - targets: [%q]
`, rules, strings.TrimPrefix(a.url, "http://"))), 0o644)
		args := []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port)}
		if native {
			args = append(args, "--enable-feature=native-histograms")
		}
		prom := exec.Command(promBin, args...)
		logs := &syncBuffer{}
		prom.Stdout, prom.Stderr = logs, logs
		if err := prom.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })
		return logs
	}
	logs := startProm(nativePort, true)
	classicLogs := startProm(classicPort, false)

	queryAt := func(port int, q string) []struct {
		Value     []any          `json:"value"`
		Histogram []any          `json:"histogram"`
		Metric    map[string]any `json:"metric"`
	} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", port, url.QueryEscape(q)))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value     []any          `json:"value"`
					Histogram []any          `json:"histogram"`
					Metric    map[string]any `json:"metric"`
				} `json:"result"`
			} `json:"data"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		return r.Data.Result
	}

	query := func(q string) []struct {
		Value     []any          `json:"value"`
		Histogram []any          `json:"histogram"`
		Metric    map[string]any `json:"metric"`
	} {
		return queryAt(nativePort, q)
	}

	q := `histogram_quantile(0.99, sum(rate(pausewatch_pause_duration_seconds{service="prom-native"}[1m])))`
	var p99 float64
	native := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		for _, r := range query(`pausewatch_pause_duration_seconds{service="prom-native"}`) {
			native = native || len(r.Histogram) == 2
		}
		if res := query(q); len(res) == 1 && len(res[0].Value) == 2 {
			if v, err := strconv.ParseFloat(fmt.Sprint(res[0].Value[1]), 64); err == nil && v > 0 {
				p99 = v
				if native {
					break
				}
			}
		}
	}
	t.Logf("Prometheus: native histogram scraped %v; %s = %.6fs", native, q, p99)
	if !native {
		t.Errorf("Prometheus stored no native histogram for pausewatch_pause_duration_seconds\n%s", logs.String())
	}
	// A Go GC pause on this machine: microseconds to a few milliseconds.
	if p99 < 1e-6 || p99 > 0.1 {
		t.Errorf("p99 pause %v s from the native histogram is not sane", p99)
	}

	// The churn is built with this machine's Go (1.23+), whose pauses report
	// their stopping time: part of each pause, so a p99 no larger than the
	// pauses' own bound above.
	sq := `histogram_quantile(0.99, sum(rate(pausewatch_pause_stopping_seconds{service="prom-native"}[1m])))`
	var stopP99 float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !(stopP99 > 0); time.Sleep(time.Second) {
		if res := query(sq); len(res) == 1 && len(res[0].Value) == 2 {
			stopP99, _ = strconv.ParseFloat(fmt.Sprint(res[0].Value[1]), 64)
		}
	}
	t.Logf("Prometheus: %s = %.6fs", sq, stopP99)
	if !(stopP99 > 0 && stopP99 <= 0.1) { // NaN fails too
		t.Errorf("p99 stopping time %v s from the native histogram is not sane", stopP99)
	}

	// Requests for the dashboards and rules, after the churn measured above
	// so that the load does not lengthen its pauses: one server with
	// deliberate pauses, one steady.
	paused := startServer(t, "go", "prom-paused", pausePort, true)
	steady := startServer(t, "go", "prom-steady", steadyPort, false)
	a.waitTracked(t, paused.pid, paused.t0)
	a.waitTracked(t, steady.pid, steady.t0)
	// A collector whose CPU is measured (Go's is not yet), for the GC CPU
	// panels: CPython collecting on its own thread while the load runs.
	pyGC := startWorkload(t, exec.Command("/usr/bin/python3.11", "testdata/pygccpu.py"),
		"OTEL_SERVICE_NAME=prom-py-gc", "GCCPU_SECONDS=30")
	a.waitTracked(t, pyGC.pid, pyGC.started)
	fmt.Fprintln(pyGC.stdin, "go")
	runLoad(t, paused.url, 100, 5*time.Second, 15*time.Millisecond)
	runLoad(t, steady.url, 100, 5*time.Second, 15*time.Millisecond)

	t.Run("dashboards and rules", func(t *testing.T) {
		checkDeployQueries(t, map[string]int{"native": nativePort, "classic": classicPort}, logs, classicLogs)
	})
}

// Panels whose queries may rightly return nothing here, and why. Every other
// panel must show data on both servers (the lost-events counters are
// exported at 0, and the servers above make breaches of both causes).
var queriesWithoutData = map[string]string{
	"Processes not captured, by agent": `every process here is captured: the agent exports no method="none" series then`,
}

// checkDeployQueries runs every dashboard query and every rule expression of
// deploy/ on both Prometheus servers: each must evaluate without error, each
// dashboard query and recording rule must return data (but for the list
// above), and Prometheus must evaluate every loaded rule without error.
// Alert expressions are silent on a healthy agent: promtool's unit tests
// (deploy/prometheus/rules_test.yaml) prove they fire.
func checkDeployQueries(t *testing.T, servers map[string]int, logs ...*syncBuffer) {
	type result struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	eval := func(port int, q string) result {
		var r result
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", port, url.QueryEscape(q)))
		if err != nil {
			r.Error = err.Error()
			return r
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&r)
		return r
	}

	type check struct {
		what, expr string
		wantData   bool
	}
	var checks []check
	files, _ := filepath.Glob("../deploy/helm/pausewatch/files/dashboards/*.json")
	if len(files) < 3 {
		t.Fatalf("dashboards: %v", files)
	}
	vars := strings.NewReplacer("$namespace", ".*", "$service", ".*", "$instance", ".*", "$__rate_interval", "1m", "$__range", "5m")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range dash.Panels {
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", filepath.Base(f), p.Title)
			}
			for _, tg := range p.Targets {
				_, allowed := queriesWithoutData[p.Title]
				checks = append(checks, check{filepath.Base(f) + " / " + p.Title, vars.Replace(tg.Expr), !allowed})
			}
		}
	}
	b, err := os.ReadFile("../deploy/helm/pausewatch/files/pausewatch.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	nRules := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			nRules++
			if r.Record != "" {
				// Breach shares and ratios need breaches, which the
				// servers above make; every recording rule has data.
				checks = append(checks, check{"rule " + r.Record, r.Expr, true})
			} else {
				checks = append(checks, check{"alert " + r.Alert, r.Expr, false})
			}
		}
	}

	var missing []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Second) {
		missing = missing[:0]
		for name, port := range servers {
			for _, c := range checks {
				r := eval(port, c.expr)
				if r.Status != "success" {
					missing = append(missing, fmt.Sprintf("%s (%s): %s: error %s", c.what, name, c.expr, r.Error))
				} else if c.wantData && len(r.Data.Result) == 0 {
					missing = append(missing, fmt.Sprintf("%s (%s): no data: %s", c.what, name, c.expr))
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Error(m)
	}
	t.Logf("%d dashboard queries and rule expressions evaluated on %d Prometheus servers", len(checks), len(servers))

	// Prometheus loaded the rules file and evaluates every rule cleanly.
	for name, port := range servers {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/rules", port))
		if err != nil {
			t.Fatal(err)
		}
		var rr struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		json.NewDecoder(resp.Body).Decode(&rr)
		resp.Body.Close()
		n := 0
		for _, g := range rr.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					t.Errorf("%s Prometheus: rule %s: health %q %s", name, r.Name, r.Health, r.LastError)
				}
			}
		}
		if n != nRules {
			t.Errorf("%s Prometheus loaded %d rules", name, n)
		}
	}
	if t.Failed() {
		for _, l := range logs {
			t.Logf("prometheus log:\n%s", l.String())
		}
	}
}
