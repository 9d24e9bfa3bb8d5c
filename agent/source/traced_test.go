package source

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestTracedBits checks that the agent's bits, set and cleared through its
// mapping, are the ones the BPF side reads (the map's own words), and that
// traced and the bit move together.
func TestTracedBits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF programs")
	}
	if err := liftMemlock(); err != nil {
		t.Log(err)
	}
	k, err := loadKernelMode(nil, true, uprobeNone, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.close)
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	words := uint64(k.objs.TracedBits.MaxEntries())
	if words*64 < pidMax || words%512 != 0 {
		t.Fatalf("traced_bits: %d words for pid_max %d, want whole 4 KiB pages covering it", words, pidMax)
	}
	word := func(pid uint32) uint64 {
		var w uint64
		if err := k.objs.TracedBits.Lookup(pid>>6, &w); err != nil {
			t.Fatal(err)
		}
		return w
	}
	inTraced := func(pid uint32) bool {
		var v uint8
		return k.objs.Traced.Lookup(pid, &v) == nil
	}
	for _, pid := range []uint32{1, 63, 64, 4097, uint32(pidMax - 1)} {
		if err := k.trace(pid); err != nil {
			t.Fatal(err)
		}
		if w := word(pid); w != 1<<(pid&63) || !inTraced(pid) {
			t.Errorf("after trace(%d): word %#x, in traced %v; want only bit %d, in traced", pid, w, inTraced(pid), pid&63)
		}
		if err := k.untrace(pid); err != nil {
			t.Fatal(err)
		}
		if w := word(pid); w != 0 || inTraced(pid) {
			t.Errorf("after untrace(%d): word %#x, in traced %v; want 0, not in traced", pid, w, inTraced(pid))
		}
	}
	if err := k.untrace(2); err != nil {
		t.Errorf("untrace of a pid never traced: %v, want nil", err)
	}
}
