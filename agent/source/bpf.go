package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent/usdt"
)

// cString returns the NUL-terminated prefix of a C char array.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// Mirrors of enum pw_event_type, enum pw_runtime and enum pw_stat in
// bpf/event.h; TestContract checks them against the object's BTF.
const (
	eventPause   = 1
	eventExec    = 2
	eventExit    = 3
	eventFork    = 5
	eventRequest = 4

	runtimeGo     = 1
	runtimeJVM    = 2
	runtimePython = 3

	eventFlagAux       = 1
	eventFlagReadStart = 2

	usdtArgConst  = 1
	usdtArgReg    = 2
	usdtArgRegMem = 3

	statRingbufLost = 0
	statUnpairedEnd = 1
	statConnLost    = 2
	statMax         = 3
)

const eventSize = 88 // sizeof(struct pw_event)

// decodeEvent reads one ring buffer record. Records are written by our own
// BPF programs, so a short one means a contract mismatch, not bad input.
func decodeEvent(b []byte) (bpfPwEvent, error) {
	var e bpfPwEvent
	if len(b) < eventSize {
		return e, fmt.Errorf("ring buffer record of %d bytes, want %d", len(b), eventSize)
	}
	le := binary.LittleEndian
	e.StartNs = le.Uint64(b[0:])
	e.DurationNs = le.Uint64(b[8:])
	e.StoppingNs = le.Uint64(b[16:])
	e.Aux = le.Uint64(b[24:])
	e.Pid = le.Uint32(b[32:])
	e.Tid = le.Uint32(b[36:])
	e.Reason = le.Uint32(b[40:])
	e.Type = b[44]
	e.Runtime = b[45]
	e.Flags = b[46]
	for i := range e.Detail {
		e.Detail[i] = int8(b[48+i])
	}
	return e, nil
}

// kernel holds everything the agent put in the kernel; close releases it all.
type kernel struct {
	objs  bpfObjects
	links []link.Link
	// uprobes is how uprobes are attached (the uprobe programs were loaded
	// for that mode).
	uprobes uprobeMode
	// requestMethod says how request starts are stamped: "arrival"
	// (sock:sk_data_ready), "read" (the first read, older kernels), or ""
	// when request capture failed (requestErr says why).
	requestMethod string
	requestErr    error
}

const tracefsRoot = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs where the kernel exposes it if nothing is
// mounted there yet: the tracepoint attach reads event ids from it.
func ensureTracefs() error {
	_, err := os.Stat(tracefsRoot + "/events")
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrPermission) {
		// tracefs is root-only (0700): mounting over it would not help.
		return fmt.Errorf("tracefs at %s is not readable: an agent that is not uid 0 needs CAP_DAC_READ_SEARCH: %w", tracefsRoot, err)
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return nil
	}
	if err := unix.Mount("nodev", tracefsRoot, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsRoot, err)
	}
	return nil
}

// liftMemlock raises RLIMIT_MEMLOCK for BPF maps and programs. Kernels
// since 5.11 charge BPF memory to the memory cgroup and ignore the limit
// (then this changes nothing and needs no privilege); older ones need it
// raised, which takes CAP_SYS_RESOURCE. Not fatal: where the limit matters
// and could not be raised, the load fails with a message saying so.
func liftMemlock() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock rlimit (needs CAP_SYS_RESOURCE on kernels before 5.11): %w", err)
	}
	return nil
}

// loadKernel loads the BPF collection and attaches the discovery and
// request tracepoints. ports, if any, limits request capture to those
// local ports; uprobes says how the uprobe programs will be attached.
// Requests start at arrival when sk_data_ready exists and reads and writes
// can be taken at completion (sock_recv_length / sock_send_length).
func loadKernel(ports []uint16, uprobes uprobeMode) (*kernel, error) {
	return loadKernelMode(ports, haveTracepoint("sock", "sk_data_ready") &&
		haveTracepoint("sock", "sock_send_length") && haveTracepoint("sock", "sock_recv_length"), uprobes)
}

