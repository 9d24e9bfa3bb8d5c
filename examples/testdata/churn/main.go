// Command churn is the integration tests' workload: it waits for "go" on
// stdin (so the agent is attached first), churns the heap (or stops the
// world some other way) for a while, and prints its own runtime/metrics
// account of the pauses it made in that window as one JSON line.
//
// It has its own go.mod (go 1.17) so the tests can build it with older
// toolchains (GOTOOLCHAIN=go1.17.13 ... go1.21.13).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"
)

type account struct {
	GCCount    uint64  `json:"gc_count"`
	GCSeconds  float64 `json:"gc_seconds"`
	OtherCount uint64  `json:"other_count"`
	OtherSecs  float64 `json:"other_seconds"`
	Calls      int     `json:"calls"`
	GoVersion  string  `json:"go_version"`
	Metric     string  `json:"metric"`
	// Over the whole life of the process, not the window: every pause
	// since the runtime started, and the seconds from main's package
	// initialisation (a few ms after exec) to this account.
	LifePauseSeconds float64 `json:"life_pause_seconds"`
	LifeSeconds      float64 `json:"life_seconds"`
	// The runtime's GC CPU over its life, /cpu/classes/gc/total:cpu-seconds
	// (Go 1.20+; 0 before): updated at the end of each GC cycle.
	GCCPUSeconds float64 `json:"gc_cpu_seconds"`
}

// started is when the process began, as near as Go code can see it.
var started = time.Now()

var sink [][]byte

func main() {
	secs, _ := strconv.ParseFloat(os.Getenv("CHURN_SECONDS"), 64)
	if secs == 0 {
		secs = 3
	}
	mode := os.Getenv("CHURN_MODE")
	fmt.Println("ready", os.Getpid())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(1)
	}

	gcName, otherName := "/sched/pauses/total/gc:seconds", "/sched/pauses/total/other:seconds"
	if !has(gcName) {
		// Go 1.17-1.21: GC pauses only; no account of the others.
		gcName, otherName = "/gc/pauses:seconds", ""
	}
	before := read(gcName, otherName)
	if port := os.Getenv("CHURN_SERVE_PORT"); port != "" {
		// Requests for the agent to measure; the test sends them.
		serve("127.0.0.1:" + port)
	}
	calls := 0
	sink = make([][]byte, 256)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for i := 0; time.Now().Before(deadline); i++ {
		switch mode {
		case "memstats":
			// Each ReadMemStats stops the world (reason "read mem stats").
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			calls++
			time.Sleep(time.Millisecond)
		case "memstats-flood":
			// As fast as it goes: past the agent's pause budget.
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			calls++
		default:
			sink[i%len(sink)] = make([]byte, 32<<10)
		}
	}
	// Nothing allocates now: let a GC cycle in flight at the deadline
	// finish before reading, so each pause is in both accounts or in
	// neither. The runtime records a pause just before (mark termination,
	// before Go 1.21) or just after (the others) the RET of
	// startTheWorldWithSema that the agent counts, and other Ps already
	// run in between; read right away, the two differ by one now and then.
	time.Sleep(100 * time.Millisecond)
	after := read(gcName, otherName)
	a := account{
		GCCount: after.gcCount - before.gcCount, GCSeconds: after.gcSecs - before.gcSecs,
		OtherCount: after.otherCount - before.otherCount, OtherSecs: after.otherSecs - before.otherSecs,
		Calls: calls, GoVersion: runtime.Version(), Metric: gcName,
		LifePauseSeconds: after.gcSecs + after.otherSecs, LifeSeconds: time.Since(started).Seconds(),
	}
	if name := "/cpu/classes/gc/total:cpu-seconds"; has(name) {
		s := []metrics.Sample{{Name: name}}
		metrics.Read(s)
		a.GCCPUSeconds = s[0].Value.Float64()
	}
	json.NewEncoder(os.Stdout).Encode(a)
	if os.Getenv("CHURN_WAIT") != "" {
		// Stay, idle, until stdin closes: the agent reads the process's
		// memory after the account.
		io.Copy(io.Discard, os.Stdin)
	}
}

func has(name string) bool {
	for _, d := range metrics.All() {
		if d.Name == name {
			return true
		}
	}
	return false
}

type snapshot struct {
	gcCount, otherCount uint64
	gcSecs, otherSecs   float64
}

func read(gcName, otherName string) snapshot {
	samples := []metrics.Sample{{Name: gcName}}
	if otherName != "" {
		samples = append(samples, metrics.Sample{Name: otherName})
	}
	metrics.Read(samples)
	var s snapshot
	s.gcCount, s.gcSecs = sum(samples[0].Value.Float64Histogram())
	if otherName != "" {
		s.otherCount, s.otherSecs = sum(samples[1].Value.Float64Histogram())
	}
	return s
}

// sum returns the count and the total of a runtime/metrics histogram,
// each bucket's observations taken at the bucket's midpoint (the runtime's
// buckets are ~12 % wide, so the total is good to a few percent).
func sum(h *metrics.Float64Histogram) (uint64, float64) {
	var n uint64
	var t float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		if math.IsInf(lo, -1) {
			lo = 0
		}
		if math.IsInf(hi, 1) {
			hi = lo
		}
		n += c
		t += float64(c) * (lo + hi) / 2
	}
	return n, t
}

// serve answers HTTP on addr.
func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
}
