package source

import (
	"bytes"
	"debug/elf"
	"errors"
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
	for minor := goMinMinor; minor <= goMaxMinor; minor++ {
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
	// A version outside the checked range never gets a name it may not mean.
	if r, k := goReason(27, 1); r != "unknown (1)" || k != "other" {
		t.Errorf("go1.27 reason 1 = %q/%q", r, k)
	}
}

// buildHello builds testdata/hello with the local toolchain.
func buildHello(t *testing.T, stripped bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hello")
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, "./testdata/hello")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
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

func TestInspectGo(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("probe offsets are built for amd64 only")
	}
	plain, stripped := buildHello(t, false), buildHello(t, true)

	a, err := inspectFile(t, plain)
	if err != nil {
		t.Fatalf("inspect unstripped: %v", err)
	}
	b, err := inspectFile(t, stripped)
	if err != nil {
		t.Fatalf("inspect stripped: %v", err)
	}
	if a.version != runtime.Version() || a.minor == 0 {
		t.Errorf("version %q minor %d, want %q", a.version, a.minor, runtime.Version())
	}
	for _, g := range []*goBinary{a, b} {
		if len(g.stopRets) != 1 || len(g.startRets) != 1 {
			t.Errorf("RETs: stop %v start %v; every verified version has exactly one each", g.stopRets, g.startRets)
		}
		if g.stopEntry == 0 || g.startEntry == 0 {
			t.Errorf("entries %#x %#x", g.stopEntry, g.startEntry)
		}
	}

	// The same binary through .symtab and through .gopclntab must agree.
	ef, err := elf.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	sym, err := goFuncs(ef, "runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema")
	if err != nil {
		t.Fatal(err)
	}
	pcln, err := goFuncsPclntab(ef, "runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema")
	if err != nil {
		t.Fatal(err)
	}
	// The pclntab's end includes the padding to the next function; the
	// entries and the RETs found must be the same.
	for i := range sym {
		if sym[i].entry != pcln[i].entry {
			t.Errorf("entry: .symtab %#x != .gopclntab %#x", sym[i].entry, pcln[i].entry)
		}
		r1, err1 := retOffsets(ef, sym[i])
		r2, err2 := retOffsets(ef, pcln[i])
		if err1 != nil || err2 != nil || !slices.Equal(r1, r2) {
			t.Errorf("RETs: .symtab %x (%v) != .gopclntab %x (%v)", r1, err1, r2, err2)
		}
	}

	// Every RET offset must point at a RET (0xC3) byte in the file.
	data, err := os.ReadFile(stripped)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range append(b.stopRets, b.startRets...) {
		if data[off] != 0xc3 {
			t.Errorf("byte at RET offset %#x is %#x, want 0xc3", off, data[off])
		}
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
