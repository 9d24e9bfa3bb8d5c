package source

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Capability numbers from linux/capability.h.
const (
	capDACOverride   = 1
	capDACReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capSysResource   = 24
	capPerfmon       = 38
	capBPF           = 39
)

// capSet is a process's effective capability set (CapEff in /proc/self/status).
type capSet uint64

func (c capSet) has(n int) bool { return c&(1<<uint(n)) != 0 }

// bpf and perfmon mirror the kernel's bpf_capable() and perfmon_capable():
// CAP_SYS_ADMIN stands in for both (and is what kernels before 5.8, which
// lack CAP_BPF and CAP_PERFMON, check).
func (c capSet) bpf() bool     { return c.has(capBPF) || c.has(capSysAdmin) }
func (c capSet) perfmon() bool { return c.has(capPerfmon) || c.has(capSysAdmin) }

// readFiles says whether files of other users that are not world-readable
// can be read: hsperfdata (0600), /proc/<pid>/environ (0400), tracefs
// (0700 root) as a non-root uid.
func (c capSet) readFiles() bool { return c.has(capDACReadSearch) || c.has(capDACOverride) }

// ownCaps reads the agent's effective capabilities.
func ownCaps() (capSet, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read own capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			return capSet(n), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read own capabilities: %w", err)
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// missingLoadCaps names the capabilities without which no BPF program can
// be loaded at all (the uprobe and tracepoint programs are "perfmon"
// program types), or "" when both are there.
func missingLoadCaps(c capSet) string {
	var miss []string
	if !c.bpf() {
		miss = append(miss, "CAP_BPF")
	}
	if !c.perfmon() {
		miss = append(miss, "CAP_PERFMON")
	}
	if len(miss) == 0 {
		return ""
	}
	return strings.Join(miss, " and ") + " (or CAP_SYS_ADMIN)"
}

// errNoUprobes is why a process is not probed when uprobes cannot be
// attached at all; the start-up log and /api/status say why in full.
var errNoUprobes = errors.New("uprobes unavailable with this kernel and these privileges (see /api/status)")

// uprobeMode is how uprobes are attached.
type uprobeMode int

const (
	uprobeNone  uprobeMode = iota // neither way works: Go and Python are not captured
	uprobePerf                    // one perf-PMU uprobe (and link) per address
	uprobeMulti                   // one uprobe_multi link per (file, program) with all its addresses
)

func (m uprobeMode) String() string {
	switch m {
	case uprobeMulti:
		return "uprobe_multi"
	case uprobePerf:
		return "perf_uprobe"
	}
	return "none"
}

// Capture methods, the method label of pausewatch_capture_available.
const (
	CaptureUprobeMulti = "uprobe_multi"
	CapturePerfUprobe  = "perf_uprobe"
	CaptureHsperfdata  = "hsperfdata"
	CaptureRequests    = "requests"
)

// Capture says what this agent can capture with the privileges and the
// kernel it has, found at start by trial: each method with why it is not
// available, and what that costs.
type Capture struct {
	// Methods maps a capture method to "" when it works, else why not.
	Methods map[string]string `json:"methods"`
	// Uprobes is how uprobes are attached: uprobe_multi, perf_uprobe or none.
	Uprobes string `json:"uprobes"`
	// Missing lists what is missing and what it disables, one line each.
	Missing []string `json:"missing,omitempty"`
	// Unready names each configured runtime that no method can capture;
	// the agent is not ready while it is non-empty.
	Unready []string `json:"unready,omitempty"`
}

// trialUprobe attaches a do-nothing program at the agent's own ELF entry
// point, the way the runtimes' probes will be attached, and takes it off
// again. The entry point is an instruction boundary that runs once, at
// exec, so the trial probe never fires. A trial rather than a version or
// capability check because what the kernel demands has changed within
// stable series (perf uprobes: CAP_PERFMON since 5.8, CAP_SYS_ADMIN again
// since ba677dbe77af, backported to the stable kernels in 2025).
func trialUprobe(mode uprobeMode) error {
	off, err := selfEntry()
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	spec := &ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}
	if mode == uprobeMulti {
		if err := features.HaveBPFLinkUprobeMulti(); err != nil {
			return fmt.Errorf("kernel has no uprobe_multi links (Linux 6.6+): %w", err)
		}
		spec.AttachType = ebpf.AttachTraceUprobeMulti
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return fmt.Errorf("load trial uprobe program: %w", err)
	}
	defer prog.Close()
	var l link.Link
	if mode == uprobeMulti {
		l, err = ex.UprobeMulti(nil, prog, &link.UprobeMultiOptions{Addresses: []uint64{off}, Cookies: []uint64{1}})
	} else {
		l, err = ex.Uprobe("", prog, &link.UprobeOptions{Address: off, Cookie: 1})
	}
	if err != nil {
		return err
	}
	return l.Close()
}

