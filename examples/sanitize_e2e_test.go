package examples

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// pyCollect says ready, waits for a line, makes its collections, says done,
// and stays (so the agent still lists it) until stdin closes.
const pyCollect = `import gc, sys
print("ready", flush=True)
sys.stdin.readline()
for _ in range(%d): gc.collect()
print("done", flush=True)
sys.stdin.readline()
`

// Processes choose their own service names, and any bytes at all can be one
// (issue 9: OTEL_SERVICE_NAME=$'bad\xff' made the agent panic). The agent
// keeps running, counts their pauses under the sanitised names, its scrape
// passes promtool, and its JSON APIs and `watch` carry the sanitised names.
func TestHostileServiceNames(t *testing.T) {
	requireRoot(t)
	const python = "/usr/bin/python3.11" // Debian's, with USDT probes
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s not installed", python)
	}
	const collections = 200
	a := startAgent(t, 19641)

	long := "long-" + strings.Repeat("x", 10_000)
	cases := []struct{ name, raw, want string }{
		{"invalid-utf8", "bad\xff", "bad\uFFFD"},
		{"newline-quotes-braces", "svc\"}\n{x=\"1\"} 7\n# EOF", `svc"}{x="1"} 7# EOF`},
		{"esc-bidi", "\x1b[31mred\u202eder\x1b[0m", "[31mredder[0m"},
		{"10kB", long, long[:128]},
	}

	// Follow /api/events from before the first collection.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/events: %v", err)
	}
	defer resp.Body.Close()
	stream := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body) // until cancel
		stream <- b
	}()
	// And `pausewatch watch`, which prints them to a terminal.
	var watchOut bytes.Buffer
	watch := exec.CommandContext(ctx, agentBin, "watch", "--agent", a.url)
	watch.Stdout = &watchOut
	if err := watch.Start(); err != nil {
		t.Fatalf("start watch: %v", err)
	}

	byPID := map[uint32]string{}
	var procs []*workload
	for _, c := range cases {
		w := startWorkload(t, exec.Command(python, "-c", fmt.Sprintf(pyCollect, collections)), "OTEL_SERVICE_NAME="+c.raw)
		st := a.waitTracked(t, w.pid, w.started)
		if st.Service != c.want || st.Runtime != "python" {
			t.Errorf("%s: /api/processes has %q (%s), want %q (python)", c.name, st.Service, st.Runtime, c.want)
		}
		byPID[w.pid] = c.want
		procs = append(procs, w)
	}
	// A Go service too: its pauses come through the uprobes, not USDT.
	goWant := "go\uFFFD{x}"
	g := startChurn(t, buildChurn(t, "", false), "go\xfe\n{x}", "gc", 1)
	if st := a.waitTracked(t, g.pid, g.started); st.Service != goWant {
		t.Errorf("go: /api/processes has %q, want %q", st.Service, goWant)
	}
	byPID[g.pid] = goWant

	for _, w := range procs {
		fmt.Fprintln(w.stdin, "go")
	}
	acc := g.run(t)
	for i, w := range procs {
		if !w.out.Scan() || w.out.Text() != "done" {
			t.Fatalf("%s: python said %q, not done", cases[i].name, w.out.Text())
		}
	}

	for _, c := range cases {
		n, _ := a.settledPauses(t, map[string]string{"service": c.want})
		t.Logf("%s: %v pauses under %q", c.name, n, c.want)
		if n < collections {
			t.Errorf("%s: %v pauses counted under %q, want at least %d", c.name, n, c.want, collections)
		}
	}
	compareGC(t, a, goWant, acc)

	resp2, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	for _, bad := range []string{"\xff", "\xfe", "\x1b", "\u202e", "bad\n"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("/metrics holds %q", bad)
		}
	}
	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			t.Skip("promtool not installed (apt-get install prometheus): exposition not linted")
		}
		lint := exec.Command(promtool, "check", "metrics")
		lint.Stdin = bytes.NewReader(body)
		if out, err := lint.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})

	// The live stream: every pause of these processes under its sanitised
	// name, nothing a terminal would obey.
	time.Sleep(300 * time.Millisecond) // the stream flushes every 200 ms
	cancel()
	events := <-stream
	watch.Wait()
	seen := map[uint32]int{}
	sc := bufio.NewScanner(bytes.NewReader(events))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			PID     uint32 `json:"pid"`
			Service string `json:"service"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("/api/events line %q: %v", sc.Text(), err)
		}
		if want, ok := byPID[e.PID]; ok {
			seen[e.PID]++
			if e.Service != want {
				t.Errorf("/api/events: pid %d as %q, want %q", e.PID, e.Service, want)
			}
		}
	}
	for pid, want := range byPID {
		if seen[pid] == 0 {
			t.Errorf("/api/events: no pause of pid %d (%q)", pid, want)
		}
	}
	for _, bad := range []string{"\x1b", "\u202e", "\xff"} {
		if bytes.Contains(events, []byte(bad)) {
			t.Errorf("/api/events holds %q", bad)
		}
		if bytes.Contains(watchOut.Bytes(), []byte(bad)) {
			t.Errorf("watch printed %q", bad)
		}
	}
	// watch prints the first 20 characters of the service.
	if !strings.Contains(watchOut.String(), "[31mredder[0m") || !strings.Contains(watchOut.String(), "bad\uFFFD") {
		t.Errorf("watch did not print the sanitised services:\n%.2000s", watchOut.String())
	}

	for _, w := range procs {
		w.stdin.Close()
	}
	if r, err := http.Get(a.url + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("agent not healthy after the hostile names: %v", err)
	}
}
