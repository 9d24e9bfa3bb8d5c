package agent

import (
	"testing"
	"time"
)

func TestBreach(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name                string
		d, inside, cpu, slo time.Duration
		breached            bool
		cause               string
	}{
		{"fast", 5 * ms, 0, 0, 10 * ms, false, ""},
		{"fast though starved", 5 * ms, 0, 4 * ms, 10 * ms, false, ""},
		{"exactly the objective", 10 * ms, 0, 0, 10 * ms, false, ""},
		{"slow without a pause", 30 * ms, 0, 0, 10 * ms, true, "other"},
		{"slow because of a pause", 30 * ms, 25 * ms, 0, 10 * ms, true, "pause"},
		{"slow with a pause that was not enough to explain it", 30 * ms, 5 * ms, 0, 10 * ms, true, "other"},
		{"slow because it waited for a CPU", 30 * ms, 0, 20 * ms, 10 * ms, true, "cpu"},
		{"starved exactly to the objective", 30 * ms, 0, 20 * ms, 10 * ms, true, "cpu"},
		{"starved, not enough to explain it", 30 * ms, 0, 19 * ms, 10 * ms, true, "other"},
		{"either alone explains it: pause wins", 30 * ms, 25 * ms, 25 * ms, 10 * ms, true, "pause"},
		{"neither alone explains it, both together would", 30 * ms, 12 * ms, 12 * ms, 10 * ms, true, "other"},
		{"no objective", 30 * ms, 25 * ms, 25 * ms, 0, false, ""},
	} {
		b, c := Breach(Event{Type: Request, Duration: tc.d, PauseInside: tc.inside, CPUWait: tc.cpu}, tc.slo)
		if b != tc.breached || c != tc.cause {
			t.Errorf("%s: %v %q, want %v %q", tc.name, b, c, tc.breached, tc.cause)
		}
	}
}
