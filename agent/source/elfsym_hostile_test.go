package source

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"testing"
)

// Offsets in an ELF64 section header.
const (
	shType = 4
	shOff  = 24
	shSize = 32
	shLink = 40
)

// shdr returns the header of the first section of type typ in an ELF64
// little-endian file, to be patched in place.
func shdr(t testing.TB, b []byte, typ elf.SectionType) []byte {
	return b[binary.LittleEndian.Uint64(b[0x28:])+64*uint64(shndx(t, b, typ)):][:64]
}

// shndx returns the index of the first section of type typ.
func shndx(t testing.TB, b []byte, typ elf.SectionType) int {
	t.Helper()
	le := binary.LittleEndian
	off, n := le.Uint64(b[0x28:]), int(le.Uint16(b[0x3c:]))
	for i := range n {
		if elf.SectionType(le.Uint32(b[off+uint64(i)*64+shType:])) == typ {
			return i
		}
	}
	t.Fatalf("no %v section", typ)
	return 0
}

func put32(h []byte, at int, v uint32) { binary.LittleEndian.PutUint32(h[at:], v) }
func put64(h []byte, at int, v uint64) { binary.LittleEndian.PutUint64(h[at:], v) }

// Each hostile variant of a real file reads as debug/elf reads it, and a
// table that cannot be read whole is an error, never a short table passed
// as complete.
func TestEachSymbolHostile(t *testing.T) {
	seed, err := os.ReadFile("testdata/elf/tiny")
	if err != nil {
		t.Fatal(err)
	}
	symtab := func(b []byte) []byte { return shdr(t, b, elf.SHT_SYMTAB) }
	strtab := func(b []byte) []byte { // the symbol names, not the section names
		return b[binary.LittleEndian.Uint64(b[0x28:])+64*uint64(binary.LittleEndian.Uint32(symtab(b)[shLink:])):][:64]
	}
	size := func(h []byte) uint64 { return binary.LittleEndian.Uint64(h[shSize:]) }
	for _, tc := range []struct {
		name    string
		mangle  func(b []byte)
		wantErr bool
	}{
		{"as built", func([]byte) {}, false},
		{"symbols past the end of the file", func(b []byte) { put64(symtab(b), shSize, size(symtab(b))+1000*elf.Sym64Size) }, true},
		{"symbols cut mid-entry", func(b []byte) { put64(symtab(b), shSize, size(symtab(b))+1) }, true},
		{"names link 0", func(b []byte) { put32(symtab(b), shLink, 0) }, true},
		{"names link out of range", func(b []byte) { put32(symtab(b), shLink, 1<<31) }, true},
		{"names are NOBITS", func(b []byte) { put32(strtab(b), shType, uint32(elf.SHT_NOBITS)) }, true},
		{"names are the symbol table", func(b []byte) {
			put32(symtab(b), shLink, uint32(shndx(t, b, elf.SHT_SYMTAB)))
		}, false},
		{"names cut mid-name, no NUL", func(b []byte) { put64(strtab(b), shSize, size(strtab(b))-3) }, false},
		{"names empty: offsets past the end", func(b []byte) { put64(strtab(b), shSize, 0) }, false},
		{"names past the end of the file", func(b []byte) { put64(strtab(b), shSize, 1<<40) }, true},
		{"names overlap the symbols", func(b []byte) {
			put64(strtab(b), shOff, binary.LittleEndian.Uint64(symtab(b)[shOff:]))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(seed)
			tc.mangle(b)
			ef, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("mangled file does not parse: %v", err)
			}
			n := 0
			err = eachSymbol(ef, elf.SHT_SYMTAB, func([]byte, elf.Sym64) bool { n++; return true })
			if (err != nil) != tc.wantErr {
				t.Errorf("eachSymbol: %d symbols, error %v; want error: %v", n, err, tc.wantErr)
			}
			compareWithStdlib(t, ef)
		})
	}
}
