package source

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pausewatch/pausewatch/agent/usdt"
)

func TestMissingLoadCaps(t *testing.T) {
	for _, tc := range []struct {
		caps capSet
		want string
	}{
		{1<<capBPF | 1<<capPerfmon, ""},
		{1 << capSysAdmin, ""}, // what kernels before 5.8 check
		{1 << capBPF, "CAP_PERFMON (or CAP_SYS_ADMIN)"},
		{1 << capPerfmon, "CAP_BPF (or CAP_SYS_ADMIN)"},
		{1<<capSysPtrace | 1<<capDACReadSearch, "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"},
	} {
		if got := missingLoadCaps(tc.caps); got != tc.want {
			t.Errorf("missingLoadCaps(%#x) = %q, want %q", uint64(tc.caps), got, tc.want)
		}
	}
}

func TestOwnCaps(t *testing.T) {
	c, err := ownCaps()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("CapEff:\t%016x\n", uint64(c)); !strings.Contains(string(b), want) {
		t.Errorf("%q not in /proc/self/status:\n%s", want, b)
	}
}

// allBut lists the runtimes, in the list's order, leaving out some.
func allBut(leave ...string) []string {
	var out []string
	for _, r := range RuntimeNames() {
		if !slices.Contains(leave, r) {
			out = append(out, r)
		}
	}
	return out
}

// TestAssessReadiness: a runtime is unready when no method can capture it.
func TestAssessReadiness(t *testing.T) {
	all := capSet(1<<capBPF | 1<<capPerfmon | 1<<capSysPtrace | 1<<capDACReadSearch)
	for _, tc := range []struct {
		name     string
		cfg      Config
		caps     capSet
		mode     uprobeMode
		unready  []string
		hsperf   bool
		nMissing int
	}{
		{"uprobe_multi, everything", Config{}, all, uprobeMulti, nil, true, 0},
		{"perf uprobes", Config{}, all, uprobePerf, nil, true, 0},
		// Without uprobes, every runtime is unready but the JVM (hsperfdata).
		{"no uprobes", Config{}, all, uprobeNone, allBut("jvm"), true, 1},
		{"no uprobes, JVM only", Config{Runtimes: []string{"jvm"}}, all, uprobeNone, nil, true, 1},
		{"no uprobes, no DAC_READ_SEARCH", Config{}, all &^ (1 << capDACReadSearch), uprobeNone,
			allBut(), false, 2},
		{"uprobes, JVM probes off, no hsperfdata", Config{NoJVMProbes: true}, all &^ (1 << capDACReadSearch), uprobeMulti,
			[]string{"jvm"}, false, 1},
		{"no SYS_PTRACE", Config{}, all &^ (1 << capSysPtrace), uprobeMulti, nil, true, 1},
	} {
		s := New(tc.cfg)
		s.cfg.NoRequests = true
		cp := s.assess(tc.caps, tc.mode, "w1", "w2", nil)
		if !slices.Equal(cp.Unready, tc.unready) {
			t.Errorf("%s: unready %v, want %v", tc.name, cp.Unready, tc.unready)
		}
		if got := cp.Methods[CaptureHsperfdata] == ""; got != tc.hsperf {
			t.Errorf("%s: hsperfdata available %v, want %v", tc.name, got, tc.hsperf)
		}
		if len(cp.Missing) != tc.nMissing {
			t.Errorf("%s: missing %q, want %d lines", tc.name, cp.Missing, tc.nMissing)
		}
		if cp.Uprobes != tc.mode.String() {
			t.Errorf("%s: uprobes %q, want %q", tc.name, cp.Uprobes, tc.mode)
		}
	}
}

// TestProbeSetGroups: with uprobe_multi, sites gather per (program,
// direction) with each address keeping its own cookie and semaphore.
func TestProbeSetGroups(t *testing.T) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: uint32(binary.Size(bpfPwUsdtSpec{})), MaxEntries: 8})
	if err != nil {
		t.Skipf("needs a BPF map (root): %v", err)
	}
	defer m.Close()
	a, b := new(ebpf.Program), new(ebpf.Program) // only compared, never used
	p := &probeSet{specs: newSpecAllocator(m, 8), multi: true}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.add("f", a, false, link.UprobeOptions{Address: 0x10, Cookie: 1}))
	must(p.add("f", a, false, link.UprobeOptions{Address: 0x20, Cookie: 1}))
	must(p.add("g", a, true, link.UprobeOptions{Address: 0x30}))
	must(p.sites("usdt", b, []usdt.Probe{
		{Offset: 0x40, SemaphoreOffset: 0x99, Args: []usdt.Arg{{Kind: usdt.ArgReg, RegOffset: 8, Size: 4}}},
		{Offset: 0x50, SemaphoreOffset: 0x99, Args: []usdt.Arg{{Kind: usdt.ArgReg, RegOffset: 16, Size: 4}}},
		{Offset: 0x60, SemaphoreOffset: 0x99, Args: []usdt.Arg{{Kind: usdt.ArgReg, RegOffset: 8, Size: 4}}},
	}, true))
	if len(p.groups) != 3 || len(p.links) != 0 {
		t.Fatalf("groups %d links %d, want 3 groups and no links before result", len(p.groups), len(p.links))
	}
	g := p.groups[0]
	if g.prog != a || g.ret || !slices.Equal(g.addrs, []uint64{0x10, 0x20}) || !slices.Equal(g.cookies, []uint64{1, 1}) || g.anyRef {
		t.Errorf("entry group %+v", g)
	}
	if g := p.groups[1]; !g.ret || !slices.Equal(g.addrs, []uint64{0x30}) {
		t.Errorf("return group %+v", g)
	}
	g = p.groups[2]
	// Sites with different argument specs get their own slots (0 and 1 of
	// the map); a site with the same spec as another shares its slot.
	if !slices.Equal(g.cookies, []uint64{0, 1, 0}) || !g.anyRef || !slices.Equal(g.refCtrs, []uint64{0x99, 0x99, 0x99}) {
		t.Errorf("usdt group %+v", g)
	}
}

// TestTrialUprobe checks the trials on this kernel as this user: as root
// both work (uprobe_multi since 6.6).
func TestTrialUprobe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := liftMemlock(); err != nil {
		t.Log(err)
	}
	if err := trialUprobe(uprobePerf); err != nil {
		t.Errorf("perf-PMU uprobe as root: %v", err)
	}
	err := trialUprobe(uprobeMulti)
	if err != nil && strings.Contains(err.Error(), "uprobe_multi links (Linux 6.6+)") {
		t.Skipf("kernel without uprobe_multi: %v", err)
	}
	if err != nil {
		t.Errorf("uprobe_multi as root: %v", err)
	}
}
