package source

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/usdt"
)

// CPython versions whose collector entry points are known (from each
// version's Python/gc.c, Modules/gcmodule.c). Others are listed with method
// "none" rather than probed on a guess.
const (
	pyMinMinor = 8
	pyMaxMinor = 14
)

// errNotPython says the file is not a CPython interpreter or libpython.
var errNotPython = errors.New("not CPython")

// pyCollectors lists, per minor version, the functions that bracket one
// collection, in order of preference, with where the generation is at
// their entry when they carry their plain name (SysV ABI: second argument).
// Checked against the disassembly of pyenv's 3.8.18, 3.9.18, 3.10.13,
// 3.11.7, 3.12.1 and 3.13.0 builds.
func pyCollectors(minor int) []pyFunc {
	switch {
	case minor >= 8 && minor <= 9:
		// collect(state|tstate, int generation, ...)
		return []pyFunc{{"collect", "-4@%esi"}}
	case minor >= 10 && minor <= 13:
		// gc_collect_main(tstate, int generation, ...): 3.10 renamed
		// collect. 3.13t adds the stop-the-world inside it, so it covers
		// free-threaded builds too.
		return []pyFunc{{"gc_collect_main", "-4@%esi"}}
	case minor == 14:
		// 3.14.0's incremental GC enters through _PyGC_Collect(tstate, int
		// generation, reason); later 3.14.x went back to gc_collect_main.
		return []pyFunc{{"_PyGC_Collect", "-4@%esi"}, {"gc_collect_main", "-4@%esi"}}
	}
	return nil
}

// pyChooser is the function through which a collector that is passed
// GENERATION_AUTO (-1; 3.13+) says which generation it collects: every
// collection calls invoke_gc_callback(tstate, "start", generation, ...)
// once it has chosen (the value gc.callbacks report), and a call that finds
// nothing to collect returns before it. nil before 3.13: the generation is
// always an argument there.
func pyChooser(minor int) *pyFunc {
	if minor >= 13 {
		return &pyFunc{"invoke_gc_callback", "-4@%edx"}
	}
	return nil
}

// pyFunc is a function by its source name and the argument spec (USDT
// syntax) of the generation at its entry under the SysV ABI.
type pyFunc struct{ name, gen string }

// pyClone is a compiler clone (.constprop, .isra, .part) of a collector
// function whose calling convention was read from its disassembly in one
// build: GCC may drop, reorder or constant-fold a clone's parameters, so
// the ABI says nothing about where its generation is.
type pyClone struct {
	sym  string
	addr uint64 // its st_value in that build: the name alone proves nothing
	gen  string // USDT argument spec of the generation at entry
	why  string // what the disassembly showed
}

// pyVerifiedClones are the clones proven by objdump -d, by GNU build ID.
// Any other build with a clone of a collector is refused (method "none"):
// a probe at a clone read with the wrong convention counts collections
// under the wrong generation, which is worse than saying "not captured".
var pyVerifiedClones = map[string][]pyClone{
	// pyenv 3.8.18 (gcc 12, Debian 12): collect() exists only as clones.
	"ff2a4988bea9e9bbbb8004eb6e74cc0792734c3b": {
		{"collect.constprop.1", 0x1d43d0, "-4@%edi",
			"(generation, n_collected*, n_uncollectable*): the state pointer and nofail=0 propagated; " +
				"EDI is spilled and indexes the generation heads; called by gc.collect() and the automatic path"},
		{"collect.constprop.0", 0x1d52f0, "-4@$2",
			"(n_collected*, n_uncollectable*, nofail): generation 2 propagated, the body merges " +
				"generations 0 and 1 into 2 with constant offsets; called by PyGC_Collect and _PyGC_CollectNoFail"},
	},
	// pyenv 3.13.0: invoke_gc_callback(tstate, phase, generation, ...)
	// with tstate replaced by tstate->interp; generation stays third.
	"d11d13fb0f82d32f3da1221ffd551ab179afb423": {
		{"invoke_gc_callback.isra.0", 0x25c3f0, "-4@%edx",
			"(interp, phase, generation, collected, uncollectable): both call sites in gc_collect_main load EDX from the generation's stack slot"},
	},
}

// pyProbe is one function to place a probe at.
type pyProbe struct {
	sym    string
	offset uint64     // file offset of its first instruction
	gen    []usdt.Arg // where the generation is at entry
}

// pyBinary is what the probes need from one interpreter or libpython.
type pyBinary struct {
	version string // "3.11.7"
	minor   int
	method  string // MethodUSDT or MethodUprobe
	// USDT (method usdt).
	start, done []usdt.Probe
	// Function uprobes (method uprobe): entry = begin, return = end, at
	// every variant of the collector.
	collectors []pyProbe
	// Where a collector passed GENERATION_AUTO names its choice (3.13+).
	choosers []pyProbe
	// Free-threaded builds without the collector symbols: the
	// interpreter's own stop-the-world.
	stwStop, stwStart uint64
}

