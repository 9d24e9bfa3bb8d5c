// Package usdt reads USDT (SystemTap SDT) probes from ELF files: the
// .note.stapsdt notes that say where each probe is, which semaphore guards
// it, and where its arguments live. cilium/ebpf has no USDT support; this
// package gives link.UprobeOptions what it needs (Address, RefCtrOffset)
// and the BPF side what it needs to read arguments (Arg).
package usdt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A Probe is one USDT probe site.
type Probe struct {
	Provider string
	Name     string
	// Addr is the probe's virtual address, adjusted for prelinking.
	Addr uint64
	// Offset is the file offset of the probe instruction: what
	// link.UprobeOptions.Address takes.
	Offset uint64
	// Semaphore is the virtual address of the probe's guard, 0 if none.
	Semaphore uint64
	// SemaphoreOffset is its file offset: link.UprobeOptions.RefCtrOffset.
	// The kernel increments it while the uprobe is attached, so guarded
	// probes fire.
	SemaphoreOffset uint64
	// Args are the argument locations, in order.
	Args []Arg
	// RawArgs is the argument string as found in the note.
	RawArgs string
}

// ArgKind is where an argument lives at the probe.
type ArgKind uint8

const (
	ArgConst  ArgKind = 1 // the value is Val
	ArgReg    ArgKind = 2 // the value is in register Reg
	ArgRegMem ArgKind = 3 // the value is in memory at Reg + Val
)

// An Arg is one probe argument: "-4@%eax", "8@-16(%rbp)", "8@$5".
type Arg struct {
	Kind ArgKind
	// Size in bytes (1, 2, 4 or 8) and signedness, from the spec's "-4@".
	Size   uint8
	Signed bool
	// Reg is the register's name ("rax" for %eax too); RegOffset its byte
	// offset in the kernel's x86-64 struct pt_regs.
	Reg       string
	RegOffset uint32
	// Val is the constant, or the memory displacement.
	Val int64
}

const (
	noteTypeSDT = 3
	noteName    = "stapsdt"
)

// ErrNoProbes says the file has no .note.stapsdt section.
var ErrNoProbes = errors.New("no USDT probes (.note.stapsdt section missing)")

// Read returns every USDT probe of an ELF file.
func Read(r io.ReaderAt) ([]Probe, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	return ReadFile(f)
}

// ReadFile is Read for an already-opened ELF file.
func ReadFile(f *elf.File) ([]Probe, error) {
	sec := f.Section(".note.stapsdt")
	if sec == nil {
		return nil, ErrNoProbes
	}
	if sec.Type != elf.SHT_NOTE {
		return nil, fmt.Errorf(".note.stapsdt is %s, not a note section", sec.Type)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .note.stapsdt: %w", err)
	}
	var base uint64
	if b := f.Section(".stapsdt.base"); b != nil {
		base = b.Addr
	}
	addrSize := 8
	if f.Class == elf.ELFCLASS32 {
		addrSize = 4
	}

	var probes []Probe
	bo := f.ByteOrder
	for off := 0; off < len(data); {
		if len(data)-off < 12 {
			return nil, fmt.Errorf("note at %d: truncated header", off)
		}
		namesz := int(bo.Uint32(data[off:]))
		descsz := int(bo.Uint32(data[off+4:]))
		typ := bo.Uint32(data[off+8:])
		off += 12
		nameEnd := off + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if namesz < 0 || descsz < 0 || nameEnd > len(data) || nameEnd+descsz > len(data) || nameEnd < off {
			return nil, fmt.Errorf("note at %d: sizes %d/%d run past the section", off-12, namesz, descsz)
		}
		name := strings.TrimRight(string(data[off:off+namesz]), "\x00")
		desc := data[nameEnd : nameEnd+descsz]
		off = min(descEnd, len(data))
		if typ != noteTypeSDT || name != noteName {
			continue
		}
		p, err := parseDesc(desc, addrSize, bo)
		if err != nil {
			return nil, fmt.Errorf("note at %d: %w", nameEnd, err)
		}
		// Prelink moves sections; the note records where .stapsdt.base was
		// at link time, so shift by how far it moved.
		if base != 0 && p.baseAtLink != 0 {
			p.Addr += base - p.baseAtLink
			if p.Semaphore != 0 {
				p.Semaphore += base - p.baseAtLink
			}
		}
		if p.Offset, err = fileOffset(f, p.Addr, true); err != nil {
			return nil, fmt.Errorf("probe %s:%s: %w", p.Provider, p.Name, err)
		}
		if p.Semaphore != 0 {
			if p.SemaphoreOffset, err = fileOffset(f, p.Semaphore, false); err != nil {
				return nil, fmt.Errorf("probe %s:%s semaphore: %w", p.Provider, p.Name, err)
			}
		}
		probes = append(probes, p.Probe)
	}
	return probes, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

type rawProbe struct {
	Probe
	baseAtLink uint64
}

func parseDesc(desc []byte, addrSize int, bo binary.ByteOrder) (rawProbe, error) {
	var p rawProbe
	if len(desc) < 3*addrSize {
		return p, fmt.Errorf("descriptor of %d bytes, want at least %d", len(desc), 3*addrSize)
	}
	addr := func(i int) uint64 {
		if addrSize == 4 {
			return uint64(bo.Uint32(desc[i*4:]))
		}
		return bo.Uint64(desc[i*8:])
	}
	p.Addr, p.baseAtLink, p.Semaphore = addr(0), addr(1), addr(2)
	strs := bytes.SplitN(desc[3*addrSize:], []byte{0}, 4)
	if len(strs) < 3 {
		return p, errors.New("descriptor strings are not NUL-terminated")
	}
	p.Provider, p.Name, p.RawArgs = string(strs[0]), string(strs[1]), string(strs[2])
	if p.Provider == "" || p.Name == "" {
		return p, errors.New("probe without provider or name")
	}
	args, err := ParseArgs(p.RawArgs)
	if err != nil {
		return p, fmt.Errorf("probe %s:%s: %w", p.Provider, p.Name, err)
	}
	p.Args = args
	return p, nil
}

// fileOffset converts a virtual address to a file offset through the
// PT_LOAD segment that maps it.
func fileOffset(f *elf.File, vaddr uint64, exec bool) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || (exec && p.Flags&elf.PF_X == 0) {
			continue
		}
		if vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", vaddr)
}

