package source

import "time"

// This file is the mapping signal: a process mapped a file executable
// (bpf/mapping.c), so a runtime may have been loaded into it after exec
// (dlopen of libjvm.so, libpython, libnode), and its maps are read again.

// mappingWindow is the signal's rate limit per process (mapping_window_ns
// in bpf/mapping.c): at most one signal per window; mappings later in the
// window only set the process's pending flag.
const mappingWindow = 200 * time.Millisecond

// mapped handles a mapping signal of pid: it is inspected now, and once
// more a window later if mappings were folded into the signal meanwhile.
// The second look comes at least a window after the signal was emitted,
// so after every mapping the window held.
func (s *Source) mapped(pid uint32) {
	s.queue.push(pid, inspectMapped)
	time.AfterFunc(mappingWindow, func() {
		if s.mappingPending(pid) {
			s.queue.push(pid, inspectMapped)
		}
	})
}

// mappingPending says whether pid mapped files executable since its last
// signal without a signal of their own.
func (s *Source) mappingPending(pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.k == nil {
		return false
	}
	var st bpfPwMappingState
	if err := s.k.objs.MappingSignals.Lookup(pid, &st); err != nil {
		return false
	}
	return st.Pending != 0
}
