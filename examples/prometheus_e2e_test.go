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
func TestPrometheusScrapesNativeHistograms(t *testing.T) {
	requireRoot(t)
	promtool := requireTool(t, "promtool", "prometheus")
	promBin := requireTool(t, "prometheus", "prometheus")
	a := startAgent(t, 19631)

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

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pausewatch
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(a.url, "http://"))), 0o644)
	prom := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:19690", "--enable-feature=native-histograms")
	logs := &syncBuffer{}
	prom.Stdout, prom.Stderr = logs, logs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })

	query := func(q string) []struct {
		Value     []any          `json:"value"`
		Histogram []any          `json:"histogram"`
		Metric    map[string]any `json:"metric"`
	} {
		resp, err := http.Get("http://127.0.0.1:19690/api/v1/query?query=" + url.QueryEscape(q))
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

	// Every query of the Grafana dashboard runs on this Prometheus.
	b, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	vars := strings.NewReplacer("$service", ".*", "$__rate_interval", "1m")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			q := vars.Replace(tg.Expr)
			resp, err := http.Get("http://127.0.0.1:19690/api/v1/query?query=" + url.QueryEscape(q))
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.Status != "success" {
				t.Errorf("dashboard panel %q: %s: %s", p.Title, q, r.Error)
			}
		}
	}
}
