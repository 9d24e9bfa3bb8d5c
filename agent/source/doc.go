// Package source captures stop-the-world pauses from outside the processes
// that make them: one BPF collection (generated from bpf/ by bpf2go), process
// discovery from /proc and the exec/exit tracepoints, and one file per
// runtime that decides how to probe a process of that runtime.
//
// Adding a runtime means a detector in its own file (see golang.go), BPF
// programs that call pause_begin/pause_end from bpf/event.h's contract, and
// a line in the detector list; the agent core and the exporters do not
// change.
package source
