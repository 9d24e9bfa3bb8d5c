package source

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent"
)

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

// loadKernel loads the BPF collection and attaches the discovery (exec,
// exit, executable mappings) and request tracepoints. ports, if any,
// limits request capture to those local ports; uprobes says how the
// uprobe programs will be attached.
// Requests start at arrival when sk_data_ready exists and reads and writes
// can be taken at completion (sock_recv_length / sock_send_length).
func loadKernel(ports []uint16, uprobes uprobeMode) (*kernel, error) {
	return loadKernelMode(ports, haveTracepoint("sock", "sk_data_ready") &&
		haveTracepoint("sock", "sock_send_length") && haveTracepoint("sock", "sock_recv_length"), uprobes, false)
}

// loadKernelMode is loadKernel with the request start stamp chosen: at
// arrival (sk_data_ready, with reads and writes taken at their completion
// from sock_recv_length / sock_send_length) or at the first read, with
// reads and writes at their syscall exits (what older kernels get; tests
// force it to check that path too). every sends every request through the
// ring buffer, not only those with a story (tests of each request's stamps).
func loadKernelMode(ports []uint16, arrival bool, uprobes uprobeMode, every bool) (*kernel, error) {
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
	var bounds [agent.RequestBuckets - 1]uint64
	if copy(bounds[:], agent.RequestBounds) != len(agent.RequestBounds) {
		return nil, fmt.Errorf("request bucket table: %d boundaries, the BPF side has %d", len(agent.RequestBounds), len(bounds))
	}
	if err := spec.Variables["req_bounds"].Set(bounds); err != nil {
		return nil, fmt.Errorf("set req_bounds: %w", err)
	}
	if every {
		if err := spec.Variables["req_every"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set req_every: %w", err)
		}
	}
	if arrival {
		if err := spec.Variables["arrival_mode"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set arrival_mode: %w", err)
		}
	}
	if err := spec.Variables["mapping_window_ns"].Set(uint64(mappingWindow)); err != nil {
		return nil, fmt.Errorf("set mapping_window_ns: %w", err)
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
		group, name string
		prog        *ebpf.Program
	}{
		{"sched", "sched_process_exec", k.objs.HandleExec},
		{"sched", "sched_process_exit", k.objs.HandleExit},
		{"sched", "sched_switch", k.objs.HandleSchedSwitch},
		// Runtimes loaded after exec (mapping.c).
		{"syscalls", "sys_exit_mmap", k.objs.ExitMmap},
	} {
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("attach tracepoint %s/%s: %w", tp.group, tp.name, err)
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
		{"syscalls", "sys_enter_recvmmsg", o.EnterRecvmmsg, false, true}, {"syscalls", "sys_exit_recvmmsg", o.ExitRecvmmsg, false, true},
		{"syscalls", "sys_enter_sendmmsg", o.EnterSendmmsg, false, true}, {"syscalls", "sys_exit_sendmmsg", o.ExitSendmmsg, false, true},
		{"syscalls", "sys_enter_splice", o.EnterSplice, false, true}, {"syscalls", "sys_exit_splice", o.ExitSplice, false, true},
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
	// Optional (kernels with io_uring): connections accepted through
	// io_uring, which passes no accept syscall.
	if l, err := link.Tracepoint("io_uring", "io_uring_complete", o.HandleIoUringComplete, nil); err == nil {
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