var pyFileRe = regexp.MustCompile(`(?:^|/)(?:lib)?python([23])\.(\d+)`)

// pyVersion reads the interpreter version: Py_Version (3.11+, exported),
// else the file name (python3.X, libpython3.X.so, libpython2.7.so).
func pyVersion(f *elf.File, name string) (string, int, int, error) {
	// Py_Version is exported by libpython and dynamically linked
	// interpreters; a host that links libpython3.X.a statically (an
	// embedded interpreter, whatever its name) has it in .symtab only.
	for _, typ := range []elf.SectionType{elf.SHT_DYNSYM, elf.SHT_SYMTAB} {
		var hex uint32 // PY_VERSION_HEX, once one with major 3 is read
		eachSymbol(f, typ, func(name []byte, s elf.Sym64) bool {
			if string(name) != "Py_Version" || s.Size < 4 {
				return true
			}
			for _, sec := range f.Sections {
				if sec.Type == elf.SHT_NOBITS || s.Value < sec.Addr || s.Value+4 > sec.Addr+sec.Size {
					continue
				}
				var b [4]byte
				if _, err := sec.ReadAt(b[:], int64(s.Value-sec.Addr)); err != nil {
					break
				}
				if v := f.ByteOrder.Uint32(b[:]); v>>24 == 3 {
					hex = v
					return false
				}
			}
			return true
		})
		if hex != 0 {
			minor, micro := (hex>>16)&0xff, (hex>>8)&0xff
			return fmt.Sprintf("3.%d.%d", minor, micro), 3, int(minor), nil
		}
	}
	if m := pyFileRe.FindStringSubmatch(name); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		return m[1] + "." + m[2], major, minor, nil
	}
	return "", 0, 0, errNotPython
}

// inspectPython finds how to probe one CPython executable or libpython.
// name is the file's path (for the version when Py_Version is missing).
func inspectPython(f *elf.File, name string) (*pyBinary, error) {
	version, major, minor, err := pyVersion(f, name)
	if err != nil {
		return nil, err
	}
	// Below 3.8 nothing is verified (and 2.7's collector has neither the
	// 3.x names nor the same callers): refused even with USDT, so a
	// process is either captured as verified or plainly listed as not.
	if major != 3 || minor < pyMinMinor {
		return nil, fmt.Errorf("CPython %s is older than the supported 3.%d-3.%d: its collections are not captured",
			version, pyMinMinor, pyMaxMinor)
	}
	b := &pyBinary{version: version, minor: minor}
	if probes, err := usdt.ReadFile(f); err == nil {
		start, err1 := usdt.Find(probes, "python", "gc__start")
		done, err2 := usdt.Find(probes, "python", "gc__done")
		if err1 == nil && err2 == nil {
			b.method, b.start, b.done = MethodUSDT, start, done
			return b, nil
		}
	}
	if minor > pyMaxMinor {
		return nil, fmt.Errorf("CPython %s has no USDT probes, and its collector functions are not verified for this version (3.%d-3.%d are)",
			version, pyMinMinor, pyMaxMinor)
	}
	// Only the functions looked for, and their variants, are kept.
	wanted := []string{"_PyEval_StopTheWorld", "_PyEval_StartTheWorld"}
	for _, c := range pyCollectors(minor) {
		wanted = append(wanted, c.name)
	}
	if ch := pyChooser(minor); ch != nil {
		wanted = append(wanted, ch.name)
	}
	syms, err := symbolsNamed(f, elf.SHT_SYMTAB, func(name []byte) bool {
		for _, w := range wanted {
			if bytes.HasPrefix(name, []byte(w)) && (len(name) == len(w) || name[len(w)] == '.') {
				return true
			}
		}
		return false
	})
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("CPython %s has no USDT probes and no .symtab (stripped): its collector cannot be found", version)
	}
	if err != nil {
		return nil, fmt.Errorf("CPython %s: %w", version, err)
	}
	id := gnuBuildID(f)
	for _, want := range pyCollectors(minor) {
		probes, err := pyProbes(f, syms, want, id)
		if err != nil {
			return nil, fmt.Errorf("CPython %s: %w", version, err)
		}
		if len(probes) == 0 {
			continue
		}
		if ch := pyChooser(minor); ch != nil {
			// Without it an automatic call that collects cannot be told
			// from one that does not, nor its generation known.
			if b.choosers, err = pyProbes(f, syms, *ch, id); err != nil {
				return nil, fmt.Errorf("CPython %s: %w", version, err)
			}
			if len(b.choosers) == 0 {
				return nil, fmt.Errorf("CPython %s: %s is in .symtab but %s, which names the generation of automatic collections, is not",
					version, want.name, ch.name)
			}
		}
		b.method, b.collectors = MethodUprobe, probes
		return b, nil
	}
	stop, ok1 := findPySymbol(syms, "_PyEval_StopTheWorld")
	start, ok2 := findPySymbol(syms, "_PyEval_StartTheWorld")
	if ok1 && ok2 {
		if b.stwStop, err = fileOffset(f, stop.Value); err == nil {
			b.stwStart, err = fileOffset(f, start.Value)
		}
		if err != nil {
			return nil, err
		}
		b.method = MethodUprobe
		return b, nil
	}
	names := []string{}
	for _, c := range pyCollectors(minor) {
		names = append(names, c.name)
	}
	return nil, fmt.Errorf("CPython %s has no USDT probes and none of %v in .symtab", version, names)
}

