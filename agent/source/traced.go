package source

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The traced set is two maps: traced (a hash by tgid, the authority) and
// traced_bits (one bit per tgid, an array the kernel's tracepoints test
// first because its lookup is inlined: untracked processes, almost every
// caller, leave without a hash lookup). See bpf/pausewatch.c.

// sizeTracedBits sizes traced_bits for the tgids this node can have now,
// pid_max, in whole pages (the map is mapped into the agent, and every
// page of it is resident): 4 KiB for the usual 32768, 512 KiB at most
// (PID_MAX_LIMIT, 2^22). A tgid past it (pid_max raised later) has no
// word, and the BPF side asks traced. Unreadable pid_max: the compiled
// maximum.
func sizeTracedBits(spec *ebpf.CollectionSpec) error {
	ms := spec.Maps["traced_bits"]
	if ms == nil {
		return errors.New("BPF spec has no traced_bits map")
	}
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return nil
	}
	pidMax, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || pidMax == 0 {
		return nil
	}
	const wordsPerPage = 4096 / 8
	words := (pidMax + 63) / 64
	words = (words + wordsPerPage - 1) / wordsPerPage * wordsPerPage
	if words < uint64(ms.MaxEntries) {
		ms.MaxEntries = uint32(words)
	}
	return nil
}

// mapTracedBits maps traced_bits into the agent, so a bit is set or
// cleared with one atomic operation on the word the BPF side shares (a
// map update would rewrite the whole word and could undo a bit
// handle_fork set in between).
func (k *kernel) mapTracedBits() error {
	size := int(k.objs.TracedBits.MaxEntries()) * 8
	b, err := unix.Mmap(k.objs.TracedBits.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap traced_bits (%d bytes): %w", size, err)
	}
	k.tracedBits = b
	return nil
}

// tracedWord returns the word of traced_bits holding pid's bit and the bit,
// or nil past the map (pid_max was raised since the agent started; the
// BPF side then goes by traced alone).
func (k *kernel) tracedWord(pid uint32) (*uint64, uint64) {
	off := int(pid>>6) * 8
	if off+8 > len(k.tracedBits) {
		return nil, 0
	}
	return (*uint64)(unsafe.Pointer(&k.tracedBits[off])), 1 << (pid & 63)
}

// trace marks pid traced: its bit first, then traced, so a tgid in traced
// always has its bit (a tracepoint never skips a traced process).
func (k *kernel) trace(pid uint32) error {
	if w, bit := k.tracedWord(pid); w != nil {
		atomic.OrUint64(w, bit)
	}
	if err := k.objs.Traced.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("traced[%d]: %w", pid, err)
	}
	return nil
}

// untrace removes pid from traced, then clears its bit. A pid that was
// not traced is no error.
func (k *kernel) untrace(pid uint32) error {
	err := k.objs.Traced.Delete(pid)
	if w, bit := k.tracedWord(pid); w != nil {
		atomic.AndUint64(w, ^bit)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("traced[%d]: %w", pid, err)
	}
	return nil
}
