package main

// Pauses at extreme rates: is every pause either captured or counted as
// lost (pausewatch_events_lost_total), against the runtime's own count,
// and from what rate are some lost? Then a peer on the same workload:
// bpftrace counting the same Go stop-the-world functions.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pyLoop is the Python workload: gc.collect(0) at argv[1] per second (0:
// back to back) for argv[2] seconds, counted by gc.callbacks (the
// interpreter's own account); automatic collection is off, so every
// collection in the window is one of these.
const pyLoop = `
import gc, json, os, sys, time
rate, secs = float(sys.argv[1]), float(sys.argv[2])
gc.disable()
n = [0]
def cb(phase, info):
    if phase == "stop":
        n[0] += 1
gc.callbacks.append(cb)
print("ready", os.getpid(), flush=True)
if not sys.stdin.readline():
    sys.exit(1)
calls = 0
t0 = time.monotonic()
nxt = t0
while True:
    now = time.monotonic()
    if now - t0 >= secs:
        break
    if rate > 0:
        nxt += 1 / rate
        if nxt > now:
            time.sleep(nxt - now)
    gc.collect(0)
    calls += 1
el = time.monotonic() - t0
print(json.dumps({"pauses": n[0], "calls": calls, "seconds": el}), flush=True)
sys.stdin.readline()
`

// step is one workload run under the agent.
type step struct {
	runtime  string
	target   float64 // pauses/s asked for, 0: as fast as it goes
	acct     goAccount
	captured float64
	lost     float64
}

func (s step) rate() float64 { return float64(s.acct.Pauses) / s.acct.Seconds }

// uncounted is how many of the runtime's pauses were neither captured
// nor counted lost. The lost counter is the agent's, over every process
// it tracks on the machine, so it may also hold other processes' events:
// captured + lost may exceed the runtime's count, never fall short of it.
func (s step) uncounted() float64 { return float64(s.acct.Pauses) - s.captured - s.lost }

// complete: nothing uncounted, and nothing captured that the runtime did
// not make.
func (s step) complete() bool { return s.uncounted() <= 0 && s.captured <= float64(s.acct.Pauses) }

func (b *bench) pauseSection(ctx context.Context) error {
	rates, secs := []float64{1000, 10000, 0}, 2.0
	if b.quick {
		rates, secs = []float64{0}, 1
	}
	a, err := b.startAgent(ctx)
	if err != nil {
		return err
	}
	defer a.stop()
	var steps []step
	for _, rt := range []string{"go", "python"} {
		var last step
		var loss *step
		var below float64 // the highest rate reached with nothing lost before loss
		for _, r := range rates {
			s, err := b.pauseStep(ctx, a, rt, r, secs)
			if err != nil {
				return fmt.Errorf("%s at %v/s: %w", rt, r, err)
			}
			b.progress("%s pauses at %.0f/s: runtime %d, captured %.0f, lost %.0f", rt, s.rate(), s.acct.Pauses, s.captured, s.lost)
			steps = append(steps, s)
			if loss == nil && s.captured < float64(s.acct.Pauses) {
				loss = &s
			}
			if loss == nil {
				below = s.rate()
			}
			last = s
		}
		what := map[string]string{"go": "Go runtime.ReadMemStats loop", "python": "Python gc.collect(0) loop"}[rt]
		b.atMost(fmt.Sprintf("%s at %.0f pauses/s: pauses neither captured nor counted lost", what, last.rate()),
			max(last.uncounted(), 0), "pauses",
			fmt.Sprintf("%d by the runtime, %.0f captured, %.0f counted lost", last.acct.Pauses, last.captured, last.lost), 0, false)
		if last.captured > float64(last.acct.Pauses) {
			b.atMost(what+": pauses captured that the runtime did not make", last.captured-float64(last.acct.Pauses), "pauses", "", 0, false)
		}
		if loss != nil {
			b.add(what+": losses begin at", loss.rate(), "pauses/s", fmt.Sprintf("%.0f of %d not captured; none at %.0f/s", float64(loss.acct.Pauses)-loss.captured, loss.acct.Pauses, below))
		} else {
			b.add(what+": losses begin at", last.rate(), "pauses/s", "none lost up to this rate, the highest reached")
		}
	}
	var s strings.Builder
	fmt.Fprintln(&s, "Pause capture at rising rates (each step its own process; counted lost: pausewatch_events_lost_total over the step, all sources and processes; complete: captured ≤ runtime ≤ captured + lost):")
	fmt.Fprintln(&s)
	fmt.Fprintln(&s, "| runtime | asked pauses/s | reached pauses/s | runtime's count | captured | counted lost | complete |")
	fmt.Fprintln(&s, "|---|---|---|---|---|---|---|")
	for _, st := range steps {
		target := "as fast as it goes"
		if st.target > 0 {
			target = fmt.Sprintf("%.0f", st.target)
		}
		fmt.Fprintf(&s, "| %s | %s | %.0f | %d | %.0f | %.0f | %v |\n", st.runtime, target, st.rate(), st.acct.Pauses, st.captured, st.lost, st.complete())
	}
	b.details = append(b.details, strings.TrimRight(s.String(), "\n"))
	return b.peer(ctx, a, secs)
}

