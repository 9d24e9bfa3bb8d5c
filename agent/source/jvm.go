package source

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/usdt"
)

// Symbols of the fallback when libjvm.so has no USDT notes (builds without
// dtrace, e.g. Oracle's): C++ frames do not move, so uretprobes are safe.
const (
	symSafepointBegin  = "_ZN20SafepointSynchronize5beginEv"
	symSafepointEnd    = "_ZN20SafepointSynchronize3endEv"
	symSafepointSynced = "_ZN14RuntimeService29record_safepoint_synchronizedEl"
	symNotifyGCBegin   = "_ZN15VM_GC_Operation15notify_gc_beginEb"
)

// jvmLib is what the probes need from one libjvm.so.
type jvmLib struct {
	method string // MethodUSDT or MethodUprobe
	// USDT sites (method usdt).
	begin, end, vmop, gc []usdt.Probe
	// File offsets of the fallback symbols (method uprobe); synced and
	// notifyGC may be 0 when the build lacks them.
	symBegin, symEnd, symSynced, symNotifyGC uint64
}

// errNoJVMProbes says libjvm.so has neither the USDT notes nor the symbols.
var errNoJVMProbes = errors.New("libjvm.so has no hs_private:safepoint__begin/end USDT probes and no .symtab entry for SafepointSynchronize::begin/end")

// inspectJVM finds the safepoint probes of a libjvm.so.
// With noUSDT the notes are ignored (to use, or test, the symbol fallback).
func inspectJVM(f *elf.File, noUSDT bool) (*jvmLib, error) {
	lib := &jvmLib{}
	probes, uerr := usdt.ReadFile(f)
	if uerr == nil && !noUSDT {
		begin, err1 := usdt.Find(probes, "hs_private", "safepoint__begin")
		end, err2 := usdt.Find(probes, "hs_private", "safepoint__end")
		if err1 == nil && err2 == nil {
			lib.method, lib.begin, lib.end = MethodUSDT, begin, end
			// The cause and the GC flag are optional extras.
			lib.vmop, _ = usdt.Find(probes, "hotspot", "vmops__begin")
			lib.gc, _ = usdt.Find(probes, "hotspot", "gc__begin")
		}
	}
	// The symbols give the time to safepoint on either path.
	syms, serr := f.Symbols()
	if serr == nil {
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
				continue
			}
			var dst *uint64
			switch s.Name {
			case symSafepointBegin:
				dst = &lib.symBegin
			case symSafepointEnd:
				dst = &lib.symEnd
			case symSafepointSynced:
				dst = &lib.symSynced
			case symNotifyGCBegin:
				dst = &lib.symNotifyGC
			default:
				continue
			}
			if off, err := fileOffset(f, s.Value); err == nil {
				*dst = off
			}
		}
	}
	if lib.method == "" && lib.symBegin != 0 && lib.symEnd != 0 {
		lib.method = MethodUprobe
	}
	if lib.method == "" {
		return nil, errNoJVMProbes
	}
	return lib, nil
}

// specAllocator stores USDT argument specs in the usdt_specs map and
// returns the index to use as the attach cookie.
type specAllocator struct {
	m    *ebpf.Map
	next uint32
	max  uint32
}

func (a *specAllocator) add(args []usdt.Arg) (uint64, error) {
	if a.next >= a.max {
		return 0, fmt.Errorf("usdt_specs map full (%d specs)", a.max)
	}
	var spec bpfPwUsdtSpec
	for i, arg := range args {
		if i >= len(spec.Args) {
			break
		}
		s := &spec.Args[i]
		switch arg.Kind {
		case usdt.ArgConst:
			s.Kind = usdtArgConst
		case usdt.ArgReg:
			s.Kind = usdtArgReg
		case usdt.ArgRegMem:
			s.Kind = usdtArgRegMem
		}
		s.Val, s.RegOff, s.Size = arg.Val, arg.RegOffset, arg.Size
		if arg.Signed {
			s.IsSigned = 1
		}
	}
	idx := a.next
	if err := a.m.Put(idx, &spec); err != nil {
		return 0, fmt.Errorf("store USDT spec: %w", err)
	}
	a.next++
	return uint64(idx), nil
}

