package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

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
func serveEvents(w http.ResponseWriter, r *http.Request, stream *agent.Stream) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	events, cancel := stream.Subscribe()
	defer cancel()
	enc := json.NewEncoder(w)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	dirty := false
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-events:
			if enc.Encode(toJSON(e)) != nil {
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

func watchMain(args []string) int {
	fs := flag.NewFlagSet("pausewatch watch", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	agentURL := fs.String("agent", "http://127.0.0.1:9464", "follow the agent at this address when one answers; otherwise run the probes here")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	print := printer(os.Stdout, *asJSON)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *agentURL+"/api/events", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pausewatch watch: --agent:", err)
		return 2
	}
	if resp, err := http.DefaultClient.Do(req); err == nil && resp.StatusCode == http.StatusOK {
		defer resp.Body.Close()
		fmt.Fprintf(os.Stderr, "following the agent at %s\n", *agentURL)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var p pauseJSON
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				fmt.Fprintln(os.Stderr, "pausewatch watch: bad line from agent:", err)
				continue
			}
			print(p)
		}
		if ctx.Err() != nil {
			return 0
		}
		fmt.Fprintln(os.Stderr, "pausewatch watch: agent stream ended")
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

func printer(w io.Writer, asJSON bool) func(pauseJSON) {
	if asJSON {
		enc := json.NewEncoder(w)
		return func(p pauseJSON) { enc.Encode(p.sanitized()) }
	}
	fmt.Fprintf(w, "%-15s %7s %-20s %-7s %-7s %-28s %s\n", "TIME", "PID", "SERVICE", "RUNTIME", "WHAT", "REASON / PORT", "DURATION")
	return func(p pauseJSON) {
		p = p.sanitized()
		d := time.Duration(p.Duration * 1e9).Round(100 * time.Nanosecond)
		if p.Type == "request" {
			// A request that a pause slowed, under the pause it follows.
			fmt.Fprintf(w, "%-15s %7d %-20.20s %-7s %-7s %-28s %s (%s of it paused)\n",
				p.Time.Local().Format("15:04:05.000000"), p.PID, p.Service, p.Runtime, "request",
				fmt.Sprintf("port %d", p.Port), d, time.Duration(p.Paused*1e9).Round(100*time.Nanosecond))
			return
		}
		fmt.Fprintf(w, "%-15s %7d %-20.20s %-7s %-7s %-28.28s %s\n",
			p.Time.Local().Format("15:04:05.000000"), p.PID, p.Service, p.Runtime, p.Kind, p.Reason, d)
	}
}
