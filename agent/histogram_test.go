package agent

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestRequestBounds(t *testing.T) {
	b := RequestBounds
	if len(b) != RequestBuckets-1 {
		t.Fatalf("%d boundaries, the kernel's table holds %d (bpf/event.h PW_REQ_BOUNDS)", len(b), RequestBuckets-1)
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			t.Fatalf("boundaries not ascending at %d: %d, %d", i, b[i-1], b[i])
		}
	}
	for _, c := range ClassicBuckets {
		found := false
		for _, x := range b {
			found = found || x == uint64(math.Round(c*1e9))
		}
		if !found {
			t.Errorf("classic boundary %v s missing", c)
		}
	}
}

// Every duration lands in the classic bucket and the native bucket that
// client_golang's own histogram would put it in: both forms are exact.
func TestRequestHistExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	durs := []time.Duration{1000, 9999, 10_000, 10_001, 250 * time.Millisecond, time.Second, time.Second + 1, 10 * time.Second, 100 * time.Second}
	for range 20000 {
		// Log-uniform over 1 µs .. 200 s.
		durs = append(durs, time.Duration(math.Exp(math.Log(1e3)+r.Float64()*(math.Log(2e11)-math.Log(1e3)))))
	}
	for _, d := range durs {
		var h RequestHists
		h.Observe(Event{Type: Request, Duration: d}, 0)
		cum := make([]uint64, len(ClassicBuckets))
		h.Unpaused.Classic(cum)
		v := d.Seconds()
		for i, le := range ClassicBuckets {
			want := uint64(0)
			if v <= le {
				want = 1
			}
			if cum[i] != want {
				t.Fatalf("%v: classic le=%v holds %d, want %d", d, le, cum[i], want)
			}
		}
		// client_golang's index for schema 3: frexp, as in its histogram.go.
		frac, exp := math.Frexp(v)
		want := sort8(frac) + (exp-1)*8
		var got int
		h.Unpaused.Native(func(idx int, c uint64, zero bool) {
			if c > 0 && !zero {
				got = idx
			}
		})
		if got != want {
			t.Fatalf("%v: native bucket %d, want %d", d, got, want)
		}
	}
}

// sort8 is client_golang's schema-3 key within an octave: the first k
// with frac <= 2^(k/8-1) (its nativeHistogramBounds), 8 past them.
func sort8(frac float64) int {
	for k := 0; k < 8; k++ {
		if frac <= math.Exp2(float64(k)/8-1) {
			return k
		}
	}
	return 8
}

func TestRequestHistQuantile(t *testing.T) {
	var h RequestHists
	for i := 1; i <= 1000; i++ {
		h.Observe(Event{Type: Request, Duration: time.Duration(i) * time.Millisecond}, 0)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		got, want := h.Unpaused.Quantile(q), q
		if math.Abs(got-want)/want > 0.09 { // one native bucket
			t.Errorf("q%v = %v, want %v within a bucket", q, got, want)
		}
	}
	if h.Unpaused.Min != time.Millisecond || h.Unpaused.Max != time.Second {
		t.Errorf("min %v max %v", h.Unpaused.Min, h.Unpaused.Max)
	}
}

// The collect path: a series' histograms into classic and native buckets.
func BenchmarkRequestHistExport(b *testing.B) {
	var h RequestHists
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		h.Observe(Event{Type: Request, Duration: time.Duration(1e5 + r.Float64()*1e8)}, 0)
	}
	cum := make([]uint64, len(ClassicBuckets))
	var n uint64
	b.ReportAllocs()
	for b.Loop() {
		h.Unpaused.Classic(cum)
		h.Unpaused.Native(func(_ int, c uint64, _ bool) { n += c })
	}
	_ = n
}
