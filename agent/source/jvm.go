package source

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
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
	syms, serr := symbolsNamed(f, elf.SHT_SYMTAB, func(name []byte) bool {
		switch string(name) {
		case symSafepointBegin, symSafepointEnd, symSafepointSynced, symNotifyGCBegin:
			return true
		}
		return false
	})
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

// runtimeJVM is PW_RUNTIME_JVM of bpf/jvm.
const runtimeJVM = 2

// jvmRuntime recognises HotSpot's libjvm.so in a process's maps.
type jvmRuntime struct {
	noProbes bool // Config.NoJVMProbes: hsperfdata only
	noUSDT   bool // Config.NoJVMUSDT: symbol uprobes instead of USDT
}

func (jvmRuntime) Name() string             { return "jvm" }
func (jvmRuntime) ID() uint8                { return runtimeJVM }
func (jvmRuntime) Library(base string) bool { return base == "libjvm.so" }

// Service: the main class, jar or module (javaService).
func (jvmRuntime) Service(exe string, cmdline []byte) string { return javaService(exe, cmdline) }

// Recognise finds the safepoint probes of a libjvm.so.
func (r jvmRuntime) Recognise(f *file) (Plan, error) {
	if f.exe {
		return nil, notMine("the JVM is found as libjvm.so in the process's maps")
	}
	ef, err := f.ELF()
	if err != nil {
		return nil, err
	}
	if r.noProbes {
		return nil, errors.New("JVM probes disabled by configuration")
	}
	return inspectJVM(ef, r.noUSDT)
}

// probesDisabled: --no-jvm-probes leaves the JVM to hsperfdata.
func (r jvmRuntime) probesDisabled() bool { return r.noProbes }

// prepareFallback finds the JVM's own hsperfdata file in its maps.
func (jvmRuntime) prepareFallback(proc procFS, pid uint32) (fallback, error) {
	m, err := proc.hsperfdataMapping(pid)
	if err != nil {
		return nil, fmt.Errorf("hsperfdata: %w", err)
	}
	return m, nil
}

// fallbackWorks: the hsperfdata files of other users need CAP_DAC_READ_SEARCH.
func (jvmRuntime) fallbackWorks(cp *Capture) bool { return cp.Methods[CaptureHsperfdata] == "" }

func (lib *jvmLib) Method() string  { return lib.method }
func (lib *jvmLib) Version() string { return "" }

// Decode: the VM operation the safepoint ran, and whether it collected.
func (lib *jvmLib) Decode(e bpfPwEvent) (f pauseFacts) {
	f.reason, f.kind = jvmReason(e.Reason, cString(e.Detail[:]))
	return f
}

// Attach puts the safepoint probes on one libjvm.so file.
func (lib *jvmLib) Attach(p *probeSet, objs *bpfObjects) error {
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
			if err := p.sites(s.what, s.prog, s.sites, s.readsArgs); err != nil {
				return err
			}
		}
	case MethodUprobe:
		if err := p.add("SafepointSynchronize::begin", objs.JvmSafepointBegin, false, link.UprobeOptions{Address: lib.symBegin}); err != nil {
			return err
		}
		if lib.symNotifyGC != 0 {
			// VM_GC_Operation::notify_gc_begin(bool full): this in RDI, full in SIL.
			full, _ := usdt.ParseArgs("1@%sil")
			if err := p.withArgs("VM_GC_Operation::notify_gc_begin", objs.JvmGcBegin, false,
				link.UprobeOptions{Address: lib.symNotifyGC}, full); err != nil {
				return err
			}
		}
		if err := p.add("SafepointSynchronize::end", objs.JvmSafepointEnd, true, link.UprobeOptions{Address: lib.symEnd}); err != nil {
			return err
		}
	}
	if lib.symSynced != 0 {
		return p.add("RuntimeService::record_safepoint_synchronized", objs.JvmSafepointSynced, false,
			link.UprobeOptions{Address: lib.symSynced})
	}
	return nil
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

// javaOptsWithValue are the java launcher's options whose value is the
// next argument (java --help and --help-extra, JDK 17 to 25); any other
// option is one argument ("-Dk=v", "-Xlog:...", "--add-opens=m/p=ALL-UNNAMED").
var javaOptsWithValue = map[string]bool{
	"-cp": true, "-classpath": true, "--class-path": true,
	"-p": true, "--module-path": true, "--upgrade-module-path": true,
	"--add-modules": true, "--add-reads": true, "--add-exports": true, "--add-opens": true,
	"--limit-modules": true, "--patch-module": true, "--enable-native-access": true,
	"-d": true, "--describe-module": true, "--source": true, "--finalization": true,
}

