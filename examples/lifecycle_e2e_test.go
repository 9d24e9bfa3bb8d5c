package examples

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// resources reads pausewatch_resource_used by resource.
func (a *agentProc) resources(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	if mf := a.metrics(t)["pausewatch_resource_used"]; mf != nil {
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestShortLivedProcessesReleaseResources runs more sequential Python
// processes than the USDT spec map has slots for two probes each (1,024
// slots; the bug this guards against stopped all capture after ~550
// processes). Each one waits until the agent lists it; the last ones must
// be captured like the first, and every per-process resource must come
// back to its baseline once they are gone.
func TestShortLivedProcessesReleaseResources(t *testing.T) {
	requireRoot(t)
	const debian = "/usr/bin/python3.11"
	if _, err := os.Stat(debian); err != nil {
		t.Skipf("%s not installed", debian)
	}
	pyenv := pyenvPython(t)
	a := startAgent(t, 19496)
	base := a.resources(t)
	if _, ok := base["usdt_spec_slots"]; !ok {
		t.Fatalf("no usdt_spec_slots in pausewatch_resource_used: %v", base)
	}
	const n = 600
	start := time.Now()
	for i := range n {
		interp, method := debian, "usdt"
		if i%10 == 9 {
			interp, method = pyenv, "uprobe"
		}
		service := "short-" + strconv.Itoa(i)
		w := startWorkload(t, exec.Command(interp, "testdata/pyshort.py", "3"), "OTEL_SERVICE_NAME="+service)
		st := a.waitTracked(t, w.pid, w.started)
		if st.Method != method {
			t.Fatalf("process %d (%s): method %q (%s), want %s", i, interp, st.Method, st.Why, method)
		}
		fmt.Fprintln(w.stdin, "go")
		if !w.out.Scan() {
			t.Fatalf("process %d printed no count", i)
		}
		seen, _ := strconv.Atoi(w.out.Text())
		w.cmd.Wait()
		// The last ones are captured like the first: every collection.
		if i < 5 || i >= n-5 {
			got, _ := a.settledPauses(t, map[string]string{"service": service})
			if int(got) != seen {
				t.Errorf("process %d (%s): agent %v collections, gc.callbacks %d", i, method, got, seen)
			}
		}
	}
	t.Logf("%d processes in %v", n, time.Since(start).Round(time.Millisecond))

	// Exits are handled as they come; allow the agent a few seconds.
	var now map[string]float64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		now = a.resources(t)
		if now["usdt_spec_slots"] == base["usdt_spec_slots"] && now["tracked_processes"] == base["tracked_processes"] &&
			now["probe_links"] == base["probe_links"] {
			break
		}
	}
	t.Logf("resources: baseline %v, after %v", base, now)
	for _, r := range []string{"usdt_spec_slots", "tracked_processes", "probe_links", "attached_files"} {
		if now[r] > base[r] {
			t.Errorf("%s: %v after the processes exited, baseline %v", r, now[r], base[r])
		}
	}
}
