package agent

import (
	"unicode"
	"unicode/utf8"
)

// MaxLabelBytes caps every string that comes from a watched process (service
// name, executable, container id, pause reason) once it becomes a label or
// attribute value: a process chooses these strings, and an unbounded one
// would bloat every series, log record and API answer that carries it.
const MaxLabelBytes = 128

// LabelValue is the one gate through which a string read from a process (its
// environment, command line, executable path, cgroup, memory, or hsperfdata
// file) becomes a label, attribute or JSON value. Such strings are chosen by
// whoever runs the process, so they may be anything: Prometheus panics on a
// label value that is not valid UTF-8, and a terminal obeys the escape
// sequences and bidi overrides `watch` would print. LabelValue returns s with
//   - each byte that is not part of valid UTF-8 replaced by U+FFFD (as
//     encoding/json does, so the JSON APIs and the labels agree);
//   - control characters removed: C0 (including tab and newline), DEL, C1,
//     and the Unicode format characters (category Cf: bidi overrides and
//     isolates such as U+202E, zero-width characters, the BOM) together with
//     the line and paragraph separators U+2028 and U+2029, all of which make
//     a value look like something it is not;
//   - then cut to at most MaxLabelBytes bytes, on a rune boundary.
//
// A string that needs none of this is returned as is, without allocating:
// exporters call LabelValue again on every event as a defence, and the
// common case must stay cheap.
func LabelValue(s string) string {
	if clean(s) {
		return s
	}
	b := make([]byte, 0, min(len(s), MaxLabelBytes))
	for i := 0; i < len(s); {
		// An invalid byte decodes as U+FFFD of size 1: appended below, it
		// is the replacement character.
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if dropped(r) {
			continue
		}
		if len(b)+utf8.RuneLen(r) > MaxLabelBytes {
			break
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

// clean reports whether s is short enough and made only of printable ASCII,
// the fast path of LabelValue (nearly every real value).
func clean(s string) bool {
	if len(s) > MaxLabelBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// dropped says whether LabelValue removes a (valid) rune.
func dropped(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f: // C0, DEL, C1
		return true
	case r == '\u2028', r == '\u2029': // line and paragraph separators
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

// Sanitized returns p with every string field passed through LabelValue.
func (p Process) Sanitized() Process {
	p.Runtime = LabelValue(p.Runtime)
	p.Method = LabelValue(p.Method)
	p.Service = LabelValue(p.Service)
	p.Exe = LabelValue(p.Exe)
	p.ContainerID = LabelValue(p.ContainerID)
	p.Pod = LabelValue(p.Pod)
	p.Namespace = LabelValue(p.Namespace)
	p.Container = LabelValue(p.Container)
	p.PodUID = LabelValue(p.PodUID)
	p.WorkloadKind = LabelValue(p.WorkloadKind)
	p.Workload = LabelValue(p.Workload)
	return p
}

// Sanitized returns e with its process and every string field passed
// through LabelValue, and its durations made non-negative. Sources build
// events from sanitised strings already; exporters call this too, so a
// value that slipped past a source (or an event built by hand) can never
// make an exporter panic or emit a broken label. Durations are clamped
// because a process controls what they are computed from (the Go
// runtime's clock reads, hsperfdata counters and their frequency), and a
// negative one would make a Prometheus counter panic.
func (e Event) Sanitized() Event { return e.SanitizedWith(e.Process.Sanitized()) }

// SanitizedWith is Sanitized for a caller that keeps the sanitised
// process: p must be e.Process.Sanitized() (the exporters cache it per
// process, as LabelValue over a process's strings was a measurable share
// of their cost per pause).
func (e Event) SanitizedWith(p Process) Event {
	e.Process = p
	e.Kind = LabelValue(e.Kind)
	e.Reason = LabelValue(e.Reason)
	e.Duration = max(e.Duration, 0)
	e.Stopping = max(e.Stopping, 0)
	e.PauseInside = max(e.PauseInside, 0)
	e.CPUWait = max(e.CPUWait, 0)
	return e
}
