package source

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseGoMinor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"go1.21.13", 21, false},
		{"go1.26.8", 26, false},
		{"go1.22", 22, false},
		{"go1.23rc1", 23, false},
		{"go1.24.0 X:nocoverageredesign", 24, false},
		{"devel go1.27-abcdef", 0, true},
		{"go2.0", 0, true},
		{"", 0, true},
	} {
		got, err := parseGoMinor(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseGoMinor(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestGoReason(t *testing.T) {
	for minor := goReasonMinor; minor <= goMaxMinor; minor++ {
		for _, tc := range []struct {
			code         uint32
			reason, kind string
		}{
			{1, "GC mark termination", "gc"},
			{2, "GC sweep termination", "gc"},
			{3, "write heap dump", "other"},
			{7, "read mem stats", "other"},
			{9, "GOMAXPROCS", "other"},
			{11, "stop trace", "other"},
			{200, "unknown (200)", "other"},
		} {
			r, k := goReason(minor, tc.code)
			if r != tc.reason || k != tc.kind {
				t.Errorf("go1.%d reason %d = %q/%q, want %q/%q", minor, tc.code, r, k, tc.reason, tc.kind)
			}
		}
	}
	// A version outside the checked range never gets a name it may not mean,
	// nor does one whose stopTheWorldWithSema has no reason argument.
	for _, minor := range []int{goMinMinor, goReasonMinor - 1, goMaxMinor + 1} {
		if r, k := goReason(minor, 1); r != "unknown (1)" || k != "other" {
			t.Errorf("go1.%d reason 1 = %q/%q", minor, r, k)
		}
	}
}

// buildOldGo builds testdata/hello with an older Go toolchain (fetched
// through GOTOOLCHAIN) in a module of its own, since the repository's
// go.mod names a Go those toolchains cannot read.
func buildOldGo(t *testing.T, toolchain string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/hello/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello")
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
	cmd.Dir = dir
	// GOFLAGS from the environment replaces the go env file's, whose
	// -buildvcs Go 1.17 does not know; Go 1.19's module index fails every
	// build here ("import of unknown directory") unless turned off.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+toolchain, "GOFLAGS=-mod=mod", "GODEBUG=goindex=0", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hello with %s %v: %v\n%s", toolchain, args, err, b)
	}
	return out
}

// TestInspectGoBeforeReasons covers Go 1.17-1.20, whose STW functions take
// no reason: the probe sites must be those of .symtab, stripped or not,
// and each pause's caller must be found the same way from .symtab and from
// the pclntab alone, in the functions it names.
func TestInspectGoBeforeReasons(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("probe offsets are built for amd64 only")
	}
	for _, tc := range []string{"go1.17.13", "go1.18.10", "go1.19.13", "go1.20.14"} {
		t.Run(tc, func(t *testing.T) {
			full := buildOldGo(t, tc)
			stripped := buildOldGo(t, tc, "-ldflags=-s -w")
			bf, err := inspectFile(t, full)
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			bs, err := inspectFile(t, stripped)
			if err != nil {
				t.Fatalf("inspect stripped: %v", err)
			}
			if bs.version != tc || bs.minor >= goReasonMinor {
				t.Fatalf("version %q minor %d, want %s", bs.version, bs.minor, tc)
			}
			if bs.stopEntry != bf.stopEntry || bs.startEntry != bf.startEntry ||
				!slices.Equal(bs.stopRets, bf.stopRets) || !slices.Equal(bs.startRets, bf.startRets) {
				t.Errorf("stripped sites %#x %#x %#x %#x, unstripped %#x %#x %#x %#x",
					bs.stopEntry, bs.stopRets, bs.startEntry, bs.startRets, bf.stopEntry, bf.stopRets, bf.startEntry, bf.startRets)
			}
			ef, err := elf.Open(full)
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			if want := symtabEntry(t, ef, "runtime.startTheWorldWithSema"); bs.startEntry != want || len(bs.startRets) != 1 {
				t.Fatalf("start entry %#x RETs %#x, .symtab says %#x; one RET expected", bs.startEntry, bs.startRets, want)
			}
			// The caller tables come from .symtab (unstripped) and from the
			// pclntab (stripped): they must agree.
			if !maps.Equal(bs.callers, bf.callers) {
				t.Errorf("callers from the pclntab %v, from .symtab %v", bs.callers, bf.callers)
			}
			// Each return site lies in the closure its reason names.
			syms, err := ef.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			retVaddr := bs.startRets[0] - bs.startEntry + symtabAddr(t, syms, "runtime.startTheWorldWithSema")
			reasons := map[string]int{}
			for d, c := range bf.callers {
				site := uint64(int64(retVaddr) + d)
				in := ""
				for _, s := range syms {
					if site > s.Value && site < s.Value+s.Size && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
						in = s.Name
					}
				}
				ok := false
				for _, r := range goCallerReasons {
					ok = ok || strings.HasPrefix(in, r.prefix) && r.goCaller == c
				}
				if !ok {
					t.Errorf("return site %#x (%+d) is in %q, classified %v", site, d, in, c)
				}
				reasons[c.reason]++
			}
			want := map[string]int{"GC sweep termination": 1, "GC mark termination": 2, "unknown": 1}
			if !maps.Equal(reasons, want) {
				t.Errorf("caller reasons %v, want %v", reasons, want)
			}
			if r, k := bf.reasonFromCaller(0, true); r != "unknown" || k != "other" {
				t.Errorf("a return site not found = %q/%q, want unknown/other", r, k)
			}
			// PIE before 1.23 keeps its pclntab in .data.rel.ro.gopclntab:
			// stripped, it must give the sites .symtab gives unstripped.
			pie, err := inspectFile(t, buildOldGo(t, tc, "-buildmode=pie"))
			if err != nil {
				t.Fatalf("PIE: %v", err)
			}
			spie, err := inspectFile(t, buildOldGo(t, tc, "-buildmode=pie", "-ldflags=-s -w"))
			if err != nil {
				t.Fatalf("stripped PIE: %v", err)
			}
			if pie.stopEntry != spie.stopEntry || pie.startEntry != spie.startEntry ||
				!slices.Equal(pie.startRets, spie.startRets) || !slices.Equal(pie.stopRets, spie.stopRets) {
				t.Errorf("stripped PIE sites %+v, unstripped PIE %+v", spie, pie)
			}
		})
	}
}

