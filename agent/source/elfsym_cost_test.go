package source

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"sync/atomic"
	"testing"
)

type readCounter struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	n atomic.Int64
}

func (c *readCounter) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// scatteredNames returns tiny with its symbol table replaced by nsym
// symbols whose names take turns among three unterminated names longer
// than the window, placed so that no read serves the next symbol.
func scatteredNames(t testing.TB, nsym int) []byte {
	seed, err := os.ReadFile("testdata/elf/tiny")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(seed)
	names := append(bytes.Repeat([]byte("n"), 3*(nameWindow+nameRead)), 0)
	offs := []uint32{0, 2 * (nameWindow + nameRead), nameWindow + nameRead}
	strOff := uint64(len(b))
	b = append(b, names...)
	symOff := uint64(len(b))
	var sym [elf.Sym64Size]byte
	b = append(b, sym[:]...)
	for i := range nsym {
		binary.LittleEndian.PutUint32(sym[0:], offs[i%3])
		b = append(b, sym[:]...)
	}
	put64(shdr(t, b, elf.SHT_SYMTAB), shOff, symOff)
	put64(shdr(t, b, elf.SHT_SYMTAB), shSize, uint64(nsym+1)*elf.Sym64Size)
	strtab := b[binary.LittleEndian.Uint64(b[0x28:])+64*uint64(binary.LittleEndian.Uint32(shdr(t, b, elf.SHT_SYMTAB)[shLink:])):][:64]
	put64(strtab, shOff, strOff)
	put64(strtab, shSize, uint64(len(names)))
	return b
}

// A table whose every name costs a window of reads ends in an error after
// a bounded read, whatever its length.
func TestScatteredNamesCost(t *testing.T) {
	for _, tc := range []struct {
		name string
		nsym int
	}{{"1k symbols", 1000}, {"100k symbols", 100000}} {
		t.Run(tc.name, func(t *testing.T) {
			c := &readCounter{r: bytes.NewReader(scatteredNames(t, tc.nsym))}
			ef, err := elf.NewFile(c)
			if err != nil {
				t.Fatal(err)
			}
			c.n.Store(0)
			err = eachSymbol(ef, elf.SHT_SYMTAB, func([]byte, elf.Sym64) bool { return true })
			if !errors.Is(err, errScattered) {
				t.Errorf("err = %v, want %v", err, errScattered)
			}
			// The symbol table's first 16 KiB (one buffered read) and
			// the initial allowance: not a window per symbol.
			if got, most := c.n.Load(), int64(16<<10+initialAllowance+4*nameAllowance); got > most {
				t.Errorf("read %d bytes, want at most %d", got, most)
			}
		})
	}
}

// The large tables the runtimes read cost a few times their size, not a
// read per name: node's .dynstr is in hash order, and reading 4 KiB for
// each name read 300 MiB for its 7 MiB .dynsym and .dynstr.
func TestRealNamesCost(t *testing.T) {
	seen := 0
	for _, p := range []string{"/usr/bin/node", "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"} {
		fh, err := os.Open(p)
		if err != nil {
			continue
		}
		defer fh.Close()
		seen++
		c := &readCounter{r: fh}
		ef, err := elf.NewFile(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
			sec := ef.SectionByType(typ)
			if sec == nil {
				continue
			}
			c.n.Store(0)
			if err := eachSymbol(ef, typ, func([]byte, elf.Sym64) bool { return true }); err != nil {
				t.Errorf("%s %v: %v", p, typ, err)
			}
			size := sec.Size + ef.Sections[sec.Link].Size
			if got := uint64(c.n.Load()); got > 8*size+initialAllowance {
				t.Errorf("%s %v: read %d KiB for %d KiB of tables, want at most 8 times that and %d KiB", p, typ, got>>10, size>>10, initialAllowance>>10)
			}
		}
	}
	if seen == 0 {
		t.Skip("neither node nor libjvm here")
	}
}