// ParseArgs parses a probe's argument string, e.g. "8@%r12 8@%rdx -4@%eax".
func ParseArgs(s string) ([]Arg, error) {
	var out []Arg
	for _, f := range strings.Fields(s) {
		a, err := parseArg(f)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", f, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseArg(s string) (Arg, error) {
	var a Arg
	sz, loc, ok := strings.Cut(s, "@")
	if !ok {
		return a, errors.New("no size@location")
	}
	n, err := strconv.Atoi(sz)
	if err != nil {
		return a, fmt.Errorf("size: %w", err)
	}
	if n < 0 {
		a.Signed, n = true, -n
	}
	switch n {
	case 1, 2, 4, 8:
		a.Size = uint8(n)
	default:
		return a, fmt.Errorf("size %d", n)
	}
	switch {
	case strings.HasPrefix(loc, "$"):
		v, err := strconv.ParseInt(loc[1:], 0, 64)
		if err != nil {
			return a, fmt.Errorf("constant: %w", err)
		}
		a.Kind, a.Val = ArgConst, v
	case strings.HasPrefix(loc, "%"):
		a.Kind = ArgReg
		if a.Reg, a.RegOffset, err = register(loc[1:]); err != nil {
			return a, err
		}
	case strings.HasSuffix(loc, ")"):
		i := strings.IndexByte(loc, '(')
		if i < 0 || !strings.HasPrefix(loc[i+1:], "%") {
			return a, errors.New("memory operand without (%reg)")
		}
		if i > 0 {
			if a.Val, err = strconv.ParseInt(loc[:i], 0, 64); err != nil {
				return a, fmt.Errorf("displacement %q is not a number (symbol-relative operands are not supported)", loc[:i])
			}
		}
		a.Kind = ArgRegMem
		if a.Reg, a.RegOffset, err = register(loc[i+2 : len(loc)-1]); err != nil {
			return a, err
		}
	default:
		return a, fmt.Errorf("unsupported location %q", loc)
	}
	return a, nil
}

// ptRegs is the byte offset of each x86-64 register in the kernel's
// struct pt_regs (arch/x86/include/uapi/asm/ptrace.h, a stable ABI), under
// every name the assembler may use for it or its low part.
var ptRegs = func() map[string][2]any {
	m := map[string][2]any{}
	add := func(off uint32, canon string, names ...string) {
		for _, n := range append(names, canon) {
			m[n] = [2]any{canon, off}
		}
	}
	add(0, "r15", "r15d", "r15w", "r15b")
	add(8, "r14", "r14d", "r14w", "r14b")
	add(16, "r13", "r13d", "r13w", "r13b")
	add(24, "r12", "r12d", "r12w", "r12b")
	add(32, "rbp", "ebp", "bp", "bpl")
	add(40, "rbx", "ebx", "bx", "bl", "bh")
	add(48, "r11", "r11d", "r11w", "r11b")
	add(56, "r10", "r10d", "r10w", "r10b")
	add(64, "r9", "r9d", "r9w", "r9b")
	add(72, "r8", "r8d", "r8w", "r8b")
	add(80, "rax", "eax", "ax", "al", "ah")
	add(88, "rcx", "ecx", "cx", "cl", "ch")
	add(96, "rdx", "edx", "dx", "dl", "dh")
	add(104, "rsi", "esi", "si", "sil")
	add(112, "rdi", "edi", "di", "dil")
	add(128, "rip", "eip")
	add(152, "rsp", "esp", "sp", "spl")
	return m
}()

func register(name string) (string, uint32, error) {
	r, ok := ptRegs[name]
	if !ok {
		return "", 0, fmt.Errorf("unknown x86-64 register %%%s", name)
	}
	if strings.HasSuffix(name, "h") && len(name) == 2 {
		return "", 0, fmt.Errorf("high-byte register %%%s is not supported", name)
	}
	return r[0].(string), r[1].(uint32), nil
}

// Find returns every site of the probe provider:name (a probe used in
// several places, or inlined, has several), or an error naming it.
func Find(probes []Probe, provider, name string) ([]Probe, error) {
	var out []Probe
	for _, p := range probes {
		if p.Provider == provider && p.Name == name {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("USDT probe %s:%s not found", provider, name)
	}
	return out, nil
}
