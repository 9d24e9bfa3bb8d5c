package source

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pausewatch/pausewatch/agent/usdt"
)

// buildFakePython compiles testdata/python/fake.c into a shared object with
// the given version and function names.
func buildFakePython(t *testing.T, name string, version uint32, funcs []string, strip bool) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	var defs []string
	for i, f := range funcs {
		defs = append(defs, "FN(\""+f+"\", "+string(rune('0'+i))+")")
	}
	out := filepath.Join(t.TempDir(), name)
	args := []string{"-shared", "-fPIC", "-O1", "-o", out,
		"-DPY_VERSION_HEX=" + "0x" + strings.ToUpper(hex32(version)),
		"-DFUNCS=" + strings.Join(defs, " "), "testdata/python/fake.c"}
	if strip {
		args = append(args, "-s")
	}
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	return out
}

func hex32(v uint32) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

func TestInspectPythonSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     string // "" = libpython3.x.so
		version  uint32
		funcs    []string
		strip    bool
		want     []string // collector probes placed, "sym gen-spec"
		choosers []string // invoke_gc_callback probes placed
		wantErr  string
	}{
		{"3.8 collect", "", 0x030812f0, []string{"collect", "collect_generations"}, false,
			[]string{"collect -4@%rsi"}, nil, ""},
		{"3.9 collect", "", 0x030912f0, []string{"collect"}, false, []string{"collect -4@%rsi"}, nil, ""},
		// 3.10 renamed collect to gc_collect_main; looking for collect
		// listed it as "none".
		{"3.10 gc_collect_main", "", 0x030a0df0, []string{"gc_collect_main", "collections_exec"}, false,
			[]string{"gc_collect_main -4@%rsi"}, nil, ""},
		{"3.10 collect is not its collector", "", 0x030a0df0, []string{"collect"}, false, nil, nil, "none of [gc_collect_main]"},
		{"3.11 lto clone, cold part skipped", "", 0x030b07f0, []string{"gc_collect_main.lto_priv.0.cold", "gc_collect_main.lto_priv.0"}, false,
			[]string{"gc_collect_main.lto_priv.0 -4@%rsi"}, nil, ""},
		// Clones of an unverified build: refused, not probed on a guess,
		// even beside the plain function (callers of the clone would be missed).
		{"3.8 unverified constprop clones", "", 0x030812f0, []string{"collect.constprop.0", "collect.constprop.1"}, false,
			nil, nil, "collect.constprop.0 is a compiler clone whose calling convention is not verified"},
		{"3.9 plain and unverified clone", "", 0x030912f0, []string{"collect", "collect.isra.0"}, false,
			nil, nil, "collect.isra.0 is a compiler clone"},
		{"3.12 part clone", "", 0x030c01f0, []string{"gc_collect_main.part.0"}, false, nil, nil, "not verified for this build"},
		{"3.13 auto generation from invoke_gc_callback", "", 0x030d00f0, []string{"gc_collect_main", "_PyGC_Collect", "invoke_gc_callback"}, false,
			[]string{"gc_collect_main -4@%rsi"}, []string{"invoke_gc_callback -4@%rdx"}, ""},
		{"3.13 without invoke_gc_callback", "", 0x030d00f0, []string{"gc_collect_main"}, false,
			nil, nil, "invoke_gc_callback, which names the generation"},
		{"3.13 unverified invoke_gc_callback clone", "", 0x030d00f0, []string{"gc_collect_main", "invoke_gc_callback.isra.0"}, false,
			nil, nil, "invoke_gc_callback.isra.0 is a compiler clone"},
		{"3.14.0 incremental", "", 0x030e00f0, []string{"_PyGC_Collect", "gc_collect_young", "invoke_gc_callback"}, false,
			[]string{"_PyGC_Collect -4@%rsi"}, []string{"invoke_gc_callback -4@%rdx"}, ""},
		{"3.14 later", "", 0x030e05f0, []string{"gc_collect_main", "invoke_gc_callback"}, false,
			[]string{"gc_collect_main -4@%rsi"}, []string{"invoke_gc_callback -4@%rdx"}, ""},
		{"3.13t stop-the-world only", "", 0x030d00f0, []string{"_PyEval_StopTheWorld", "_PyEval_StartTheWorld"}, false, nil, nil, ""},
		{"3.16 unknown", "", 0x031000f0, []string{"gc_collect_main"}, false, nil, nil, "not verified"},
		{"3.7 too old", "", 0x030700f0, []string{"collect"}, false, nil, nil, "older than the supported 3.8-3.14"},
		{"3.6 by file name", "libpython3.6m.so.1.0", 0, []string{"collect"}, false, nil, nil, "CPython 3.6 is older"},
		{"2.7 by file name", "libpython2.7.so.1.0", 0, []string{"collect"}, false, nil, nil, "CPython 2.7 is older"},
		{"stripped", "", 0x030b07f0, []string{"gc_collect_main"}, true, nil, nil, "stripped"},
		{"no collector", "", 0x030b07f0, []string{"something_else"}, false, nil, nil, "none of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = "libpython3.x.so"
			}
			path := buildFakePython(t, file, tc.version, tc.funcs, tc.strip)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b, err := inspectPython(f, path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.method != MethodUprobe {
				t.Fatalf("method %s", b.method)
			}
			if got := probeNames(t, b.collectors); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("collectors %v, want %v", got, tc.want)
			}
			if got := probeNames(t, b.choosers); strings.Join(got, ",") != strings.Join(tc.choosers, ",") {
				t.Errorf("choosers %v, want %v", got, tc.choosers)
			}
			if len(b.collectors) == 0 && b.stwStop == 0 {
				t.Error("nothing to probe")
			}
		})
	}
}