// loadKernelMode is loadKernel with the request start stamp chosen: at
// arrival (sk_data_ready, with reads and writes taken at their completion
// from sock_recv_length / sock_send_length) or at the first read, with
// reads and writes at their syscall exits (what older kernels get; tests
// force it to check that path too).
func loadKernelMode(ports []uint16, arrival bool, uprobes uprobeMode) (*kernel, error) {
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	if uprobes == uprobeMulti {
		// A program serves one attach path only: the kernel refuses a
		// uprobe_multi link for a program not loaded with this attach type
		// and a perf link for one that was (EINVAL both ways), and
		// bpf_get_attach_cookie reads the cookie from a different place in
		// each. So the uprobe programs are loaded for the one mode in use.
		for _, ps := range spec.Programs {
			if ps.Type == ebpf.Kprobe && strings.HasPrefix(ps.SectionName, "uprobe") {
				ps.AttachType = ebpf.AttachTraceUprobeMulti
			}
		}
	}
	if len(ports) > 0 {
		if err := spec.Variables["filter_ports"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set filter_ports: %w", err)
		}
	}
	if arrival {
		if err := spec.Variables["arrival_mode"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set arrival_mode: %w", err)
		}
	}
	k := &kernel{uprobes: uprobes}
	if err := spec.LoadAndAssign(&k.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF objects: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF objects: %w", err)
	}
	for _, p := range ports {
		if err := k.objs.TracedPorts.Put(p, uint8(1)); err != nil {
			k.close()
			return nil, fmt.Errorf("traced_ports: %w", err)
		}
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_exec", k.objs.HandleExec},
		{"sched_process_exit", k.objs.HandleExit},
	} {
		l, err := link.Tracepoint("sched", tp.name, tp.prog, nil)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("attach tracepoint sched/%s: %w", tp.name, err)
		}
		k.links = append(k.links, l)
	}
	k.attachRequests(arrival)
	return k, nil
}

// haveTracepoint says whether the kernel has a tracepoint.
func haveTracepoint(group, name string) bool {
	for _, root := range []string{tracefsRoot, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(root + "/events/" + group + "/" + name); err == nil {
			return true
		}
	}
	return false
}

// attachRequests attaches the request-latency tracepoints. Their failure
// is reported (requestErr), not fatal: pauses are still captured.
func (k *kernel) attachRequests(arrival bool) {
	o := &k.objs
	tps := []struct {
		group, name string
		prog        *ebpf.Program
		// arrival: attached with arrival stamps; read: without
		arrival, read bool
	}{
		// Only the exit: the new fd is its return value, so a thread
		// blocked in accept before its process was traced counts too.
		{"syscalls", "sys_exit_accept", o.ExitAccept, true, true}, {"syscalls", "sys_exit_accept4", o.ExitAccept4, true, true},
		{"syscalls", "sys_enter_read", o.EnterRead, false, true}, {"syscalls", "sys_exit_read", o.ExitRead, false, true},
		{"syscalls", "sys_enter_readv", o.EnterReadv, false, true}, {"syscalls", "sys_exit_readv", o.ExitReadv, false, true},
		{"syscalls", "sys_enter_recvfrom", o.EnterRecvfrom, false, true}, {"syscalls", "sys_exit_recvfrom", o.ExitRecvfrom, false, true},
		{"syscalls", "sys_enter_recvmsg", o.EnterRecvmsg, false, true}, {"syscalls", "sys_exit_recvmsg", o.ExitRecvmsg, false, true},
		{"syscalls", "sys_enter_write", o.EnterWrite, false, true}, {"syscalls", "sys_exit_write", o.ExitWrite, false, true},
		{"syscalls", "sys_enter_writev", o.EnterWritev, false, true}, {"syscalls", "sys_exit_writev", o.ExitWritev, false, true},
		{"syscalls", "sys_enter_sendto", o.EnterSendto, false, true}, {"syscalls", "sys_exit_sendto", o.ExitSendto, false, true},
		{"syscalls", "sys_enter_sendmsg", o.EnterSendmsg, false, true}, {"syscalls", "sys_exit_sendmsg", o.ExitSendmsg, false, true},
		{"syscalls", "sys_enter_sendfile64", o.EnterSendfile64, false, true}, {"syscalls", "sys_exit_sendfile64", o.ExitSendfile64, false, true},
		{"syscalls", "sys_enter_close", o.EnterClose, true, true},
		// Arrival, and every read and write at its completion, by socket.
		{"sock", "sk_data_ready", o.HandleSkDataReady, true, false},
		{"sock", "sock_send_length", o.HandleSockSendLength, true, false},
		{"sock", "sock_recv_length", o.HandleSockRecvLength, true, false},
	}
	var links []link.Link
	for _, tp := range tps {
		if (arrival && !tp.arrival) || (!arrival && !tp.read) {
			continue
		}
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if err != nil {
			closeLinks(links)
			k.requestErr = fmt.Errorf("attach tracepoint %s/%s: %w", tp.group, tp.name, err)
			return
		}
		links = append(links, l)
	}
	k.requestMethod = "read"
	if arrival {
		k.requestMethod = "arrival"
	}
	// Optional: ends the last request of a connection as soon as the
	// client closes, rather than when the server closes.
	if l, err := link.Tracepoint("sock", "inet_sock_set_state", o.HandleInetSockSetState, nil); err == nil {
		links = append(links, l)
	}
	// Optional: traces the children a traced process forks without exec
	// (pre-fork servers) from the fork; without it they are tracked when
	// the agent first sees them (a pause of theirs).
	if l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_fork", Program: o.HandleFork}); err == nil {
		links = append(links, l)
	}
	k.links = append(k.links, links...)
}

