package examples

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestPythonEmbeddedStatic: a C host with CPython linked in statically
// (libpython3.11.a) is recognised by what the file holds (Py_Version in
// .symtab, the python:gc__* USDT notes), not by its name, and every
// collection is counted (issue 16, case 4).
func TestPythonEmbeddedStatic(t *testing.T) {
	requireRoot(t)
	const lib = "/usr/lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a"
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("%s not installed (apt-get install libpython3.11-dev)", lib)
	}
	bin := filepath.Join(t.TempDir(), "order-service")
	cmd := exec.Command("gcc", "-O1", "-no-pie", "-I/usr/include/python3.11", "testdata/pyembed/host.c", lib,
		"-lm", "-lz", "-lexpat", "-ldl", "-lpthread", "-lutil", "-o", bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the embedding host: %v\n%s", err, out)
	}
	a := startAgent(t, 19497)
	const service = "py-embedded-static"
	w := startWorkload(t, exec.Command(bin), "OTEL_SERVICE_NAME="+service)
	st := a.waitTracked(t, w.pid, w.started)
	if st.Runtime != "python" || st.Method != "usdt" {
		t.Fatalf("status %+v, want python/usdt", st)
	}
	want := map[string]string{"service": service}
	before, _ := a.settledPauses(t, want)
	fmt.Fprintln(w.stdin, "go")
	if !w.out.Scan() {
		t.Fatal("the host printed no count")
	}
	seen, err := strconv.Atoi(w.out.Text())
	if err != nil || seen < 200 {
		t.Fatalf("gc.callbacks count %q", w.out.Text())
	}
	after, _ := a.settledPauses(t, want)
	w.stdin.Close()
	w.cmd.Wait()
	t.Logf("%s (%s %s): agent %v collections, gc.callbacks %d", service, st.Version, st.Method, after-before, seen)
	if int(after-before) != seen {
		t.Errorf("collections: agent %v, gc.callbacks %d", after-before, seen)
	}
}
