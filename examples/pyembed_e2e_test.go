package examples

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	build(t, "gcc", "-O1", "-no-pie", "-I/usr/include/python3.11", "testdata/pyembed/host.c", lib,
		"-lm", "-lz", "-lexpat", "-ldl", "-lpthread", "-lutil", "-o", bin)
	a := startAgent(t, 19497)
	const service = "py-embedded-static"
	w := startWorkload(t, exec.Command(bin), "OTEL_SERVICE_NAME="+service)
	st := a.waitTracked(t, w.pid, w.started)
	if st.Runtime != "python" || st.Method != "usdt" {
		t.Fatalf("status %+v, want python/usdt", st)
	}
	countCollections(t, a, w, fmt.Sprintf("%s (%s %s)", service, st.Version, st.Method), map[string]string{"service": service})
}