// probeSet collects the uprobes put on one file, so that a failed attach
// takes back the ones already placed. Every runtime attaches through it.
// With perf-PMU uprobes each address is attached (and is one link) at
// once; with uprobe_multi the addresses are gathered per program and
// direction and attached by result, one link each: a handful of links per
// file instead of one per address, and one unregister (a few RCU grace
// periods) per link at shutdown instead of per address.
type probeSet struct {
	ex     *link.Executable
	specs  *specAllocator
	multi  bool
	links  []link.Link
	slots  []uint64      // usdt_specs slots taken, released with the links
	groups []*multiGroup // multi: in the order first added
}

// multiGroup is what one uprobe_multi link will carry.
type multiGroup struct {
	what    []string // distinct probe names, for errors
	prog    *ebpf.Program
	ret     bool
	addrs   []uint64
	cookies []uint64
	refCtrs []uint64
	anyRef  bool
}

// add places prog at opts.Address, a file offset; with ret, as a
// uretprobe on the function that starts there (C code only).
func (p *probeSet) add(what string, prog *ebpf.Program, ret bool, opts link.UprobeOptions) error {
	if p.multi {
		p.group(what, prog, ret).addSite(what, opts)
		return nil
	}
	attach := p.ex.Uprobe
	if ret {
		attach = p.ex.Uretprobe
	}
	l, err := attach(what, prog, &opts)
	if err != nil {
		return fmt.Errorf("attach %s at %#x: %w", what, opts.Address, err)
	}
	p.links = append(p.links, l)
	return nil
}

// group returns the pending uprobe_multi link of prog in direction ret.
func (p *probeSet) group(what string, prog *ebpf.Program, ret bool) *multiGroup {
	for _, g := range p.groups {
		if g.prog == prog && g.ret == ret {
			return g
		}
	}
	g := &multiGroup{prog: prog, ret: ret}
	p.groups = append(p.groups, g)
	return g
}

func (g *multiGroup) addSite(what string, opts link.UprobeOptions) {
	if !slices.Contains(g.what, what) {
		g.what = append(g.what, what)
	}
	g.addrs = append(g.addrs, opts.Address)
	g.cookies = append(g.cookies, opts.Cookie)
	// 0 means "no semaphore" to the kernel, per address.
	g.refCtrs = append(g.refCtrs, opts.RefCtrOffset)
	g.anyRef = g.anyRef || opts.RefCtrOffset != 0
}

// attach creates the group's uprobe_multi link.
func (g *multiGroup) attach(ex *link.Executable) (link.Link, error) {
	opts := &link.UprobeMultiOptions{Addresses: g.addrs, Cookies: g.cookies}
	if g.anyRef {
		opts.RefCtrOffsets = g.refCtrs
	}
	attach := ex.UprobeMulti
	if g.ret {
		attach = ex.UretprobeMulti
	}
	l, err := attach(nil, g.prog, opts)
	if err != nil {
		return nil, fmt.Errorf("attach %s (%d addresses, first %#x) as uprobe_multi: %w",
			strings.Join(g.what, ", "), len(g.addrs), g.addrs[0], err)
	}
	return l, nil
}

// withArgs is add for a program that reads arguments: it gets a spec of
// its own in usdt_specs (an empty one reads as "unknown"), named by the
// cookie. A shared or default cookie would read another probe's spec.
func (p *probeSet) withArgs(what string, prog *ebpf.Program, ret bool, opts link.UprobeOptions, args []usdt.Arg) error {
	cookie, err := p.specs.add(args)
	if err != nil {
		return err
	}
	p.slots = append(p.slots, cookie)
	opts.Cookie = cookie
	return p.add(what, prog, ret, opts)
}

// sites places prog at every site of a USDT probe, semaphore included.
func (p *probeSet) sites(what string, prog *ebpf.Program, sites []usdt.Probe, readsArgs bool) error {
	for _, site := range sites {
		opts := link.UprobeOptions{Address: site.Offset, RefCtrOffset: site.SemaphoreOffset}
		var err error
		if readsArgs {
			err = p.withArgs(what, prog, false, opts, site.Args)
		} else {
			err = p.add(what, prog, false, opts)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// result attaches the gathered uprobe_multi links and returns every placed
// link, or takes them all back on err (the caller's or an attach's).
func (p *probeSet) result(err error) ([]link.Link, error) {
	if err == nil {
		for _, g := range p.groups {
			var l link.Link
			if l, err = g.attach(p.ex); err != nil {
				break
			}
			p.links = append(p.links, l)
		}
	}
	p.groups = nil
	if err != nil {
		closeLinks(p.links)
		p.specs.release(p.slots)
		p.slots = nil
		return nil, err
	}
	return p.links, nil
}

// stat returns the sum over CPUs of one counter of the stats map.
func (k *kernel) stat(idx uint32) (uint64, error) {
	var per []uint64
	if err := k.objs.Stats.Lookup(idx, &per); err != nil {
		return 0, fmt.Errorf("read stats[%d]: %w", idx, err)
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum, nil
}

func (k *kernel) close() {
	closeLinks(k.links)
	k.links = nil
	k.objs.Close()
}
