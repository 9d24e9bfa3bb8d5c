package examples

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchQuick runs `make bench`'s program in its quick mode: the
// harness must produce every figure, each sane (positive where a cost
// cannot be zero). Budgets are not asserted: a few seconds on a loaded
// machine cannot judge them.
func TestBenchQuick(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"wrk", "perl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install %s)", tool, tool)
		}
	}
	bin := filepath.Join(buildDir, "bench")
	if out, err := exec.Command("go", "build", "-o", bin, "./bench").CombinedOutput(); err != nil {
		t.Fatalf("build bench: %v\n%s", err, out)
	}
	js := filepath.Join(t.TempDir(), "figures.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-quick", "-root", "..", "-json", js)
	cmd.Stderr = os.Stderr
	table, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench -quick: %v\n%s", err, table)
	}
	t.Logf("%s", table)
	if !strings.Contains(string(table), "| figure | value | budget | verdict |") {
		t.Errorf("no table in the output")
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var figs []struct {
		Name  string  `json:"name"`
		Value float64 `json:"value"`
		Unit  string  `json:"unit"`
	}
	if err := json.Unmarshal(b, &figs); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range figs {
		got[f.Name] = f.Value
	}
	for _, c := range []struct {
		prefix string
		lo, hi float64
	}{
		// µs, net of the agent's background, which a short window on a
		// loaded machine may overestimate: sane, not necessarily positive.
		{"Go: agent CPU per request", -10_000, 10_000},
		{"Go: BPF per request", -1000, 1000},
		{"Go: agent CPU with no request of ours", 0, 200}, // % of a core
		{"Go: request rate the cost was measured at", 1, 1e7},
		{"Go: requests counted by the agent vs the client", -50, 50}, // %: the agent saw requests
		{"agent RSS, peak under the Go load", 1, 1 << 20},
		{"the same at 10k req/s and 100 pauses/s", -1e4, 1e4},
		{"untracked process, pipe write+read loop: added CPU per syscall", -1e4, 1e4},
		{"untracked process, socket write+read loop: agent BPF time per syscall", 1, 1e4}, // ns: the sock: programs ran
		{"Go runtime.ReadMemStats loop at", 0, 0},                                         // nothing uncounted
		{"pausewatch per Go pause: BPF", 1, 1e6},
		{"discovery: 20 processes started at once, all tracked after", 0.001, 120},
		{"agent RSS with 20 more processes tracked", 1, 1 << 20},
	} {
		found := false
		for name, v := range got {
			if !strings.HasPrefix(name, c.prefix) {
				continue
			}
			found = true
			if v < c.lo || v > c.hi {
				t.Errorf("%s = %v, want %v..%v", name, v, c.lo, c.hi)
			}
		}
		if !found {
			t.Errorf("no figure %q", c.prefix)
		}
	}
}
