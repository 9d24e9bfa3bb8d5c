// Package agent holds pausewatch's one data type, the Event (a
// stop-the-world pause, or a process leaving), the identity of the process
// it happened in, and Run, which moves events from a source to the
// exporters.
//
// Sources (package agent/source) observe processes from outside: BPF
// programs, USDT probes, the runtimes' own files. Exporters (packages under
// exporters/) aggregate events into series. Nothing in between knows which
// runtime an event came from beyond the labels it carries.
package agent