// pyProbes returns a probe for every variant of fn in syms: the function by
// its name (or a plain LTO rename, gc_collect_main.lto_priv.0), and every
// compiler clone, each a separate entry point that callers use instead of
// the original. A clone is accepted only when pyVerifiedClones proves its
// convention for this very build; an unproven one fails the whole
// interpreter, since probing the others alone would miss collections.
func pyProbes(f *elf.File, syms []elf.Symbol, fn pyFunc, buildID string) ([]pyProbe, error) {
	var out []pyProbe
	seen := map[uint64]bool{}
	for _, s := range pySymbols(syms, fn.name) {
		if seen[s.Value] {
			continue // an alias of a variant already taken
		}
		seen[s.Value] = true
		spec := fn.gen
		if abiChanged(s.Name) {
			c, ok := verifiedClone(buildID, s)
			if !ok {
				return nil, fmt.Errorf("%s is a compiler clone whose calling convention is not verified for this build (build ID %q): "+
					"where it keeps the generation is unknown, so no probe is placed", s.Name, buildID)
			}
			spec = c.gen
		}
		gen, err := usdt.ParseArgs(spec)
		if err != nil {
			return nil, fmt.Errorf("generation of %s: %w", s.Name, err)
		}
		off, err := fileOffset(f, s.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		out = append(out, pyProbe{sym: s.Name, offset: off, gen: gen})
	}
	return out, nil
}

// verifiedClone finds the proven convention of clone s in the build id.
func verifiedClone(buildID string, s elf.Symbol) (pyClone, bool) {
	for _, c := range pyVerifiedClones[buildID] {
		if c.sym == s.Name && c.addr == s.Value {
			return c, true
		}
	}
	return pyClone{}, false
}

// ntGNUBuildID is NT_GNU_BUILD_ID (debug/elf has no name for it).
const ntGNUBuildID = 3

// gnuBuildID returns the file's GNU build ID in hex, "" when it has none.
func gnuBuildID(f *elf.File) string {
	sec := f.Section(".note.gnu.build-id")
	if sec == nil {
		return ""
	}
	b, err := sec.Data()
	// Elf64_Nhdr: namesz, descsz, type, then "GNU\0" and the ID.
	if err != nil || len(b) < 16 {
		return ""
	}
	namesz, descsz := f.ByteOrder.Uint32(b[0:]), f.ByteOrder.Uint32(b[4:])
	off := 12 + (uint64(namesz)+3)&^3
	if f.ByteOrder.Uint32(b[8:]) != ntGNUBuildID || off+uint64(descsz) > uint64(len(b)) {
		return ""
	}
	return hex.EncodeToString(b[off : off+uint64(descsz)])
}

// abiChanged says whether a compiler clone's suffix allows a changed
// calling convention (GCC's interprocedural scalar replacement, constant
// propagation, partial inlining); plain LTO renames keep it.
func abiChanged(sym string) bool {
	for _, s := range []string{".isra", ".constprop", ".part"} {
		if strings.Contains(sym, s) {
			return true
		}
	}
	return false
}

// pySymbols returns the function called name and its variants: the names
// optimising compilers give its renames and clones (collect.constprop.0,
// gc_collect_main.lto_priv.0), never a .cold part (the unlikely branches
// split off the body: not an entry point).
func pySymbols(syms []elf.Symbol, name string) []elf.Symbol {
	var out []elf.Symbol
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
			continue
		}
		if s.Name != name && !strings.HasPrefix(s.Name, name+".") {
			continue
		}
		if strings.Contains(s.Name, ".cold") {
			continue
		}
		out = append(out, s)
	}
	return out
}

// findPySymbol finds a function by name, or else its first variant.
func findPySymbol(syms []elf.Symbol, name string) (elf.Symbol, bool) {
	all := pySymbols(syms, name)
	for _, s := range all {
		if s.Name == name {
			return s, true
		}
	}
	if len(all) > 0 {
		return all[0], true
	}
	return elf.Symbol{}, false
}

