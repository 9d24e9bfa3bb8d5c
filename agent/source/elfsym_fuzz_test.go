package source

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzEachSymbol feeds mangled ELF files to the streamed readers: they
// must not panic or hang, and where debug/elf reads a table whole without
// error they must give the same symbols (names cut to nameWindow) and
// libraries. The seeds are small binaries built from testdata/elf/*.c
// (see the comment there); the fuzzer finds its own hostile variants.
func FuzzEachSymbol(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/elf/*")
	for _, p := range seeds {
		if strings.HasSuffix(p, ".c") || strings.HasSuffix(p, "README") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if headersPastEnd(data) {
			return
		}
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		compareWithStdlib(t, ef)
	})
}

// headersPastEnd says whether an ELF64 file's program or section header
// table claims more than the file holds. elf.NewFile then allocates up to
// 10 MiB to find out, which slowed the fuzzer to a few inputs a second
// while testing nothing of ours.
func headersPastEnd(b []byte) bool {
	if len(b) < 64 || b[4] != byte(elf.ELFCLASS64) {
		return false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if b[5] == byte(elf.ELFDATA2MSB) {
		bo = binary.BigEndian
	}
	size := uint64(len(b))
	ph := uint64(bo.Uint16(b[0x36:])) * uint64(bo.Uint16(b[0x38:]))
	sh := uint64(bo.Uint16(b[0x3a:])) * uint64(bo.Uint16(b[0x3c:]))
	return ph > size || sh > size
}

// compareWithStdlib checks eachSymbol and importedLibraries against
// debug/elf on ef: the same answer where debug/elf has one, and an error
// (not a short table) for a table debug/elf cannot read.
func compareWithStdlib(t *testing.T, ef *elf.File) {
	t.Helper()
	libs, lerr := importedLibraries(ef)
	if want, werr := ef.ImportedLibraries(); werr == nil && lerr == nil && strings.Join(libs, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("imported libraries %q, debug/elf says %q", libs, want)
	}
	for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
		want, werr := ef.Symbols()
		if typ == elf.SHT_DYNSYM {
			want, werr = ef.DynamicSymbols()
		}
		var got []elf.Symbol
		err := eachSymbol(ef, typ, func(name []byte, s elf.Sym64) bool {
			got = append(got, elf.Symbol{Name: string(name), Info: s.Info, Other: s.Other,
				Section: elf.SectionIndex(s.Shndx), Value: s.Value, Size: s.Size})
			return true
		})
		if ef.Class != elf.ELFCLASS64 || errors.Is(werr, elf.ErrNoSymbols) || errors.Is(err, elf.ErrNoSymbols) {
			continue
		}
		if sec := ef.SectionByType(typ); sec != nil && int(sec.Link) < len(ef.Sections) && ef.Sections[sec.Link].Flags&elf.SHF_COMPRESSED != 0 {
			continue // refused on purpose: a compressed table cannot be windowed
		}
		if werr != nil {
			if err == nil && len(got) < int(ef.SectionByType(typ).Size/elf.Sym64Size)-1 {
				t.Errorf("%v: %d symbols and no error, debug/elf: %v", typ, len(got), werr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v, debug/elf reads %d symbols", typ, err, len(want))
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%v: %d symbols, debug/elf says %d", typ, len(got), len(want))
			continue
		}
		for i := range got {
			w := want[i]
			w.Name = w.Name[:min(len(w.Name), nameWindow)]
			w.Version, w.Library, w.VersionIndex, w.HasVersion = "", "", 0, false
			if got[i] != w {
				t.Errorf("%v symbol %d: %+v, debug/elf says %+v", typ, i, got[i], w)
				break
			}
		}
	}
}