// javaLaunchers names programs whose main class (or -m module) says what
// the program is but not in its simple name: every Tomcat is "Bootstrap",
// every Maven "Launcher". The name is the product's, the same for every
// instance and version (instances are told apart by OTEL_SERVICE_NAME,
// or the pod and container labels). Kept small: docs/jvm.md lists it.
var javaLaunchers = map[string]string{
	"org.apache.catalina.startup.Bootstrap":             "tomcat",
	"kafka.Kafka":                                       "kafka",
	"org.apache.zookeeper.server.quorum.QuorumPeerMain": "zookeeper",
	"org.elasticsearch.bootstrap.Elasticsearch":         "elasticsearch",
	"org.apache.cassandra.service.CassandraDaemon":      "cassandra",
	"com.sun.tools.javac.Main":                          "javac",
	"jdk.compiler":                                      "javac", // java -m jdk.compiler
	"jdk.jshell":                                        "jshell",
	"org.codehaus.plexus.classworlds.launcher.Launcher": "maven",
	"org.apache.maven.wrapper.MavenWrapperMain":         "maven",
	"org.gradle.wrapper.GradleWrapperMain":              "gradle",
	"org.gradle.launcher.GradleMain":                    "gradle",
	"org.gradle.launcher.daemon.bootstrap.GradleDaemon": "gradle-daemon",
}

// jarVersion is a release number at the end of a jar's name
// (billing-1.2.jar, app-0.0.1-SNAPSHOT.jar, guava-33.0.0-jre.jar): left
// out of the service name so its series go on across releases.
var jarVersion = regexp.MustCompile(`^(.+?)-\d+(?:\.\d+)+(?:[.-][0-9A-Za-z]+)*$`)

// javaService derives a service name from the command line of a JVM whose
// executable is exe (a base name): the main class, the module, the jar or
// the source file; nothing else of it is kept. The command line is the
// process's to write: any bytes, any length; the work is one pass over it.
func javaService(exe string, cmdline []byte) string {
	if exe != "java" {
		// javac, jshell, jar, keytool and programs embedding a JVM: their
		// own executable names them, and their options are not java's
		// (javac -d DIR would make DIR the class). "" = the exe name.
		return ""
	}
	rest := cmdline
	next := func() (string, bool) {
		if len(rest) == 0 {
			return "", false
		}
		a, r, _ := bytes.Cut(rest, []byte{0})
		rest = r
		return string(a), true
	}
	next() // argv[0]
	for {
		a, ok := next()
		if !ok {
			return ""
		}
		switch {
		case a == "-jar":
			f, _ := next()
			return jarService(f)
		case a == "-m" || a == "--module":
			m, _ := next()
			return moduleService(m)
		case strings.HasPrefix(a, "--module="):
			return moduleService(a[len("--module="):])
		case javaOptsWithValue[a]:
			next()
		case a == "" || a[0] == '-' || a[0] == '@':
			// An option with its value attached, or an @argfile: the
			// launcher expands those, but they are files of the process
			// (maybe in another mount namespace): not read. A main class
			// only named inside one leaves the exe name.
		default:
			return mainService(a)
		}
	}
}

// jarService: the jar's base name without .jar and without a version.
func jarService(path string) string {
	name := strings.TrimSuffix(fileBase(path), ".jar")
	if m := jarVersion.FindStringSubmatch(name); m != nil {
		name = m[1]
	}
	return labelValue(name)
}

// moduleService: "module/main.Class" names the class, "module" alone the
// module (its descriptor's main class is inside the image, not read).
func moduleService(m string) string {
	if mod, class, ok := strings.Cut(m, "/"); ok {
		if class == "" {
			m = mod
		} else {
			return mainService(class)
		}
	}
	if name, ok := javaLaunchers[m]; ok {
		return name
	}
	return labelValue(lastDot(m))
}

// mainService: a source file (java Server.java, or a shebang script with
// --source) by its base name, a class by the launcher table or its simple
// name.
func mainService(a string) string {
	if strings.HasSuffix(a, ".java") || strings.ContainsRune(a, '/') {
		return labelValue(strings.TrimSuffix(fileBase(a), ".java"))
	}
	if name, ok := javaLaunchers[a]; ok {
		return name
	}
	return labelValue(lastDot(a))
}

// fileBase is the last element of a path, "" when there is none ("", "/").
func fileBase(path string) string {
	b := filepath.Base(path)
	if b == "." || b == "/" {
		return ""
	}
	return b
}

func lastDot(s string) string {
	if j := strings.LastIndexByte(s, '.'); j >= 0 && j+1 < len(s) {
		return s[j+1:]
	}
	return s
}
