package source

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
)

// Symbol tables are streamed, never read whole: every executable the node
// runs is offered to every runtime, and elf.File.Symbols (or a string table
// read with Section.Data) costs the size of the tables for each, tens of
// MiB for a large binary. What is kept is a symbol at a time and a window
// of the string table.

// nameWindow is the most of a string table held at once, and so the
// longest symbol name seen whole; a longer one is passed cut to this
// length. No name looked for comes near it (the longest, V8's, is 48
// bytes); C++ and Go generic names run to a few KiB.
const nameWindow = 64 << 10

// strtab reads NUL-terminated names out of an ELF string table through a
// window of at most nameWindow bytes. Linkers write most of a table's
// names in the order of the symbols that use them, so a pass over the
// symbols reads it front to back, nameRead bytes at a time. The rest point
// back (a name shared as the tail of a longer one) or far ahead: in node's
// .symtab 4,685 and 3,769 of 109,847. A name behind the window is read
// into a small buffer of its own, which leaves the window where the pass
// goes on; a table whose names point anywhere costs reads, not memory.
//
// What a pass may read is bounded by the names it asks for: allow grows
// by nameAllowance with each name asked for and a read past it is an
// error. Without the bound, a hostile table (names that take turns among
// a few offsets, each longer than the window) made every 24-byte symbol
// cost 68 KiB of reads: 6.9 GiB and a second of CPU for a 2.5 MiB file.
type strtab struct {
	r            io.ReaderAt
	size         uint64
	main         strWindow // the pass front to back
	back         strWindow // names behind main, at most nameRead bytes
	spent, allow uint64    // bytes read, and the most that may be
}

// nameAllowance is how much reading each name asked for adds to what the
// pass may read, initialAllowance what it may read before any: well
// above what real tables take (node 20's .dynsym, whose names are in hash
// order, reads 24 MiB for 75k names, 330 bytes a name; its .symtab 150).
const (
	nameAllowance    = 8 << 10
	initialAllowance = 4 * nameWindow
)

// errScattered is returned for a table whose names cost more reads than
// nameAllowance a name.
var errScattered = errors.New("symbol names too scattered to read")

type strWindow struct {
	buf []byte
	at  uint64 // offset of buf[0] in the table
}

// nameRead is how much of the string table one read takes, jumpRead the
// first read for a name far from the window.
const (
	nameRead = 4 << 10
	jumpRead = 256
)

func newStrtab(sec *elf.Section) *strtab {
	return &strtab{r: sec, size: sec.Size, allow: initialAllowance, main: strWindow{buf: make([]byte, 0, min(sec.Size, nameWindow))}}
}

// name returns the name at off, valid until the next call: nil (not an
// empty name, which is non-nil) when off is past the table or no NUL ends
// the name before the table does. elf.File.Symbols reads both as an empty
// name, ImportedLibraries leaves them out.
func (t *strtab) name(off uint64) ([]byte, error) {
	t.allow += nameAllowance
	if off >= t.size {
		return nil, nil
	}
	if off >= t.main.at || len(t.main.buf) == 0 {
		return t.read(&t.main, off)
	}
	if t.back.buf == nil {
		t.back.buf = make([]byte, 0, min(t.size, nameRead))
	}
	if name, err := t.read(&t.back, off); err != nil || len(name) < cap(t.back.buf) {
		return name, err
	}
	return t.read(&t.main, off) // longer than the small buffer
}

// read returns the name at off from w, moving w to off when the name is
// not whole in it.
func (t *strtab) read(w *strWindow, off uint64) ([]byte, error) {
	if off >= w.at && off < w.at+uint64(len(w.buf)) {
		b := w.buf[off-w.at:]
		if n := bytes.IndexByte(b, 0); n >= 0 {
			return b[:n], nil
		}
		if w.at+uint64(len(w.buf)) == t.size {
			return nil, nil // cut by the table's end
		}
		if len(w.buf) == cap(w.buf) && off == w.at {
			return b, nil // fills the window
		}
	}
	// A name just past the window is likely followed by the next ones,
	// worth a large read; one far from it (a table in hash order, like
	// .dynstr) is likely alone, and most names are short.
	reads := []uint64{jumpRead, nameRead, nameWindow}
	if off >= w.at && off <= w.at+uint64(len(w.buf))+nameRead {
		reads = reads[1:]
	}
	for _, want := range reads {
		n := min(t.size-off, want, uint64(cap(w.buf)))
		if t.spent+n > t.allow {
			w.buf = w.buf[:0]
			return nil, fmt.Errorf("%w: %d bytes read", errScattered, t.spent)
		}
		t.spent += n
		w.buf, w.at = w.buf[:n], off
		if _, err := t.r.ReadAt(w.buf, int64(off)); err != nil {
			w.buf = w.buf[:0]
			return nil, fmt.Errorf("read symbol names: %w", err)
		}
		if i := bytes.IndexByte(w.buf, 0); i >= 0 {
			return w.buf[:i], nil
		}
		if off+n == t.size {
			return nil, nil
		}
		if n == uint64(cap(w.buf)) {
			break
		}
	}
	return w.buf, nil
}

