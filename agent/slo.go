package agent

import "time"

// Breach says whether a request broke its latency objective and, if so,
// why: "pause" when it would have met the objective without the
// stop-the-world time inside it (the pause made the difference), "other"
// otherwise. Every exporter classifies breaches through this one rule.
func Breach(e Event, objective time.Duration) (breached bool, cause string) {
	if e.Type != Request || objective <= 0 || e.Duration <= objective {
		return false, ""
	}
	if e.Duration-e.PauseInside <= objective {
		return true, "pause"
	}
	return true, "other"
}