func (b *bench) helperArgs(rt string, rate, secs float64) (args, env []string) {
	if rt == "python" {
		return []string{"/usr/bin/python3.11", "-c", pyLoop, fmt.Sprint(rate), fmt.Sprint(secs)}, nil
	}
	return []string{b.self, "-helper", "memstats"}, []string{fmt.Sprintf("HELPER_RATE=%v", rate), fmt.Sprintf("HELPER_SECONDS=%v", secs)}
}

// account reads the helper's JSON line.
func (h *helperProc) account() (goAccount, error) {
	var acct goAccount
	if !h.out.Scan() {
		return acct, fmt.Errorf("workload %d ended without its account: %v", h.pid, h.out.Err())
	}
	if err := json.Unmarshal(h.out.Bytes(), &acct); err != nil {
		return acct, fmt.Errorf("workload account %q: %w", h.out.Text(), err)
	}
	if acct.Pauses == 0 || acct.Seconds <= 0 {
		return acct, fmt.Errorf("workload made no pause: %q", h.out.Text())
	}
	return acct, nil
}

// end closes the helper's stdin and waits for it to exit.
func (h *helperProc) end() {
	h.stdin.Close()
	h.cmd.Wait()
}

func (b *bench) pauseStep(ctx context.Context, a *agent, rt string, rate, secs float64) (step, error) {
	s := step{runtime: rt, target: rate}
	service := fmt.Sprintf("bench-pauses-%s-%.0f", rt, rate)
	args, env := b.helperArgs(rt, rate, secs)
	h, err := b.startHelper(args, append(env, "OTEL_SERVICE_NAME="+service)...)
	if err != nil {
		return s, err
	}
	defer h.end()
	if err := a.waitTracked(30*time.Second, h.pid); err != nil {
		return s, err
	}
	// Captured and lost once two readings agree: events may still be on
	// their way.
	counts := func() (captured, lost float64, err error) {
		_, err = settled(func() (float64, error) {
			mfs, err := a.scrape()
			if err != nil {
				return 0, err
			}
			captured = sum(mfs, "pausewatch_pauses_total", "", map[string]string{"service": service})
			lost = sum(mfs, "pausewatch_events_lost_total", "", nil)
			return captured + lost, nil
		})
		return captured, lost, err
	}
	c0, l0, err := counts()
	if err != nil {
		return s, err
	}
	if err := h.write("go\n"); err != nil {
		return s, err
	}
	if s.acct, err = h.account(); err != nil {
		return s, err
	}
	// Read while the workload still lives: an interpreter collects
	// again as it exits, outside the window the runtime accounted for.
	c1, l1, err := counts()
	if err != nil {
		return s, err
	}
	s.lost = l1 - l0
	s.captured = c1 - c0
	return s, nil
}

// observed is the cost of one observer of a Go pause loop.
type observed struct {
	acct      goAccount
	workCPU   time.Duration // the workload's CPU time in its window
	obsCPU    time.Duration // the observer's
	obsBPF    uint64        // ns, the observer's uprobe programs
	obsCounts string        // what the observer counted, when it says
}

// peer runs the same Go ReadMemStats loop (as fast as it goes) under
// the agent (running, a), under bpftrace alone, and alone.
func (b *bench) peer(ctx context.Context, a *agent, secs float64) error {
	ours, err := b.observe(ctx, a, nil, secs)
	if err != nil {
		return fmt.Errorf("under the agent: %w", err)
	}
	a.stop()
	none, err := b.observe(ctx, nil, nil, secs)
	if err != nil {
		return fmt.Errorf("alone: %w", err)
	}
	perPause := func(d time.Duration, o observed) float64 { return d.Seconds() * 1e6 / float64(o.acct.Pauses) }
	b.add("Go pause loop alone: workload CPU per pause", perPause(none.workCPU, none), "µs", fmt.Sprintf("%.0f pauses/s", float64(none.acct.Pauses)/none.acct.Seconds))
	b.add("Go pause loop under pausewatch: workload CPU per pause", perPause(ours.workCPU, ours), "µs", fmt.Sprintf("%.0f pauses/s", float64(ours.acct.Pauses)/ours.acct.Seconds))
	b.add("pausewatch per Go pause: agent CPU", perPause(ours.obsCPU, ours), "µs", "")
	b.add("pausewatch per Go pause: BPF", float64(ours.obsBPF)/float64(ours.acct.Pauses), "ns", "its go_* uprobe programs: entry and return of stop/startTheWorldWithSema")
	if _, err := exec.LookPath("bpftrace"); err != nil {
		b.details = append(b.details, "Peer: bpftrace is not installed: not compared.")
		return nil
	}
	theirs, err := b.observe(ctx, nil, []string{"bpftrace"}, secs)
	if err != nil {
		return fmt.Errorf("under bpftrace: %w", err)
	}
	b.add("Go pause loop under bpftrace: workload CPU per pause", perPause(theirs.workCPU, theirs), "µs", fmt.Sprintf("%.0f pauses/s", float64(theirs.acct.Pauses)/theirs.acct.Seconds))
	b.add("bpftrace per Go pause: its CPU", perPause(theirs.obsCPU, theirs), "µs", "")
	b.add("bpftrace per Go pause: BPF", float64(theirs.obsBPF)/float64(theirs.acct.Pauses), "ns", "count() on the entries of stop/startTheWorldWithSema; "+theirs.obsCounts)
	return nil
}

