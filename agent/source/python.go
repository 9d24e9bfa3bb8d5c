package source

import (
	"debug/elf"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"

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
// collection, in order of preference, with the register holding the
// generation at entry (SysV ABI; "" when the function has none).
func pyCollectors(minor int) []pyFunc {
	switch {
	case minor >= 8 && minor <= 10:
		// collect(state|tstate, int generation, ...)
		return []pyFunc{{"collect", "esi"}}
	case minor >= 11 && minor <= 13:
		// gc_collect_main(tstate, int generation, ...); 3.13t adds the
		// stop-the-world inside it, so it covers free-threaded builds too.
		return []pyFunc{{"gc_collect_main", "esi"}}
	case minor == 14:
		// 3.14.0's incremental GC enters through _PyGC_Collect(tstate, int
		// generation, reason); later 3.14.x went back to gc_collect_main.
		return []pyFunc{{"_PyGC_Collect", "esi"}, {"gc_collect_main", "esi"}}
	}
	return nil
}

type pyFunc struct{ name, genReg string }

// pyBinary is what the probes need from one interpreter or libpython.
type pyBinary struct {
	version string // "3.11.7"
	minor   int
	method  string // MethodUSDT or MethodUprobe
	// USDT (method usdt).
	start, done []usdt.Probe
	// Function uprobe (method uprobe): entry = begin, return = end.
	fn       string // the symbol found, e.g. "gc_collect_main.lto_priv.0"
	fnOffset uint64
	genArg   []usdt.Arg // empty when the generation cannot be read
	// Free-threaded builds without the collector symbols: the
	// interpreter's own stop-the-world.
	stwStop, stwStart uint64
}

var pyFileRe = regexp.MustCompile(`(?:^|/)(?:lib)?python3\.(\d+)`)

// pyVersion reads the interpreter version: Py_Version (3.11+, exported),
// else the file name (python3.X, libpython3.X.so).
func pyVersion(f *elf.File, name string) (string, int, error) {
	if syms, err := f.DynamicSymbols(); err == nil {
		for _, s := range syms {
			if s.Name != "Py_Version" || s.Size < 4 {
				continue
			}
			for _, sec := range f.Sections {
				if sec.Type == elf.SHT_NOBITS || s.Value < sec.Addr || s.Value+4 > sec.Addr+sec.Size {
					continue
				}
				b := make([]byte, 4)
				if _, err := sec.ReadAt(b, int64(s.Value-sec.Addr)); err != nil {
					break
				}
				hex := f.ByteOrder.Uint32(b)
				major, minor, micro := hex>>24, (hex>>16)&0xff, (hex>>8)&0xff
				if major == 3 {
					return fmt.Sprintf("3.%d.%d", minor, micro), int(minor), nil
				}
			}
		}
	}
	if m := pyFileRe.FindStringSubmatch(name); m != nil {
		minor, _ := strconv.Atoi(m[1])
		return "3." + m[1], minor, nil
	}
	return "", 0, errNotPython
}

// inspectPython finds how to probe one CPython executable or libpython.
// name is the file's path (for the version when Py_Version is missing).
func inspectPython(f *elf.File, name string) (*pyBinary, error) {
	version, minor, err := pyVersion(f, name)
	if err != nil {
		return nil, err
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
	if minor < pyMinMinor || minor > pyMaxMinor {
		return nil, fmt.Errorf("CPython %s has no USDT probes, and its collector functions are not verified for this version (3.%d-3.%d are)",
			version, pyMinMinor, pyMaxMinor)
	}
	syms, err := f.Symbols()
	if err != nil || len(syms) == 0 {
		return nil, fmt.Errorf("CPython %s has no USDT probes and no .symtab (stripped): its collector cannot be found", version)
	}
	for _, want := range pyCollectors(minor) {
		if s, ok := findPySymbol(syms, want.name); ok {
			if b.fnOffset, err = fileOffset(f, s.Value); err != nil {
				return nil, err
			}
			b.method, b.fn = MethodUprobe, s.Name
			// A clone whose signature the compiler changed (.isra,
			// .constprop, .part) may not hold the generation where the
			// ABI says: better unknown than wrong.
			if want.genReg != "" && !abiChanged(s.Name) {
				b.genArg, _ = usdt.ParseArgs("-4@%" + want.genReg)
			}
			return b, nil
		}
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
		b.fn = "_PyEval_StopTheWorld"
		return b, nil
	}
	names := []string{}
	for _, c := range pyCollectors(minor) {
		names = append(names, c.name)
	}
	return nil, fmt.Errorf("CPython %s has no USDT probes and none of %v in .symtab", version, names)
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

// findPySymbol finds a function by name, or by the names optimising
// compilers give its clones (gc_collect_main.lto_priv.0), never a .cold part.
func findPySymbol(syms []elf.Symbol, name string) (elf.Symbol, bool) {
	var best elf.Symbol
	found := false
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
		// The exact name beats a clone; among clones, the first.
		if s.Name == name {
			return s, true
		}
		if !found {
			best, found = s, true
		}
	}
	return best, found
}

// attachPython puts the collection probes on one interpreter or libpython.
// Both programs read an argument (generation, objects collected), so each
// placement gets its own spec, empty where the value cannot be read.
func attachPython(p *probeSet, b *pyBinary, objs *bpfObjects) ([]link.Link, error) {
	var err error
	switch {
	case b.method == MethodUSDT:
		if err = p.sites("python:gc__start", objs.PyGcStart, b.start, true); err == nil {
			err = p.sites("python:gc__done", objs.PyGcDone, b.done, true)
		}
	case b.stwStop != 0:
		err = p.withArgs("_PyEval_StopTheWorld", objs.PyGcStart, false, link.UprobeOptions{Address: b.stwStop}, nil)
		if err == nil {
			err = p.withArgs("_PyEval_StartTheWorld", objs.PyGcDone, true, link.UprobeOptions{Address: b.stwStart}, nil)
		}
	default:
		// The collector returns the number of objects collected (Py_ssize_t).
		collected, _ := usdt.ParseArgs("-8@%rax")
		err = p.withArgs(b.fn, objs.PyGcStart, false, link.UprobeOptions{Address: b.fnOffset}, b.genArg)
		if err == nil {
			err = p.withArgs(b.fn, objs.PyGcDone, true, link.UprobeOptions{Address: b.fnOffset}, collected)
		}
	}
	return p.result(err)
}

// pyReason names a collection by its generation.
func pyReason(gen uint32) string {
	if gen <= 2 {
		return "gen" + strconv.Itoa(int(gen))
	}
	return "unknown"
}

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