func symtabAddr(t *testing.T, syms []elf.Symbol, name string) uint64 {
	t.Helper()
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("%s not in .symtab", name)
	return 0
}

// goBuildMode is one way users build Go binaries.
type goBuildMode struct {
	name    string
	pkg     string // under testdata/
	cgo     bool
	args    []string
	ldflags string
}

var goBuildModes = []goBuildMode{
	{name: "internal", pkg: "hello"},
	{name: "stripped", pkg: "hello", ldflags: "-s -w"},
	{name: "trimpath-stripped", pkg: "hello", args: []string{"-trimpath"}, ldflags: "-s -w"},
	{name: "pie", pkg: "hello", args: []string{"-buildmode=pie"}},
	{name: "pie-stripped", pkg: "hello", args: []string{"-buildmode=pie"}, ldflags: "-s -w"},
	{name: "external", pkg: "hello", cgo: true, ldflags: "-linkmode=external"},
	{name: "external-stripped", pkg: "hello", cgo: true, ldflags: "-linkmode=external -s -w"},
	{name: "cgo", pkg: "hellocgo", cgo: true},
	{name: "cgo-stripped", pkg: "hellocgo", cgo: true, ldflags: "-s -w"},
	{name: "cgo-pie-stripped", pkg: "hellocgo", cgo: true, args: []string{"-buildmode=pie"}, ldflags: "-s -w"},
	{name: "cgo-static-stripped", pkg: "hellocgo", cgo: true, ldflags: "-s -w -extldflags=-static"},
}

