package source

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pausewatch/pausewatch/agent"
)

const nodeBin = "/usr/bin/node"

func recogniseNode(t *testing.T, path string) (Plan, error) {
	t.Helper()
	f, err := openFile(path, path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	return nodeRuntime{}.Recognise(f)
}

// TestNodeRecognise: the node binary installed here gives entry offsets
// that are function starts in .text; a stripped copy is node but not
// capturable (why says so); other programs are not node's.
func TestNodeRecognise(t *testing.T) {
	if _, err := os.Stat(nodeBin); err != nil {
		t.Skipf("%s not installed", nodeBin)
	}
	plan, err := recogniseNode(t, nodeBin)
	if err != nil {
		t.Fatalf("recognise %s: %v", nodeBin, err)
	}
	b := plan.(*nodeBinary)
	if b.start == 0 || b.stop == 0 || b.perform == 0 {
		t.Fatalf("offsets %+v, want all three", b)
	}
	ef, err := elf.Open(nodeBin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	text := ef.Section(".text")
	for _, off := range []uint64{b.start, b.stop, b.perform} {
		if off < text.Offset || off >= text.Offset+text.Size {
			t.Errorf("offset %#x outside .text", off)
		}
	}

	stripped := filepath.Join(t.TempDir(), "node")
	if out, err := exec.Command("strip", "-o", stripped, nodeBin).CombinedOutput(); err != nil {
		t.Skipf("strip: %v %s", err, out)
	}
	if _, err := recogniseNode(t, stripped); err == nil || errors.Is(err, errNotMine) || !strings.Contains(err.Error(), "stripped") {
		t.Errorf("stripped node: %v, want a why naming it stripped", err)
	}
	if _, err := recogniseNode(t, "/bin/true"); !errors.Is(err, errNotMine) {
		t.Errorf("/bin/true: %v, want not mine", err)
	}
}

// TestFuncEntryRefuses: no probe at a symbol that is not a sized function
// inside an executable section.
func TestFuncEntryRefuses(t *testing.T) {
	// A binary with .symtab (go test strips its own).
	ef, err := elf.Open(nodeBin)
	if err != nil {
		t.Skipf("%s: %v", nodeBin, err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var fn, obj elf.Symbol
	for _, s := range syms {
		switch {
		case fn.Name == "" && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 && s.Value != 0:
			fn = s
		case obj.Name == "" && elf.ST_TYPE(s.Info) == elf.STT_OBJECT && s.Size > 0 && s.Value != 0:
			obj = s
		}
	}
	for _, tc := range []struct {
		name string
		sym  elf.Symbol
		ok   bool
	}{
		{"function", fn, true},
		{"data object", obj, false},
		{"function without size", func() elf.Symbol { s := fn; s.Size = 0; return s }(), false},
		{"function past its section", func() elf.Symbol { s := fn; s.Size = 1 << 40; return s }(), false},
	} {
		if _, err := funcEntry(ef, tc.sym); (err == nil) != tc.ok {
			t.Errorf("%s (%s): err %v, want ok %v", tc.name, tc.sym.Name, err, tc.ok)
		}
	}
}

func TestNodeDecodeAndService(t *testing.T) {
	for _, tc := range []struct {
		reason uint32
		want   string
	}{{0, "unknown"}, {1, "scavenge"}, {2, "mark-compact"}, {3, "minor mark-sweep"}, {9, "unknown"}} {
		f := (&nodeBinary{}).Decode(bpfPwEvent{Reason: tc.reason})
		if f.reason != tc.want || f.kind != agent.KindGC {
			t.Errorf("collector %d: %q/%q, want %q/gc", tc.reason, f.reason, f.kind, tc.want)
		}
	}
	for _, tc := range []struct{ cmdline, want string }{
		{"node\x00server.js\x00", "server"},
		{"node\x00--max-old-space-size=64\x00/srv/app/main.mjs\x008080\x00", "main"},
		{"node\x00-r\x00dotenv/config\x00api.cjs\x00", "api"},
		{"node\x00-e\x00console.log(1)\x00", ""},
		{"node\x00", ""},
	} {
		if got := nodeService([]byte(tc.cmdline)); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}
