package source

import (
	"debug/elf"
	"os"
	"testing"
)

// Debian's libjvm.so has both the USDT notes and the symbols: each path
// finds what it needs.
func TestInspectJVMSystem(t *testing.T) {
	const path = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
	f, err := elf.Open(path)
	if os.IsNotExist(err) {
		t.Skipf("%s not installed", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lib, err := inspectJVM(f, false)
	if err != nil {
		t.Fatal(err)
	}
	if lib.method != MethodUSDT || len(lib.begin) == 0 || len(lib.end) == 0 || len(lib.vmop) == 0 || len(lib.gc) == 0 {
		t.Errorf("USDT: %+v", lib)
	}
	lib, err = inspectJVM(f, true)
	if err != nil {
		t.Fatal(err)
	}
	if lib.method != MethodUprobe || lib.symBegin == 0 || lib.symEnd == 0 || lib.symNotifyGC == 0 || lib.symSynced == 0 {
		t.Errorf("symbols: %+v", lib)
	}
}

func TestInspectJVMNothing(t *testing.T) {
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := inspectJVM(f, false); err != errNoJVMProbes {
		t.Errorf("err = %v, want errNoJVMProbes", err)
	}
}
