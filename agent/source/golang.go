package source

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"
)

// Go versions whose runtime this file has been checked against: the
// stwReason enum, the worldStop layout and the registers the probes read
// (see bpf/golang.c). A binary built by any other version is listed with
// method "none" rather than probed blindly.
const (
	goMinMinor = 21
	goMaxMinor = 26
)

// errNotGo says the executable has no Go build info.
var errNotGo = errors.New("not a Go binary")

// goReasons is runtime.stwReasonStrings, identical in Go 1.21 through 1.26
// (src/runtime/proc.go); the trace format depends on it, so a change would
// come with a new Go version, which goMaxMinor keeps out until checked.
var goReasons = []string{
	0:  "unknown",
	1:  "GC mark termination",
	2:  "GC sweep termination",
	3:  "write heap dump",
	4:  "goroutine profile",
	5:  "goroutine profile cleanup",
	6:  "all goroutines stack trace",
	7:  "read mem stats",
	8:  "AllThreadsSyscall",
	9:  "GOMAXPROCS",
	10: "start trace",
	11: "stop trace",
	12: "CountPagesInUse (test)",
	13: "ReadMetricsSlow (test)",
	14: "ReadMemStatsSlow (test)",
	15: "PageCachePagesLeaked (test)",
	16: "ResetDebugLog (test)",
}

// goReason maps a stwReason number to the runtime's string and pause kind.
func goReason(minor int, r uint32) (reason, kind string) {
	if minor < goMinMinor || minor > goMaxMinor || int(r) >= len(goReasons) {
		return "unknown (" + strconv.FormatUint(uint64(r), 10) + ")", "other"
	}
	// stwReason.isGC: mark termination and sweep termination.
	if r == 1 || r == 2 {
		return goReasons[r], "gc"
	}
	return goReasons[r], "other"
}

// goBinary is what the probes need from one Go executable: file offsets of
// the places to put uprobes on.
type goBinary struct {
	version string // as in the build info, "go1.22.12"
	minor   int
	// File offsets (what link.UprobeOptions.Address takes).
	stopEntry  uint64
	stopRets   []uint64
	startEntry uint64
	startRets  []uint64
}

// parseGoMinor returns the minor version of a "go1.N[.P]" version string.
func parseGoMinor(v string) (int, error) {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0, fmt.Errorf("unrecognised Go version %q", v)
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end == 0 {
		return 0, fmt.Errorf("unrecognised Go version %q", v)
	}
	if end > 0 {
		rest = rest[:end]
	}
	return strconv.Atoi(rest)
}

// unsupportedGoError says why a Go binary is not probed.
type unsupportedGoError struct{ version string }

func (e *unsupportedGoError) Error() string {
	return fmt.Sprintf("Go version %s is outside the verified range go1.%d..go1.%d: its runtime layout is not checked, so it is not probed",
		e.version, goMinMinor, goMaxMinor)
}

// inspectGo reads a Go executable: its version from the build info and the
// STW functions from .symtab or, for stripped binaries, .gopclntab.
func inspectGo(r io.ReaderAt) (*goBinary, error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotGo, err)
	}
	minor, err := parseGoMinor(bi.GoVersion)
	if err != nil {
		return nil, err
	}
	if minor < goMinMinor || minor > goMaxMinor {
		return nil, &unsupportedGoError{bi.GoVersion}
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("Go binary for %s: only x86-64 probes are built", f.Machine)
	}
	funcs, err := goFuncs(f, "runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema")
	if err != nil {
		return nil, err
	}
	b := &goBinary{version: bi.GoVersion, minor: minor}
	stop, start := funcs[0], funcs[1]
	if b.stopEntry, err = fileOffset(f, stop.entry); err != nil {
		return nil, err
	}
	if b.startEntry, err = fileOffset(f, start.entry); err != nil {
		return nil, err
	}
	if b.stopRets, err = retOffsets(f, stop); err != nil {
		return nil, fmt.Errorf("runtime.stopTheWorldWithSema: %w", err)
	}
	if b.startRets, err = retOffsets(f, start); err != nil {
		return nil, fmt.Errorf("runtime.startTheWorldWithSema: %w", err)
	}
	return b, nil
}

type funcRange struct{ entry, end uint64 }

// goFuncs finds functions by name, from .symtab when the binary has one and
// from the pclntab otherwise (stripped with -ldflags=-s -w).
func goFuncs(f *elf.File, names ...string) ([]funcRange, error) {
	out := make([]funcRange, len(names))
	found := 0
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			for i, n := range names {
				if s.Name == n && s.Size > 0 && out[i].entry == 0 {
					out[i] = funcRange{s.Value, s.Value + s.Size}
					found++
				}
			}
		}
		if found == len(names) {
			return out, nil
		}
	}

	return goFuncsPclntab(f, names...)
}