// buildGo builds a testdata program in one build mode with the local
// toolchain; modes that need a C toolchain skip without one.
func buildGo(t *testing.T, m goBuildMode) string {
	t.Helper()
	if m.cgo {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("cgo build modes need gcc")
		}
	}
	out := filepath.Join(t.TempDir(), m.pkg)
	args := append([]string{"build", "-o", out}, m.args...)
	if m.ldflags != "" {
		args = append(args, "-ldflags="+m.ldflags)
	}
	cmd := exec.Command("go", append(args, "./testdata/"+m.pkg)...)
	cgo := "CGO_ENABLED=0"
	if m.cgo {
		cgo = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), cgo)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	return out
}

// buildHello builds testdata/hello with the local toolchain.
func buildHello(t *testing.T, stripped bool) string {
	if stripped {
		return buildGo(t, goBuildModes[1])
	}
	return buildGo(t, goBuildModes[0])
}

func inspectFile(t *testing.T, path string) (*goBinary, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return inspectGo(f)
}

// symtabEntry returns the file offset of a function's entry from .symtab:
// the reference that stripped builds must reach through the pclntab alone.
func symtabEntry(t *testing.T, f *elf.File, name string) uint64 {
	t.Helper()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("symbols: %v", err)
	}
	for _, s := range syms {
		if s.Name == name {
			off, err := fileOffset(f, s.Value)
			if err != nil {
				t.Fatal(err)
			}
			return off
		}
	}
	t.Fatalf("%s not in .symtab", name)
	return 0
}

func TestInspectGoBuildModes(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("probe offsets are built for amd64 only")
	}
	for _, m := range goBuildModes {
		t.Run(m.name, func(t *testing.T) {
			path := buildGo(t, m)
			b, err := inspectFile(t, path)
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			if b.version != runtime.Version() || b.minor == 0 {
				t.Errorf("version %q minor %d, want %q", b.version, b.minor, runtime.Version())
			}
			if len(b.stopRets) != 1 || len(b.startRets) != 1 {
				t.Errorf("RETs: stop %v start %v; every verified version has exactly one each", b.stopRets, b.startRets)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range append(b.stopRets, b.startRets...) {
				if data[off] != 0xc3 {
					t.Errorf("byte at RET offset %#x is %#x, want 0xc3", off, data[off])
				}
			}
			// Stripped or not, the entries must be those .symtab gives for
			// the same program built the same way without -s -w.
			ref := m
			ref.ldflags = strings.Join(slices.DeleteFunc(strings.Fields(m.ldflags), func(f string) bool { return f == "-s" || f == "-w" }), " ")
			ef, err := elf.Open(buildGo(t, ref))
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			if want := symtabEntry(t, ef, "runtime.stopTheWorldWithSema"); b.stopEntry != want {
				t.Errorf("stop entry %#x, .symtab of the unstripped build says %#x", b.stopEntry, want)
			}
			if want := symtabEntry(t, ef, "runtime.startTheWorldWithSema"); b.startEntry != want {
				t.Errorf("start entry %#x, .symtab of the unstripped build says %#x", b.startEntry, want)
			}
		})
	}
}

// TestVerifyGoFuncRefusesShiftedEntries takes the real code of the STW
// functions and checks that no entry but the true one passes: an address
// off by any amount (the cgo bug was 256 bytes early) is refused.
func TestVerifyGoFuncRefusesShiftedEntries(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("probe offsets are built for amd64 only")
	}
	path := buildGo(t, goBuildModes[0])
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := goFuncs(ef, "runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema")
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range funcs {
		off, err := fileOffset(ef, fn.entry)
		if err != nil {
			t.Fatal(err)
		}
		size := int(fn.end - fn.entry)
		if _, err := verifyGoFunc(data[off : int(off)+size]); err != nil {
			t.Fatalf("true entry %#x refused: %v", fn.entry, err)
		}
		for shift := -512; shift <= 512; shift++ {
			if shift == 0 {
				continue
			}
			start := int(off) + shift
			if _, err := verifyGoFunc(data[start : start+size]); err == nil {
				t.Errorf("entry %#x%+d accepted; only the true entry may be", fn.entry, shift)
			}
		}
	}
	// The cgo case as it was: pclntab offsets counted from the start of
	// .text instead of runtime.text.
	cf, err := elf.Open(buildGo(t, goBuildModes[8]))
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	pd, err := cf.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pd, cf.Section(".text").Addr))
	if err != nil {
		t.Fatal(err)
	}
	fn := tab.LookupFunc("runtime.stopTheWorldWithSema")
	if _, _, err := probeSites(cf, funcRange{fn.Entry, fn.End}); err == nil {
		t.Errorf("entry %#x counted from .text accepted in a cgo binary", fn.Entry)
	} else {
		t.Logf("refused as it must be: %v", err)
	}
}

