package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// TestFollowInterrupted: Ctrl-C while the agent is in the middle of a line
// ends watch quietly, exit 0, with the whole lines before it printed.
// Before, the scanner's partial last line was reported as "bad line from
// agent: unexpected end of JSON input".
func TestFollowInterrupted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		// One whole event, then the start of the next, then nothing
		// until the client goes away: the read is cut mid-line.
		w.Write([]byte(`{"type":"pause","pid":7,"service":"svc","runtime":"go","kind":"gc","duration_seconds":0.001}` + "\n"))
		w.Write([]byte(`{"type":"pause","pid":7,"serv`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []pauseJSON
	print := func(p pauseJSON) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
		cancel() // the operator presses Ctrl-C after the first event
	}
	var stderr bytes.Buffer
	done := make(chan struct{})
	var code int
	var followed bool
	go func() {
		code, followed = follow(ctx, plainClient(t, srv.URL), print, &stderr)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not return after the context ended")
	}
	if !followed || code != 0 {
		t.Errorf("followed %v, exit %d; want true, 0", followed, code)
	}
	if len(got) != 1 || got[0].Service != "svc" {
		t.Errorf("printed %+v, want the one whole event", got)
	}
	if s := stderr.String(); strings.Contains(s, "bad line") || strings.Count(s, "\n") != 1 {
		t.Errorf("stderr %q; want only the 'following' line", s)
	}
}

// plainClient is a client of an http agent, without credentials.
func plainClient(t *testing.T, url string) *agentClient {
	t.Helper()
	c, err := (&clientFlags{agent: url}).newClient(0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFollowStreamEnded: an agent that goes away is reported, exit 1.
func TestFollowStreamEnded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"type":"pause","pid":7}` + "\n" + `not json` + "\n"))
	}))
	defer srv.Close()
	var stderr bytes.Buffer
	n := 0
	code, followed := follow(context.Background(), plainClient(t, srv.URL), func(pauseJSON) { n++ }, &stderr)
	if !followed || code != 1 || n != 1 {
		t.Errorf("followed %v, exit %d, %d events; want true, 1, 1", followed, code, n)
	}
	if s := stderr.String(); !strings.Contains(s, "bad line from agent") || !strings.Contains(s, "agent stream ended") {
		t.Errorf("stderr %q", s)
	}
}

// TestFit: cells are exactly their width in terminal columns whatever the
// string, and nothing a terminal would act on gets through.
func TestFit(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"svc", "svc     "},
		{"exactly8", "exactly8"},
		{"longer-than-eight", "longer-t"},
		{"a\x1b[2Jb", "a?[2Jb  "},         // ESC: clear screen
		{"evil\u202egnp.exe", "evil?gnp"}, // right-to-left override
		{"bad\xffutf8", "bad?utf8"},
		{"bad\ufffdok", "bad\ufffdok  "}, // the sanitiser's replacement is shown as exported
		{"tab\there", "tab?here"},
		{"新しいサービス", "新しいサ"},                        // 2 columns each: four fit in 8
		{"ab新しい", "ab新しい"},                         // 2 + 3*2 = 8
		{"abc新しい", "abc新し "},                       // a wide rune that would cross the edge is left out
		{"e\u0301e\u0301", "e\u0301e\u0301      "}, // combining accents take no column
		{"", "        "},
	} {
		got := fit(tc.in, 8)
		if got != tc.want {
			t.Errorf("fit(%q, 8) = %q, want %q", tc.in, got, tc.want)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
				t.Errorf("fit(%q) kept %U", tc.in, r)
			}
		}
		if !utf8.ValidString(got) {
			t.Errorf("fit(%q) = %q is not valid UTF-8", tc.in, got)
		}
	}
}

// TestPrinterColumns: a pause line of a hostile service name has the same
// layout as one of a plain name: the columns after SERVICE start at the
// same place.
func TestPrinterColumns(t *testing.T) {
	var b bytes.Buffer
	print := printer(&b, false)
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, svc := range []string{"plain", "サービス名がとても長いサービス", "x\x1b]0;pwned\x07y", strings.Repeat("z", 10000)} {
		print(pauseJSON{Type: "pause", Time: at, PID: 1, Service: svc, Runtime: "go", Kind: "gc", Reason: "GC", Duration: 0.001})
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	col := func(l string) int { // display column where RUNTIME starts
		i := strings.Index(l, " go ")
		if i < 0 {
			i = strings.Index(l, " RUNTIME ")
		}
		return columns(l[:i])
	}
	for _, l := range lines[1:] {
		if strings.ContainsAny(l, "\x1b\x07") {
			t.Errorf("terminal control in %q", l)
		}
		if c, want := col(l), col(lines[0]); c != want {
			t.Errorf("RUNTIME at column %d in %q, want %d", c, l, want)
		}
	}
}

func columns(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

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

func TestWatchFilter(t *testing.T) {
	a := pauseJSON{Service: "checkout", PID: 7}
	b := pauseJSON{Service: "compile", PID: 8}
	for _, tc := range []struct {
		services, pids string
		a, b           bool
	}{
		{"", "", true, true},
		{"checkout", "", true, false},
		{"checkout, compile", "", true, true},
		{"", "8", false, true},
		{"checkout", "8", false, false},
	} {
		keep, err := watchFilter(tc.services, tc.pids)
		if err != nil {
			t.Fatal(err)
		}
		if keep(a) != tc.a || keep(b) != tc.b {
			t.Errorf("filter %q/%q: checkout %v compile %v, want %v %v", tc.services, tc.pids, keep(a), keep(b), tc.a, tc.b)
		}
	}
	if _, err := watchFilter("", "12x"); err == nil || !strings.Contains(err.Error(), "--pid") {
		t.Errorf("bad pid list: %v", err)
	}
}
