package source

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// adoptConns tracks the connections traced processes accepted before the
// agent started (bpf/adopt.c): first the ports each listens on, then its
// established connections on those ports. It returns how many connections
// it adopted, and of how many processes. Connections known already are
// left as they are, so it can run again.
func (k *kernel) adoptConns() (conns, procs int, err error) {
	// Emptied after each pass: the next one must not find ports of
	// processes gone since, nor a map filled by them.
	defer clearMap(k.objs.ListenPorts)
	if _, err := runIter(k.objs.AdoptListeners); err != nil {
		return 0, 0, fmt.Errorf("adopt_listeners: %w", err)
	}
	out, err := runIter(k.objs.AdoptConns)
	if err != nil {
		return 0, 0, fmt.Errorf("adopt_conns: %w", err)
	}
	pids := map[uint32]bool{}
	for ; len(out) >= 8; out = out[8:] { // (tgid, fd) per connection
		pids[binary.NativeEndian.Uint32(out)] = true
		conns++
	}
	return conns, len(pids), nil
}

// adoptLate adopts, at most once a tick, the connections of the processes
// traced since the last pass: a process is traced only once discovery has
// inspected it, and what it accepted between its exec (or the start pass)
// and then passed no program that tracks connections. Runs on
// housekeeping, which Run waits for before it closes the kernel objects.
func (s *Source) adoptLate() {
	s.mu.Lock()
	k, pending := s.k, s.adoptPending
	s.adoptPending = false
	s.mu.Unlock()
	if !pending || k == nil || k.requestErr != nil {
		return
	}
	conns, procs, err := k.adoptConns()
	if err != nil {
		s.log.Warn("adopting connections of newly traced processes", "err", err)
	} else if conns > 0 {
		s.log.Info("adopted connections accepted before their process was traced", "connections", conns, "processes", procs)
	}
}

// runIter runs a BPF iterator program once and returns what it wrote.
func runIter(prog *ebpf.Program) ([]byte, error) {
	l, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach iterator: %w", err)
	}
	defer l.Close()
	r, err := l.Open()
	if err != nil {
		return nil, fmt.Errorf("open iterator: %w", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read iterator: %w", err)
	}
	return b, nil
}

// clearMap deletes every key of a hash map with 8-byte keys.
func clearMap(m *ebpf.Map) {
	var key uint64
	var val uint8
	var keys []uint64
	it := m.Iterate()
	for it.Next(&key, &val) {
		keys = append(keys, key)
	}
	for _, k := range keys {
		_ = m.Delete(k) // only a key gone meanwhile can fail
	}
}
