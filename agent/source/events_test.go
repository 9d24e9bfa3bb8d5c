package source

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

// pauseRecord is a pause record as bpf/golang.c or bpf/python.c writes it.
func pauseRecord(runtime uint8, pid, reason uint32, flags uint8) []byte {
	b := make([]byte, eventSize)
	b[0], b[1], b[2] = eventPause, runtime, flags
	le := binary.LittleEndian
	le.PutUint32(b[4:], pid)
	le.PutUint32(b[8:], pid)
	le.PutUint32(b[12:], reason)
	le.PutUint64(b[16:], uint64(time.Second))
	le.PutUint64(b[24:], uint64(40*time.Microsecond))
	le.PutUint64(b[32:], uint64(5*time.Microsecond))
	le.PutUint64(b[40:], 12)
	le.PutUint64(b[88:], uint64(30*time.Microsecond))
	return b
}

// The event loop's work per pause of a tracked process: decode the
// record, turn it into an Event, count its delay. No allocation. (The
// clock is read once per batch of records, not here.)
func BenchmarkPauseRecord(b *testing.B) {
	for _, tt := range []struct {
		name string
		info *fileInfo
		rec  []byte
	}{
		{"go", &fileInfo{rt: goRuntime{}, plan: &goBinary{minor: 24}, method: MethodUprobe},
			pauseRecord(runtimeGo, 42, 9, 0)},
		{"python", &fileInfo{rt: pythonRuntime{}, plan: &pyBinary{method: MethodUSDT}, method: MethodUSDT},
			pauseRecord(runtimePython, 42, 0, eventFlagAux|eventFlagCPU)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s := New(Config{ProcFS: b.TempDir()})
			p := &process{info: tt.info}
			p.Process = agent.Process{PID: 42, StartTime: 7, Runtime: tt.info.rt.Name(), Method: tt.info.method, Service: "svc"}
			at := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				r, err := decodeRecord(tt.rec, at)
				if err != nil {
					b.Fatal(err)
				}
				ev, ok := s.pauseEvent(p, &r.e)
				if !ok || ev.Reason == "" {
					b.Fatalf("pauseEvent = %+v, %v", ev, ok)
				}
				s.delay.observe(50 * time.Microsecond)
			}
		})
	}
}

// The delay histogram's precomputed bounds put every delay where the
// bounds EventDelay reports say it belongs.
func TestDelayBounds(t *testing.T) {
	for i := range delayBuckets {
		b := time.Duration(delayBound(i) * 1e9)
		for _, d := range []time.Duration{b - 1, b, b + 1} {
			var h delayHist
			h.observe(d)
			want := 0
			for want < delayBuckets && d.Seconds() > delayBound(want) {
				want++
			}
			if h.counts[want].Load() != 1 {
				t.Errorf("observe(%v) missed bucket %d (bound %gs)", d, want, delayBound(want))
			}
		}
	}
}
