package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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
	eventPause = 1
	eventExec  = 2
	eventExit  = 3

	runtimeGo     = 1
	runtimeJVM    = 2
	runtimePython = 3

	eventFlagAux = 1

	usdtArgConst  = 1
	usdtArgReg    = 2
	usdtArgRegMem = 3

	statRingbufLost = 0
	statUnpairedEnd = 1
	statMax         = 2
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
}

const tracefsRoot = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs where the kernel exposes it if nothing is
// mounted there yet: the tracepoint attach reads event ids from it.
func ensureTracefs() error {
	if _, err := os.Stat(tracefsRoot + "/events"); err == nil {
		return nil
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return nil
	}
	if err := unix.Mount("nodev", tracefsRoot, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsRoot, err)
	}
	return nil
}

// loadKernel loads the BPF collection and attaches the discovery tracepoints.
func loadKernel() (*kernel, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	k := &kernel{}
	if err := loadBpfObjects(&k.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF objects: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF objects: %w", err)
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
	return k, nil
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
