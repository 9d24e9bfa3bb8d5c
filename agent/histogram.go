package agent

import (
	"math"
	"time"
)

// ClassicBuckets are the classic bucket boundaries (seconds) of every
// duration histogram the agent exports: dashboards and alert rules use
// them, so they never change.
var ClassicBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// NativeSchema is the native-histogram schema of request durations (and
// the scale of the OTLP exponential histogram): bucket k covers
// (2^((k-1)/8), 2^(k/8)] seconds, a factor of 1.09 per bucket.
const NativeSchema = 3

// The native buckets the kernel resolves: (2^(nativeLow/8), 2^(nativeHigh/8)]
// seconds, 0.95 µs to 256 s. Requests at or below 2^(nativeLow/8) are the
// native zero bucket (RequestZeroThreshold); above 2^(nativeHigh/8) they
// are counted in native bucket nativeHigh+1 (their classic bucket, +Inf,
// and the sum stay exact).
const (
	nativeLow  = -160
	nativeHigh = 64
)

// RequestZeroThreshold is the native zero bucket's width: 2^-20 s.
var RequestZeroThreshold = math.Exp2(nativeLow / 8)

// RequestBuckets is the number of buckets of a kernel request histogram
// (bpf/event.h PW_REQ_BUCKETS): the boundaries plus one above them all.
const RequestBuckets = 242

// RequestBounds are the kernel's bucket boundaries in nanoseconds
// (ascending): every classic boundary and every native boundary of
// NativeSchema in range, each floored to whole nanoseconds, so that a
// duration of d ns is <= a boundary b in seconds exactly when d <= the
// floored b. Bucket 0 holds durations <= RequestBounds[0], bucket i
// (RequestBounds[i-1], RequestBounds[i]], the last one the rest.
var RequestBounds = requestBounds()

// classicOf and nativeOf map each kernel bucket to the classic bucket
// (index into ClassicBuckets, len = +Inf) and native bucket index that
// contain it; nativeOf[0] is unused (the zero bucket).
var classicOf, nativeOf = bucketMaps()

func requestBounds() []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	add := func(ns uint64) {
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	for k := nativeLow; k <= nativeHigh; k++ {
		add(uint64(math.Floor(math.Exp2(float64(k)/8) * 1e9)))
	}
	for _, c := range ClassicBuckets {
		add(uint64(math.Round(c * 1e9)))
	}
	sortU64(out)
	return out
}

func sortU64(a []uint64) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func bucketMaps() (classic, native [RequestBuckets]int) {
	b := RequestBounds
	for i := range RequestBuckets {
		if i == len(b) {
			classic[i] = len(ClassicBuckets)
			native[i] = nativeHigh + 1
			continue
		}
		c := 0
		for c < len(ClassicBuckets) && b[i] > uint64(math.Round(ClassicBuckets[c]*1e9)) {
			c++
		}
		classic[i] = c
		k := nativeLow
		for k < nativeHigh && b[i] > uint64(math.Floor(math.Exp2(float64(k)/8)*1e9)) {
			k++
		}
		native[i] = k
	}
	return classic, native
}

// RequestHist is a histogram of request durations in the kernel's buckets
// (RequestBounds): cumulative in a process's table, a difference between
// two reads in a RequestCounts event.
type RequestHist struct {
	Buckets     [RequestBuckets]uint64
	Sum         time.Duration
	Min, Max    time.Duration // of the requests counted so far; 0 when none
	PauseInside time.Duration // stop-the-world time inside these requests
	// Breaches of the latency objective by cause (agent.Breach's rule,
	// applied in the kernel).
	BreachPause, BreachCPU, BreachOther uint64
}

// Count is the number of requests in h.
func (h *RequestHist) Count() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

// Add adds o to h.
func (h *RequestHist) Add(o *RequestHist) {
	for i, c := range o.Buckets {
		h.Buckets[i] += c
	}
	h.Sum += o.Sum
	h.PauseInside += o.PauseInside
	h.BreachPause += o.BreachPause
	h.BreachCPU += o.BreachCPU
	h.BreachOther += o.BreachOther
	if o.Min > 0 && (h.Min == 0 || o.Min < h.Min) {
		h.Min = o.Min
	}
	h.Max = max(h.Max, o.Max)
}

// Classic fills cum (len(ClassicBuckets)) with the cumulative count at or
// below each classic boundary and returns the total count.
func (h *RequestHist) Classic(cum []uint64) uint64 {
	clear(cum)
	var n uint64
	for i, c := range h.Buckets {
		if c == 0 {
			continue
		}
		n += c
		for j := classicOf[i]; j < len(cum); j++ {
			cum[j] += c
		}
	}
	return n
}

// Native calls f for every non-empty native bucket (NativeSchema index)
// in ascending order, with its count, after calling it once with
// zero=true for the zero bucket (durations <= RequestZeroThreshold).
func (h *RequestHist) Native(f func(index int, count uint64, zero bool)) {
	f(0, h.Buckets[0], true)
	idx, n := 0, uint64(0)
	for i := 1; i < RequestBuckets; i++ {
		c := h.Buckets[i]
		if c == 0 {
			continue
		}
		if k := nativeOf[i]; k != idx {
			if n > 0 {
				f(idx, n, false)
			}
			idx, n = k, 0
		}
		n += c
	}
	if n > 0 {
		f(idx, n, false)
	}
}

// Quantile returns the q-quantile (0..1) in seconds, interpolated linearly
// inside its bucket and clamped to [Min, Max]; 0 when h is empty.
func (h *RequestHist) Quantile(q float64) float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range h.Buckets {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := 0.0, h.Max.Seconds()
			if i > 0 {
				lo = float64(RequestBounds[i-1]) / 1e9
			}
			if i < len(RequestBounds) {
				hi = float64(RequestBounds[i]) / 1e9
			}
			v := lo + (hi-lo)*(rank-seen)/float64(c)
			return min(max(v, h.Min.Seconds()), h.Max.Seconds())
		}
		seen += float64(c)
	}
	return h.Max.Seconds()
}

// RequestHists is what a RequestCounts event carries: the requests of one
// process's port since the last read, split by whether a pause of the
// process overlapped them.
type RequestHists struct {
	Unpaused, Paused RequestHist
}

// Observe counts the request e (Type Request) as the kernel does
// (bpf/request.c count_request), breaches by Breach's rule against
// objective (0: none): the reference the kernel is tested against, and
// the way for a source without kernel aggregation to build RequestCounts.
func (h *RequestHists) Observe(e Event, objective time.Duration) {
	half := &h.Unpaused
	if e.PauseInside > 0 {
		half = &h.Paused
	}
	d := uint64(max(e.Duration, 0))
	i := 0
	for i < len(RequestBounds) && d > RequestBounds[i] {
		i++
	}
	half.Buckets[i]++
	half.Sum += time.Duration(d)
	half.PauseInside += max(e.PauseInside, 0)
	if half.Min == 0 || time.Duration(d) < half.Min {
		half.Min = time.Duration(d)
	}
	half.Max = max(half.Max, time.Duration(d))
	if breached, cause := Breach(e, objective); breached {
		switch cause {
		case "pause":
			half.BreachPause++
		case "cpu":
			half.BreachCPU++
		default:
			half.BreachOther++
		}
	}
}
