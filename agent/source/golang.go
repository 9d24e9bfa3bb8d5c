package source

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"
)

// Go versions whose runtime this file has been checked against: the
// stwReason enum, the worldStop layout and the registers the probes read
// (see bpf/golang.c). A binary built by any other version is listed with
// method "none" rather than probed blindly.
const (
	goMinMinor = 17
	goMaxMinor = 26
	// goReasonMinor is the first version whose stopTheWorldWithSema takes
	// a stwReason; before it the pause is classified by its caller.
	goReasonMinor = 21
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
	if minor < goReasonMinor || minor > goMaxMinor || int(r) >= len(goReasons) {
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
	// Go 1.17-1.20: the pause's caller, keyed by the distance from a RET
	// of startTheWorldWithSema to the return site after a call of it
	// (what bpf/golang.c sends in aux).
	callers map[int64]goCaller
	// gcTotal is the address of the runtime's own GC CPU total
	// (work.cpuStats.gcTotalTime, ns, Go 1.20+), 0 when it cannot be
	// read: gcCPUWhy says why (gogccpu.go).
	gcTotal  uint64
	gcCPUWhy string
}

// goCaller is what the caller of startTheWorldWithSema says of a pause.
type goCaller struct{ reason, kind string }

// goCallerReasons: in Go 1.17-1.20 startTheWorldWithSema is called from
// exactly one closure in each of these functions (src/runtime/mgc.go and
// proc.go of every release), and stopTheWorldWithSema, which takes no
// argument, from the matching stop sides: gcStart (sweep termination),
// gcMarkDone (mark termination, restarted when work reappeared, issue
// #27993), gcMarkTermination (mark termination) and stopTheWorld, the path
// of every non-GC pause. The non-GC reason string lives in m.preemptoff,
// whose offset in the m struct is not proven from the binary, so it is not
// read: those pauses are "unknown", kind other.
var goCallerReasons = []struct {
	prefix string
	goCaller
}{
	{"runtime.gcStart.func", goCaller{"GC sweep termination", "gc"}},
	{"runtime.gcMarkDone.func", goCaller{"GC mark termination", "gc"}},
	{"runtime.gcMarkTermination.func", goCaller{"GC mark termination", "gc"}},
	{"runtime.startTheWorld.func", goCaller{"unknown", "other"}},
}

// reasonFromCaller returns the reason and kind of a Go 1.17-1.20 pause
// from the return site bpf/golang.c saw (ok false: none was sent).
func (b *goBinary) reasonFromCaller(delta uint64, ok bool) (reason, kind string) {
	if c, found := b.callers[int64(delta)]; ok && found {
		return c.reason, c.kind
	}
	return "unknown", "other"
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
// STW functions from .symtab or, for stripped binaries, .gopclntab. Every
// address it returns has been proven to be an instruction boundary of the
// intended function (see verifyGoFunc); anything that does not add up is an
// error, and the binary is not probed: a uprobe inside an instruction
// corrupts the process it sits in.
func inspectGo(r io.ReaderAt) (*goBinary, error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		if v, ok := goWithoutSections(r); ok {
			return nil, &truncatedGoError{v}
		}
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
	names := []string{"runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema"}
	var work uint64
	funcs, err := goSymbols(f, "runtime.work", &work, names...)
	if err != nil {
		return nil, err
	}
	b := &goBinary{version: bi.GoVersion, minor: minor}
	b.gcTotal, b.gcCPUWhy = goGCTotalAddr(f, minor, work)
	places := []struct {
		entry *uint64
		rets  *[]uint64
	}{{&b.stopEntry, &b.stopRets}, {&b.startEntry, &b.startRets}}
	for i, fn := range funcs {
		if *places[i].entry, *places[i].rets, err = probeSites(f, fn); err != nil {
			return nil, fmt.Errorf("%s at %#x: %w", names[i], fn.entry, err)
		}
	}
	if minor < goReasonMinor {
		if b.callers, err = goStartCallers(f, funcs[1]); err != nil {
			return nil, fmt.Errorf("go1.%d callers of runtime.startTheWorldWithSema: %w", minor, err)
		}
	}
	return b, nil
}

// truncatedGoError: a Go executable whose sections cannot be read (the
// file was cut after its last loaded segment, and still runs).
type truncatedGoError struct{ version string }

func (e *truncatedGoError) Error() string {
	return "Go executable whose sections cannot be read (truncated after its last loaded segment?): " +
		"its symbols and pclntab cannot be found, so no probe site can be proven"
}

func (e *truncatedGoError) runtimeVersion() string { return e.version }

// Bounds on what goWithoutSections reads: program headers, and how far
// into each writable segment the build info is looked for (the linker
// puts it first in .go.buildinfo, at the start of the data segment; Go's
// debug/buildinfo searches 64 KiB too).
const (
	maxProgHeaders     = 64
	buildInfoSearchLen = 64 << 10
)

// goWithoutSections says whether r is a 64-bit little-endian ELF whose
// sections debug/elf cannot read (cut after its last loaded segment: the
// section name table, .symtab and .strtab are past it), with Go's build
// info in a writable loaded segment, and returns the Go version when the
// build info holds it inline (Go 1.18+). The kernel runs such a file: it
// needs only the program headers and the segments.
func goWithoutSections(r io.ReaderAt) (string, bool) {
	var h [64]byte
	if _, err := r.ReadAt(h[:], 0); err != nil || string(h[:4]) != elf.ELFMAG ||
		elf.Class(h[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(h[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return "", false
	}
	le := binary.LittleEndian
	phoff := le.Uint64(h[0x20:])
	phentsize, phnum := le.Uint16(h[0x36:]), le.Uint16(h[0x38:])
	if phnum == 0 || phnum > maxProgHeaders || phentsize < 56 {
		return "", false
	}
	if _, err := elf.NewFile(r); err == nil {
		return "", false // its sections read: not this case
	}
	magic := []byte("\xff Go buildinf:")
	for i := range uint64(phnum) {
		var ph [56]byte
		if _, err := r.ReadAt(ph[:], int64(phoff+i*uint64(phentsize))); err != nil {
			return "", false
		}
		typ, flags := elf.ProgType(le.Uint32(ph[0:])), elf.ProgFlag(le.Uint32(ph[4:]))
		if typ != elf.PT_LOAD || flags&(elf.PF_W|elf.PF_X) != elf.PF_W {
			continue
		}
		off, filesz := le.Uint64(ph[8:]), le.Uint64(ph[32:])
		data := make([]byte, min(filesz, buildInfoSearchLen))
		n, _ := r.ReadAt(data, int64(off))
		data = data[:n]
		// The build info is 16-byte aligned, as debug/buildinfo expects.
		for at := 0; at+32 <= len(data); at += 16 {
			if !bytes.Equal(data[at:at+len(magic)], magic) {
				continue
			}
			version := ""
			if data[at+15]&2 != 0 { // inline strings: a uvarint length, then the version
				if l, k := binary.Uvarint(data[at+32:]); k > 0 && l <= 64 && at+32+k+int(l) <= len(data) {
					version = string(data[at+32+k : at+32+k+int(l)])
				}
			}
			return version, true
		}
	}
	return "", false
}

// goStartCallers finds, in each closure named in goCallerReasons, the one
// CALL of startTheWorldWithSema, and keys its return site by the distance
// from each RET of startTheWorldWithSema. Each closure's code is proven
// the way probe sites are (verifyGoFunc), so the CALLs are real
// instructions; a binary where the four callers are not found exactly
// once each is refused, rather than have its pauses misclassified.
func goStartCallers(f *elf.File, start funcRange) (map[int64]goCaller, error) {
	fns, err := goFuncsByPrefix(f, func(name string) bool {
		for _, c := range goCallerReasons {
			if strings.HasPrefix(name, c.prefix) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	startCode, err := funcCode(f, start)
	if err != nil {
		return nil, err
	}
	rets, err := verifyGoFunc(startCode)
	if err != nil {
		return nil, fmt.Errorf("runtime.startTheWorldWithSema: %w", err)
	}
	out := map[int64]goCaller{}
	for _, c := range goCallerReasons {
		var sites []uint64
		for _, fn := range fns {
			if !strings.HasPrefix(fn.name, c.prefix) {
				continue
			}
			code, err := funcCode(f, fn.funcRange)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn.name, err)
			}
			calls, err := goCallsTo(code, fn.entry, start.entry)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn.name, err)
			}
			sites = append(sites, calls...)
		}
		if len(sites) != 1 {
			return nil, fmt.Errorf("%d calls in %s*, want exactly one: this runtime is not the one checked", len(sites), c.prefix)
		}
		for _, r := range rets {
			d := int64(sites[0]) - int64(start.entry+uint64(r))
			if prev, dup := out[d]; dup && prev != c.goCaller {
				return nil, fmt.Errorf("return sites of %q and %q are the same distance from a RET", prev.reason, c.reason)
			}
			out[d] = c.goCaller
		}
	}
	return out, nil
}

// goCallsTo sweeps a proven Go function at vaddr base and returns the
// return sites (the address after the CALL) of its direct calls to target.
func goCallsTo(code []byte, base, target uint64) ([]uint64, error) {
	if _, err := verifyGoFunc(code); err != nil {
		return nil, err
	}
	var sites []uint64
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return nil, fmt.Errorf("no instruction decodes at +%#x", pc)
		}
		next := pc + inst.Len
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL &&
			int64(base)+int64(next)+int64(rel) == int64(target) {
			sites = append(sites, base+uint64(next))
		}
		pc = next
	}
	return sites, nil
}

type namedFunc struct {
	name string
	funcRange
}

// goFuncsByPrefix lists the functions whose names match: from .symtab when
// present, else from the pclntab.
func goFuncsByPrefix(f *elf.File, match func(string) bool) ([]namedFunc, error) {
	var out []namedFunc
	if err := eachSymbol(f, elf.SHT_SYMTAB, func(name []byte, s elf.Sym64) bool {
		if s.Size > 0 && elf.ST_TYPE(s.Info) == elf.STT_FUNC && match(string(name)) {
			out = append(out, namedFunc{string(name), funcRange{s.Value, s.Value + s.Size}})
		}
		return true
	}); err == nil {
		return out, nil
	}
	tab, err := goPclntab(f)
	if err != nil {
		return nil, err
	}
	for _, fn := range tab.Funcs {
		if match(fn.Name) {
			out = append(out, namedFunc{fn.Name, funcRange{fn.Entry, fn.End}})
		}
	}
	return out, nil
}

type funcRange struct{ entry, end uint64 }

// goFuncs finds functions by name. With .symtab, the symbols give the
// addresses and the pclntab, when it can be read, must agree; without it
// (stripped with -ldflags=-s -w) the pclntab alone does.
func goFuncs(f *elf.File, names ...string) ([]funcRange, error) {
	return goSymbols(f, "", nil, names...)
}

// goSymbols is goFuncs that also sets *dataAddr to the address of the
// data symbol named data, when .symtab has it, in the same pass.
func goSymbols(f *elf.File, data string, dataAddr *uint64, names ...string) ([]funcRange, error) {
	out := make([]funcRange, len(names))
	found := 0
	var text uint64 // runtime.text, for the pclntab: one pass over .symtab
	eachSymbol(f, elf.SHT_SYMTAB, func(name []byte, s elf.Sym64) bool {
		if text == 0 && string(name) == "runtime.text" {
			text = s.Value
		}
		if dataAddr != nil && *dataAddr == 0 && elf.ST_TYPE(s.Info) == elf.STT_OBJECT && string(name) == data {
			*dataAddr = s.Value
		}
		for i, n := range names {
			if s.Size > 0 && out[i].entry == 0 && string(name) == n {
				out[i] = funcRange{s.Value, s.Value + s.Size}
				found++
			}
		}
		return found < len(names) || text == 0 || (dataAddr != nil && *dataAddr == 0)
	})
	if found < len(names) {
		return goFuncsPclntab(f, names...)
	}
	// The pclntab must agree when it can be read: the function it has at
	// each address is the one .symtab names there.
	tab, err := goPclnTabAt(f, text)
	if err != nil {
		return out, nil
	}
	for i, n := range names {
		fn, ok, err := tab.funcAt(out[i].entry)
		if err != nil {
			return out, nil
		}
		if ok {
			ok, err = tab.nameIs(fn, n)
			if err != nil {
				return out, nil
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: .symtab says %#x, where .gopclntab starts no function of that name", n, out[i].entry)
		}
	}
	return out, nil
}

// goFuncsPclntab finds functions through the pclntab, which even stripped
// Go binaries keep (the runtime needs it for tracebacks). The pclntab holds
// entries as offsets from the start of Go code (runtime.text), which is not
// the start of .text when the external linker put C code first (cgo).
func goFuncsPclntab(f *elf.File, names ...string) ([]funcRange, error) {
	tab, err := goPclnTab(f)
	if err != nil {
		return nil, err
	}
	return tab.byName(names...)
}

// goPclnSection is the pclntab's section.
func goPclnSection(f *elf.File) (*elf.Section, error) {
	pcln := f.Section(".gopclntab")
	if pcln == nil {
		// PIE binaries keep it in relocated read-only data, in a section
		// of its own name (Go 1.17-1.22 on this machine).
		pcln = f.Section(".data.rel.ro.gopclntab")
	}
	if pcln == nil {
		return nil, errors.New("no .symtab entry and no .gopclntab (or .data.rel.ro.gopclntab) section")
	}
	return pcln, nil
}

// pclnTab reads a Go 1.16+ pclntab (little-endian, 64-bit: the layout
// debug/gosym reads, runtime.pcHeader, functab and _func.nameOff) where it
// lies in the file, a few bytes at a time. Reading the section whole, and
// building gosym's Func, Sym and name string for each of its functions,
// cost several MiB for each new Go binary the node ran (megabytes more
// for large ones) to find two functions.
type pclnTab struct {
	r         io.ReaderAt
	size      uint64
	textStart uint64
	sz        uint64 // functab field size: 8 (Go 1.16, 1.17, addresses) or 4 (offsets from textStart)
	nfunc     uint64
	nametab   uint64 // offset of funcnametab
	tab       uint64 // offset of functab; the _func records are at tab+funcoff
	buf       [256]byte
}

// pclnHeaderSize covers runtime.pcHeader in every supported version.
const pclnHeaderSize = 8 + 8*8

func goPclnTab(f *elf.File) (*pclnTab, error) { return goPclnTabAt(f, 0) }

// goPclnTabAt is goPclnTab with the start of Go code when known (else 0).
func goPclnTabAt(f *elf.File, textStart uint64) (*pclnTab, error) {
	sec, err := goPclnSection(f)
	if err != nil {
		return nil, err
	}
	if sec.Type == elf.SHT_NOBITS || sec.Flags&elf.SHF_COMPRESSED != 0 || sec.ReaderAt == nil {
		return nil, errors.New(".gopclntab is not stored plainly in the file")
	}
	t := &pclnTab{r: sec.ReaderAt, size: sec.Size}
	var h [pclnHeaderSize]byte
	if err := t.read(0, h[:]); err != nil {
		return nil, err
	}
	if t.textStart = textStart; t.textStart == 0 {
		if t.textStart, err = goTextStart(f, sec.Addr, h[:]); err != nil {
			return nil, err
		}
	}
	le := binary.LittleEndian
	if h[4] != 0 || h[5] != 0 || h[7] != 8 {
		return nil, errors.New("parse .gopclntab: not a 64-bit Go 1.16+ pclntab")
	}
	// Words of the header after its first 8 bytes: nfunc first, then the
	// offsets of funcnametab and of functab.
	var nameWord, tabWord int
	switch le.Uint32(h[:]) {
	case 0xfffffffa: // Go 1.16, 1.17
		t.sz, nameWord, tabWord = 8, 2, 6
	case 0xfffffff0, 0xfffffff1: // Go 1.18, 1.19; 1.20+
		t.sz, nameWord, tabWord = 4, 3, 7
	default:
		return nil, fmt.Errorf("parse .gopclntab: magic %#x", le.Uint32(h[:]))
	}
	word := func(i int) uint64 { return le.Uint64(h[8+8*i:]) }
	t.nfunc, t.nametab, t.tab = word(0), word(nameWord), word(tabWord)
	if t.nfunc == 0 || t.nametab >= t.size || t.tab >= t.size || (2*t.nfunc+2)*t.sz > t.size-t.tab {
		return nil, errors.New("parse .gopclntab: malformed header")
	}
	return t, nil
}

func (t *pclnTab) read(off uint64, b []byte) error {
	if off > t.size || uint64(len(b)) > t.size-off {
		return errors.New("parse .gopclntab: offset out of the section")
	}
	if _, err := t.r.ReadAt(b, int64(off)); err != nil {
		return fmt.Errorf("read .gopclntab: %w", err)
	}
	return nil
}

// field reads a functab field.
func (t *pclnTab) field(off uint64) (uint64, error) {
	b := t.buf[:t.sz]
	if err := t.read(off, b); err != nil {
		return 0, err
	}
	if t.sz == 4 {
		return uint64(binary.LittleEndian.Uint32(b)), nil
	}
	return binary.LittleEndian.Uint64(b), nil
}

// entry is function i's entry address; entry(nfunc) is the end of the last.
func (t *pclnTab) entry(i uint64) (uint64, error) {
	v, err := t.field(t.tab + 2*i*t.sz)
	if err != nil || t.sz == 8 {
		return v, err
	}
	return t.textStart + v, nil
}

// funcAt finds the function that starts at pc: ok false when none does.
func (t *pclnTab) funcAt(pc uint64) (i uint64, ok bool, err error) {
	lo, hi := uint64(0), t.nfunc // entries ascend: find the first >= pc
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, err := t.entry(mid)
		if err != nil {
			return 0, false, err
		}
		if e < pc {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == t.nfunc {
		return 0, false, nil
	}
	e, err := t.entry(lo)
	return lo, err == nil && e == pc, err
}

// nameAt reads the first n bytes (fewer at the end of the section, at
// most len(t.buf)) of function i's name and what follows it; valid until
// the next read.
func (t *pclnTab) nameAt(i uint64, n int) ([]byte, error) {
	funcoff, err := t.field(t.tab + (2*i+1)*t.sz)
	if err != nil {
		return nil, err
	}
	if err := t.read(t.tab+funcoff+t.sz, t.buf[:4]); err != nil {
		return nil, err
	}
	off := t.nametab + uint64(binary.LittleEndian.Uint32(t.buf[:4]))
	if off >= t.size {
		return nil, errors.New("parse .gopclntab: name out of the section")
	}
	name := t.buf[:min(uint64(n), uint64(len(t.buf)), t.size-off)]
	return name, t.read(off, name)
}

// nameIs says whether function i is named n.
func (t *pclnTab) nameIs(i uint64, n string) (bool, error) {
	name, err := t.nameAt(i, len(n)+1)
	return err == nil && isName(name, n), err
}

// isName says whether b starts with n and its terminating NUL.
func isName(b []byte, n string) bool {
	return len(b) > len(n) && b[len(n)] == 0 && string(b[:len(n)]) == n
}

// byName finds functions by name: the first of each name, in address
// order, as gosym's LookupFunc has it; a function ends where the next
// starts.
func (t *pclnTab) byName(names ...string) ([]funcRange, error) {
	out := make([]funcRange, len(names))
	longest := 0
	for _, n := range names {
		if len(n)+1 > len(t.buf) {
			return nil, fmt.Errorf("function name %s too long to look up", n)
		}
		longest = max(longest, len(n)+1)
	}
	found := 0
	for i := uint64(0); i < t.nfunc && found < len(names); i++ {
		name, err := t.nameAt(i, longest)
		if err != nil {
			return nil, err
		}
		for j, n := range names {
			if out[j].entry != 0 || !isName(name, n) {
				continue
			}
			if out[j].entry, err = t.entry(i); err != nil {
				return nil, err
			}
			if out[j].end, err = t.entry(i + 1); err != nil {
				return nil, err
			}
			found++
			break // t.buf, and name, were read over
		}
	}
	for j, n := range names {
		if out[j].entry == 0 {
			return nil, fmt.Errorf("function %s not in .gopclntab", n)
		}
	}
	return out, nil
}

// goPclntab parses the whole pclntab with debug/gosym, for the one caller
// that lists functions by prefix in a stripped binary of a Go older than
// goReasonMinor.
func goPclntab(f *elf.File) (*gosym.Table, error) {
	pcln, err := goPclnSection(f)
	if err != nil {
		return nil, err
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("read .gopclntab: %w", err)
	}
	textStart, err := goTextStart(f, pcln.Addr, data)
	if err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		return nil, fmt.Errorf("parse .gopclntab: %w", err)
	}
	return tab, nil
}

// goTextStart returns the address of runtime.text, from which the pclntab
// counts function entries: the symbol when .symtab has it, else the text
// field of the runtime's first moduledata, which the linker writes for the
// runtime itself and which survives stripping.
func goTextStart(f *elf.File, pclnAddr uint64, pcln []byte) (uint64, error) {
	var text uint64
	found := false
	eachSymbol(f, elf.SHT_SYMTAB, func(name []byte, s elf.Sym64) bool {
		if string(name) == "runtime.text" {
			text, found = s.Value, true
		}
		return !found
	})
	if found {
		return text, nil
	}
	md, err := findModuledata(f, pclnAddr, pcln)
	if err != nil {
		return 0, fmt.Errorf("start of Go code: %w", err)
	}
	return md.text, nil
}

// moduledata holds the fields of runtime.moduledata this file reads. Their
// offsets (pcHeader at 0 ... text at 22 words) are the same in every Go
// version from 1.16 to 1.26 (src/runtime/symtab.go).
type moduledata struct {
	funcnametab  uint64
	nftab        uint64
	minpc, maxpc uint64
	text, etext  uint64
}

// Word indexes of moduledata's fields on a 64-bit target.
const (
	mdPcHeader    = 0
	mdFuncnametab = 1  // slice: ptr, len, cap
	mdFtab        = 16 // slice: ptr, len, cap
	mdMinpc       = 20
	mdMaxpc       = 21
	mdText        = 22
	mdEtext       = 23
	mdWords       = 24
)

// R_X86_64_RELATIVE: in a PIE the moduledata's pointers are written by the
// dynamic loader from these relocations, and the file may hold zeros.
const rX86_64Relative = 8

// findModuledata finds runtime.firstmoduledata: the one place in the
// writable data whose first word points at the pclntab and whose other
// fields agree with the pclntab's own header. It fails rather than guess
// when no candidate, or more than one, fits.
func findModuledata(f *elf.File, pclnAddr uint64, pcln []byte) (*moduledata, error) {
	if len(pcln) < 40 {
		return nil, errors.New(".gopclntab too short for its header")
	}
	nfunc := binary.LittleEndian.Uint64(pcln[8:])
	// The header (runtime.pcHeader) gained textStart before funcnameOffset
	// in Go 1.18; Go 1.16 and 1.17 (magic 0xfffffffa) have funcnameOffset
	// right after nfiles.
	funcnameOffset := binary.LittleEndian.Uint64(pcln[32:])
	if binary.LittleEndian.Uint32(pcln) == 0xfffffffa {
		funcnameOffset = binary.LittleEndian.Uint64(pcln[24:])
	}

	// Relocated words: address -> value the loader writes there.
	rel := map[uint64]uint64{}
	if s := f.Section(".rela.dyn"); s != nil && s.Type == elf.SHT_RELA {
		if d, err := s.Data(); err == nil {
			for i := 0; i+24 <= len(d); i += 24 {
				if binary.LittleEndian.Uint64(d[i+8:])&0xffffffff == rX86_64Relative {
					rel[binary.LittleEndian.Uint64(d[i:])] = binary.LittleEndian.Uint64(d[i+16:])
				}
			}
		}
	}

	var found []*moduledata
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W == 0 || p.Filesz == 0 || p.Filesz > 1<<30 {
			continue
		}
		seg := make([]byte, p.Filesz)
		if _, err := p.ReadAt(seg, 0); err != nil {
			return nil, fmt.Errorf("read data segment at %#x: %w", p.Vaddr, err)
		}
		word := func(addr uint64) (uint64, bool) {
			if v, ok := rel[addr]; ok {
				return v, true
			}
			if addr < p.Vaddr || addr+8 > p.Vaddr+p.Filesz {
				return 0, false
			}
			return binary.LittleEndian.Uint64(seg[addr-p.Vaddr:]), true
		}
		for off := uint64(0); off+8*mdWords <= p.Filesz; off += 8 {
			addr := p.Vaddr + off
			if v, _ := word(addr); v != pclnAddr {
				continue
			}
			var w [mdWords]uint64
			ok := true
			for i := range w {
				if w[i], ok = word(addr + 8*uint64(i)); !ok {
					break
				}
			}
			if !ok {
				continue
			}
			md := &moduledata{
				funcnametab: w[mdFuncnametab], nftab: w[mdFtab+1],
				minpc: w[mdMinpc], maxpc: w[mdMaxpc], text: w[mdText], etext: w[mdEtext],
			}
			// The ftab has one entry per function plus an end marker.
			if md.funcnametab != pclnAddr+funcnameOffset || md.nftab != nfunc+1 ||
				md.text == 0 || md.text > md.minpc || md.minpc >= md.maxpc || md.maxpc > md.etext {
				continue
			}
			if _, err := fileOffset(f, md.text); err != nil {
				continue
			}
			found = append(found, md)
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("no runtime moduledata points at .gopclntab")
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("%d candidate runtime moduledata records", len(found))
	}
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

// probeSites reads a function's code and returns the file offsets of its
// entry and of its RET instructions, once verifyGoFunc has proven them.
// RET uprobes stand in for uretprobes, which Go's moving stacks do not
// survive.
func probeSites(f *elf.File, fn funcRange) (entry uint64, rets []uint64, err error) {
	if fn.end <= fn.entry || fn.end-fn.entry > 1<<20 {
		return 0, nil, fmt.Errorf("implausible function range %#x..%#x", fn.entry, fn.end)
	}
	off, err := fileOffset(f, fn.entry)
	if err != nil {
		return 0, nil, err
	}
	code, err := funcCode(f, fn)
	if err != nil {
		return 0, nil, err
	}
	pcs, err := verifyGoFunc(code)
	if err != nil {
		return 0, nil, err
	}
	for _, pc := range pcs {
		rets = append(rets, off+uint64(pc))
	}
	return off, rets, nil
}

// funcCode reads a function's bytes from the executable segment.
func funcCode(f *elf.File, fn funcRange) ([]byte, error) {
	if fn.end <= fn.entry || fn.end-fn.entry > 1<<20 {
		return nil, fmt.Errorf("implausible function range %#x..%#x", fn.entry, fn.end)
	}
	off, err := fileOffset(f, fn.entry)
	if err != nil {
		return nil, err
	}
	code := make([]byte, fn.end-fn.entry)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && off >= p.Off && off+uint64(len(code)) <= p.Off+p.Filesz {
			if _, err := p.ReadAt(code, int64(off-p.Off)); err != nil {
				return nil, fmt.Errorf("read code: %w", err)
			}
			return code, nil
		}
	}
	return nil, fmt.Errorf("code %#x..%#x is not in one executable segment of the file", fn.entry, fn.end)
}

// verifyGoFunc proves that code starts at a Go function's first instruction
// and returns the offsets of its RET instructions. Go puts no data in
// amd64 code, so a linear sweep from a true entry meets every instruction
// boundary; what proves the entry true is the function's own shape:
//   - it opens with the stack-bound check against the goroutine (g in R14):
//     CMP RSP, 0x10(R14) or, for larger frames, LEA R12, -n(RSP) then
//     CMP R12, 0x10(R14) (0x18 for system-stack functions);
//   - the sweep decodes every byte up to the function's end (the padding
//     after it is INT3);
//   - its last instruction is the JMP back to the entry that follows the
//     morestack call, whose target, computed from where the sweep decoded
//     it, is offset 0.
//
// An address that is off by any amount fails one of the three; the caller
// then refuses to probe the binary.
func verifyGoFunc(code []byte) ([]int, error) {
	var (
		rets       []int
		prologue   int // instructions of the stack check seen
		lastJmpTo  = -1
		lastIsJmp  bool
		insts      int
		paddingRun bool
	)
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return nil, fmt.Errorf("no instruction decodes at +%#x: not a verified instruction boundary", pc)
		}
		next := pc + inst.Len
		if code[pc] == 0xcc { // INT3
			// Padding to the next function; nothing executable follows.
			paddingRun = true
			pc = next
			continue
		}
		if paddingRun {
			return nil, fmt.Errorf("code after INT3 padding at +%#x: the range is not one function", pc)
		}
		switch insts {
		case 0:
			if isStackCheck(inst, x86asm.RSP) {
				prologue = 2
			} else if inst.Op == x86asm.LEA && inst.Args[0] == x86asm.R12 {
				prologue = 1
			}
		case 1:
			if prologue == 1 && isStackCheck(inst, x86asm.R12) {
				prologue = 2
			}
		}
		if insts == 1 && prologue < 2 || insts == 0 && prologue == 0 {
			return nil, fmt.Errorf("no Go stack-bound check at the entry (%v): not the start of a Go function", inst)
		}
		insts++
		if inst.Op == x86asm.RET {
			rets = append(rets, pc)
		}
		lastIsJmp, lastJmpTo = false, -1
		if inst.Op == x86asm.JMP {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok {
				lastIsJmp, lastJmpTo = true, next+int(rel)
			}
		}
		pc = next
	}
	if !lastIsJmp || lastJmpTo != 0 {
		return nil, errors.New("the function does not end with the morestack jump back to its entry: the entry is not proven")
	}
	if len(rets) == 0 {
		return nil, errors.New("no RET instruction found")
	}
	return rets, nil
}

// isStackCheck matches CMP reg, 0x10(R14) or 0x18(R14): a Go function
// comparing its stack bound with g.stackguard0 (or stackguard1).
func isStackCheck(inst x86asm.Inst, reg x86asm.Reg) bool {
	if inst.Op != x86asm.CMP || inst.Args[0] != reg {
		return false
	}
	m, ok := inst.Args[1].(x86asm.Mem)
	return ok && m.Base == x86asm.R14 && m.Index == 0 && (m.Disp == 0x10 || m.Disp == 0x18)
}

// Cookie bits shared with bpf/golang.c.
const (
	goCookieHasFinished = 1 // worldStop.finishedStopping exists (1.23+)
	goCookieNoReason    = 2 // stopTheWorldWithSema takes no reason (< 1.21)
	goCookieCaller      = 4 // send startTheWorldWithSema's return site (< 1.21)
)

// runtimeGo is PW_RUNTIME_GO of bpf/golang.
const runtimeGo = 1

// goRuntime recognises Go executables by their build info.
type goRuntime struct{}

func (goRuntime) Name() string                  { return "go" }
func (goRuntime) ID() uint8                     { return runtimeGo }
func (goRuntime) Library(string) bool           { return false }
func (goRuntime) Service(string, []byte) string { return "" }

// Recognise reads a Go executable (see inspectGo).
func (goRuntime) Recognise(f *file) (Plan, error) {
	if !f.exe {
		return nil, notMine("Go is linked into executables")
	}
	b, err := inspectGo(f.f)
	if errors.Is(err, errNotGo) {
		return nil, fmt.Errorf("%w: %w", errNotMine, err)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (e *unsupportedGoError) runtimeVersion() string { return e.version }

func (b *goBinary) Method() string  { return MethodUprobe }
func (b *goBinary) Version() string { return b.version }

// Decode: the stwReason the runtime passed (1.21+), else the caller
// of startTheWorldWithSema.
func (b *goBinary) Decode(e bpfPwEvent) (f pauseFacts) {
	if b.minor < goReasonMinor {
		f.reason, f.kind = b.reasonFromCaller(e.Aux, e.Flags&eventFlagAux != 0)
		return f
	}
	f.reason, f.kind = goReason(b.minor, e.Reason)
	return f
}

// Attach puts the Go STW probes on one executable. Uprobes bind to the
// inode, so every process running this file is covered by one attach.
func (b *goBinary) Attach(p *probeSet, objs *bpfObjects) error {
	var cookie uint64
	if b.minor >= 23 {
		cookie = goCookieHasFinished
	}
	if b.minor < goReasonMinor {
		cookie = goCookieNoReason | goCookieCaller
	}
	at := func(addr uint64) link.UprobeOptions { return link.UprobeOptions{Address: addr, Cookie: cookie} }
	if b.minor >= 22 {
		for _, r := range b.stopRets {
			if err := p.add("runtime.stopTheWorldWithSema", objs.GoStopRet, false, at(r)); err != nil {
				return err
			}
		}
		if err := p.add("runtime.startTheWorldWithSema", objs.GoStartEntry, false, at(b.startEntry)); err != nil {
			return err
		}
	} else if err := p.add("runtime.stopTheWorldWithSema", objs.GoStopEntry, false, at(b.stopEntry)); err != nil {
		return err
	}
	for _, r := range b.startRets {
		if err := p.add("runtime.startTheWorldWithSema", objs.GoStartRet, false, at(r)); err != nil {
			return err
		}
	}
	return nil
}