func TestInspectGoBadInput(t *testing.T) {
	plain := buildHello(t, true)
	data, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	// A build of an unverified Go version: same bytes, version string changed.
	future := bytes.ReplaceAll(data, []byte(runtime.Version()), []byte(strings.Replace(runtime.Version(), "go1.", "go1.9", 1)[:len(runtime.Version())]))

	for _, tc := range []struct {
		name  string
		data  []byte
		check func(error) bool
	}{
		{"empty", nil, func(err error) bool { return errors.Is(err, errNotGo) }},
		{"text", []byte("#!/bin/sh\necho hi\n"), func(err error) bool { return errors.Is(err, errNotGo) }},
		{"truncated", data[:4096], func(err error) bool { return err != nil }},
		{"half", data[:len(data)/2], func(err error) bool { return err != nil }},
		{"future version", future, func(err error) bool {
			var u *unsupportedGoError
			return errors.As(err, &u) && strings.Contains(err.Error(), "outside the verified range")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inspectGo(bytes.NewReader(tc.data))
			if !tc.check(err) {
				t.Errorf("inspectGo = %v", err)
			}
		})
	}

	// A C program is not Go.
	if _, err := inspectFile(t, "/bin/true"); !errors.Is(err, errNotGo) {
		t.Errorf("/bin/true: %v, want errNotGo", err)
	}
}

// cutAfterSegments returns an ELF file's bytes up to the end of its last
// loaded segment: what the kernel needs to run it, without the section
// headers (at the end of the file).
func cutAfterSegments(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var end uint64
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	if end >= uint64(len(data)) {
		t.Fatalf("%s: segments end at %d of %d bytes, nothing to cut", path, end, len(data))
	}
	return data[:end]
}

// A running Go binary cut after its last segment (it still runs) is a Go
// process the agent cannot probe: recognised as Go, with its version and
// why, so that it is listed with method "none" instead of not at all. A
// C program cut the same way is still not Go.
func TestInspectGoTruncatedAfterSegments(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		cut := cutAfterSegments(t, buildHello(t, stripped))
		if _, err := elf.NewFile(bytes.NewReader(cut)); err == nil {
			t.Fatal("debug/elf reads the cut binary: the case under test is gone")
		}
		bin := filepath.Join(t.TempDir(), "cut")
		if err := os.WriteFile(bin, cut, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin).CombinedOutput(); err != nil {
			t.Fatalf("the cut binary does not run: %v\n%s", err, out)
		}
		f, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		_, err = goRuntime{}.Recognise(&file{path: bin, name: bin, exe: true, f: f})
		f.Close()
		var te *truncatedGoError
		if !errors.As(err, &te) || errors.Is(err, errNotMine) {
			t.Fatalf("stripped=%v: Recognise = %v, want a truncatedGoError (Go, not probed)", stripped, err)
		}
		if te.runtimeVersion() != runtime.Version() {
			t.Errorf("stripped=%v: version %q, want %q", stripped, te.runtimeVersion(), runtime.Version())
		}
	}
	c := cutAfterSegments(t, "/bin/true")
	if _, err := inspectGo(bytes.NewReader(c)); !errors.Is(err, errNotGo) {
		t.Errorf("/bin/true cut after its segments: %v, want errNotGo", err)
	}
}