// eachSymbol calls fn for each symbol of the table of type typ
// (elf.SHT_SYMTAB for .symtab, elf.SHT_DYNSYM for .dynsym), in order,
// until fn returns false, skipping the null symbol as elf.File.Symbols
// does. name is only valid during the call. elf.ErrNoSymbols when the
// file has no such table.
func eachSymbol(f *elf.File, typ elf.SectionType, fn func(name []byte, s elf.Sym64) bool) error {
	sec := f.SectionByType(typ)
	if sec == nil {
		return elf.ErrNoSymbols
	}
	if f.Class != elf.ELFCLASS64 || sec.Size%elf.Sym64Size != 0 || sec.Link == 0 || int(sec.Link) >= len(f.Sections) {
		return fmt.Errorf("malformed %s", sec.Name)
	}
	names := f.Sections[sec.Link]
	if err := windowable(names); err != nil {
		return fmt.Errorf("%s: %w", sec.Name, err)
	}
	strs := newStrtab(names)
	r := bufio.NewReaderSize(sec.Open(), 16<<10)
	var b [elf.Sym64Size]byte
	// A table that claims more than the file holds is an error, as for
	// elf.File.Symbols, not a short table passed as whole: the symbol
	// looked for may be among those cut.
	for i := uint64(0); i < sec.Size/elf.Sym64Size; i++ {
		if _, err := io.ReadFull(r, b[:]); err == io.EOF {
			return fmt.Errorf("read %s: %d of %d symbols: %w", sec.Name, i, sec.Size/elf.Sym64Size, io.ErrUnexpectedEOF)
		} else if err != nil {
			return fmt.Errorf("read %s: %w", sec.Name, err)
		}
		if i == 0 {
			continue
		}
		s := elf.Sym64{
			Name:  f.ByteOrder.Uint32(b[0:]),
			Info:  b[4],
			Other: b[5],
			Shndx: f.ByteOrder.Uint16(b[6:]),
			Value: f.ByteOrder.Uint64(b[8:]),
			Size:  f.ByteOrder.Uint64(b[16:]),
		}
		name, err := strs.name(uint64(s.Name))
		if err != nil {
			return err
		}
		if !fn(name, s) {
			return nil
		}
	}
	return nil
}

// windowable says why names cannot be read through a strtab, if they
// cannot. Its ReaderAt reads the file's bytes where the section header
// points even for SHT_NOBITS (which has none; debug/elf refuses to read
// it) and the compressed bytes of a compressed section.
func windowable(names *elf.Section) error {
	switch {
	case names.Type == elf.SHT_NOBITS:
		return fmt.Errorf("string table %s has no bits", names.Name)
	case names.Flags&elf.SHF_COMPRESSED != 0:
		return fmt.Errorf("compressed string table %s", names.Name)
	}
	return nil
}

// symbolsNamed returns the symbols of the table of type typ whose names
// keep accepts, as elf.File.Symbols would (without version information),
// holding only those.
func symbolsNamed(f *elf.File, typ elf.SectionType, keep func(name []byte) bool) ([]elf.Symbol, error) {
	var out []elf.Symbol
	err := eachSymbol(f, typ, func(name []byte, s elf.Sym64) bool {
		if keep(name) {
			out = append(out, elf.Symbol{
				Name: string(name), Info: s.Info, Other: s.Other,
				Section: elf.SectionIndex(s.Shndx), Value: s.Value, Size: s.Size,
			})
		}
		return true
	})
	return out, err
}

// sectionContains says whether sec holds needle, reading it a window at
// a time.
func sectionContains(sec *elf.Section, needle []byte) (bool, error) {
	ok, err := readerContains(sec.Open(), needle)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", sec.Name, err)
	}
	return ok, nil
}

func readerContains(r io.Reader, needle []byte) (bool, error) {
	if len(needle) == 0 || len(needle) > nameWindow/2 {
		return false, errors.New("needle out of range")
	}
	buf := make([]byte, nameWindow)
	keep := 0 // bytes carried over: a needle may straddle two reads
	for {
		n, err := io.ReadFull(r, buf[keep:])
		if bytes.Contains(buf[:keep+n], needle) {
			return true, nil
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		keep = min(len(needle)-1, keep+n)
		copy(buf, buf[len(buf)-keep:])
	}
}

// importedLibraries is elf.File.ImportedLibraries (the DT_NEEDED names)
// without reading the dynamic string table whole: every executable on the
// node is asked, and a large one's .dynstr runs to MiBs.
func importedLibraries(f *elf.File) ([]string, error) {
	ds := f.SectionByType(elf.SHT_DYNAMIC)
	if ds == nil {
		return nil, nil
	}
	if int(ds.Link) >= len(f.Sections) || ds.Link == 0 {
		return nil, fmt.Errorf("malformed %s", ds.Name)
	}
	offs, err := f.DynValue(elf.DT_NEEDED)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ds.Name, err)
	}
	if err := windowable(f.Sections[ds.Link]); err != nil {
		return nil, fmt.Errorf("%s: %w", ds.Name, err)
	}
	strs := newStrtab(f.Sections[ds.Link])
	libs := make([]string, 0, len(offs))
	for _, off := range offs {
		name, err := strs.name(off)
		if err != nil {
			return nil, err
		}
		if name != nil {
			libs = append(libs, string(name))
		}
	}
	return libs, nil
}
