package source

import (
	"debug/elf"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/link"

	"github.com/pausewatch/pausewatch/agent"
)

// runtimeNode is PW_RUNTIME_NODE of bpf/node.c.
const runtimeNode = 4

// V8's functions that bracket a collection's atomic pause, and the one
// that names its collector (bpf/node.c). The mangled names carry the
// signatures: PerformGarbageCollection(GarbageCollector,
// GarbageCollectionReason, const char*) keeps the collector in ESI.
const (
	symNodeStart   = "_ZN2v88internal8GCTracer16StartInSafepointEv"
	symNodeStop    = "_ZN2v88internal8GCTracer15StopInSafepointEv"
	symNodePerform = "_ZN2v88internal4Heap24PerformGarbageCollectionENS0_16GarbageCollectorENS0_23GarbageCollectionReasonEPKc"
)

// nodeCollectors names V8's GarbageCollector values (+1, as bpf/node.c
// sends them; 0: PerformGarbageCollection was not seen).
var nodeCollectors = []string{"unknown", "scavenge", "mark-compact", "minor mark-sweep"}

// nodeRuntime recognises Node.js: a node executable, or libnode.so.
type nodeRuntime struct{}

func (nodeRuntime) Name() string { return "node" }
func (nodeRuntime) ID() uint8    { return runtimeNode }

// Library: libnode.so.N (Debian's nodejs links it).
func (nodeRuntime) Library(base string) bool { return strings.HasPrefix(base, "libnode.so") }

// Service: the script's name.
func (nodeRuntime) Service(_ string, cmdline []byte) string { return nodeService(cmdline) }

// Recognise finds V8's safepoint functions in a node executable or
// libnode. Node exports the N-API for native addons, so napi_module_register
// in the dynamic string table tells a node from other programs cheaply.
func (r nodeRuntime) Recognise(f *file) (Plan, error) {
	ef, err := libraryRuntimeELF(f, r.Library)
	if err != nil {
		return nil, err
	}
	dynstr := ef.Section(".dynstr")
	if dynstr == nil {
		return nil, notMine("no dynamic symbols")
	}
	if ok, err := sectionContains(dynstr, []byte("\x00napi_module_register\x00")); err != nil || !ok {
		return nil, notMine("does not export the N-API")
	}
	return inspectNode(ef)
}

// nodeBinary is what the probes need from one node or libnode: file
// offsets of three function entries.
type nodeBinary struct {
	start, stop uint64
	perform     uint64 // 0: collector unknown
}

// inspectNode finds the functions in .symtab. A probe goes only at the
// entry of a function symbol with a size, inside an executable section: a
// function's first byte is an instruction boundary.
func inspectNode(f *elf.File) (*nodeBinary, error) {
	syms, err := symbolsNamed(f, elf.SHT_SYMTAB, func(name []byte) bool {
		return string(name) == symNodeStart || string(name) == symNodeStop || string(name) == symNodePerform
	})
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("node without .symtab (stripped): V8's GCTracer::StartInSafepoint/StopInSafepoint cannot be found, so its collections are not captured")
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	want := map[string]*uint64{}
	b := &nodeBinary{}
	want[symNodeStart], want[symNodeStop], want[symNodePerform] = &b.start, &b.stop, &b.perform
	for _, s := range syms {
		dst := want[s.Name]
		if dst == nil || *dst != 0 {
			continue
		}
		off, err := funcEntry(f, s)
		if err != nil {
			return nil, fmt.Errorf("node: %s: %w", s.Name, err)
		}
		*dst = off
	}
	if b.start == 0 || b.stop == 0 {
		return nil, fmt.Errorf("node's .symtab has no v8::internal::GCTracer::StartInSafepoint/StopInSafepoint (V8 older than 10 or renamed): its collections are not captured")
	}
	return b, nil
}

// funcEntry returns the file offset of a function symbol's entry, after
// checking it is a sized function inside an executable section.
func funcEntry(f *elf.File, s elf.Symbol) (uint64, error) {
	if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || s.Value == 0 {
		return 0, fmt.Errorf("not a sized function symbol (type %v, size %d)", elf.ST_TYPE(s.Info), s.Size)
	}
	if int(s.Section) >= len(f.Sections) {
		return 0, fmt.Errorf("section index %d out of range", s.Section)
	}
	sec := f.Sections[s.Section]
	if sec.Flags&elf.SHF_EXECINSTR == 0 || s.Value < sec.Addr || s.Value+s.Size > sec.Addr+sec.Size {
		return 0, fmt.Errorf("%#x+%d is not inside executable section %s", s.Value, s.Size, sec.Name)
	}
	return fileOffset(f, s.Value)
}

func (b *nodeBinary) Method() string  { return MethodUprobe }
func (b *nodeBinary) Version() string { return "" }

// Decode: every V8 safepoint pause is a collection; the reason is its collector.
func (b *nodeBinary) Decode(e bpfPwEvent) pauseFacts {
	f := pauseFacts{reason: "unknown", kind: agent.KindGC}
	if int(e.Reason) < len(nodeCollectors) {
		f.reason = nodeCollectors[e.Reason]
	}
	return f
}

// Attach puts the probes on: the end first, so that no pause is opened
// that the agent cannot close.
func (b *nodeBinary) Attach(p *probeSet, objs *bpfObjects) error {
	if err := p.add("v8::internal::GCTracer::StopInSafepoint", objs.NodeStopSafepoint, false, link.UprobeOptions{Address: b.stop}); err != nil {
		return err
	}
	if b.perform != 0 {
		if err := p.add("v8::internal::Heap::PerformGarbageCollection", objs.NodePerformGc, false, link.UprobeOptions{Address: b.perform}); err != nil {
			return err
		}
	}
	return p.add("v8::internal::GCTracer::StartInSafepoint", objs.NodeStartSafepoint, false, link.UprobeOptions{Address: b.start})
}

// nodeService derives a service name from a node command line: the
// script's base name without its extension; nothing else is kept.
func nodeService(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-e" || a == "--eval" || a == "-p" || a == "--print":
			return ""
		case a == "-r" || a == "--require" || a == "--import" || a == "--loader":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			base := a[strings.LastIndexByte(a, '/')+1:]
			for _, ext := range []string{".js", ".mjs", ".cjs"} {
				base = strings.TrimSuffix(base, ext)
			}
			return base
		}
	}
	return ""
}