// pclnTab and eachSymbol agree with debug/gosym and elf.File.Symbols,
// which they replace to keep a new binary's parse from allocating a
// table of all its functions, in every build mode: every 50th function
// by name, and every symbol.
func TestPclnFuncsAndSymbolsMatchStdlib(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the pclntab is read as a 64-bit little-endian one")
	}
	for _, m := range goBuildModes {
		t.Run(m.name, func(t *testing.T) { testPclnFuncsAndSymbols(t, buildGo(t, m)) })
	}
}

func testPclnFuncsAndSymbols(t *testing.T, path string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := goPclntab(f)
	if err != nil {
		t.Fatal(err)
	}
	pcln, err := goPclnTab(f)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]bool{}
	var names []string
	var want []funcRange
	for i, fn := range tab.Funcs {
		if first[fn.Name] {
			continue
		}
		first[fn.Name] = true
		if i%50 == 0 || fn.Name == "runtime.stopTheWorldWithSema" {
			names = append(names, fn.Name)
			want = append(want, funcRange{fn.Entry, fn.End})
		}
	}
	got, err := pcln.byName(names...)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		if got[i] != want[i] {
			t.Errorf("%s: byName %#x, gosym %#x", n, got[i], want[i])
		}
		fn, ok, err := pcln.funcAt(want[i].entry)
		if err != nil || !ok {
			t.Errorf("%s: no function at %#x (%v)", n, want[i].entry, err)
		} else if is, err := pcln.nameIs(fn, n); !is || err != nil {
			t.Errorf("%s: the function at %#x is another (%v)", n, want[i].entry, err)
		}
		if _, ok, _ := pcln.funcAt(want[i].entry + 1); ok && want[i].end > want[i].entry+1 {
			t.Errorf("%s: a function starts at %#x, inside it", n, want[i].entry+1)
		}
	}
	if _, err := pcln.byName("no.such.function"); err == nil {
		t.Error("byName found a function that is not there")
	}
	syms, err := f.Symbols()
	if err != nil {
		if err := eachSymbol(f, elf.SHT_SYMTAB, func([]byte, elf.Sym64) bool { return true }); err == nil {
			t.Errorf("Symbols: %v; eachSymbol: no error", err)
		}
		t.Logf("%d functions looked up; no .symtab", len(names))
		return
	}
	i := 0
	if err := eachSymbol(f, elf.SHT_SYMTAB, func(name []byte, s elf.Sym64) bool {
		if i >= len(syms) || string(name) != syms[i].Name || s.Info != syms[i].Info || s.Value != syms[i].Value || s.Size != syms[i].Size ||
			s.Other != syms[i].Other || elf.SectionIndex(s.Shndx) != syms[i].Section {
			t.Errorf("symbol %d: %q %+v, Symbols says %+v", i, name, s, syms[min(i, len(syms)-1)])
			return false
		}
		i++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if i != len(syms) {
		t.Errorf("eachSymbol saw %d symbols, Symbols %d", i, len(syms))
	}
	t.Logf("%d functions looked up, %d symbols compared", len(names), i)
}

// Recognising a Go binary allocates a bounded amount, well under the size
// of its pclntab and symbol table: every new Go binary the node runs is
// parsed, and reading those whole (gosym's table, elf.File.Symbols) made
// MiB of garbage per binary.
func TestInspectGoAllocates(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("probe offsets are built for amd64 only")
	}
	for _, m := range []goBuildMode{goBuildModes[0], goBuildModes[1]} {
		t.Run(m.name, func(t *testing.T) {
			f, err := os.Open(buildGo(t, m))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ef, err := elf.NewFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tables := uint64(0)
			for _, s := range ef.Sections {
				if s.Name == ".gopclntab" || s.Name == ".symtab" {
					tables += s.Size
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const runs = 5
			for range runs {
				if _, err := inspectGo(f); err != nil {
					t.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			per := (after.TotalAlloc - before.TotalAlloc) / runs
			t.Logf("%d bytes allocated per inspection; .gopclntab and .symtab: %d bytes", per, tables)
			if per > tables/2 {
				t.Errorf("%d bytes allocated per inspection, more than half the %d bytes of .gopclntab and .symtab", per, tables)
			}
		})
	}
}
