package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// What another agent (or anything answering on --agent) sends reaches the
// terminal only sanitised: no escape sequence, no bidi override, no line
// break that forges a row, in the table, --json, or the report.
func TestPrintersSanitise(t *testing.T) {
	hostile := pauseJSON{Type: "pause", Time: time.Unix(0, 0), PID: 7, Service: "a\x1b]0;pwned\x07\u202eb\nFAKE ROW",
		Runtime: "go\xff", Method: "uprobe", Kind: "gc\r", Reason: "\x1b[2JGC\u2028", Duration: 0.001}
	var table, js, report bytes.Buffer
	printer(&table, false)(hostile)
	printer(&js, true)(hostile)
	printReport(&report, sanitizeRows([]promexp.RequestSummary{{Service: hostile.Service, Port: "80\x1b[1m", Runtime: hostile.Runtime}}))
	for _, o := range []struct {
		name, out string
		lines     int // a header and a row, or one JSON line
	}{{"table", table.String(), 2}, {"json", js.String(), 1}, {"report", report.String(), 2}} {
		name, out := o.name, o.out
		for _, bad := range []string{"\x1b", "\x07", "\u202e", "\u2028", "\r", "\xff"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s output holds %q:\n%q", name, bad, out)
			}
		}
		if n := strings.Count(out, "\n"); n != o.lines {
			t.Errorf("%s output has %d lines, a name forged one:\n%s", name, n, out)
		}
	}
	if !strings.Contains(table.String(), "a]0;pwnedbFAKE ROW") {
		t.Errorf("table lost the printable part of the service:\n%s", table.String())
	}
}
