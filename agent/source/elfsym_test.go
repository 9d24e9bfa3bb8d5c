package source

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestStrtabName(t *testing.T) {
	long := strings.Repeat("x", nameWindow+100) // longer than the window
	mid := strings.Repeat("m", nameRead+10)     // longer than one read
	tab := "\x00first\x00second\x00" + mid + "\x00" + long + "\x00last-unterminated"
	off := func(s string) uint64 { return uint64(strings.Index(tab, s)) }
	for _, tc := range []struct {
		name string
		offs []uint64 // read in this order, each against want
		want []string
	}{
		{"in order", []uint64{1, off("second"), off(mid)}, []string{"first", "second", mid}},
		{"backwards", []uint64{off("second"), 1, 0}, []string{"second", "first", ""}},
		{"behind, then on", []uint64{off(mid), off("second"), off(mid) + 1, 1}, []string{mid, "second", mid[1:], "first"}},
		{"behind, longer than a read", []uint64{off("last-unterminated"), off(mid), 1}, []string{"", mid, "first"}},
		{"inside a name", []uint64{3}, []string{"rst"}},
		{"past the end", []uint64{uint64(len(tab)), 1 << 40}, []string{"", ""}},
		{"longer than the window: cut", []uint64{off(long), 1}, []string{long[:nameWindow], "first"}},
		{"unterminated at the end: no name", []uint64{off("last-unterminated"), off("unterminated"), 1}, []string{"", "", "first"}},
		{"unterminated at the end, read behind", []uint64{off(mid), off("last-unterminated"), 1}, []string{mid, "", "first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &strtab{r: strings.NewReader(tab), size: uint64(len(tab)), allow: initialAllowance, main: strWindow{buf: make([]byte, 0, nameWindow)}}
			for i, o := range tc.offs {
				got, err := st.name(o)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tc.want[i] {
					t.Errorf("name(%d) = %.20q (%d bytes), want %.20q (%d bytes)", o, got, len(got), tc.want[i], len(tc.want[i]))
				}
			}
		})
	}
}

// The streamed tables give what elf.File.Symbols, DynamicSymbols and
// ImportedLibraries give, for the large C++ and C files the runtimes
// inspect (libjvm, node, libpython) and this test's own Go binary, and
// cost a bounded amount however large the string table is.
func TestEachSymbolMatchesStdlib(t *testing.T) {
	self, _ := os.Executable()
	files := []string{self, "/bin/true", "/usr/bin/node"}
	for _, g := range []string{"/usr/lib/jvm/*/lib/server/libjvm.so", os.Getenv("HOME") + "/.pyenv/versions/*/lib/libpython3*.so*"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	seen := 0
	for _, path := range files {
		f, err := elf.Open(path)
		if err != nil {
			continue
		}
		seen++
		libs, lerr := importedLibraries(f)
		wantLibs, wlerr := f.ImportedLibraries()
		if lerr != nil || wlerr != nil || strings.Join(libs, ",") != strings.Join(wantLibs, ",") {
			t.Errorf("%s: imported libraries %q (%v), debug/elf says %q (%v)", path, libs, lerr, wantLibs, wlerr)
		}
		for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
			want, werr := f.Symbols()
			if typ == elf.SHT_DYNSYM {
				want, werr = f.DynamicSymbols()
			}
			i := 0
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := eachSymbol(f, typ, func(name []byte, s elf.Sym64) bool {
				if i >= len(want) || string(name) != want[i].Name || s.Info != want[i].Info || s.Other != want[i].Other ||
					elf.SectionIndex(s.Shndx) != want[i].Section || s.Value != want[i].Value || s.Size != want[i].Size {
					t.Errorf("%s %v symbol %d: %q %+v, debug/elf says %+v", path, typ, i, name, s, want[min(i, len(want)-1)])
					return false
				}
				i++
				return true
			})
			runtime.ReadMemStats(&after)
			if errors.Is(werr, elf.ErrNoSymbols) != errors.Is(err, elf.ErrNoSymbols) {
				t.Errorf("%s %v: %v, debug/elf: %v", path, typ, err, werr)
			}
			if werr != nil {
				continue
			}
			if err != nil || i != len(want) {
				t.Errorf("%s %v: %d of %d symbols (%v)", path, typ, i, len(want), err)
			}
			// The window, the symbol reader's buffer and small change:
			// not the string table, which is MiBs for libjvm and node.
			if got := after.TotalAlloc - before.TotalAlloc; got > 2*nameWindow {
				t.Errorf("%s %v: %d bytes allocated for %d symbols, want at most %d", path, typ, got, i, 2*nameWindow)
			}
			t.Logf("%s %v: %d symbols, %d bytes allocated", filepath.Base(path), typ, i, after.TotalAlloc-before.TotalAlloc)
		}
		f.Close()
	}
	if seen < 2 {
		t.Fatalf("only %d of the files to compare could be opened", seen)
	}
}

func TestSectionContains(t *testing.T) {
	needle := []byte("\x00napi_module_register\x00")
	pad := bytes.Repeat([]byte("a"), nameWindow-5) // the needle straddles two reads
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"absent", bytes.Repeat([]byte("b"), 3*nameWindow), false},
		{"first read", append([]byte("x"), needle...), true},
		{"across reads", append(append(pad, needle...), 'z'), true},
		{"at the very end", append(bytes.Repeat([]byte("c"), 2*nameWindow), needle...), true},
		{"cut at the end", append(bytes.Repeat([]byte("c"), nameWindow), needle[:len(needle)-1]...), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readerContains(bytes.NewReader(tc.data), needle)
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
