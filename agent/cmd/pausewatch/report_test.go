package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestWriteRows: report and report --tax print their rows as indented
// JSON with --json, else as their table, and never both.
func TestWriteRows(t *testing.T) {
	type row struct{ Service string }
	rows := []row{{"checkout"}, {"web"}}
	table := func(w io.Writer, rows []row) {
		for _, r := range rows {
			fmt.Fprintf(w, "| %s\n", r.Service)
		}
	}
	for _, tc := range []struct {
		name   string
		asJSON bool
		want   string
	}{
		{"table", false, "| checkout\n| web\n"},
		{"json", true, "[\n  {\n    \"Service\": \"checkout\"\n  },\n  {\n    \"Service\": \"web\"\n  }\n]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			writeRows(&b, rows, tc.asJSON, table)
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}
