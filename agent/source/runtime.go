package source

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/pausewatch/pausewatch/agent"
)

// A Runtime is one language runtime the agent captures. Everything that
// differs between runtimes is behind this interface: discovery, attach,
// --runtimes, status and decoding iterate runtimeList and know no runtime
// by name. Each runtime has its BPF programs in bpf/<runtime>.c, which
// call pause_begin/pause_end (bpf/pausewatch.c) with the runtime's ID.
type Runtime interface {
	// Name is the `runtime` label value and the --runtimes name.
	Name() string
	// ID is the runtime's number in the records its BPF programs write
	// (PW_RUNTIME_<NAME> in its BPF file; TestContract checks them).
	ID() uint8
	// Library says whether a shared library a process has mapped, by base
	// name, may carry the runtime (libjvm.so, libpython3.X.so): the runtime
	// is then looked for there when the executable is not its.
	Library(base string) bool
	// Recognise reads one file, a process's executable or a mapped library
	// that Library accepted. It returns the plan to capture the file's
	// processes; an error wrapping errNotMine, with why, when the file is
	// not this runtime's; any other error when it is but cannot be
	// captured (the processes are listed with method "none" and the error
	// as why, and a *versionError names the version).
	Recognise(f *file) (Plan, error)
	// Service names a process from its executable name and command line
	// (the JVM's main class, Python's script); "" to use the executable name.
	Service(exe string, cmdline []byte) string
}

// A Plan is how to capture the processes of one file: made once per
// inode by Recognise, attached once, and asked to decode every record
// its probes write.
type Plan interface {
	// Method is the `method` label: MethodUprobe or MethodUSDT.
	Method() string
	// Version is the runtime's version as the file says ("go1.22.12").
	Version() string
	// Attach places the plan's probes through p. On error the caller
	// takes back whatever was placed.
	Attach(p *probeSet, objs *bpfObjects) error
	// Decode names a pause record: its reason and kind, and what else the
	// runtime reports (objects collected). The record is passed and the
	// answer returned by value: through an interface call a pointer
	// escapes, and that put every pause record and Event on the heap.
	Decode(e bpfPwEvent) pauseFacts
}

// pauseFacts is what a Plan reads from a pause record.
type pauseFacts struct {
	reason, kind   string
	collected      uint64
	collectedKnown bool
}

// A fallbackRuntime can capture a process its probes cannot, by other
// means (the JVM's hsperfdata counters).
type fallbackRuntime interface {
	Runtime
	// prepareFallback finds what the fallback reads in process pid. Its
	// error may clear up as the process starts; discovery retries while
	// the process is young.
	prepareFallback(proc procFS, pid uint32) (fallback, error)
	// fallbackWorks says whether the fallback can work with the capture
	// methods found at start (readiness).
	fallbackWorks(cp *Capture) bool
}

// A fallback captures one process until ctx is done, sending its events to
// out; it returns the `method` label value.
type fallback interface {
	start(ctx context.Context, p agent.Process, out chan<- agent.Event, log *slog.Logger) (method string, err error)
}

// runtimeList is every runtime the agent knows, in the order a process's
// executable is offered to them. Adding a runtime is one entry here.
func runtimeList(cfg Config) []Runtime {
	return []Runtime{
		goRuntime{},
		jvmRuntime{noProbes: cfg.NoJVMProbes, noUSDT: cfg.NoJVMUSDT},
		pythonRuntime{},
		nodeRuntime{},
	}
}

// RuntimeNames lists the runtimes' names, for --runtimes.
func RuntimeNames() []string {
	var out []string
	for _, r := range runtimeList(Config{}) {
		out = append(out, r.Name())
	}
	return out
}

// errNotMine says a file is not a runtime's; wrapped with why.
var errNotMine = errors.New("not this runtime's file")

// notMine wraps errNotMine with why.
func notMine(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotMine, fmt.Sprintf(format, args...))
}

// versionError is a Recognise error that knows the runtime's version.
type versionError interface {
	error
	runtimeVersion() string
}

// file is one file offered to the runtimes: opened once, parsed as ELF at
// most once, whichever runtimes look at it.
type file struct {
	path string // where the agent opened it (/proc/<pid>/exe, /proc/<pid>/root/...)
	name string // its path as the process sees it, for versions in names
	exe  bool   // the process's executable, not a mapped library
	f    *os.File
	ef   *elf.File
	err  error
}

// openFile opens path for the runtimes to read (tests); the caller closes it.
func openFile(path, name string, exe bool) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &file{path: path, name: name, exe: exe, f: f}, nil
}

// ELF returns the file parsed as ELF.
func (f *file) ELF() (*elf.File, error) {
	if f.ef == nil && f.err == nil {
		f.ef, f.err = elf.NewFile(f.f)
		if f.err != nil {
			f.err = fmt.Errorf("read %s: %w", f.name, f.err)
		}
	}
	return f.ef, f.err
}

func (f *file) close() { f.f.Close() }

// libraryRuntimeELF opens f's ELF for a runtime that lives in an executable
// or in a shared library (CPython, node). An unreadable executable is not
// the runtime's; an executable that links the runtime's library is left to
// the library, found through the process's maps, so it is probed once.
func libraryRuntimeELF(f *file, library func(base string) bool) (*elf.File, error) {
	ef, err := f.ELF()
	if err != nil {
		if f.exe {
			return nil, fmt.Errorf("%w: %w", errNotMine, err)
		}
		return nil, err
	}
	if f.exe {
		libs, _ := importedLibraries(ef)
		for _, l := range libs {
			if library(l) {
				return nil, notMine("links %s, found through the process's maps", l)
			}
		}
	}
	return ef, nil
}
