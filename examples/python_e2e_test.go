package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pyenvVersions is where pyenv installs interpreters (without USDT, with
// .symtab, libpython shared).
const pyenvVersions = "/root/.pyenv/versions"

// pyCase is one interpreter and how the agent must list it.
type pyCase struct {
	name, interp, method string
	why                  string // for method "none": what /api/processes must say
}

// pythonCases is every CPython on this machine: Debian's (USDT) and each
// pyenv version, found on disk so a newly installed one is tested too.
// Below 3.8 they must be listed, not captured.
func pythonCases(t *testing.T) []pyCase {
	t.Helper()
	cases := []pyCase{{"debian-3.11-usdt", "/usr/bin/python3.11", "usdt", ""}}
	dirs, _ := filepath.Glob(filepath.Join(pyenvVersions, "*"))
	sort.Slice(dirs, func(i, j int) bool { return pyOrder(dirs[i]) < pyOrder(dirs[j]) })
	for _, d := range dirs {
		v := filepath.Base(d)
		c := pyCase{name: "pyenv-" + v, interp: filepath.Join(d, "bin", "python"), method: "uprobe"}
		if pyOrder(d) < 3_08_00 {
			c.method = "none"
			c.why = fmt.Sprintf("CPython %s is older than the supported 3.8-3.14", v[:strings.LastIndexByte(v, '.')])
		}
		cases = append(cases, c)
	}
	return cases
}

// pyOrder makes "3.10.13" sort after "3.9.18": 3_10_13.
func pyOrder(dir string) int {
	n := 0
	for _, p := range strings.SplitN(filepath.Base(dir), ".", 3) {
		v, _ := strconv.Atoi(p)
		n = n*100 + v
	}
	return n
}

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
		"OTEL_SERVICE_NAME="+service, "CHURN_COLLECTIONS=400", "CHURN_SECONDS=10")}
}

// startIdlePython starts an interpreter that only waits, in syntax every
// version since 2.7 reads (pychurn.py needs 3.8).
func startIdlePython(t *testing.T, interp, service string) *workload {
	t.Helper()
	return startWorkload(t, exec.Command(interp, "-c",
		`import os, sys; sys.stdout.write("ready %d\n" % os.getpid()); sys.stdout.flush(); sys.stdin.readline()`),
		"OTEL_SERVICE_NAME="+service)
}

type pyAccount struct {
	Count       int            `json:"count"`
	Total       float64        `json:"total_seconds"`
	Generations map[string]int `json:"generations"`
	Objects     int            `json:"objects"`
	CAPI        int            `json:"capi"`
	Version     string         `json:"version"`
}

// pySnapshot is the agent's account of one service at one moment.
type pySnapshot struct {
	n, secs, objects float64
	gens             map[string]float64
}

func (a *agentProc) pySnapshot(t *testing.T, service string) pySnapshot {
	t.Helper()
	want := map[string]string{"service": service}
	var s pySnapshot
	s.n, s.secs = a.settledPauses(t, want)
	mfs := a.metrics(t)
	s.objects = counter(mfs, "pausewatch_gc_collected_objects_total", want)
	s.gens = map[string]float64{}
	for _, m := range mfs["pausewatch_pause_duration_seconds"].GetMetric() {
		if labelsMatch(m, want) {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					s.gens[l.GetValue()] += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return s
}

// runPython lets the script churn and compares the agent's collections of
// its service with the script's gc.callbacks account of the same window:
// the same count, the same count per generation, the same objects freed.
func runPython(t *testing.T, a *agentProc, p *pyProc, service, method string) {
	t.Helper()
	before := a.pySnapshot(t, service)
	fmt.Fprintln(p.stdin, "go")
	if !p.out.Scan() {
		t.Fatal("python printed no account")
	}
	var acc pyAccount
	if err := json.Unmarshal(p.out.Bytes(), &acc); err != nil {
		t.Fatalf("account %q: %v", p.out.Text(), err)
	}
	after := a.pySnapshot(t, service)
	p.stdin.Close()
	p.cmd.Wait()

	gens := map[string]int{}
	for g, n := range after.gens {
		if d := int(n - before.gens[g]); d != 0 {
			gens[g] = d
		}
	}
	agentN, agentS, agentObj := int(after.n-before.n), after.secs-before.secs, int(after.objects-before.objects)
	t.Logf("CPython %s (%s): agent %d collections %v, %d objects, %.6fs; gc.callbacks %d %v, %d objects, %.6fs (%d via PyGC_Collect)",
		acc.Version, method, agentN, gens, agentObj, agentS, acc.Count, acc.Generations, acc.Objects, acc.Total, acc.CAPI)
	if acc.Count < 100 {
		t.Fatalf("workload made only %d collections", acc.Count)
	}
	if agentN != acc.Count {
		t.Errorf("collections: agent %d, gc.callbacks %d", agentN, acc.Count)
	}
	if fmt.Sprint(gens) != fmt.Sprint(acc.Generations) {
		t.Errorf("per generation: agent %v, gc.callbacks %v", gens, acc.Generations)
	}
	if agentObj != acc.Objects {
		t.Errorf("objects collected+uncollectable: agent %d, gc.callbacks %d", agentObj, acc.Objects)
	}
	// Time: the probes bracket the whole collector call, the callbacks sit
	// inside it, and a uprobe trap costs microseconds: close, not equal.
	if !within(agentS, acc.Total, 0.20, 0) {
		t.Errorf("collection time: agent %.6fs, gc.callbacks %.6fs (want within 20%%)", agentS, acc.Total)
	}
}

// TestPythonCollections runs every interpreter on the machine under one
// agent: 2.7, 3.6 and 3.7 must be listed "none" with why; every other one
// captured exactly as gc.callbacks saw it.
func TestPythonCollections(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19491)
	for _, tc := range pythonCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.interp); err != nil {
				t.Skipf("%s not installed", tc.interp)
			}
			service := "py-" + tc.name
			if tc.method == "none" {
				w := startIdlePython(t, tc.interp, service)
				st := a.waitTracked(t, w.pid, w.started)
				t.Logf("%s: %+v", tc.interp, st)
				if st.Runtime != "python" || st.Method != "none" || !strings.Contains(st.Why, tc.why) {
					t.Errorf("status %+v, want python/none saying %q", st, tc.why)
				}
				w.stdin.Close()
				return
			}
			p := startPython(t, tc.interp, service)
			st := a.waitTracked(t, p.pid, p.started)
			t.Logf("%s tracked %v after exec: %+v", tc.interp, st.Since.Sub(p.started), st)
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
