package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/source"
)

// pauseJSON is one pause, or one request a pause slowed, on the wire
// (/api/events) and in `watch --json`.
type pauseJSON struct {
	Type     string    `json:"type"` // "pause" or "request"
	Time     time.Time `json:"time"`
	PID      uint32    `json:"pid"`
	Service  string    `json:"service"`
	Runtime  string    `json:"runtime"`
	Method   string    `json:"method"`
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	Duration float64   `json:"duration_seconds"`
	Stopping float64   `json:"stopping_seconds,omitempty"`
	Port     uint16    `json:"port,omitempty"`
	Paused   float64   `json:"pause_inside_seconds,omitempty"`
}

func toJSON(e agent.Event) pauseJSON {
	typ := "pause"
	if e.Type == agent.Request {
		typ = "request"
	}
	return pauseJSON{
		Type: typ, Port: e.Port, Paused: e.PauseInside.Seconds(),
		Time: e.Start.UTC(), PID: e.Process.PID, Service: e.Process.Service, Runtime: e.Process.Runtime,
		Method: e.Process.Method, Kind: e.Kind, Reason: e.Reason,
		Duration: e.Duration.Seconds(), Stopping: e.Stopping.Seconds(),
	}
}

// serveEvents streams pauses as JSON lines until the client goes away.
// Past the stream's subscriber cap it answers 503: whoever can reach the
// port could otherwise make the agent hold a subscription per idle
// connection.
func serveEvents(w http.ResponseWriter, r *http.Request, stream *agent.Stream) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	events, cancel, err := stream.Subscribe()
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("%v (--max-stream-clients); try again later", err), http.StatusServiceUnavailable)
		return
	}
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	dirty := false
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-events:
			if enc.Encode(toJSON(*e)) != nil {
				return
			}
			dirty = true
		case <-tick.C:
			if dirty {
				fl.Flush()
				dirty = false
			}
		}
	}
}

const watchUsageHead = `Usage: pausewatch watch [flags]

Prints pauses as they happen, and under each the requests it slowed. Follows
the agent at --agent; when --agent is not given and no agent answers on the
default address, loads the probes itself (root needed). --service and --pid
narrow what is printed. Ctrl-C ends it.

Flags:
`

func watchMain(args []string) int {
	fs := flag.NewFlagSet("pausewatch watch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	asJSON := fs.Bool("json", false, "print JSON lines")
	services := fs.String("service", "", "print only these comma-separated `services`")
	pids := fs.String("pid", "", "print only these comma-separated `pids`")
	var cf clientFlags
	cf.register(fs, "follow the agent at this `URL` when one answers; otherwise run the probes here")
	client, code := cf.parse(fs, args, watchUsageHead, "--service and --pid narrow what is printed; ", 0) // a stream: no overall timeout
	if client == nil {
		return code
	}
	keep, err := watchFilter(*services, *pids)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pausewatch watch:", err)
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "agent" })
	_, fromEnv := os.LookupEnv(envName("agent"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	printAll := printer(os.Stdout, *asJSON)
	print := func(p pauseJSON) {
		if keep(p) {
			printAll(p)
		}
	}

	if code, followed := follow(ctx, client, print, os.Stderr); followed {
		return code
	}
	if ctx.Err() != nil {
		return 0 // interrupted before any agent answered
	}
	if explicit || fromEnv {
		// An agent was named: loading probes here instead would quietly
		// make a second agent out of a typo.
		fmt.Fprintf(os.Stderr, "pausewatch watch: no agent answering at %s\n", client.base)
		return 1
	}

	fmt.Fprintln(os.Stderr, "no agent answering; running the probes in this process (needs root)")
	src := source.New(source.Config{SkipSelf: true})
	printerExp := exporterFunc(func(e agent.Event) {
		if e.Type == agent.Pause || (e.Type == agent.Request && e.PauseInside > 0) {
			print(toJSON(e))
		}
	})
	if err := agent.Run(ctx, src, printerExp); err != nil {
		fmt.Fprintln(os.Stderr, "pausewatch watch:", err)
		return 1
	}
	return 0
}

// maxEventLine bounds one line of the agent's stream; bufio.Scanner's
// default (64 KiB) would end the stream at the first event whose strings
// are longer, and an agent that does not cap them may send such lines.
const maxEventLine = 1 << 20

// follow prints the agent's event stream. followed is false when nothing
// answered at the agent's address (the caller then runs the probes
// itself); an agent that answered but refused (credentials, TLS, the
// stream cap) is an error, not a reason to load probes here. The exit code
// is 0 when ctx ended (Ctrl-C), 1 when the stream did or the agent
// refused.
func follow(ctx context.Context, c *agentClient, print func(pauseJSON), stderr io.Writer) (code int, followed bool) {
	resp, err := c.get(ctx, "/api/events")
	if err != nil {
		if noAgent(err) || ctx.Err() != nil {
			return 0, false
		}
		fmt.Fprintf(stderr, "pausewatch watch: agent at %s: %v\n", c.base, err)
		return 1, true
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pausewatch watch: agent at %s: %v\n", c.base, refusal(resp))
		return 1, true
	}
	fmt.Fprintf(stderr, "following the agent at %s\n", c.base)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	for sc.Scan() {
		var p pauseJSON
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			if ctx.Err() != nil {
				// Ctrl-C cut the read short: the scanner hands over the
				// partial last line, which is not the agent's fault.
				return 0, true
			}
			fmt.Fprintln(stderr, "pausewatch watch: bad line from agent:", err)
			continue
		}
		print(p)
	}
	if ctx.Err() != nil {
		return 0, true
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "pausewatch watch: agent stream:", err)
		return 1, true
	}
	fmt.Fprintln(stderr, "pausewatch watch: agent stream ended")
	return 1, true
}