// attachJVM puts the safepoint probes on one libjvm.so file.
func attachJVM(p *probeSet, lib *jvmLib, objs *bpfObjects) ([]link.Link, error) {
	var err error
	switch lib.method {
	case MethodUSDT:
		for _, s := range []struct {
			what      string
			prog      *ebpf.Program
			sites     []usdt.Probe
			readsArgs bool
		}{
			{"hs_private:safepoint__begin", objs.JvmSafepointBegin, lib.begin, false},
			{"hotspot:vmops__begin", objs.JvmVmopBegin, lib.vmop, true},
			{"hotspot:gc__begin", objs.JvmGcBegin, lib.gc, true},
			{"hs_private:safepoint__end", objs.JvmSafepointEnd, lib.end, false},
		} {
			if err = p.sites(s.what, s.prog, s.sites, s.readsArgs); err != nil {
				break
			}
		}
	case MethodUprobe:
		err = p.add("SafepointSynchronize::begin", objs.JvmSafepointBegin, false, link.UprobeOptions{Address: lib.symBegin})
		if err == nil && lib.symNotifyGC != 0 {
			// VM_GC_Operation::notify_gc_begin(bool full): this in RDI, full in SIL.
			full, _ := usdt.ParseArgs("1@%sil")
			err = p.withArgs("VM_GC_Operation::notify_gc_begin", objs.JvmGcBegin, false,
				link.UprobeOptions{Address: lib.symNotifyGC}, full)
		}
		if err == nil {
			err = p.add("SafepointSynchronize::end", objs.JvmSafepointEnd, true, link.UprobeOptions{Address: lib.symEnd})
		}
	}
	if err == nil && lib.symSynced != 0 {
		err = p.add("RuntimeService::record_safepoint_synchronized", objs.JvmSafepointSynced, false,
			link.UprobeOptions{Address: lib.symSynced})
	}
	return p.result(err)
}

// Reason flags shared with bpf/jvm.c.
const (
	jvmReasonGC   = 1
	jvmReasonFull = 2
)

// maxJVMReasons bounds the distinct VM operation names one process can
// add as reason label values; past it they are reported as "other".
const maxJVMReasons = 32

// jvmReason maps a safepoint's flags and VM operation to reason and kind.
func jvmReason(flags uint32, op string) (reason, kind string) {
	kind = "other"
	if flags&jvmReasonGC != 0 {
		kind = "gc"
	}
	// The name is read from the JVM's memory: sanitised like any string
	// a process hands us, before it is counted against maxJVMReasons.
	op = agent.LabelValue(op)
	if op == "" {
		op = "safepoint" // no operation seen (symbol fallback, or none ran)
	}
	return op, kind
}

// mappedLib finds a shared library whose base name matches in a process's
// memory maps, and returns a path to it that works from the agent's mount
// namespace, and its inode.
func (p procFS) mappedLib(pid uint32, match func(base string) bool) (string, fileKey, bool) {
	f, err := os.Open(p.path(pid, "maps"))
	if err != nil {
		return "", fileKey{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.IndexByte(line, '/')
		if i < 0 || !match(string(line[bytes.LastIndexByte(line, '/')+1:])) {
			continue
		}
		lib := string(line[i:])
		// Through the process's root, so containers' files resolve.
		path := filepath.Join(p.path(pid, "root"), lib)
		var key fileKey
		if fi, err := os.Stat(path); err == nil {
			key = statKey(fi)
		} else {
			continue
		}
		return path, key, true
	}
	return "", fileKey{}, false
}

// javaService derives a service name from a java command line: the main
// class, the jar, or the source file; nothing else of it is kept.
func javaService(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	// Options whose value is the next argument.
	withValue := map[string]bool{"-cp": true, "-classpath": true, "--class-path": true, "-p": true,
		"--module-path": true, "--add-modules": true, "--add-opens": true, "--add-exports": true,
		"--add-reads": true, "--limit-modules": true, "--upgrade-module-path": true, "--source": true}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-jar" && i+1 < len(args):
			return strings.TrimSuffix(filepath.Base(args[i+1]), ".jar")
		case (a == "-m" || a == "--module") && i+1 < len(args):
			m := args[i+1]
			if j := strings.LastIndexByte(m, '/'); j >= 0 {
				m = m[j+1:]
			}
			return lastDot(m)
		case withValue[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			if strings.HasSuffix(a, ".java") {
				return strings.TrimSuffix(filepath.Base(a), ".java")
			}
			return lastDot(a)
		}
	}
	return ""
}

func lastDot(s string) string {
	if j := strings.LastIndexByte(s, '.'); j >= 0 && j+1 < len(s) {
		return s[j+1:]
	}
	return s
}
