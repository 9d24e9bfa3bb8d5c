package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fmt"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"os/exec"
)

const dir = "../../helm/pausewatch/files/dashboards"

// The committed JSON is what the generator writes now (make dashboards).
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != len(All()) {
		t.Errorf("%d JSON files in %s, %d dashboards generated: run make dashboards", len(files), dir, len(All()))
	}
	for _, d := range All() {
		want, err := JSON(d.Builder)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, d.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s.json differs from the generator's output: run make dashboards", d.Name)
		}
	}
}

// Each file decodes strictly into Grafana's dashboard schema (unknown fields
// fail) and validates; every query parses as PromQL, uses the datasource
// variable and selects by the namespace and service variables.
func TestDashboardsAreValid(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	var all []string
	for _, d := range All() {
		raw, err := os.ReadFile(filepath.Join(dir, d.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash dashboard.Dashboard
		if err := dash.UnmarshalJSONStrict(raw); !noErr(err) {
			t.Fatalf("%s: strict decode: %v", d.Name, err)
		}
		if err := dash.Validate(); !noErr(err) {
			t.Errorf("%s: %v", d.Name, err)
		}
		// v0.0.22's PanelOrRowPanel.UnmarshalJSONStrict takes the typed nil
		// its Panel decoder returns on success for an error and leaves
		// every panel out: decode the panels one by one.
		var top struct {
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &top); err != nil {
			t.Fatal(err)
		}
		dash.Panels = nil
		for i, pr := range top.Panels {
			var kind struct{ Type string }
			json.Unmarshal(pr, &kind)
			if kind.Type == "row" {
				var row dashboard.RowPanel
				if err := row.UnmarshalJSONStrict(pr); !noErr(err) {
					t.Errorf("%s: row %d: %v", d.Name, i, err)
				}
				continue
			}
			var panel dashboard.Panel
			if err := panel.UnmarshalJSONStrict(pr); !noErr(err) {
				t.Errorf("%s: panel %d: %v", d.Name, i, err)
				continue
			}
			if err := panel.Validate(); !noErr(err) {
				t.Errorf("%s: panel %d: %v", d.Name, i, err)
			}
			// Same bug for targets: decode each as a Prometheus query.
			var tg struct {
				Targets []json.RawMessage `json:"targets"`
			}
			json.Unmarshal(pr, &tg)
			if len(tg.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", d.Name, *panel.Title)
			}
			panel.Targets = nil
			for j, qr := range tg.Targets {
				q := &prometheus.Dataquery{}
				if err := q.UnmarshalJSONStrict(qr); !noErr(err) {
					t.Errorf("%s: panel %q, target %d: %v", d.Name, *panel.Title, j, err)
				}
				panel.Targets = append(panel.Targets, q)
			}
			dash.Panels = append(dash.Panels, dashboard.PanelOrRowPanel{Panel: &panel})
		}
		if !bytes.Contains(raw, []byte(`"uid": "${datasource}"`)) || bytes.Contains(raw, []byte(`"uid": "prometheus"`)) {
			t.Errorf("%s: queries must use the $datasource variable", d.Name)
		}
		exprs := Exprs(dash)
		if len(exprs) == 0 {
			t.Fatalf("%s: no queries", d.Name)
		}
		for title, qs := range exprs {
			for _, q := range qs {
				all = append(all, Instantiate(q))
				if d.Name != "agent" && strings.Contains(q, "pausewatch_pause") && !strings.Contains(q, `service=~"$service"`) {
					t.Errorf("%s / %q: pause query without the service variable: %s", d.Name, title, q)
				}
			}
		}
	}
	checkPromQL(t, all)
}

// checkPromQL has promtool parse the queries, as recording rules.
func checkPromQL(t *testing.T, exprs []string) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus): queries not parsed")
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	for i, q := range exprs {
		fmt.Fprintf(&b, "      - record: q%d\n        expr: %q\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "q.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboards' queries: %v\n%s", err, out)
	}
}

// The sdk returns a typed nil cog.BuildErrors on success.
func noErr(err error) bool {
	var be cog.BuildErrors
	if errors.As(err, &be) {
		return len(be) == 0
	}
	return err == nil
}
