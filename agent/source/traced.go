package source

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// The traced set is two maps: traced (a hash by tgid, the authority) and
// traced_bits (one bit per tgid, an array the kernel's tracepoints test
// first because its lookup is inlined: untracked processes, almost every
// caller, leave without a hash lookup). See bpf/pausewatch.c.

// sizeTracedBits sizes traced_bits for the tgids this node can have now,
// pid_max, in whole pages: 4 KiB for the usual 32768, 512 KiB at most
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

// setTracedBit sets (or clears) pid's bit in traced_bits with an atomic
// OR (AND) in the kernel: set_traced_bit, run by BPF_PROG_RUN. A pid past
// the map (pid_max raised since load) has no bit: the BPF side asks traced.
func (k *kernel) setTracedBit(pid uint32, set bool) error {
	a := bpfPwTracedBit{Tgid: pid}
	if set {
		a.Set = 1
	}
	if _, err := k.objs.SetTracedBit.Run(&ebpf.RunOptions{Context: a}); err != nil {
		return fmt.Errorf("set_traced_bit(%d, %v): %w", pid, set, err)
	}
	return nil
}

// trace marks pid traced: its bit first, then traced, so a tgid in traced
// always has its bit (a tracepoint never skips a traced process).
func (k *kernel) trace(pid uint32) error {
	if err := k.setTracedBit(pid, true); err != nil {
		return err
	}
	if err := k.objs.Traced.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("traced[%d]: %w", pid, err)
	}
	return nil
}

// untrace removes pid from traced, then clears its bit. A pid that was
// not traced is no error.
func (k *kernel) untrace(pid uint32) error {
	if err := k.objs.Traced.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("traced[%d]: %w", pid, err)
	}
	return k.setTracedBit(pid, false)
}
