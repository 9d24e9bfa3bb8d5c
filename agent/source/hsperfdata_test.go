package source

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
		{"the time of a collection counted at the last poll (which fell inside it): no pause, its time", next(func(c *perfCounters) {
			c.stopped, c.gcTime = 5e8+480e6, 4e8+470e6
		}), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "gc", Count: 0, Duration: 480 * time.Millisecond, Start: now},
		}},
		{"the time of another safepoint counted at the last poll", next(func(c *perfCounters) { c.stopped = 5e8 + 2e6 }), []agent.Event{
			{Type: agent.PauseTotals, Process: p, Kind: "other", Count: 0, Duration: 2 * time.Millisecond, Start: now},
		}},
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

// Lines from /proc/<pid>/maps of real JVMs (OpenJDK 17, Debian).
const jvmMapsHead = "55d4c5a3e000-55d4c5a3f000 r--p 00000000 fe:00 1837346                    /usr/lib/jvm/java-17-openjdk-amd64/bin/java\n" +
	"7f3b74e00000-7f3b75a80000 r-xp 00200000 fe:00 1837501                    /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n"

func TestFindPerfMapping(t *testing.T) {
	own := "7f3b75172000-7f3b7517a000 rw-s 00000000 fe:00 9986049                    /tmp/hsperfdata_root/1\n"
	for _, tc := range []struct {
		name, maps, nspid string
		want              perfMapping // zero: an error is wanted
	}{
		{"its own file", jvmMapsHead + own, "1",
			perfMapping{mapFile: "7f3b75172000-7f3b7517a000", rootPath: "/tmp/hsperfdata_root/1", path: "/tmp/hsperfdata_root/1", major: 0xfe, ino: 9986049}},
		{"deleted: only map_files reaches it", jvmMapsHead + strings.Replace(own, "/1\n", "/1 (deleted)\n", 1), "1",
			perfMapping{mapFile: "7f3b75172000-7f3b7517a000", path: "/tmp/hsperfdata_root/1", major: 0xfe, ino: 9986049}},
		{"a path with spaces", "7f00-7f08 rw-s 00000000 08:11 42 /srv/my tmp/hsperfdata_app user/77\n", "77",
			perfMapping{mapFile: "7f00-7f08", rootPath: "/srv/my tmp/hsperfdata_app user/77", path: "/srv/my tmp/hsperfdata_app user/77", major: 8, minor: 0x11, ino: 42}},
		{"the same file twice", jvmMapsHead + own + own, "1",
			perfMapping{mapFile: "7f3b75172000-7f3b7517a000", rootPath: "/tmp/hsperfdata_root/1", path: "/tmp/hsperfdata_root/1", major: 0xfe, ino: 9986049}},
		// The JVM that found /tmp/hsperfdata_root/1 locked by another
		// pid namespace's pid 1 keeps its counters in anonymous memory.
		{"no file mapped (second JVM with the same nspid)", jvmMapsHead + "7f3b75172000-7f3b7517a000 rw-p 00000000 00:00 0 \n", "1", perfMapping{}},
		{"another pid's file", jvmMapsHead + own, "2", perfMapping{}},
		{"private mapping", jvmMapsHead + strings.Replace(own, "rw-s", "rw-p", 1), "1", perfMapping{}},
		{"not an hsperfdata dir", jvmMapsHead + strings.Replace(own, "hsperfdata_root", "data", 1), "1", perfMapping{}},
		{"two different files", jvmMapsHead + own + strings.Replace(own, "9986049", "9986050", 1), "1", perfMapping{}},
		{"garbage", "\xff\xfe rw-s zz:yy -1 /tmp/hsperfdata_x/1\n" + strings.Repeat("x", 300) + "\n", "1", perfMapping{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findPerfMapping(strings.NewReader(tc.maps), tc.nspid)
			if tc.want == (perfMapping{}) {
				if err == nil {
					t.Fatalf("found %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := findPerfMapping(strings.NewReader(jvmMapsHead), "1"); err != errNoPerfMapping {
		t.Errorf("no mapping: err = %v, want errNoPerfMapping (the retried, documented why)", err)
	}
}

// countingReaderAt counts the bytes asked of the file.
type countingReaderAt struct {
	r    io.ReaderAt
	read int64
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	c.read += int64(len(b))
	return c.r.ReadAt(b, off)
}

func TestPerfReader(t *testing.T) {
	good := readPerfFixture(t)
	used := int(binary.LittleEndian.Uint32(good[8:]))
	c := &countingReaderAt{r: bytes.NewReader(good)}
	pr := &perfReader{r: c}
	for i := range 3 {
		b, err := pr.read()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != used {
			t.Fatalf("read %d bytes, want the %d used", len(b), used)
		}
		if _, err := parseHsperfdata(b); err != nil {
			t.Fatal(err)
		}
		// The first poll reads the prologue and then the used part; the
		// next ones the used part only (the file is 32 KiB).
		if want := int64(perfPrologueSize + (i+1)*used); c.read != want {
			t.Errorf("poll %d: %d bytes asked of the file, want %d", i, c.read, want)
		}
	}

	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"used past 2 MiB":        mut(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 512<<20) }),
		"used negative":          mut(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 1<<31) }),
		"used under the header":  mut(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 8) }),
		"file shorter than used": good[:used-1],
		"bad magic":              mut(func(b []byte) { b[0] = 0 }),
		"empty":                  nil,
	} {
		if _, err := (&perfReader{r: bytes.NewReader(b)}).read(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A hostile process's 512 MiB sparse "hsperfdata" file: never read whole.
func TestPerfReaderSparse(t *testing.T) {
	good := readPerfFixture(t)
	f, err := os.Create(t.TempDir() + "/1")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(512 << 20); err != nil {
		t.Fatal(err)
	}
	for _, used := range []uint32{512 << 20, maxPerfDataSize + 1} {
		hdr := bytes.Clone(good[:perfPrologueSize])
		binary.LittleEndian.PutUint32(hdr[8:], used)
		if _, err := f.WriteAt(hdr, 0); err != nil {
			t.Fatal(err)
		}
		c := &countingReaderAt{r: f}
		_, err := (&perfReader{r: c}).read()
		if err == nil || !strings.Contains(err.Error(), "declares") {
			t.Errorf("used %d: err = %v, want the declared size refused", used, err)
		}
		if c.read > perfPrologueSize {
			t.Errorf("used %d: %d bytes read, want the prologue only", used, c.read)
		}
	}
	// A sane header on the big file: only the used part is read.
	if _, err := f.WriteAt(good, 0); err != nil {
		t.Fatal(err)
	}
	c := &countingReaderAt{r: f}
	if _, err := (&perfReader{r: c}).read(); err != nil || c.read > int64(len(good)) {
		t.Errorf("sane header: err %v, %d bytes read", err, c.read)
	}
}

// The whole path on a real mapping: this test process maps an hsperfdata
// file named by its own pid, MAP_SHARED like the JVM, and the agent finds,
// opens (map_files as root, the path under /proc/<pid>/root otherwise) and
// reads it; once unmapped, it is no longer the process's.
func TestHsperfdataMappingSelf(t *testing.T) {
	good := readPerfFixture(t)
	pid := uint32(os.Getpid())
	dir := filepath.Join(t.TempDir(), "hsperfdata_test")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strconv.Itoa(int(pid)))
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, len(good), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	f.Close() // like the JVM: the mapping stays, the descriptor does not
	if err != nil {
		t.Fatal(err)
	}
	mapped := true
	defer func() {
		if mapped {
			unix.Munmap(mem)
		}
	}()

	m, err := procFS("/proc").hsperfdataMapping(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m.path != path {
		t.Errorf("path %q, want %q", m.path, path)
	}
	open := func(m perfMapping) {
		t.Helper()
		pf, err := m.open()
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		b, err := (&perfReader{r: pf}).read()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseHsperfdata(b); err != nil {
			t.Fatal(err)
		}
	}
	open(m)
	// Without map_files (no CAP_SYS_ADMIN): the path under the root.
	noMapFiles := m
	noMapFiles.mapFile = "/nonexistent"
	open(noMapFiles)
	// The name now points at another file: refused, not read.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := noMapFiles.open(); err == nil || !strings.Contains(err.Error(), "not the file the process has mapped") {
		t.Errorf("replaced file: err = %v, want the inode mismatch", err)
	}
	if os.Geteuid() == 0 {
		open(m) // map_files still reaches the mapped inode
	}

	unix.Munmap(mem)
	mapped = false
	if _, err := procFS("/proc").hsperfdataMapping(pid); err != errNoPerfMapping {
		t.Errorf("after munmap: err = %v, want errNoPerfMapping", err)
	}
}
