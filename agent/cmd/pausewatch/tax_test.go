package main

import (
	"strings"
	"testing"

	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// TestPrintTax: a row with GC CPU shows cores and shares; one without says
// "-", not 0; strings from the agent reach the terminal without controls;
// the assumptions follow the table.
func TestPrintTax(t *testing.T) {
	rows := sanitizeTaxRows([]promexp.TaxSummary{
		{Runtime: "jvm", Service: "checkout\x1b[2J", Window: 100, CPUSeconds: 80, GCCPUSeconds: 20, Cores: 0.8, GCCores: 0.2,
			GCShare: 0.25, CoresWithoutGC: 0.6, WallStoppedShare: 0.015, PauseBreaches: 3, OtherBreaches: 4, GCCPUKnown: true,
			GCCPUMethods: map[string]float64{"gc_threads": 18, "pause_thread\u202e": 2}},
		{Runtime: "node", Service: "web", Window: 100, CPUSeconds: 50, Cores: 0.5},
	})
	var b strings.Builder
	printTax(&b, rows)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{"0.200", "25.0%", "1.50%", "0.600", "gc_threads=18.00s", "NO-GC = CORES - GC CORES"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.ContainsAny(out, "\x1b\u202e") {
		t.Errorf("a control or format character reached the terminal: %q", out)
	}
	web := out[strings.Index(out, "web"):]
	web = web[:strings.IndexByte(web, '\n')]
	if strings.Count(web, " - ") < 2 {
		t.Errorf("a service without GC CPU shows figures: %q", web)
	}
}
