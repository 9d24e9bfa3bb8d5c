package main

// This program is also its own Go workload, run as a child with
// -helper: the agent tracks it like any Go process.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"
)

// goAccount is the runtime's own account of the pauses a memstats helper
// made in its window (runtime/metrics, /sched/pauses/total/*: Go 1.22+).
type goAccount struct {
	Pauses  uint64  `json:"pauses"` // GC and other stop-the-world pauses
	Calls   int     `json:"calls"`  // ReadMemStats calls
	Seconds float64 `json:"seconds"`
}

// runHelper runs helper mode and exits:
//   - memstats: says "ready <pid>", waits for a line on stdin, calls
//     runtime.ReadMemStats (one stop-the-world pause each) at HELPER_RATE
//     per second (0: back to back) for HELPER_SECONDS, prints a goAccount
//     as one JSON line;
//   - idle: says "ready <pid>" and waits for stdin to close.
func runHelper(mode string) {
	fmt.Println("ready", os.Getpid())
	in := bufio.NewReader(os.Stdin)
	switch mode {
	case "idle":
		in.ReadString('\n')
		os.Exit(0)
	case "memstats":
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", mode)
		os.Exit(2)
	}
	rate, _ := strconv.ParseFloat(os.Getenv("HELPER_RATE"), 64)
	secs, _ := strconv.ParseFloat(os.Getenv("HELPER_SECONDS"), 64)
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(1)
	}
	before := pauses()
	start := time.Now()
	deadline := start.Add(time.Duration(secs * float64(time.Second)))
	next := start
	calls := 0
	var ms runtime.MemStats
	for now := start; now.Before(deadline); now = time.Now() {
		if rate > 0 {
			next = next.Add(time.Duration(float64(time.Second) / rate))
			if d := next.Sub(now); d > 0 {
				time.Sleep(d)
			}
		}
		runtime.ReadMemStats(&ms)
		calls++
	}
	el := time.Since(start).Seconds()
	// The runtime records a pause just after the return of
	// startTheWorldWithSema that the agent sees: let the last one land.
	time.Sleep(100 * time.Millisecond)
	json.NewEncoder(os.Stdout).Encode(goAccount{Pauses: pauses() - before, Calls: calls, Seconds: el})
	in.ReadString('\n')
	os.Exit(0)
}

// pauses is how many stop-the-world pauses the runtime has made so far.
func pauses() uint64 {
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}, {Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() != metrics.KindFloat64Histogram {
			continue
		}
		for _, c := range x.Value.Float64Histogram().Counts {
			n += c
		}
	}
	return n
}
