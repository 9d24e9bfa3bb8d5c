package source

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

func TestRequestDeltas(t *testing.T) {
	per := make([]bpfPwReqHist, 2)
	per[0].Buckets[10], per[0].SumNs, per[0].MinNs, per[0].MaxNs = 3, 300, 90, 120
	per[1].Buckets[20], per[1].SumNs, per[1].MinNs, per[1].MaxNs, per[1].BreachOther = 1, 5000, 5000, 5000, 1
	var cur, last, d agent.RequestHist
	sumCPUs(per, &cur)
	if cur.Count() != 4 || cur.Sum != 5300 || cur.Min != 90 || cur.Max != 5000 || cur.BreachOther != 1 {
		t.Fatalf("summed: %d requests, sum %v, min %v, max %v, breaches %d", cur.Count(), cur.Sum, cur.Min, cur.Max, cur.BreachOther)
	}
	if !since(&cur, &last, &d) || d.Count() != 4 {
		t.Fatalf("first read: %d new, want 4", d.Count())
	}
	last = cur
	if since(&cur, &last, &d) {
		t.Fatalf("nothing new, yet %d requests", d.Count())
	}
	per[0].Buckets[10]++
	per[0].SumNs += 100
	sumCPUs(per, &cur)
	if !since(&cur, &last, &d) || d.Count() != 1 || d.Sum != 100 || d.BreachOther != 0 {
		t.Fatalf("one more: %d new, sum %v, breaches %d", d.Count(), d.Sum, d.BreachOther)
	}
	// The entry was deleted and made again (a reused pid): all of it is new.
	last = cur
	per = per[:1]
	per[0] = bpfPwReqHist{SumNs: 7}
	per[0].Buckets[0] = 1
	sumCPUs(per, &cur)
	if !since(&cur, &last, &d) || d.Count() != 1 || d.Sum != 7 {
		t.Fatalf("after a reset: %d new, sum %v; want 1, 7ns", d.Count(), d.Sum)
	}
}

// The collect path: one entry's per-CPU values summed, and its difference
// from the last read. No allocation, whatever the request rate.
func BenchmarkRequestRead(b *testing.B) {
	per := make([]bpfPwReqHist, 64)
	for i := range per {
		for j := range per[i].Buckets {
			per[i].Buckets[j] = uint64(i * j)
		}
	}
	var cur, last, d agent.RequestHist
	b.ReportAllocs()
	for b.Loop() {
		sumCPUs(per, &cur)
		since(&cur, &last, &d)
		per[0].Buckets[5]++
	}
}

// The ring-buffer path of a request with a story.
func BenchmarkDecodeRequest(b *testing.B) {
	buf := make([]byte, requestSize)
	buf[0] = eventRequest
	binary.LittleEndian.PutUint32(buf[4:], 42)
	binary.LittleEndian.PutUint64(buf[24:], uint64(time.Millisecond))
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRecord(buf, at); err != nil {
			b.Fatal(err)
		}
	}
}