// goFuncsPclntab finds functions through the pclntab, which even stripped
// Go binaries keep (the runtime needs it for tracebacks).
func goFuncsPclntab(f *elf.File, names ...string) ([]funcRange, error) {
	out := make([]funcRange, len(names))
	pcln := f.Section(".gopclntab")
	if pcln == nil {
		// Some linkers put the pclntab in .data.rel.ro without a section
		// name; those binaries are not supported yet.
		return nil, errors.New("no .symtab entry and no .gopclntab section")
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("read .gopclntab: %w", err)
	}
	text := f.Section(".text")
	if text == nil {
		return nil, errors.New("no .text section")
	}
	// textStart = start of .text holds for pure-Go binaries of every
	// supported version (1.26 dropped the header field that used to hold it).
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("parse .gopclntab: %w", err)
	}
	for i, n := range names {
		fn := tab.LookupFunc(n)
		if fn == nil {
			return nil, fmt.Errorf("function %s not in .gopclntab", n)
		}
		out[i] = funcRange{fn.Entry, fn.End}
	}
	return out, nil
}

// fileOffset converts a virtual address to the file offset of the
// executable segment that maps it.
func fileOffset(f *elf.File, vaddr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", vaddr)
}

// retOffsets disassembles a function and returns the file offsets of its
// RET instructions: uprobes there stand in for uretprobes, which Go's
// moving stacks do not survive.
func retOffsets(f *elf.File, fn funcRange) ([]uint64, error) {
	if fn.end <= fn.entry || fn.end-fn.entry > 1<<20 {
		return nil, fmt.Errorf("implausible function range %#x..%#x", fn.entry, fn.end)
	}
	off, err := fileOffset(f, fn.entry)
	if err != nil {
		return nil, err
	}
	code := make([]byte, fn.end-fn.entry)
	var ra io.ReaderAt
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && off >= p.Off && off < p.Off+p.Filesz {
			ra = p
			if _, err := p.ReadAt(code, int64(off-p.Off)); err != nil {
				return nil, fmt.Errorf("read code: %w", err)
			}
			break
		}
	}
	if ra == nil {
		return nil, fmt.Errorf("code at %#x not in the file", fn.entry)
	}
	var rets []uint64
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			// Padding after the last instruction may not decode; skip a byte.
			pc++
			continue
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, off+uint64(pc))
		}
		pc += inst.Len
	}
	if len(rets) == 0 {
		return nil, errors.New("no RET instruction found")
	}
	return rets, nil
}

// Cookie bits shared with bpf/golang.c.
const goCookieHasFinished = 1

// attachGo puts the Go STW probes on one executable. Uprobes bind to the
// inode, so every process running this file is covered by one attach.
func attachGo(p *probeSet, b *goBinary, objs *bpfObjects) ([]link.Link, error) {
	var cookie uint64
	if b.minor >= 23 {
		cookie = goCookieHasFinished
	}
	at := func(addr uint64) link.UprobeOptions { return link.UprobeOptions{Address: addr, Cookie: cookie} }
	var err error
	if b.minor >= 22 {
		for _, r := range b.stopRets {
			if err = p.add("runtime.stopTheWorldWithSema", objs.GoStopRet, false, at(r)); err != nil {
				break
			}
		}
		if err == nil {
			err = p.add("runtime.startTheWorldWithSema", objs.GoStartEntry, false, at(b.startEntry))
		}
	} else {
		err = p.add("runtime.stopTheWorldWithSema", objs.GoStopEntry, false, at(b.stopEntry))
	}
	for _, r := range b.startRets {
		if err != nil {
			break
		}
		err = p.add("runtime.startTheWorldWithSema", objs.GoStartRet, false, at(r))
	}
	return p.result(err)
}

// closeLinks closes links concurrently. Taking a uprobe off waits for RCU
// grace periods (tens of milliseconds each, more on a busy machine): one
// after another, a few hundred links took many seconds at shutdown, while
// concurrent closes share their grace periods.
func closeLinks(links []link.Link) {
	if len(links) <= 1 {
		for _, l := range links {
			l.Close()
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrentCloses)
	for _, l := range links {
		sem <- struct{}{}
		wg.Go(func() {
			l.Close()
			<-sem
		})
	}
	wg.Wait()
}

// maxConcurrentCloses bounds the goroutines closeLinks starts.
const maxConcurrentCloses = 64