var btCount = regexp.MustCompile(`@(\w+): (\d+)`)

// observe runs the pause loop once under the agent a, or under bpftrace
// (bt non-nil), or alone.
func (b *bench) observe(ctx context.Context, a *agent, bt []string, secs float64) (observed, error) {
	var o observed
	args, env := b.helperArgs("go", 0, secs)
	h, err := b.startHelper(args, append(env, "OTEL_SERVICE_NAME=bench-peer")...)
	if err != nil {
		return o, err
	}
	defer h.end()
	obs := 0
	var btOut *bufio.Scanner
	var btCmd *exec.Cmd
	switch {
	case a != nil:
		if err := a.waitTracked(30*time.Second, h.pid); err != nil {
			return o, err
		}
		obs = a.pid
	case bt != nil:
		prog := fmt.Sprintf(`BEGIN { printf("ready\n"); } uprobe:%[1]s:"runtime.stopTheWorldWithSema" { @stop = count(); } uprobe:%[1]s:"runtime.startTheWorldWithSema" { @start = count(); }`, b.self)
		btCmd = exec.Command(bt[0], "-p", fmt.Sprint(h.pid), "-e", prog)
		out, err := btCmd.StdoutPipe()
		if err != nil {
			return o, err
		}
		if err := btCmd.Start(); err != nil {
			return o, err
		}
		b.cleanup(func() { btCmd.Process.Kill(); btCmd.Wait() })
		btOut = bufio.NewScanner(out)
		ready := false
		for btOut.Scan() {
			if strings.TrimSpace(btOut.Text()) == "ready" {
				ready = true
				break
			}
		}
		if !ready {
			return o, errors.New("bpftrace did not start")
		}
		obs = btCmd.Process.Pid
	}
	names := map[uint32]string{}
	var p0 map[uint32]progStat
	var c0 time.Duration
	if obs != 0 {
		if p0, err = bpfPrograms(obs, names); err != nil {
			return o, err
		}
		if c0, err = cpuTime(obs); err != nil {
			return o, err
		}
	}
	w0, err := cpuTime(h.pid)
	if err != nil {
		return o, err
	}
	if err := h.write("go\n"); err != nil {
		return o, err
	}
	if o.acct, err = h.account(); err != nil {
		return o, err
	}
	w1, err := cpuTime(h.pid)
	if err != nil {
		return o, err
	}
	o.workCPU = w1 - w0
	if obs == 0 {
		return o, nil
	}
	time.Sleep(300 * time.Millisecond) // the observer drains its buffers
	p1, err := bpfPrograms(obs, names)
	if err != nil {
		return o, err
	}
	c1, err := cpuTime(obs)
	if err != nil {
		return o, err
	}
	o.obsCPU = c1 - c0
	for name, s := range bpfDelta(p0, p1) {
		if bt != nil || strings.HasPrefix(name, "go_") {
			o.obsBPF += s.ns
		}
	}
	if btCmd != nil {
		// bpftrace prints its maps on SIGINT and exits; a SIGINT has been
		// seen to go unheeded, so it is repeated, and after 10 s the
		// process is killed (its counts then missing from the row).
		stopped := make(chan struct{})
		defer close(stopped)
		go func() {
			for i := 0; ; i++ {
				if i == 5 {
					btCmd.Process.Kill()
					return
				}
				btCmd.Process.Signal(syscall.SIGINT)
				select {
				case <-stopped:
					return
				case <-time.After(2 * time.Second):
				}
			}
		}()
		var counted []string
		for btOut.Scan() {
			if m := btCount.FindStringSubmatch(btOut.Text()); m != nil {
				n, _ := strconv.Atoi(m[2])
				counted = append(counted, fmt.Sprintf("%s %d", m[1], n))
			}
		}
		btCmd.Wait()
		o.obsCounts = fmt.Sprintf("it counted %s; the runtime %d pauses", strings.Join(counted, ", "), o.acct.Pauses)
	}
	return o, nil
}