type exporterFunc func(agent.Event)

func (f exporterFunc) Record(e agent.Event) { f(e) }

// sanitized passes the line's strings through agent.LabelValue: the line
// may come from another agent (an older one, or anything answering on
// --agent), and what is printed reaches a terminal, which must never see
// an escape sequence or a bidi override. encoding/json escapes neither
// U+202E nor, once decoded, the ESC a "\u001b" stands for.
func (p pauseJSON) sanitized() pauseJSON {
	for _, s := range []*string{&p.Type, &p.Service, &p.Runtime, &p.Method, &p.Kind, &p.Reason} {
		*s = agent.LabelValue(*s)
	}
	return p
}

// watchFilter returns what `watch` prints: events of the given services
// and pids (either list may be empty: no filter on it).
func watchFilter(services, pids string) (func(pauseJSON) bool, error) {
	svc := map[string]bool{}
	for _, s := range strings.Split(services, ",") {
		if s = strings.TrimSpace(s); s != "" {
			svc[s] = true
		}
	}
	pid := map[uint32]bool{}
	for _, s := range strings.Split(pids, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--pid %q: want comma-separated process ids such as 1234,5678", pids)
		}
		pid[uint32(n)] = true
	}
	return func(p pauseJSON) bool {
		return (len(svc) == 0 || svc[p.Service]) && (len(pid) == 0 || pid[p.PID])
	}, nil
}

func printer(w io.Writer, asJSON bool) func(pauseJSON) {
	if asJSON {
		enc := json.NewEncoder(w)
		return func(p pauseJSON) { enc.Encode(p.sanitized()) }
	}
	fmt.Fprintf(w, "%-15s %7s %s %s %s %s %s\n", "TIME", "PID", fit("SERVICE", 20), fit("RUNTIME", 7), fit("WHAT", 7), fit("REASON / PORT", 28), "DURATION")
	return func(p pauseJSON) {
		p = p.sanitized()
		d := time.Duration(p.Duration * 1e9).Round(100 * time.Nanosecond)
		if p.Type == "request" {
			// A request that a pause slowed, under the pause it follows.
			fmt.Fprintf(w, "%-15s %7d %s %s %s %s %s (%s of it paused)\n",
				p.Time.Local().Format("15:04:05.000000"), p.PID, fit(p.Service, 20), fit(p.Runtime, 7), fit("request", 7),
				fit(fmt.Sprintf("port %d", p.Port), 28), d, time.Duration(p.Paused*1e9).Round(100*time.Nanosecond))
			return
		}
		fmt.Fprintf(w, "%-15s %7d %s %s %s %s %s\n",
			p.Time.Local().Format("15:04:05.000000"), p.PID, fit(p.Service, 20), fit(p.Runtime, 7), fit(p.Kind, 7), fit(p.Reason, 28), d)
	}
}

// fit makes s exactly width terminal columns: cut, or padded with spaces.
// Strings come from the processes watched (service, reason) through an
// agent that may be of another version, so fit does not rely on them
// being clean: a rune that does not print (ESC, other controls, U+202E
// and the other bidi overrides, invalid UTF-8) becomes '?', so nothing
// reaches the operator's terminal that it would act on; East Asian wide
// runes count two columns and combining marks none, so columns stay
// aligned (fmt's %-20.20s counts runes, not columns).
func fit(s string, width int) string {
	var b strings.Builder
	cols := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		// An invalid byte decodes as utf8.RuneError of size 1; a real
		// U+FFFD (what the agent's sanitiser puts for invalid bytes) is
		// printed as the agent exported it.
		if !unicode.IsPrint(r) || (r == utf8.RuneError && size == 1) {
			r = '?'
		}
		w := runeWidth(r)
		if cols+w > width {
			break
		}
		b.WriteRune(r)
		cols += w
	}
	for ; cols < width; cols++ {
		b.WriteByte(' ')
	}
	return b.String()
}

// runeWidth is the columns a printable rune takes in a terminal: 0 for
// combining marks, 2 for East Asian wide and fullwidth runes and emoji
// (the ranges of Markus Kuhn's wcwidth), else 1.
func runeWidth(r rune) int {
	switch {
	case unicode.In(r, unicode.Mn, unicode.Me):
		return 0
	case r >= 0x1100 && r <= 0x115f, // Hangul Jamo initials
		r >= 0x2e80 && r <= 0xa4cf && r != 0x303f, // CJK .. Yi
		r >= 0xac00 && r <= 0xd7a3,                // Hangul syllables
		r >= 0xf900 && r <= 0xfaff,                // CJK compatibility ideographs
		r >= 0xfe30 && r <= 0xfe4f,                // CJK compatibility forms
		r >= 0xff00 && r <= 0xff60,                // fullwidth forms
		r >= 0xffe0 && r <= 0xffe6,                // fullwidth signs
		r >= 0x1f300 && r <= 0x1f64f,              // pictographs, emoticons
		r >= 0x1f900 && r <= 0x1f9ff,              // supplemental symbols
		r >= 0x20000 && r <= 0x3fffd:              // CJK extensions
		return 2
	}
	return 1
}
