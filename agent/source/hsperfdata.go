package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent"
)

// The JVM's hsperfdata file (openjdk src/hotspot/share/runtime/perfMemory.hpp):
// the counters jstat reads, in a file the JVM keeps mapped and updated. It is
// the fallback when libjvm.so can't be probed: exact counts and totals, but
// single pauses only when one collection happened between two polls.

const (
	perfMagic        = 0xcafec0c0
	perfPrologueSize = 32
	perfEntryHeader  = 20
)

// perfData holds the scalar and string counters of one hsperfdata file.
type perfData struct {
	longs   map[string]int64
	strings map[string]string
}

// parseHsperfdata reads an hsperfdata file. Damaged input is an error,
// never a panic (FuzzParseHsperfdata).
func parseHsperfdata(b []byte) (*perfData, error) {
	if len(b) < perfPrologueSize {
		return nil, fmt.Errorf("hsperfdata: %d bytes, shorter than the prologue", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != perfMagic {
		return nil, fmt.Errorf("hsperfdata: bad magic %#x", m)
	}
	var bo binary.ByteOrder = binary.BigEndian
	if b[4] == 1 {
		bo = binary.LittleEndian
	}
	if major := b[5]; major != 2 {
		return nil, fmt.Errorf("hsperfdata: version %d.%d, want 2.x", major, b[6])
	}
	if b[7] == 0 {
		return nil, errors.New("hsperfdata: not accessible yet (JVM starting)")
	}
	used := int(int32(bo.Uint32(b[8:])))
	entryOff := int(int32(bo.Uint32(b[24:])))
	n := int(int32(bo.Uint32(b[28:])))
	if used <= 0 || used > len(b) {
		used = len(b)
	}
	// A JVM has under 1,000 counters; a file claiming 32,768 cost the agent a third of a core.
	if entryOff < perfPrologueSize || entryOff > used || n < 0 || n > used/perfEntryHeader || n > maxPerfEntries {
		return nil, fmt.Errorf("hsperfdata: bad prologue (entries at %d, %d entries, %d bytes used)", entryOff, n, used)
	}
	d := &perfData{longs: make(map[string]int64, n), strings: make(map[string]string)}
	off := entryOff
	for i := 0; i < n; i++ {
		if off+perfEntryHeader > used {
			return nil, fmt.Errorf("hsperfdata: entry %d at %d runs past the data", i, off)
		}
		e := b[off:used]
		length := int(int32(bo.Uint32(e)))
		nameOff := int(int32(bo.Uint32(e[4:])))
		vecLen := int(int32(bo.Uint32(e[8:])))
		typ := e[12]
		dataOff := int(int32(bo.Uint32(e[16:])))
		if length < perfEntryHeader || length > len(e) || nameOff < perfEntryHeader || nameOff >= length ||
			dataOff < 0 || dataOff > length || vecLen < 0 {
			return nil, fmt.Errorf("hsperfdata: entry %d at %d is malformed", i, off)
		}
		nameEnd := bytes.IndexByte(e[nameOff:length], 0)
		if nameEnd < 0 {
			return nil, fmt.Errorf("hsperfdata: entry %d name is not terminated", i)
		}
		name := string(e[nameOff : nameOff+nameEnd])
		switch {
		case typ == 'J' && vecLen == 0:
			if dataOff+8 > length {
				return nil, fmt.Errorf("hsperfdata: %s: value runs past its entry", name)
			}
			d.longs[name] = int64(bo.Uint64(e[dataOff:]))
		case typ == 'B' && vecLen > 0:
			end := min(dataOff+vecLen, length)
			v := e[dataOff:end]
			if z := bytes.IndexByte(v, 0); z >= 0 {
				v = v[:z]
			}
			d.strings[name] = string(v)
		}
		off += length
	}
	return d, nil
}

// Bounds on what an hsperfdata file may declare (written by the process
// watched): counters per file, and collectors (each may make an event per poll).
const maxPerfEntries, maxPerfCollectors = 4096, 16

// maxPerfDataSize bounds what is read of an hsperfdata file: the JVM's
// -XX:PerfDataMemorySize cannot exceed 2 MiB, and the file is written by
// the process we watch, so its header is not trusted past that.
const maxPerfDataSize = 2 << 20

// errNoPerfMapping is why a JVM has no hsperfdata to read. The JVM maps its
// file while it starts, so the caller retries for a while before reporting it.
var errNoPerfMapping = errors.New("no hsperfdata file in its memory maps (-XX:-UsePerfData, " +
	"-XX:+PerfDisableSharedMem, or the JVM could not create /tmp/hsperfdata_<user>/<pid>, e.g. because " +
	"a JVM in another pid namespace sharing /tmp holds a file of that name: the JVM then keeps its " +
	"counters in private memory)")

// perfMapping is a process's own hsperfdata file as its memory maps show it.
//
// The path is never guessed from the pid: JVMs in different pid namespaces
// that share /tmp have the same pid inside (often 1), and the second one
// cannot create /tmp/hsperfdata_root/1 ("locked by another process") and
// keeps its counters in anonymous memory. Reading the file by its name
// would credit it with the first JVM's safepoints. The JVM mmaps its file
// MAP_SHARED and closes the descriptor (no fd stays open, so
// /proc/<pid>/fd cannot tell), so the mapping is the proof of ownership.
type perfMapping struct {
	mapFile  string // /proc/<pid>/map_files/<start>-<end>: the mapped file itself, even if deleted
	rootPath string // the mapped path under /proc/<pid>/root ("" if deleted)
	path     string // the path as the process sees it
	major    uint32 // device and inode of the mapped file, from the maps line
	minor    uint32
	ino      uint64
}

// findPerfMapping picks the hsperfdata mapping out of /proc/<pid>/maps: a
// shared mapping of hsperfdata_<user>/<nspid>, the name a JVM gives the
// file it creates for itself (its pid as it sees it). Anything else, or
// more than one candidate, is not provably the process's own counters.
func findPerfMapping(maps io.Reader, nspid string) (perfMapping, error) {
	var found []perfMapping
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// start-end perms offset major:minor inode   path
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 || len(fields[1]) < 4 || fields[1][3] != 's' {
			continue
		}
		path := strings.TrimLeft(fields[5], " ")
		live, deleted := strings.CutSuffix(path, " (deleted)")
		if !strings.HasPrefix(filepath.Base(filepath.Dir(live)), "hsperfdata_") || filepath.Base(live) != nspid {
			continue
		}
		var m perfMapping
		if _, err := fmt.Sscanf(fields[3], "%x:%x", &m.major, &m.minor); err != nil {
			continue
		}
		ino, err := strconv.ParseUint(fields[4], 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		m.mapFile, m.path, m.ino = fields[0], live, ino
		if !deleted {
			m.rootPath = live
		}
		// A JVM maps its file once; a process mapping the same file
		// twice is not ambiguous, two different files are.
		if len(found) == 0 || found[0].ino != m.ino || found[0].major != m.major || found[0].minor != m.minor {
			found = append(found, m)
		}
	}
	if err := sc.Err(); err != nil {
		return perfMapping{}, fmt.Errorf("read maps: %w", err)
	}
	switch len(found) {
	case 0:
		return perfMapping{}, errNoPerfMapping
	case 1:
		return found[0], nil
	}
	return perfMapping{}, fmt.Errorf("%d different hsperfdata files mapped (%s, %s): not provably its own",
		len(found), found[0].path, found[1].path)
}

// open opens the mapped file and checks it is the very file in the maps
// line: the device and inode printed there. Two ways reach it, and the
// first that names that very file is used. /proc/<pid>/map_files reaches
// the mapped file even once deleted, but needs CAP_SYS_ADMIN (or
// CAP_CHECKPOINT_RESTORE). The path under the process's root needs neither,
// and passes only if it still names the mapped inode (not after the file
// was replaced).
//
// On overlayfs (a container's /tmp) the maps line names the overlay's
// inode: the overlay superblock's device and the overlay inode's number
// (Linux 6.18, measured in TestContainersJVM). Neither way stats as that:
// map_files opens the upper layer's file (the upper filesystem's device),
// and a file through the overlay stats with a per-layer pseudo device. The
// inode number is the same everywhere, and a directory of the overlay
// stats with the superblock's device, so a file reached through an overlay
// path is the mapped one when its inode number matches and its directory
// is on the device of the maps line (see sameOverlayFile).
func (m perfMapping) open() (*os.File, error) {
	var errs []error
	for _, path := range []string{m.mapFile, m.rootPath} {
		if path == "" {
			continue
		}
		f, err := m.openSame(path)
		if err == nil {
			return f, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// openSame opens path if it is the file of the maps line.
func (m perfMapping) openSame(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", m.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", m.path, err)
	}
	if (st.Ino != m.ino || unix.Major(st.Dev) != m.major || unix.Minor(st.Dev) != m.minor) && !m.sameOverlayFile(f, path, &st) {
		f.Close()
		return nil, fmt.Errorf("%s (dev %d:%d inode %d) is not the file the process has mapped (dev %d:%d inode %d)",
			f.Name(), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, m.major, m.minor, m.ino)
	}
	if !(st.Mode&unix.S_IFMT == unix.S_IFREG) {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", m.path)
	}
	return f, nil
}

// sameOverlayFile says whether f, opened at path and with stat st, is the
// overlay inode of the maps line: on overlayfs, with its inode number, in
// a directory on the overlay superblock's device. A file bind-mounted over
// the name is on another filesystem, or its directory on another device:
// refused either way.
func (m perfMapping) sameOverlayFile(f *os.File, path string, st *unix.Stat_t) bool {
	if st.Ino != m.ino {
		return false
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil || fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return false
	}
	var dir unix.Stat_t
	if err := unix.Stat(filepath.Dir(path), &dir); err != nil {
		return false
	}
	return unix.Major(dir.Dev) == m.major && unix.Minor(dir.Dev) == m.minor
}

// perfReader reads the used part of an hsperfdata file, no more: the
// process can make the file as big (or sparse) as it likes.
type perfReader struct {
	r   io.ReaderAt
	buf []byte // the last read; its length is the next read's first guess
}

// read returns the file's first `used` bytes, as its prologue declares.
// The JVM grows `used` as it adds counters (at startup), so a read that
// finds it grew is done again, a few times at most.
func (pr *perfReader) read() ([]byte, error) {
	want := max(len(pr.buf), perfPrologueSize)
	for range 3 {
		if cap(pr.buf) < want {
			pr.buf = make([]byte, want)
		}
		b := pr.buf[:want]
		n, err := pr.r.ReadAt(b, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("hsperfdata: read: %w", err)
		}
		b = b[:n]
		if n < perfPrologueSize {
			return nil, fmt.Errorf("hsperfdata: %d bytes, shorter than the prologue", n)
		}
		if m := binary.BigEndian.Uint32(b); m != perfMagic {
			return nil, fmt.Errorf("hsperfdata: bad magic %#x", m)
		}
		var bo binary.ByteOrder = binary.BigEndian
		if b[4] == 1 {
			bo = binary.LittleEndian
		}
		used := int64(int32(bo.Uint32(b[8:])))
		switch {
		case used < perfPrologueSize || used > maxPerfDataSize:
			return nil, fmt.Errorf("hsperfdata: prologue declares %d bytes used, want %d to %d", used, perfPrologueSize, maxPerfDataSize)
		case int(used) <= n:
			pr.buf = b[:used]
			return pr.buf, nil
		case n < want:
			return nil, fmt.Errorf("hsperfdata: file ends at %d bytes, prologue declares %d used", n, used)
		}
		want = int(used)
	}
	return nil, errors.New("hsperfdata: used size kept growing over 3 reads")
}

// perfCounters is the part of a poll that the counters are built from.
type perfCounters struct {
	safepoints int64 // sun.rt.safepoints
	stopped    int64 // ticks: safepointTime + safepointSyncTime (JDK 17+ semantics)
	gcCount    int64 // sum of collector invocations
	gcTime     int64 // ticks, sum of collector time
	freq       int64 // ticks per second
	collectors map[string]collector
	lastCause  string
}

type collector struct {
	name                 string
	invocations          int64
	lastEntry, lastExit  int64
	hasEntryExit, pauses bool
}

func readPerfCounters(d *perfData) (perfCounters, error) {
	c := perfCounters{collectors: map[string]collector{}}
	var ok bool
	if c.safepoints, ok = d.longs["sun.rt.safepoints"]; !ok {
		return c, errors.New("hsperfdata: no sun.rt.safepoints counter")
	}
	c.stopped = d.longs["sun.rt.safepointTime"] + d.longs["sun.rt.safepointSyncTime"]
	c.freq = d.longs["sun.os.hrt.frequency"]
	if c.freq <= 0 {
		return c, errors.New("hsperfdata: no sun.os.hrt.frequency")
	}
	c.lastCause = d.strings["sun.gc.lastCause"]
	for name, v := range d.longs {
		rest, ok := strings.CutPrefix(name, "sun.gc.collector.")
		if !ok {
			continue
		}
		idx, field, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		col, known := c.collectors[idx]
		if !known && len(c.collectors) >= maxPerfCollectors {
			continue // HotSpot has at most 4; more would be one sample event each per poll
		}
		switch field {
		case "invocations":
			col.invocations = v
			c.gcCount += v
		case "time":
			c.gcTime += v
		case "lastEntryTime":
			col.lastEntry, col.hasEntryExit = v, true
		case "lastExitTime":
			col.lastExit = v
		default:
			continue
		}
		col.name = d.strings["sun.gc.collector."+idx+".name"]
		c.collectors[idx] = col
	}
	return c, nil
}

// perfEvents turns two successive polls into events: the totals by kind
// (their sum is exactly the JVM's safepoint count and stopped time), and
// one sample per collector that ran exactly once between the polls, with
// its exact duration. Nothing is made up: bigger deltas give totals only.
func perfEvents(p agent.Process, prev, cur perfCounters, now time.Time) []agent.Event {
	tick := func(t int64) time.Duration {
		return time.Duration(float64(t) * float64(time.Second) / float64(cur.freq))
	}
	spDelta := cur.safepoints - prev.safepoints
	stopDelta := cur.stopped - prev.stopped
	if spDelta < 0 || stopDelta < 0 {
		return nil // counters went back: a new JVM under a reused file
	}
	if spDelta == 0 {
		// HotSpot counts a safepoint at its begin and adds its time at
		// its end (RuntimeService), so a poll inside one saw it without
		// its time: that time arrives now, with no safepoint to carry it.
		// Dropped, a JVM that went idle after a long safepoint lost it
		// (CI: 528 safepoints, 2.05 s of the JVM's 2.53 s). The collector
		// time moving says the safepoint was a collection.
		if stopDelta == 0 {
			return nil
		}
		kind := agent.KindOther
		if cur.gcTime > prev.gcTime {
			kind = agent.KindGC
		}
		return []agent.Event{{Type: agent.PauseTotals, Process: p, Kind: kind, Duration: tick(stopDelta), Start: now}}
	}
	gcDelta := min(max(cur.gcCount-prev.gcCount, 0), spDelta)
	gcTime := min(max(cur.gcTime-prev.gcTime, 0), stopDelta)
	// Collector time leaves out reaching and cleaning up the safepoint:
	// that rest goes with the other safepoints, or with the collections
	// when there were none, so the kinds always add up to the JVM's total.
	if gcDelta == spDelta {
		gcTime = stopDelta
	} else if gcDelta == 0 {
		gcTime = 0
	}
	var out []agent.Event
	if gcDelta > 0 {
		out = append(out, agent.Event{Type: agent.PauseTotals, Process: p, Kind: agent.KindGC,
			Count: uint64(gcDelta), Duration: tick(gcTime), Start: now})
	}
	if spDelta-gcDelta > 0 {
		out = append(out, agent.Event{Type: agent.PauseTotals, Process: p, Kind: agent.KindOther,
			Count: uint64(spDelta - gcDelta), Duration: tick(stopDelta - gcTime), Start: now})
	}
	for idx, c := range cur.collectors {
		pc, ok := prev.collectors[idx]
		if !ok || !c.hasEntryExit || c.invocations-pc.invocations != 1 || c.lastExit < c.lastEntry {
			continue
		}
		// Both names are strings of the JVM's hsperfdata file, which any
		// process can write: sanitised before they become a label.
		reason := agent.LabelValue(cur.lastCause)
		if reason == "" || reason == "No GC" {
			reason = agent.LabelValue(c.name)
		}
		out = append(out, agent.Event{Type: agent.PauseSample, Process: p, Kind: agent.KindGC, Reason: reason,
			Duration: tick(c.lastExit - c.lastEntry), Start: now})
	}
	return out
}

// hsperfdataInterval is how often the counters are read: the JVM itself
// refreshes its sampled counters every 50 ms.
const hsperfdataInterval = 100 * time.Millisecond

// start opens the JVM's mapped hsperfdata file and polls it until ctx is
// done. The file stays open so every poll reads the same inode, whatever
// happens to its name.
func (m perfMapping) start(ctx context.Context, p agent.Process, out chan<- agent.Event, log *slog.Logger) (string, error) {
	f, err := m.open()
	if err != nil {
		return "", fmt.Errorf("hsperfdata: %w", err)
	}
	proc := p
	proc.Method = MethodHsperfdata
	go func() {
		defer f.Close()
		pr := &perfReader{r: f}
		var prev *perfCounters
		t := time.NewTicker(hsperfdataInterval)
		defer t.Stop()
		for {
			b, err := pr.read()
			var cur perfCounters
			if err == nil {
				var d *perfData
				if d, err = parseHsperfdata(b); err == nil {
					cur, err = readPerfCounters(d)
				}
			}
			if err != nil {
				log.Debug("hsperfdata poll", "pid", proc.PID, "file", m.path, "err", err)
			} else {
				if prev != nil {
					for _, e := range perfEvents(proc, *prev, cur, time.Now()) {
						select {
						case out <- e:
						case <-ctx.Done():
							return
						}
					}
				}
				prev = &cur
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return MethodHsperfdata, nil
}
