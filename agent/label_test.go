package agent

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("a", 10_000)
	// 127 ASCII bytes then a 3-byte rune: the rune would end at byte 130,
	// so the cut falls before it, not inside it.
	straddle := strings.Repeat("b", 127) + "€" + "tail"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "checkout-api", "checkout-api"},
		{"empty", "", ""},
		{"spaces and punctuation kept", `svc "a" {b}=c,d`, `svc "a" {b}=c,d`},
		{"invalid utf-8", "bad\xff", "bad\uFFFD"},
		{"each invalid byte", "a\xff\xfeb", "a\uFFFD\uFFFDb"},
		{"truncated rune", "x\xe2\x82", "x\uFFFD\uFFFD"},
		{"surrogate half", "x\xed\xa0\x80y", "x\uFFFD\uFFFD\uFFFDy"},
		{"newline and CR", "a\nb\r\nc", "abc"},
		{"tab and NUL", "a\tb\x00c", "abc"},
		{"ESC sequence", "\x1b[31mred\x1b[0m", "[31mred[0m"},
		{"DEL", "a\x7fb", "ab"},
		{"C1 (CSI)", "a\u009bb\u0085c", "abc"},
		{"bidi override", "evil\u202Etxt.exe", "eviltxt.exe"},
		{"bidi isolates and marks", "\u2066a\u2069\u200fb\u200e", "ab"},
		{"zero width and BOM", "a\u200bb\ufeffc\u00adD", "abcD"},
		{"line separators", "a\u2028b\u2029c", "abc"},
		{"tag characters", "a\U000E0041b", "ab"},
		{"non-ASCII kept", "café-サービス", "café-サービス"},
		{"replacement char kept", "a\uFFFDb", "a\uFFFDb"},
		{"exactly the cap", strings.Repeat("c", MaxLabelBytes), strings.Repeat("c", MaxLabelBytes)},
		{"10 kB", long, long[:MaxLabelBytes]},
		{"cut on a rune boundary", straddle, strings.Repeat("b", 127)},
		{"10 kB of multi-byte runes", strings.Repeat("é", 5000), strings.Repeat("é", MaxLabelBytes/2)},
		{"controls do not count toward the cap", strings.Repeat("\n", 10_000) + "svc", "svc"},
		{"only controls", "\x1b\n\u202e", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LabelValue(tc.in)
			if got != tc.want {
				t.Errorf("LabelValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
			checkLabel(t, got)
			if again := LabelValue(got); again != got {
				t.Errorf("not idempotent: %q, then %q", got, again)
			}
		})
	}
}

// checkLabel fails unless s is what LabelValue promises.
func checkLabel(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%q: not valid UTF-8", s)
	}
	if len(s) > MaxLabelBytes {
		t.Errorf("%q: %d bytes, over the cap of %d", s, len(s), MaxLabelBytes)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Errorf("%q: holds %U", s, r)
		}
	}
}

func TestLabelValueCleanDoesNotAllocate(t *testing.T) {
	// Exporters sanitise every event again: the clean case must be free.
	s := "a-typical-service-name"
	if n := testing.AllocsPerRun(100, func() { _ = LabelValue(s) }); n != 0 {
		t.Errorf("%v allocations for a clean value, want 0", n)
	}
}

func TestEventSanitized(t *testing.T) {
	e := Event{
		Type: Pause, Kind: "gc\n", Reason: "G1\x1b[2J", Duration: -1, Stopping: -2, PauseInside: 3,
		Process: Process{PID: 7, Runtime: "jvm\xff", Method: "usdt", Service: "svc\u202e", Exe: "java\r",
			ContainerID: "id\x00", Pod: "p\u0085", Namespace: "n\u2028", Container: strings.Repeat("c", 300)},
	}
	got := e.Sanitized()
	want := Event{
		Type: Pause, Kind: "gc", Reason: "G1[2J", Duration: 0, Stopping: 0, PauseInside: 3,
		Process: Process{PID: 7, Runtime: "jvm\uFFFD", Method: "usdt", Service: "svc", Exe: "java",
			ContainerID: "id", Pod: "p", Namespace: "n", Container: strings.Repeat("c", MaxLabelBytes)},
	}
	if got != want {
		t.Errorf("Sanitized:\n got %+v\nwant %+v", got, want)
	}
}
