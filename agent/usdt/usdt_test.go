package usdt

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Arg
		err  bool
	}{
		{"", nil, false},
		{"-4@%edi", []Arg{{Kind: ArgReg, Size: 4, Signed: true, Reg: "rdi", RegOffset: 112}}, false},
		{"8@%r12 8@%rdx -4@%eax", []Arg{
			{Kind: ArgReg, Size: 8, Reg: "r12", RegOffset: 24},
			{Kind: ArgReg, Size: 8, Reg: "rdx", RegOffset: 96},
			{Kind: ArgReg, Size: 4, Signed: true, Reg: "rax", RegOffset: 80},
		}, false},
		{"-4@112(%rsp)", []Arg{{Kind: ArgRegMem, Size: 4, Signed: true, Reg: "rsp", RegOffset: 152, Val: 112}}, false},
		{"8@-16(%rbp)", []Arg{{Kind: ArgRegMem, Size: 8, Reg: "rbp", RegOffset: 32, Val: -16}}, false},
		{"8@(%rax)", []Arg{{Kind: ArgRegMem, Size: 8, Reg: "rax", RegOffset: 80}}, false},
		{"1@%dil", []Arg{{Kind: ArgReg, Size: 1, Reg: "rdi", RegOffset: 112}}, false},
		{"8@$5 -4@$-1", []Arg{{Kind: ArgConst, Size: 8, Val: 5}, {Kind: ArgConst, Size: 4, Signed: true, Val: -1}}, false},
		{"8@%xmm0", nil, true},
		{"3@%rax", nil, true},
		{"8@foo(%rip)", nil, true},
		{"%rax", nil, true},
		{"8@%ah", nil, true},
		{"x@%rax", nil, true},
	} {
		got, err := ParseArgs(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseArgs(%q) error %v, want error=%v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseArgs(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func readFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdt.elf"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadFixture(t *testing.T) {
	probes, err := Read(bytes.NewReader(readFixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(probes) != 2 {
		t.Fatalf("%d probes, want 2", len(probes))
	}
	plain, guarded := probes[0], probes[1]
	if plain.Provider != "pwtest" || plain.Name != "plain" || plain.Semaphore != 0 || len(plain.Args) != 3 {
		t.Errorf("plain = %+v", plain)
	}
	if guarded.Name != "guarded" || guarded.Semaphore != 0x404010 || guarded.SemaphoreOffset == 0 || len(guarded.Args) != 3 {
		t.Errorf("guarded = %+v", guarded)
	}
	// Non-PIE: the text segment maps vaddr 0x401000 at file offset 0x1000.
	if plain.Addr != 0x40110a || plain.Offset != 0x110a {
		t.Errorf("plain at %#x (file %#x), want 0x40110a (0x110a)", plain.Addr, plain.Offset)
	}
	// The probe site is the nop the macro emits.
	data := readFixture(t)
	for _, p := range probes {
		if data[p.Offset] != 0x90 {
			t.Errorf("%s: byte at offset %#x is %#x, want nop", p.Name, p.Offset, data[p.Offset])
		}
	}
	if _, err := Find(probes, "pwtest", "missing"); err == nil {
		t.Error("Find of a missing probe succeeded")
	}
}

// Malformed notes: a clear error, never a panic.
func TestReadMalformed(t *testing.T) {
	good := readFixture(t)
	f, err := elf.NewFile(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section(".note.stapsdt")
	off := int(sec.Offset)
	mut := func(fn func(b []byte)) []byte {
		b := bytes.Clone(good)
		fn(b)
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"descsz past the section", mut(func(b []byte) { b[off+4] = 0xff; b[off+5] = 0xff })},
		{"namesz past the section", mut(func(b []byte) { b[off] = 0xff; b[off+1] = 0xff; b[off+2] = 0xff })},
		{"descriptor too short", mut(func(b []byte) { b[off+4] = 8 })},
		{"strings not terminated", mut(func(b []byte) {
			for i := off + 12 + 8 + 24; i < off+int(sec.Size); i++ {
				if b[i] == 0 {
					b[i] = 'x'
				}
			}
		})},
		{"bad argument", mut(func(b []byte) {
			i := bytes.Index(b, []byte("-4@%edi"))
			copy(b[i:], "-4@%xyz")
		})},
		{"not ELF", []byte("hello, world")},
		{"truncated ELF", good[:200]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.data))
			if err == nil {
				t.Error("no error")
			}
		})
	}
	// A file without notes says so.
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if _, err := Read(self); !errors.Is(err, ErrNoProbes) {
		t.Errorf("Go test binary: %v, want ErrNoProbes", err)
	}
}

// The real notes on this machine: Debian's libjvm.so and python3.11.
func TestReadSystem(t *testing.T) {
	for _, tc := range []struct {
		path       string
		provider   string
		name       string
		semaphore  bool
		args       string
		wantKind   ArgKind
		wantMemArg bool
	}{
		{"/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "hs_private", "safepoint__begin", false, "", 0, false},
		{"/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "hotspot", "vmops__begin", false, "", ArgReg, false},
		{"/usr/bin/python3.11", "python", "gc__start", true, "", ArgRegMem, true},
		{"/usr/bin/python3.11", "python", "gc__done", true, "", ArgReg, false},
	} {
		t.Run(filepath.Base(tc.path)+"/"+tc.name, func(t *testing.T) {
			f, err := os.Open(tc.path)
			if os.IsNotExist(err) {
				t.Skipf("%s not installed", tc.path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			probes, err := Read(f)
			if err != nil {
				t.Fatal(err)
			}
			sites, err := Find(probes, tc.provider, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			p := sites[0]
			if (p.Semaphore != 0) != tc.semaphore || (tc.semaphore && p.SemaphoreOffset == 0) {
				t.Errorf("semaphore %#x (file %#x), want guarded=%v", p.Semaphore, p.SemaphoreOffset, tc.semaphore)
			}
			if tc.wantKind != 0 && (len(p.Args) == 0 || p.Args[0].Kind != tc.wantKind) {
				t.Errorf("args %q parsed as %+v", p.RawArgs, p.Args)
			}
			t.Logf("%s:%s at %#x (file %#x), %d sites, args %q", p.Provider, p.Name, p.Addr, p.Offset, len(sites), p.RawArgs)
		})
	}
}
