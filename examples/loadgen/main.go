// Command loadgen is an open-loop HTTP load generator for the examples: it
// sends requests at a fixed rate whatever the server does, and measures
// each one from its intended send time, so a server that stalls (a
// stop-the-world pause) shows the stall in full instead of hiding it by
// slowing the client down (coordinated omission).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

type result struct {
	Sent     int64   `json:"sent"`
	OK       int64   `json:"ok"`
	Errors   int64   `json:"errors"`
	Slow     int64   `json:"slow"` // slower than -slow
	P50      float64 `json:"p50_seconds"`
	P99      float64 `json:"p99_seconds"`
	P999     float64 `json:"p999_seconds"`
	Max      float64 `json:"max_seconds"`
	Mean     float64 `json:"mean_seconds"`
	Achieved float64 `json:"achieved_rate"`
	// Every latency recorded (µs), with -histogram: for comparisons at
	// any quantile (the request e2e tests' server <= client check).
	Histogram *hdrhistogram.Snapshot `json:"histogram,omitempty"`
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/", "target URL (loopback only)")
	rate := flag.Float64("rate", 200, "requests per second, fixed")
	dur := flag.Duration("duration", 5*time.Second, "how long to send")
	conns := flag.Int("conns", 32, "keep-alive connections (one request in flight on each)")
	slow := flag.Duration("slow", 0, "count requests slower than this (0: none)")
	withHist := flag.Bool("histogram", false, "include the whole latency histogram (µs) in the output")
	flag.Parse()
	if *rate <= 0 || *conns <= 0 || *dur <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -rate, -conns and -duration must be positive")
		os.Exit(2)
	}

	type job struct{ intended time.Time }
	jobs := make(chan job, int(*rate*dur.Seconds())+1)
	var mu sync.Mutex
	h := hdrhistogram.New(1, 60_000_000, 3) // µs, 3 significant digits
	var res result
	var wg sync.WaitGroup
	for range *conns {
		// One transport per worker: one connection each, kept alive.
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, *url, nil)
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(j.intended)
				mu.Lock()
				if err != nil || resp.StatusCode != http.StatusOK {
					res.Errors++
				} else {
					res.OK++
					h.RecordValue(max(lat.Microseconds(), 1))
					if *slow > 0 && lat > *slow {
						res.Slow++
					}
				}
				mu.Unlock()
			}
		}()
	}

	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= *dur {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		jobs <- job{intended: at}
		res.Sent++
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	sec := func(us int64) float64 { return float64(us) / 1e6 }
	res.P50, res.P99, res.P999 = sec(h.ValueAtQuantile(50)), sec(h.ValueAtQuantile(99)), sec(h.ValueAtQuantile(99.9))
	res.Max, res.Mean = sec(h.Max()), h.Mean()/1e6
	res.Achieved = float64(res.OK) / elapsed.Seconds()
	if *withHist {
		res.Histogram = h.Export()
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
