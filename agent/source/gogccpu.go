package source

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
)

// Go's GC CPU, as the runtime itself accounts it. Since Go 1.20 the
// runtime sums, at the end of every GC cycle, the CPU its collector used
// (assists, dedicated, fractional and idle mark workers, and pauses as
// pause time x GOMAXPROCS) into work.cpuStats.gcTotalTime, in ns: what
// runtime/metrics serves as /cpu/classes/gc/total:cpu-seconds. The agent
// reads those 8 bytes from the process's memory every CPU pass (cpu.go).
// Their address is the runtime.work symbol (.symtab) plus two offsets that
// differ between Go versions: goGCCPUOffsets, generated from the DWARF of
// each toolchain (TestGoGCCPUOffsets -update) and checked by the tests.

// goGCTotalAddr returns the address of work.cpuStats.gcTotalTime in a Go
// binary of the given minor version, or 0 and why it cannot be read.
func goGCTotalAddr(f *elf.File, minor int, work uint64) (uint64, string) {
	off, ok := goGCCPUOffsets[minor]
	switch {
	case minor < 20:
		return 0, "none: Go before 1.20 keeps no GC CPU account"
	case !ok:
		return 0, "none: no work.cpuStats offsets for go1." + strconv.Itoa(minor) + " (TestGoGCCPUOffsets -update)"
	case work == 0:
		return 0, "none: no runtime.work in .symtab (stripped binary); pauses are still captured"
	case f.Type != elf.ET_EXEC:
		return 0, "none: position-independent Go binary (its load address is not read yet); pauses are still captured"
	}
	return work + off.cpuStats + off.gcTotalTime, ""
}

// readGoGCTotal reads a Go process's GC CPU total at addr, in ns: any
// value, the process's memory being its own (cpuSampler.goGC judges it).
func (p procFS) readGoGCTotal(pid uint32, addr uint64) (uint64, error) {
	f, err := os.Open(p.path(pid, "mem"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(addr)); err != nil {
		return 0, fmt.Errorf("read work.cpuStats of %d: %w", pid, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
