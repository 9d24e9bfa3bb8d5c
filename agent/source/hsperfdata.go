package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	if entryOff < perfPrologueSize || entryOff > used || n < 0 || n > used/perfEntryHeader {
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

// hsperfdataPath finds the process's hsperfdata file: in its own /tmp
// (through /proc/<pid>/root, for containers), named by its pid in its
// own pid namespace.
func (p procFS) hsperfdataPath(pid uint32) (string, error) {
	nspid, err := p.nsPID(pid)
	if err != nil {
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(p.path(pid, "root"), "tmp", "hsperfdata_*", nspid))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
			return m, nil
		}
	}
	return "", errors.New("no hsperfdata file (-XX:-UsePerfData, -XX:+PerfDisableSharedMem, or a private /tmp)")
}

// nsPID returns the process's pid in its innermost pid namespace.
func (p procFS) nsPID(pid uint32) (string, error) {
	f, err := os.Open(p.path(pid, "status"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				return fields[len(fields)-1], nil
			}
		}
	}
	return "", errors.New("status: no NSpid line")
}

// cmdline returns /proc/<pid>/cmdline (NUL-separated).
func (p procFS) cmdline(pid uint32) []byte {
	b, _ := os.ReadFile(p.path(pid, "cmdline"))
	return b
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
		col := c.collectors[idx]
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

// startHsperfdata polls a JVM's hsperfdata file until the process exits;
// s.mu is held.
func (s *Source) startHsperfdata(p *process, path string) {
	ctx, cancel := context.WithCancel(s.ctx)
	p.stop = cancel
	proc := p.Process
	proc.Method = MethodHsperfdata
	go func() {
		var prev *perfCounters
		t := time.NewTicker(hsperfdataInterval)
		defer t.Stop()
		for {
			b, err := os.ReadFile(path)
			var cur perfCounters
			if err == nil {
				var d *perfData
				if d, err = parseHsperfdata(b); err == nil {
					cur, err = readPerfCounters(d)
				}
			}
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					s.log.Debug("hsperfdata poll", "pid", proc.PID, "err", err)
				}
			} else {
				if prev != nil {
					for _, e := range perfEvents(proc, *prev, cur, time.Now()) {
						select {
						case s.polled <- e:
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
}
