package source

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
)

// testdata/hsperfdata-jdk17-g1 is /tmp/hsperfdata_root/<pid> of Debian's
// OpenJDK 17 running examples/testdata/JavaChurn.java with G1.
func readPerfFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/hsperfdata-jdk17-g1")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseHsperfdataReal(t *testing.T) {
	d, err := parseHsperfdata(readPerfFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.longs) < 100 {
		t.Errorf("%d long counters, a JDK 17 has ~150", len(d.longs))
	}
	c, err := readPerfCounters(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.freq != 1_000_000_000 || c.safepoints <= 0 || c.stopped <= 0 || c.gcCount <= 0 {
		t.Errorf("counters %+v", c)
	}
	var names []string
	for _, col := range c.collectors {
		names = append(names, col.name)
	}
	if !strings.Contains(strings.Join(names, "|"), "G1 young collection pauses") {
		t.Errorf("collector names %q", names)
	}
	if !strings.HasPrefix(d.strings["java.property.java.version"], "17.") {
		t.Errorf("java.property.java.version = %q", d.strings["java.property.java.version"])
	}
}

func TestParseHsperfdataBad(t *testing.T) {
	good := readPerfFixture(t)
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          good[:16],
		"bad magic":      mut(func(b []byte) { b[0] = 0 }),
		"version 3":      mut(func(b []byte) { b[5] = 3 }),
		"not accessible": mut(func(b []byte) { b[7] = 0 }),
		"entry offset":   mut(func(b []byte) { binary.LittleEndian.PutUint32(b[24:], 1<<30) }),
		"entry count":    mut(func(b []byte) { binary.LittleEndian.PutUint32(b[28:], 1<<30) }),
		"entry length":   mut(func(b []byte) { binary.LittleEndian.PutUint32(b[32:], 3) }),
		"truncated":      good[:len(good)/8],
	} {
		if _, err := parseHsperfdata(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParseHsperfdata(f *testing.F) {
	good := readPerfFixture(f)
	f.Add(good)
	f.Add(good[:4096])
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseHsperfdata(b); err == nil {
			readPerfCounters(d)
		}
	})
}

func TestPerfEvents(t *testing.T) {
	p := agent.Process{PID: 7, Runtime: "jvm", Method: MethodHsperfdata, Service: "svc"}
	base := perfCounters{safepoints: 100, stopped: 5e8, gcCount: 40, gcTime: 4e8, freq: 1e9,
		collectors: map[string]collector{
			"0": {name: "G1 young collection pauses", invocations: 30, lastEntry: 100, lastExit: 200, hasEntryExit: true},
			"1": {name: "G1 full collection pauses", invocations: 10, lastEntry: 50, lastExit: 90, hasEntryExit: true},
		}}
	next := func(f func(c *perfCounters)) perfCounters {
		c := base
		c.collectors = map[string]collector{}
		for k, v := range base.collectors {
			c.collectors[k] = v
		}
		f(&c)
		return c
	}
	now := time.Unix(100, 0)
	for _, tc := range []struct {
		name string
		cur  perfCounters
		want []agent.Event
	}{
		{"nothing happened", base, nil},
		{"one young collection: totals and its exact duration", next(func(c *perfCounters) {
			c.safepoints, c.stopped, c.gcCount, c.gcTime, c.lastCause = 101, 5e8+3e6, 41, 4e8+3e6, "G1 Evacuation Pause"
			c.collectors["0"] = collector{name: "G1 young collection pauses", invocations: 31, lastEntry: 1000, lastExit: 3_001_000, hasEntryExit: true}
		}), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "gc", Count: 1, Duration: 3 * time.Millisecond, Start: now},
			{Type: agent.PauseSample, Process: p, Kind: "gc", Reason: "G1 Evacuation Pause", Duration: 3 * time.Millisecond, Start: now},
		}},
		{"two collections and a non-GC safepoint: totals only", next(func(c *perfCounters) {
			c.safepoints, c.stopped, c.gcCount, c.gcTime = 103, 5e8+7e6, 42, 4e8+6e6
			c.collectors["0"] = collector{name: "G1 young collection pauses", invocations: 32, lastEntry: 1, lastExit: 2, hasEntryExit: true}
		}), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "gc", Count: 2, Duration: 6 * time.Millisecond, Start: now},
			{Type: agent.PauseTotals, Process: p, Kind: "other", Count: 1, Duration: time.Millisecond, Start: now},
		}},
		{"collections only: their totals take the sync and cleanup time too", next(func(c *perfCounters) {
			c.safepoints, c.stopped, c.gcCount, c.gcTime = 102, 5e8+5e6, 42, 4e8+4e6
		}), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "gc", Count: 2, Duration: 5 * time.Millisecond, Start: now},
		}},
		{"names from the file are sanitised (any process can write it); a cause of nothing gives the collector's name", next(func(c *perfCounters) {
			c.safepoints, c.stopped, c.gcCount, c.gcTime, c.lastCause = 101, 5e8+3e6, 41, 4e8+3e6, "\x1b\u202e\n"
			c.collectors["0"] = collector{name: "G1\xff young", invocations: 31, lastEntry: 1000, lastExit: 3_001_000, hasEntryExit: true}
		}), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "gc", Count: 1, Duration: 3 * time.Millisecond, Start: now},
			{Type: agent.PauseSample, Process: p, Kind: "gc", Reason: "G1\uFFFD young", Duration: 3 * time.Millisecond, Start: now},
		}},
		{"counters went back (new JVM): nothing", next(func(c *perfCounters) { c.safepoints = 3 }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := perfEvents(p, base, tc.cur, now)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d events %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestJavaService(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"java\x00-Xmx64m\x00Server.java\x00", "Server"},
		{"java\x00-cp\x00/app/lib/*\x00com.example.Main\x00--port\x008080\x00", "Main"},
		{"/usr/bin/java\x00-XX:+UseG1GC\x00-jar\x00/opt/app/billing-1.2.jar\x00", "billing-1.2"},
		{"java\x00--module-path\x00mods\x00-m\x00com.example/com.example.App\x00", "App"},
		{"java\x00-version\x00", ""},
	} {
		if got := javaService([]byte(tc.cmd)); got != tc.want {
			t.Errorf("javaService(%q) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

func TestJVMReason(t *testing.T) {
	for _, tc := range []struct {
		flags        uint32
		op           string
		reason, kind string
	}{
		{jvmReasonGC, "G1CollectForAllocation", "G1CollectForAllocation", "gc"},
		{jvmReasonGC | jvmReasonFull, "G1CollectFull", "G1CollectFull", "gc"},
		{0, "Cleanup", "Cleanup", "other"},
		{0, "", "safepoint", "other"},
		// Read from the JVM's memory: sanitised, and one that sanitises to
		// nothing is an unnamed safepoint.
		{0, "Op\x1b[2J\xff", "Op[2J\uFFFD", "other"},
		{0, "\n\u202e", "safepoint", "other"},
	} {
		r, k := jvmReason(tc.flags, tc.op)
		if r != tc.reason || k != tc.kind {
			t.Errorf("jvmReason(%d, %q) = %q/%q", tc.flags, tc.op, r, k)
		}
	}
}
