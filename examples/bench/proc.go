package main

// What the kernel says of a process: its CPU time, memory, and the BPF
// programs it holds, each read from /proc/<pid>. Only the measured
// process's own files are read, never machine-wide state: other work on
// the machine (and other BPF programs) must not leak into a figure.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime is a process's user+system CPU time so far, all its threads,
// including threads that have exited (fields 14 and 15 of
// /proc/<pid>/stat, 10 ms ticks).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of %d: no ')' in stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of %d: %d fields in stat", pid, len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of %d: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// memory is a process's resident set now and at its peak (VmRSS, VmHWM
// of /proc/<pid>/status), bytes.
func memory(pid int) (rss, peak int64, err error) {
	m, err := status(pid, "VmRSS", "VmHWM")
	return m["VmRSS"], m["VmHWM"], err
}

// status is the kB fields keys of /proc/<pid>/status, in bytes.
func status(pid int, keys ...string) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("status of %d: %w", pid, err)
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !slices.Contains(keys, k) {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("status of %d: %s %q: %w", pid, k, v, err)
		}
		m[k] = kb << 10
	}
	return m, sc.Err()
}

// progStat is one BPF program's account since it was loaded, while
// statistics are enabled (enableBPFStats): how often it ran and for how
// long in all.
type progStat struct {
	name string
	runs uint64
	ns   uint64
}

// bpfPrograms is every BPF program pid holds a file descriptor of (a
// program fd, or a link's, which names its program too), by program id,
// read from /proc/<pid>/fdinfo (prog_id, run_time_ns, run_cnt). Names
// come from the kernel by id, cached in names.
func bpfPrograms(pid int, names map[uint32]string) (map[uint32]progStat, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bpf programs of %d: %w", pid, err)
	}
	progs := map[uint32]progStat{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // the fd closed while we read
		}
		var id uint64
		var st progStat
		var isProg bool
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "prog_id":
				id, _ = strconv.ParseUint(v, 10, 32)
			case "run_time_ns":
				st.ns, _ = strconv.ParseUint(v, 10, 64)
				isProg = true
			case "run_cnt":
				st.runs, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		if id == 0 {
			continue
		}
		if !isProg {
			// A link's fdinfo names its program without its statistics:
			// the program's own fd (held by the same process) has them;
			// if it is not held, ask the kernel by id.
			if _, seen := progs[uint32(id)]; seen {
				continue
			}
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				if ps, err := p.Stats(); err == nil {
					st.ns, st.runs = uint64(ps.Runtime), ps.RunCount
				}
				p.Close()
			}
		}
		st.name = progName(uint32(id), names)
		progs[uint32(id)] = st
	}
	return progs, nil
}

// progName is the kernel's name of a program (at most 15 bytes), or
// "prog <id>" when it cannot be read.
func progName(id uint32, names map[uint32]string) string {
	if n, ok := names[id]; ok {
		return n
	}
	n := fmt.Sprintf("prog %d", id)
	if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
		if fi, err := p.Info(); err == nil && fi.Name != "" {
			n = fi.Name
		}
		p.Close()
	}
	names[id] = n
	return n
}

// bpfDelta is what each program did between two readings, by name
// (programs loaded twice under one name are summed); programs gone or new
// in the second reading count from zero.
func bpfDelta(before, after map[uint32]progStat) map[string]progStat {
	d := map[string]progStat{}
	for id, a := range after {
		b := before[id]
		s := d[a.name]
		s.name = a.name
		s.runs += a.runs - min(b.runs, a.runs)
		s.ns += a.ns - min(b.ns, a.ns)
		d[a.name] = s
	}
	return d
}

// total is the sum over programs.
func total(d map[string]progStat) (runs, ns uint64) {
	for _, s := range d {
		runs += s.runs
		ns += s.ns
	}
	return runs, ns
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine is the CPU model, core count, memory and kernel, one line.
func machine() string {
	model, cores := "?", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			k = strings.TrimSpace(k)
			if k == "model name" {
				model = strings.TrimSpace(v)
			}
			if k == "processor" {
				cores++
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores, %s RAM, Linux %s", model, cores, mem, kernel)
}

// contextSwitches is the machine's count of context switches since boot
// (/proc/stat ctxt).
func contextSwitches() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("context switches: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ctxt "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("context switches: no ctxt line in /proc/stat")
}