// probeNames renders probes as "sym spec", checking each has an offset.
func probeNames(t *testing.T, ps []pyProbe) []string {
	t.Helper()
	var out []string
	for _, p := range ps {
		if p.offset == 0 {
			t.Errorf("%s: no offset", p.sym)
		}
		out = append(out, p.sym+" "+argSpec(p.gen))
	}
	return out
}

// argSpec renders one parsed argument back in USDT syntax, registers by
// their 64-bit names (the parser keeps those: "%esi" reads as rsi).
func argSpec(args []usdt.Arg) string {
	if len(args) != 1 {
		return fmt.Sprintf("%d args", len(args))
	}
	a := args[0]
	size := strconv.Itoa(int(a.Size))
	if a.Signed {
		size = "-" + size
	}
	switch a.Kind {
	case usdt.ArgConst:
		return size + "@$" + strconv.FormatInt(a.Val, 10)
	case usdt.ArgReg:
		return size + "@%" + a.Reg
	}
	return fmt.Sprintf("%+v", a)
}

// The interpreters on this machine, each as the agent sees it. The clones
// of 3.8.18 and 3.13.0 are accepted only through pyVerifiedClones.
func TestInspectPythonSystem(t *testing.T) {
	const pyenv = "/root/.pyenv/versions/"
	for _, tc := range []struct {
		path, method, version string
		collectors, choosers  []string
		wantErr               string
	}{
		{"/usr/bin/python3.11", MethodUSDT, "3.11.", nil, nil, ""},
		{pyenv + "2.7.18/lib/libpython2.7.so.1.0", "", "", nil, nil, "CPython 2.7 is older than the supported 3.8-3.14"},
		{pyenv + "3.6.15/lib/libpython3.6m.so.1.0", "", "", nil, nil, "CPython 3.6 is older"},
		{pyenv + "3.7.16/lib/libpython3.7m.so.1.0", "", "", nil, nil, "CPython 3.7 is older"},
		{pyenv + "3.8.18/lib/libpython3.8.so.1.0", MethodUprobe, "3.8",
			[]string{"collect.constprop.0 -4@$2", "collect.constprop.1 -4@%rdi"}, nil, ""},
		{pyenv + "3.9.18/lib/libpython3.9.so.1.0", MethodUprobe, "3.9", []string{"collect -4@%rsi"}, nil, ""},
		{pyenv + "3.10.13/lib/libpython3.10.so.1.0", MethodUprobe, "3.10", []string{"gc_collect_main -4@%rsi"}, nil, ""},
		{pyenv + "3.11.7/lib/libpython3.11.so.1.0", MethodUprobe, "3.11.7", []string{"gc_collect_main -4@%rsi"}, nil, ""},
		{pyenv + "3.12.1/lib/libpython3.12.so.1.0", MethodUprobe, "3.12.1", []string{"gc_collect_main -4@%rsi"}, nil, ""},
		{pyenv + "3.13.0/lib/libpython3.13.so.1.0", MethodUprobe, "3.13.0",
			[]string{"gc_collect_main -4@%rsi"}, []string{"invoke_gc_callback.isra.0 -4@%rdx"}, ""},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			f, err := elf.Open(tc.path)
			if os.IsNotExist(err) {
				t.Skipf("%s not installed", tc.path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b, err := inspectPython(f, tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.method != tc.method || !strings.HasPrefix(b.version, tc.version) {
				t.Errorf("method %s version %s, want %s %s", b.method, b.version, tc.method, tc.version)
			}
			if b.method == MethodUSDT && (b.start[0].SemaphoreOffset == 0 || len(b.start[0].Args) != 1) {
				t.Errorf("gc__start %+v: want a semaphore and one argument", b.start[0])
			}
			got := probeNames(t, b.collectors)
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.collectors, ",") {
				t.Errorf("collectors %v, want %v", got, tc.collectors)
			}
			if got := probeNames(t, b.choosers); strings.Join(got, ",") != strings.Join(tc.choosers, ",") {
				t.Errorf("choosers %v, want %v", got, tc.choosers)
			}
		})
	}
}

