package agent

import "time"

// Breach says whether a request broke its latency objective and, if so,
// why: "pause" when it would have met the objective without the
// stop-the-world time inside it (the pause made the difference); else
// "cpu" when it would have met it without the run-queue wait of the
// threads serving it (CPU starvation, CFS throttling); else "other".
// When either alone would explain the breach, "pause" wins: the runtime
// stopped the world whatever the platform did, and a pause is what the
// service itself can tune. Every exporter classifies breaches through
// this one rule (bpf/request.c count_request applies it in the kernel).
func Breach(e Event, objective time.Duration) (breached bool, cause string) {
	if e.Type != Request || objective <= 0 || e.Duration <= objective {
		return false, ""
	}
	if e.Duration-e.PauseInside <= objective {
		return true, "pause"
	}
	if e.Duration-e.CPUWait <= objective {
		return true, "cpu"
	}
	return true, "other"
}
