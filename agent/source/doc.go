// Package source captures stop-the-world pauses from outside the processes
// that make them: one BPF collection (generated from bpf/ by bpf2go), process
// discovery from /proc and the exec/exit tracepoints, and one file per
// runtime.
//
// The files divide by concern:
//   - runtime.go: the Runtime and Plan interfaces and runtimeList, the one
//     list of runtimes; golang.go, jvm.go, python.go implement them.
//   - discovery.go: the process table, the /proc scan, inspection of new
//     processes by the discovery workers, retries, reconciliation, Status.
//   - attach.go: what each file (inode) is, its probes and who holds them;
//     probeSet, through which every runtime places its uprobes.
//   - events.go: ring-buffer records, decoding and the event loop, which
//     never touches the disk.
//   - procfs.go: every reader of /proc.
//   - kernel.go: loading the collection, the tracepoints, the stats map.
//
// Adding a runtime is a Runtime in its own file, BPF programs in
// bpf/<runtime>.c that call pause_begin/pause_end, and one entry in
// runtimeList (docs/architecture.md).
package source
