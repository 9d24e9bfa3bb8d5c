// Package rules checks the alerting rules' contract: every alert has a
// severity, a summary, a description and a runbook that exists, and a
// promtool unit test where it fires and one where it stays silent.
package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	rulesFile = "../../helm/pausewatch/files/pausewatch.rules.yaml"
	testsFile = "../../prometheus/rules_test.yaml"
	runbooks  = "../../../docs/runbooks"
	urlPrefix = "https://github.com/pausewatch/pausewatch/blob/main/docs/runbooks/"
)

type rule struct {
	Record      string            `json:"record"`
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alerts(t *testing.T) []rule {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no alerts")
	}
	return out
}

var camel = regexp.MustCompile(`^Pausewatch[A-Z][A-Za-z]+$`)

func TestAlertsHaveRunbooksAndAnnotations(t *testing.T) {
	severities := map[string]bool{"critical": true, "warning": true, "info": true}
	index, err := os.ReadFile(filepath.Join(runbooks, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts(t) {
		if !camel.MatchString(a.Alert) {
			t.Errorf("%s: want CamelCase with the Pausewatch prefix", a.Alert)
		}
		if !severities[a.Labels["severity"]] {
			t.Errorf("%s: severity %q", a.Alert, a.Labels["severity"])
		}
		for _, k := range []string{"summary", "description"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: no %s", a.Alert, k)
			}
		}
		if want := urlPrefix + a.Alert + ".md"; a.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		b, err := os.ReadFile(filepath.Join(runbooks, a.Alert+".md"))
		if err != nil {
			t.Errorf("%s: runbook: %v", a.Alert, err)
			continue
		}
		for _, h := range []string{"# " + a.Alert + "\n", "## Meaning", "## Impact", "## Diagnosis", "## Mitigation"} {
			if !strings.Contains(string(b), h) {
				t.Errorf("%s.md: no %q", a.Alert, strings.TrimSpace(h))
			}
		}
		if !strings.Contains(string(index), "| "+a.Alert+" | "+a.Labels["severity"]+" |") {
			t.Errorf("runbooks/README.md: no row for %s with severity %s", a.Alert, a.Labels["severity"])
		}
	}
}

// Each alert has a promtool case where it fires and one where it does not.
func TestEveryAlertFiresAndStaysSilentInPromtoolTests(t *testing.T) {
	b, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.RuleFiles) != 1 || filepath.Clean(filepath.Join(filepath.Dir(testsFile), f.RuleFiles[0])) != filepath.Clean(rulesFile) {
		t.Errorf("rules_test.yaml tests %v, want the chart's rules file", f.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts(t) {
		if !fires[a.Alert] {
			t.Errorf("%s: no promtool case where it fires", a.Alert)
		}
		if !silent[a.Alert] {
			t.Errorf("%s: no promtool case where it stays silent", a.Alert)
		}
	}
}