// selfEntry returns the file offset of the agent's ELF entry point.
func selfEntry() (uint64, error) {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("read own executable: %w", err)
	}
	defer f.Close()
	return fileOffset(f, f.Entry)
}

// chooseUprobes finds how uprobes can be attached: uprobe_multi where the
// kernel has it and lets us, else perf-PMU uprobes; the why strings say
// what failed for each (empty when it worked).
// want, when not "", is the one way allowed (Config.Uprobes).
func chooseUprobes(c capSet, want string) (mode uprobeMode, whyMulti, whyPerf string) {
	if want == CapturePerfUprobe {
		whyMulti = "not used: --uprobes=" + want
	} else if err := trialUprobe(uprobeMulti); err != nil {
		whyMulti = err.Error()
	}
	if want == CaptureUprobeMulti {
		whyPerf = "not used: --uprobes=" + want
	} else if err := trialUprobe(uprobePerf); err != nil {
		whyPerf = err.Error()
		if errors.Is(err, os.ErrPermission) && !c.has(capSysAdmin) {
			whyPerf = "perf-PMU uprobes need CAP_SYS_ADMIN on this kernel (CAP_PERFMON is not enough since Linux commit ba677dbe77af): " + whyPerf
		}
	}
	switch {
	case whyMulti == "":
		return uprobeMulti, whyMulti, whyPerf
	case whyPerf == "":
		return uprobePerf, whyMulti, whyPerf
	}
	return uprobeNone, whyMulti, whyPerf
}

// assess builds the Capture report from the trials and the capabilities;
// requestErr is the request tracepoints' attach error, if any.
func (s *Source) assess(c capSet, mode uprobeMode, whyMulti, whyPerf string, requestErr error) *Capture {
	cp := &Capture{Methods: map[string]string{}, Uprobes: mode.String()}
	cp.Methods[CaptureUprobeMulti] = whyMulti
	cp.Methods[CapturePerfUprobe] = whyPerf
	if mode == uprobeNone {
		cp.Missing = append(cp.Missing, "uprobes: "+uprobeWhy(whyMulti, whyPerf)+
			"; disables Go and Python capture and JVM USDT/symbol probes (JVMs fall back to hsperfdata)")
	}
	if c.readFiles() {
		cp.Methods[CaptureHsperfdata] = ""
	} else {
		cp.Methods[CaptureHsperfdata] = "CAP_DAC_READ_SEARCH missing: other users' hsperfdata files (mode 0600) cannot be read"
	}
	if !c.readFiles() {
		cp.Missing = append(cp.Missing, "CAP_DAC_READ_SEARCH: disables hsperfdata of JVMs of other users, "+
			"OTEL_SERVICE_NAME of other users' processes (/proc/<pid>/environ is 0400), executables that are not world-readable, "+
			"and a tracefs that is root-only (0700) when the agent is not uid 0")
	}
	if !c.has(capSysPtrace) {
		cp.Missing = append(cp.Missing, "CAP_SYS_PTRACE: disables every process of another user "+
			"(/proc/<pid>/exe, maps, root and environ need ptrace read access)")
	}
	if !s.cfg.NoRequests {
		if requestErr != nil {
			cp.Methods[CaptureRequests] = requestErr.Error()
			cp.Missing = append(cp.Missing, "request tracepoints: "+requestErr.Error()+"; disables request latency")
		} else {
			cp.Methods[CaptureRequests] = ""
		}
	}
	uprobes := mode != uprobeNone
	for _, r := range s.runtimes {
		if !s.wants(r.Name()) {
			continue
		}
		// Probes need uprobes; a runtime with a fallback may do without.
		probes := uprobes
		fr, ok := r.(fallbackRuntime)
		if off, ok := r.(interface{ probesDisabled() bool }); ok && off.probesDisabled() {
			probes = false
		}
		if !probes && !(ok && fr.fallbackWorks(cp)) {
			cp.Unready = append(cp.Unready, r.Name())
		}
	}
	return cp
}

func uprobeWhy(whyMulti, whyPerf string) string {
	return "uprobe_multi: " + whyMulti + "; perf-PMU: " + whyPerf
}
