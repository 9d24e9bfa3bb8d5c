package examples

// The agent with least privilege: uid 65534 with exactly the capabilities
// the DaemonSet in deploy/kubernetes/ grants, read from the manifest so the two cannot
// drift apart. The workloads run as root, another user to the agent, as
// they would in other containers.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// daemonSetManifest is the DaemonSet as users deploy it: rendered from the
// Helm chart's default values (make manifests).
const daemonSetManifest = "../deploy/kubernetes/pausewatch.yaml"

// daemonSetCaps returns the capabilities the DaemonSet's container adds
// (it drops ALL first, so these are all it has).
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(daemonSetManifest)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name            string
							SecurityContext struct {
								Capabilities struct{ Add, Drop []string }
							} `yaml:"securityContext"`
						}
					}
				}
			}
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", daemonSetManifest, err)
		}
		if doc.Kind != "DaemonSet" {
			continue
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			if c.Name != "pausewatch" {
				continue
			}
			if !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) {
				t.Fatalf("%s drops %v, want [ALL]", daemonSetManifest, c.SecurityContext.Capabilities.Drop)
			}
			return c.SecurityContext.Capabilities.Add
		}
	}
	t.Fatalf("%s: no pausewatch container", daemonSetManifest)
	return nil
}

// setprivAs returns a setpriv prefix running a command as uid/gid 65534
// with exactly caps (Kubernetes names, e.g. "BPF") as its effective,
// permitted, inheritable, ambient and bounding sets: what a container
// that drops ALL and adds caps gets for a non-root user.
func setprivAs(t *testing.T, caps []string) []string {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(c)
	}
	return []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set}
}

// nobodyAgentBin is a copy of the agent uid 65534 can execute: the test
// binary's temporary directory is private to root.
func nobodyAgentBin(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pausewatch-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pausewatch")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// capBits maps the capabilities this test may meet to their numbers.
var capBits = map[string]uint{"DAC_READ_SEARCH": 2, "SYS_PTRACE": 19, "SYS_ADMIN": 21,
	"SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}

// checkCreds checks the running agent's uid and effective capabilities.
func checkCreds(t *testing.T, pid int, caps []string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("capability %s: unknown to this test", c)
		}
		want |= 1 << bit
	}
	var uid, capEff string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			uid = strings.Fields(v)[1] // effective
		}
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	got, err := strconv.ParseUint(capEff, 16, 64)
	if uid != "65534" || err != nil || got != want {
		t.Fatalf("agent runs as uid %s with CapEff %s, want 65534 with %#x (%v)", uid, capEff, want, caps)
	}
}

// TestLeastPrivilegeAgent runs the agent as uid 65534 with the DaemonSet's
// capabilities and checks it captures Go pauses and Python collections
// exactly as root does (the same comparisons as TestGoPausesMatchRuntime
// and TestPythonCollections). Then, with perf-PMU uprobes forced (what a
// kernel without uprobe_multi offers), that the same agent refuses to be
// ready and names what is missing.
func TestLeastPrivilegeAgent(t *testing.T) {
	requireRoot(t)
	caps := daemonSetCaps(t)
	prefix := setprivAs(t, caps)
	bin := nobodyAgentBin(t)

	t.Run("uprobe_multi", func(t *testing.T) {
		a := launchAgent(t, 19711, prefix, bin, nil)
		a.waitReady(t)
		checkCreds(t, a.cmd.Process.Pid, caps)
		mfs := a.metrics(t)
		for _, m := range mfs["pausewatch_capture_available"].GetMetric() {
			t.Logf("capture available %v: %v", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
		}
		if v := gauge(mfs, "pausewatch_capture_available", map[string]string{"method": "uprobe_multi"}); v != 1 {
			t.Fatalf("pausewatch_capture_available{method=uprobe_multi} = %v, want 1", v)
		}

		c := startChurn(t, buildChurn(t, "", false), "churn-nobody", "gc", 3)
		st := a.waitTracked(t, c.pid, c.started)
		if st.Method != "uprobe" || st.Service != "churn-nobody" {
			t.Fatalf("Go status %+v, want uprobe, service from OTEL_SERVICE_NAME", st)
		}
		compareGC(t, a, "churn-nobody", c.run(t))

		p := startPython(t, "/usr/bin/python3.11", "py-nobody")
		st = a.waitTracked(t, p.pid, p.started)
		if st.Method != "usdt" {
			t.Fatalf("Python status %+v, want usdt", st)
		}
		runPython(t, a, p, "py-nobody", "usdt")
	})

	t.Run("perf-uprobes-not-ready", func(t *testing.T) {
		a := launchAgent(t, 19712, prefix, bin, nil, "--uprobes=perf_uprobe")
		var body string
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(body, "not ready") {
			select {
			case err := <-a.done:
				// Not our agent answering, or ours gone: either way no verdict.
				t.Fatalf("agent exited: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := http.Get(a.url + "/readyz")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("/readyz 200 %q with no way to attach uprobes", body)
			}
		}
		t.Logf("/readyz: %s", body)
		if resp, err := http.Get(a.url + "/api/status"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"uprobes": "perf_uprobe"`) {
				t.Skip("this kernel lets CAP_PERFMON attach perf-PMU uprobes (it predates Linux commit ba677dbe77af)")
			}
		}
		for _, want := range []string{"no capture method for go, python", "CAP_SYS_ADMIN"} {
			if !strings.Contains(body, want) {
				t.Errorf("/readyz body %q does not say %q", body, want)
			}
		}
		mfs := a.metrics(t)
		if v := gauge(mfs, "pausewatch_capture_available", map[string]string{"method": "perf_uprobe"}); v != 0 {
			t.Errorf("pausewatch_capture_available{method=perf_uprobe} = %v, want 0", v)
		}
		if v := gauge(mfs, "pausewatch_capture_available", map[string]string{"method": "hsperfdata"}); v != 1 {
			t.Errorf("pausewatch_capture_available{method=hsperfdata} = %v, want 1", v)
		}
	})
}

// gauge returns the value of the gauge series matching want, or -1.
func gauge(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	if mf := mfs[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// TestGoPythonPerfUprobes checks the attach path of kernels without
// uprobe_multi (one perf-PMU uprobe per address), forced here as root:
// Go pauses and Python USDT collections (semaphores) as exact as with
// uprobe_multi links.
func TestGoPythonPerfUprobes(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19713, "--uprobes=perf_uprobe")
	mfs := a.metrics(t)
	if v := gauge(mfs, "pausewatch_capture_available", map[string]string{"method": "perf_uprobe"}); v != 1 {
		t.Fatalf("pausewatch_capture_available{method=perf_uprobe} = %v, want 1 as root", v)
	}
	c := startChurn(t, buildChurn(t, "", false), "churn-perf", "gc", 2)
	if st := a.waitTracked(t, c.pid, c.started); st.Method != "uprobe" {
		t.Fatalf("Go status %+v", st)
	}
	compareGC(t, a, "churn-perf", c.run(t))
	p := startPython(t, "/usr/bin/python3.11", "py-perf")
	if st := a.waitTracked(t, p.pid, p.started); st.Method != "usdt" {
		t.Fatalf("Python status %+v", st)
	}
	runPython(t, a, p, "py-perf", "usdt")
}
