package source

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
		name    string
		version uint32
		funcs   []string
		strip   bool
		wantFn  string
		wantGen bool
		wantErr string
	}{
		{"3.8 collect", 0x030812f0, []string{"collect", "collect_generations"}, false, "collect", true, ""},
		{"3.10 collect clone", 0x030a0ef0, []string{"collect.constprop.0"}, false, "collect.constprop.0", false, ""},
		{"3.11 lto clone, cold part skipped", 0x030b07f0, []string{"gc_collect_main.lto_priv.0.cold", "gc_collect_main.lto_priv.0"}, false, "gc_collect_main.lto_priv.0", true, ""},
		{"3.12 isra clone", 0x030c00f0, []string{"gc_collect_main.isra.0"}, false, "gc_collect_main.isra.0", false, ""},
		{"3.13", 0x030d00f0, []string{"gc_collect_main", "_PyGC_Collect"}, false, "gc_collect_main", true, ""},
		{"3.14.0 incremental", 0x030e00f0, []string{"_PyGC_Collect", "gc_collect_young"}, false, "_PyGC_Collect", true, ""},
		{"3.14 later", 0x030e05f0, []string{"gc_collect_main"}, false, "gc_collect_main", true, ""},
		{"3.13t stop-the-world only", 0x030d00f0, []string{"_PyEval_StopTheWorld", "_PyEval_StartTheWorld"}, false, "_PyEval_StopTheWorld", false, ""},
		{"3.16 unknown", 0x031000f0, []string{"gc_collect_main"}, false, "", false, "not verified"},
		{"3.7 too old", 0x030700f0, []string{"collect"}, false, "", false, "not verified"},
		{"stripped", 0x030b07f0, []string{"gc_collect_main"}, true, "", false, "stripped"},
		{"no collector", 0x030b07f0, []string{"something_else"}, false, "", false, "none of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := buildFakePython(t, "libpython3.x.so", tc.version, tc.funcs, tc.strip)
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
			if b.method != MethodUprobe || b.fn != tc.wantFn || (len(b.genArg) > 0) != tc.wantGen {
				t.Errorf("got method %s fn %q genArg %v; want uprobe %q gen=%v", b.method, b.fn, b.genArg, tc.wantFn, tc.wantGen)
			}
			if b.fnOffset == 0 && b.stwStop == 0 {
				t.Error("no offset")
			}
		})
	}
}

// The interpreters on this machine: Debian's (USDT, static) and pyenv's
// (no USDT, shared libpython with .symtab).
func TestInspectPythonSystem(t *testing.T) {
	for _, tc := range []struct {
		path, method, version string
	}{
		{"/usr/bin/python3.11", MethodUSDT, "3.11."},
		{"/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0", MethodUprobe, "3.11.7"},
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
			if err != nil {
				t.Fatal(err)
			}
			if b.method != tc.method || !strings.HasPrefix(b.version, tc.version) {
				t.Errorf("method %s version %s, want %s %s", b.method, b.version, tc.method, tc.version)
			}
			if b.method == MethodUSDT && (b.start[0].SemaphoreOffset == 0 || len(b.start[0].Args) != 1) {
				t.Errorf("gc__start %+v: want a semaphore and one argument", b.start[0])
			}
			if b.method == MethodUprobe && (!strings.HasPrefix(b.fn, "gc_collect_main") || len(b.genArg) != 1) {
				t.Errorf("fn %q genArg %v", b.fn, b.genArg)
			}
		})
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
}