// runtimePython is PW_RUNTIME_PYTHON of bpf/python.
const runtimePython = 3

// pythonRuntime recognises CPython interpreters and libpython.
type pythonRuntime struct{}

func (pythonRuntime) Name() string { return "python" }
func (pythonRuntime) ID() uint8    { return runtimePython }

// Library: libpython3.X.so, and libpython2.7.so so that Python 2 is
// listed (as not captured, with why) rather than not seen at all.
func (pythonRuntime) Library(base string) bool {
	return strings.HasPrefix(base, "libpython") && strings.Contains(base, ".so")
}

// Service: the script or -m module.
func (pythonRuntime) Service(exe string, cmdline []byte) string {
	if !strings.HasPrefix(exe, "python") {
		// A program embedding CPython (uwsgi, a native host that dlopens
		// libpython): its arguments are not python's, and its own
		// executable names it. "" = the exe name.
		return ""
	}
	return pythonService(cmdline)
}

// Recognise reads a statically linked interpreter or a libpython; an
// interpreter that needs libpython is found through its maps instead.
func (r pythonRuntime) Recognise(f *file) (Plan, error) {
	ef, err := libraryRuntimeELF(f, r.Library)
	if err != nil {
		return nil, err
	}
	b, err := inspectPython(ef, f.name)
	if errors.Is(err, errNotPython) {
		return nil, fmt.Errorf("%w: %w", errNotMine, err)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *pyBinary) Method() string  { return b.method }
func (b *pyBinary) Version() string { return b.version }

// Decode: the generation, and the objects collected when the end probe
// could read them.
func (b *pyBinary) Decode(e bpfPwEvent) pauseFacts {
	f := pauseFacts{reason: pyReason(e.Reason), kind: agent.KindGC}
	if e.Flags&eventFlagAux != 0 {
		f.collected, f.collectedKnown = e.Aux, true
	}
	return f
}

// Attach puts the collection probes on one interpreter or libpython.
// The programs read an argument (generation, objects collected), so each
// placement gets its own spec, empty where the value cannot be read.
func (b *pyBinary) Attach(p *probeSet, objs *bpfObjects) error {
	var err error
	switch {
	// In every case the end probes go in before the begin probes: a begin
	// seen without its end would leave the thread "inside the collector"
	// for good (py_calls), and every later call would read as nested.
	case b.method == MethodUSDT:
		if err = p.sites("python:gc__done", objs.PyGcDone, b.done, true); err == nil {
			err = p.sites("python:gc__start", objs.PyGcStart, b.start, true)
		}
	case b.stwStop != 0:
		err = p.withArgs("_PyEval_StartTheWorld", objs.PyGcDone, true, link.UprobeOptions{Address: b.stwStart}, nil)
		if err == nil {
			err = p.withArgs("_PyEval_StopTheWorld", objs.PyGcStart, false, link.UprobeOptions{Address: b.stwStop}, nil)
		}
	default:
		// A uretprobe only catches calls entered after it was placed.
		// Choosers, then returns, then entries: a call the entry probe
		// sees has its return and its chooser probed.
		for _, c := range b.choosers {
			if err = p.withArgs(c.sym, objs.PyGcGen, false, link.UprobeOptions{Address: c.offset}, c.gen); err != nil {
				break
			}
		}
		// The collector returns the number of objects collected (Py_ssize_t).
		collected, _ := usdt.ParseArgs("-8@%rax")
		for _, c := range b.collectors {
			if err != nil {
				break
			}
			err = p.withArgs(c.sym, objs.PyGcDone, true, link.UprobeOptions{Address: c.offset}, collected)
		}
		for _, c := range b.collectors {
			if err != nil {
				break
			}
			err = p.withArgs(c.sym, objs.PyGcStart, false, link.UprobeOptions{Address: c.offset}, c.gen)
		}
	}
	return err
}

// pyReason names a collection by its generation.
func pyReason(gen uint32) string {
	if int(gen) < len(pyGenerations) {
		return pyGenerations[gen]
	}
	return "unknown"
}

// pyGenerations are the reasons of collections by generation, made once
// rather than per pause.
var pyGenerations = [...]string{"gen0", "gen1", "gen2"}

// pythonService derives a service name from a python command line: the
// script or module name; nothing else of it is kept.
func pythonService(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-m" && i+1 < len(args):
			return args[i+1]
		case a == "-c":
			return ""
		case a == "-W" || a == "-X" || a == "--check-hash-based-pycs":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			base := a[strings.LastIndexByte(a, '/')+1:]
			return strings.TrimSuffix(base, ".py")
		}
	}
	return ""
}
