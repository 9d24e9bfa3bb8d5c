package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

const nodeBin = "/usr/bin/node"

// nodeAccount is what testdata/nodechurn.js's PerformanceObserver saw.
type nodeAccount struct {
	Minor, Major, Incremental, WeakCB int
	Seconds                           float64
}

// nodeSnapshot is the agent's account of a service: pauses, their total,
// and pauses by reason (the collector) from the histogram.
type nodeSnapshot struct {
	n, secs  float64
	byReason map[string]int
}

func (a *agentProc) nodeSnapshot(t *testing.T, service string) nodeSnapshot {
	t.Helper()
	n, secs := a.settledPauses(t, map[string]string{"service": service})
	s := nodeSnapshot{n: n, secs: secs, byReason: map[string]int{}}
	if mf := a.metrics(t)["pausewatch_pause_duration_seconds"]; mf != nil {
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, map[string]string{"service": service}) {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						s.byReason[l.GetValue()] += int(m.GetHistogram().GetSampleCount())
					}
				}
			}
		}
	}
	return s
}

func startNode(t *testing.T, service string) *workload {
	t.Helper()
	if _, err := os.Stat(nodeBin); err != nil {
		t.Skipf("%s not installed", nodeBin)
	}
	return startWorkload(t, exec.Command(nodeBin, "testdata/nodechurn.js"), "OTEL_SERVICE_NAME="+service, "CHURN_SECONDS=3")
}

// runNode lets the workload churn and compares the agent's account of the
// window with the process's own PerformanceObserver: every atomic pause
// (minor + major) counted, scavenges as minor and mark-compacts as major,
// total time within 5 %.
func runNode(t *testing.T, a *agentProc, w *workload, service string) {
	t.Helper()
	before := a.nodeSnapshot(t, service)
	fmt.Fprintln(w.stdin, "go")
	if !w.out.Scan() {
		t.Fatal("node printed no account")
	}
	var acc nodeAccount
	if err := json.Unmarshal(w.out.Bytes(), &acc); err != nil {
		t.Fatalf("account %q: %v", w.out.Text(), err)
	}
	w.cmd.Wait()
	after := a.nodeSnapshot(t, service)
	n, secs := int(after.n-before.n), after.secs-before.secs
	by := map[string]int{}
	for r, c := range after.byReason {
		if d := c - before.byReason[r]; d != 0 {
			by[r] = d
		}
	}
	t.Logf("agent: %d pauses %v, %.6fs; PerformanceObserver: %d minor + %d major, %.6fs (and %d incremental, %d weak callbacks, not pauses)",
		n, by, secs, acc.Minor, acc.Major, acc.Seconds, acc.Incremental, acc.WeakCB)
	if acc.Minor+acc.Major < 10 {
		t.Fatalf("workload made only %d collections", acc.Minor+acc.Major)
	}
	if n != acc.Minor+acc.Major {
		t.Errorf("pauses: agent %d, PerformanceObserver minor+major %d", n, acc.Minor+acc.Major)
	}
	if by["scavenge"]+by["minor mark-sweep"] != acc.Minor || by["mark-compact"] != acc.Major {
		t.Errorf("by collector: agent %v, PerformanceObserver %d minor, %d major", by, acc.Minor, acc.Major)
	}
	if !within(secs, acc.Seconds, 0.05, 0) {
		t.Errorf("pause total: agent %.6fs, PerformanceObserver %.6fs (want within 5%%)", secs, acc.Seconds)
	}
}

func TestNodeCollections(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19801)
	w := startNode(t, "node-churn")
	st := a.waitTracked(t, w.pid, w.started)
	if st.Runtime != "node" || st.Method != "uprobe" {
		t.Fatalf("status %+v", st)
	}
	if took := time.Since(w.started); took > time.Second {
		t.Errorf("tracked %v after start, want within 1s", took)
	}
	runNode(t, a, w, "node-churn")
}

func TestNodeStartedBeforeAgent(t *testing.T) {
	requireRoot(t)
	w := startNode(t, "node-before")
	a := startAgent(t, 19802)
	if st := a.waitTracked(t, w.pid, time.Now()); st.Method != "uprobe" {
		t.Fatalf("status %+v", st)
	}
	runNode(t, a, w, "node-before")
}
