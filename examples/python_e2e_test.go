package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// pyenvPython resolves `python3` on PATH (a pyenv shell shim here) to the
// interpreter it runs.
func pyenvPython(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 not runnable: %v", err)
	}
	p := strings.TrimSpace(string(out))
	if p == "" || strings.HasPrefix(p, "/usr/bin/") {
		t.Skipf("python3 on PATH is %q, not a build without USDT", p)
	}
	return p
}

type pyProc struct{ *workload }

func startPython(t *testing.T, interp, service string) *pyProc {
	t.Helper()
	if _, err := os.Stat(interp); err != nil {
		t.Skipf("%s not installed", interp)
	}
	return &pyProc{startWorkload(t, exec.Command(interp, "testdata/pychurn.py"),
		"OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3")}
}

type pyAccount struct {
	Count       int            `json:"count"`
	Total       float64        `json:"total_seconds"`
	Generations map[string]int `json:"generations"`
}

// runPython lets the script churn and compares the agent's collections of
// its service with the script's gc.callbacks account of the same window.
func runPython(t *testing.T, a *agentProc, p *pyProc, service, method string) {
	t.Helper()
	want := map[string]string{"service": service}
	n0, s0 := a.settledPauses(t, want)
	fmt.Fprintln(p.stdin, "go")
	if !p.out.Scan() {
		t.Fatal("python printed no account")
	}
	var acc pyAccount
	if err := json.Unmarshal(p.out.Bytes(), &acc); err != nil {
		t.Fatalf("account %q: %v", p.out.Text(), err)
	}
	n1, s1 := a.settledPauses(t, want)
	p.stdin.Close()
	p.cmd.Wait()

	mfs := a.metrics(t)
	gens := map[string]uint64{}
	for _, m := range mfs["pausewatch_pause_duration_seconds"].GetMetric() {
		if labelsMatch(m, want) {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					gens[l.GetValue()] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	agentN, agentS := n1-n0, s1-s0
	t.Logf("%s (%s): agent %v collections / %.6fs %v; gc.callbacks %d / %.6fs %v",
		service, method, agentN, agentS, gens, acc.Count, acc.Total, acc.Generations)
	if acc.Count < 100 {
		t.Fatalf("workload made only %d collections", acc.Count)
	}
	if !within(agentN, float64(acc.Count), 0.01, 1) {
		t.Errorf("collections: agent %v, gc.callbacks %d (want within 1%%)", agentN, acc.Count)
	}
	if !within(agentS, acc.Total, 0.20, 0) {
		t.Errorf("collection time: agent %.6fs, gc.callbacks %.6fs (want within 20%%)", agentS, acc.Total)
	}
	if gens["gen0"] == 0 || gens["unknown"] != 0 {
		t.Errorf("generations %v: want gen0.. from the probe's argument, none unknown", gens)
	}
}

func TestPythonCollections(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19491)
	for _, tc := range []struct {
		name, interp, method string
	}{
		{"debian-usdt", "/usr/bin/python3.11", "usdt"},
		{"pyenv-uprobe", "", "uprobe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interp := tc.interp
			if interp == "" {
				interp = pyenvPython(t)
			}
			service := "py-" + tc.name
			p := startPython(t, interp, service)
			st := a.waitTracked(t, p.pid, p.started)
			t.Logf("%s tracked %v after exec: %+v", interp, st.Since.Sub(p.started), st)
			if st.Runtime != "python" || st.Method != tc.method {
				t.Fatalf("status %+v, want python/%s", st, tc.method)
			}
			runPython(t, a, p, service, tc.method)
		})
	}
}

func TestPythonStartedBeforeAgent(t *testing.T) {
	requireRoot(t)
	p := startPython(t, pyenvPython(t), "py-before")
	a := startAgent(t, 19492)
	st := a.waitTracked(t, p.pid, time.Now())
	if st.Method != "uprobe" {
		t.Fatalf("status %+v", st)
	}
	runPython(t, a, p, "py-before", "uprobe")
}