// A verified clone is the named symbol at the recorded address of the
// recorded build, nothing less.
func TestVerifiedClone(t *testing.T) {
	const id38 = "ff2a4988bea9e9bbbb8004eb6e74cc0792734c3b"
	for _, tc := range []struct {
		name, buildID, sym string
		addr               uint64
		want               string
	}{
		{"3.8.18 constprop.1", id38, "collect.constprop.1", 0x1d43d0, "-4@%edi"},
		{"3.8.18 constprop.0", id38, "collect.constprop.0", 0x1d52f0, "-4@$2"},
		{"same name, other address", id38, "collect.constprop.1", 0x1d52f0, ""},
		{"same name and address, other build", "00" + id38[2:], "collect.constprop.1", 0x1d43d0, ""},
		{"no build ID", "", "collect.constprop.1", 0x1d43d0, ""},
		{"3.13.0 isra", "d11d13fb0f82d32f3da1221ffd551ab179afb423", "invoke_gc_callback.isra.0", 0x25c3f0, "-4@%edx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := verifiedClone(tc.buildID, elf.Symbol{Name: tc.sym, Value: tc.addr})
			if ok != (tc.want != "") || c.gen != tc.want {
				t.Errorf("got %q %v, want %q", c.gen, ok, tc.want)
			}
			if ok {
				if _, err := usdt.ParseArgs(c.gen); err != nil || c.why == "" {
					t.Errorf("spec %q: %v; why %q", c.gen, err, c.why)
				}
			}
		})
	}
}

func TestGNUBuildID(t *testing.T) {
	path := buildFakePython(t, "libpython3.x.so", 0x030b07f0, []string{"gc_collect_main"}, false)
	out, err := exec.Command("readelf", "-n", path).Output()
	if err != nil {
		t.Skipf("readelf: %v", err)
	}
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindSubmatch(out)
	if m == nil {
		t.Skip("gcc made no build ID")
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := gnuBuildID(f); got != string(m[1]) {
		t.Errorf("gnuBuildID = %q, readelf says %s", got, m[1])
	}
	// Without the note: no ID (so no clone of it can be verified).
	bare := path + ".bare"
	if b, err := exec.Command("objcopy", "--remove-section=.note.gnu.build-id", path, bare).CombinedOutput(); err != nil {
		t.Skipf("objcopy: %v %s", err, b)
	}
	g, err := elf.Open(bare)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := gnuBuildID(g); got != "" {
		t.Errorf("no note, gnuBuildID = %q", got)
	}
}

func TestInspectPythonBadInput(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":   nil,
		"not ELF": []byte("#!/bin/sh\nexec python3 \"$@\"\n"),
	} {
		if _, err := elf.NewFile(bytes.NewReader(data)); err == nil {
			t.Errorf("%s parsed as ELF", name)
		}
	}
	// A truncated interpreter: an error, no panic.
	b, err := os.ReadFile("/usr/bin/python3.11")
	if err != nil {
		t.Skip("no /usr/bin/python3.11")
	}
	for _, n := range []int{64, 4096, len(b) / 3} {
		f, err := elf.NewFile(bytes.NewReader(b[:n]))
		if err != nil {
			continue
		}
		if _, err := inspectPython(f, "python3.11"); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	// A C program is not Python.
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := inspectPython(f, "/bin/true"); !errors.Is(err, errNotPython) {
		t.Errorf("/bin/true: %v", err)
	}
}

func TestPythonService(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"python3\x00app.py\x00--port\x008080\x00", "app"},
		{"/usr/bin/python3.11\x00-u\x00/srv/api/server.py\x00", "server"},
		{"python3\x00-m\x00gunicorn\x00app:wsgi\x00", "gunicorn"},
		{"python3\x00-X\x00dev\x00main.py\x00", "main"},
		{"python3\x00-c\x00print(1)\x00", ""},
	} {
		if got := pythonService([]byte(tc.cmd)); got != tc.want {
			t.Errorf("pythonService(%q) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
	// A host embedding CPython is named by its executable, not by its
	// first argument.
	for _, tc := range []struct{ exe, cmd, want string }{
		{"python3.11", "python3.11\x00app.py\x00", "app"},
		{"native-host", "native-host\x003.5\x00/opt/lib/libpython3.11.so.1.0\x00", ""},
		{"uwsgi", "uwsgi\x00--ini\x00app.ini\x00", ""},
	} {
		if got := (pythonRuntime{}).Service(tc.exe, []byte(tc.cmd)); got != tc.want {
			t.Errorf("Service(%q, %q) = %q, want %q", tc.exe, tc.cmd, got, tc.want)
		}
	}
}
