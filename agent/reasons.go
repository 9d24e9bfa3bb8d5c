package agent

// MaxReasonsPerProcess bounds the distinct reasons one process can add as
// label values, whatever its source: past it, its new reasons are
// reported as "other". A process chooses its reasons where they come from
// its own memory (a JVM's hsperfdata sun.gc.lastCause, which any process
// mapping a file of that name can rewrite at every poll: 69 reason series
// in 20 s before this bound), and every reason is a series in every
// exporter until the process's service expires.
const MaxReasonsPerProcess = 32

// OtherReason is what a reason past the bound becomes.
const OtherReason = "other"

// reasonCap applies MaxReasonsPerProcess to events before the exporters
// see them. It is used by Run's one goroutine only.
type reasonCap map[uint32]map[string]struct{}

func (c reasonCap) apply(e Event) Event {
	if e.Type == Exit {
		delete(c, e.Process.PID)
		return e
	}
	if e.Reason == "" {
		return e
	}
	seen := c[e.Process.PID]
	if _, ok := seen[e.Reason]; ok {
		return e
	}
	if len(seen) >= MaxReasonsPerProcess {
		e.Reason = OtherReason
		return e
	}
	if seen == nil {
		seen = map[string]struct{}{}
		c[e.Process.PID] = seen
	}
	seen[e.Reason] = struct{}{}
	return e
}
