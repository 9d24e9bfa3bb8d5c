package source

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent"
)

// This file is the event side: ring-buffer records, their decoding, and
// the event loop, which turns records into Events without touching the
// disk. A record of a process discovery has not seen yet waits (bounded)
// for the discovery workers instead of being inspected here.

// cString returns the NUL-terminated prefix of a C char array.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// Mirrors of enum pw_event_type, enum pw_event_flag and enum pw_stat in
// bpf/event.h; TestContract checks them against the object's BTF.
const (
	eventPause   = 1
	eventExec    = 2
	eventExit    = 3
	eventRequest = 4
	eventFork    = 5
	eventMapped  = 6

	eventFlagAux       = 1
	eventFlagReadStart = 2
	eventFlagCPU       = 4

	usdtArgConst  = 1
	usdtArgReg    = 2
	usdtArgRegMem = 3

	statRingbufLost = 0
	statUnpairedEnd = 1
	statConnLost    = 2
	// An io_uring accept into a fixed-file slot: the connection has no fd
	// to find it by, so its requests are not measured.
	statUncoveredAccept = 3
	statMappingLimited  = 4
	statReqUncounted    = 5
	statPauseRate       = 6
	statMax             = 7
)

// Sizes of the ring-buffer records; TestContract checks them.
const (
	eventSize   = 96 // sizeof(struct pw_event)
	requestSize = 48 // sizeof(struct pw_request)
)

// decodeEvent reads one pause, exec or exit record. Records are written by
// our own BPF programs, so a short one means a contract mismatch, not bad
// input.
func decodeEvent(b []byte) (bpfPwEvent, error) {
	var e bpfPwEvent
	if len(b) < eventSize {
		return e, fmt.Errorf("ring buffer record of %d bytes, want %d", len(b), eventSize)
	}
	le := binary.LittleEndian
	e.Type = b[0]
	e.Runtime = b[1]
	e.Flags = b[2]
	e.Pid = le.Uint32(b[4:])
	e.Tid = le.Uint32(b[8:])
	e.Reason = le.Uint32(b[12:])
	e.StartNs = le.Uint64(b[16:])
	e.DurationNs = le.Uint64(b[24:])
	e.StoppingNs = le.Uint64(b[32:])
	e.Aux = le.Uint64(b[40:])
	for i := range e.Detail {
		e.Detail[i] = int8(b[48+i])
	}
	e.CpuNs = le.Uint64(b[88:])
	return e, nil
}

// decodeRequest reads one request record.
func decodeRequest(b []byte) (bpfPwRequest, error) {
	var r bpfPwRequest
	if len(b) < requestSize {
		return r, fmt.Errorf("request record of %d bytes, want %d", len(b), requestSize)
	}
	le := binary.LittleEndian
	r.Type = b[0]
	r.Flags = b[1]
	r.Port = le.Uint16(b[2:])
	r.Pid = le.Uint32(b[4:])
	r.Fd = le.Uint32(b[8:])
	r.StartNs = le.Uint64(b[16:])
	r.DurationNs = le.Uint64(b[24:])
	r.PausedNs = le.Uint64(b[32:])
	r.CpuWaitNs = le.Uint64(b[40:])
	return r, nil
}

// decodeRecord reads one ring-buffer record of either kind, by its first
// byte, the type.
func decodeRecord(b []byte, at time.Time) (record, error) {
	if len(b) == 0 {
		return record{}, fmt.Errorf("empty ring buffer record")
	}
	r := record{typ: b[0], at: at}
	var err error
	if r.typ == eventRequest {
		r.req, err = decodeRequest(b)
		r.pid = r.req.Pid
	} else {
		r.e, err = decodeEvent(b)
		r.pid = r.e.Pid
	}
	return r, err
}

// record is a decoded ring-buffer record and when the agent read it.
type record struct {
	typ uint8 // enum pw_event_type
	pid uint32
	e   bpfPwEvent   // pause, exec, exit
	req bpfPwRequest // request
	at  time.Time
}

// Bounds on the records held for processes being inspected.
const (
	maxWaitingPIDs   = 4096
	maxWaitingPerPID = 256
)

// loop is the event loop: records in, Events out.
func (s *Source) loop(ctx context.Context, rd *ringbuf.Reader, records <-chan []record, free chan<- []record, readErr <-chan error, out chan<- agent.Event) error {
	// send hands an event on, unless the agent is stopping.
	send := func(ev agent.Event) {
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	waiting := map[uint32][]record{}
	reqs := newReqTable()
	readRequests := func() {
		evs, err := s.readRequests(reqs)
		if err != nil {
			s.log.Warn("request histograms", "err", err)
		}
		for _, ev := range evs {
			send(ev)
		}
	}
	tick := time.NewTicker(requestReadEvery)
	defer tick.Stop()
	close(s.looping)
	defer close(s.ended)
	// handle handles one record; it says whether it sent a pause.
	handle := func(r record) bool {
		e := &r.e
		if w, ok := waiting[r.pid]; ok && (r.typ == eventPause || r.typ == eventExit || r.typ == eventRequest) {
			// Keep the order of a waiting process's records.
			if len(w) >= maxWaitingPerPID {
				s.countUnresolved()
				return false
			}
			waiting[r.pid] = append(w, r)
			return false
		}
		switch r.typ {
		case eventExec:
			s.queue.push(e.Pid, inspectExec)
		case eventMapped:
			s.mapped(e.Pid)
		case eventFork:
			// A traced process's child, already traced in the kernel
			// from its fork: it runs the parent's runtime.
			s.queue.push(e.Pid, inspectSeen)
		case eventExit:
			// A tracked process's requests are read before it is
			// forgotten (its last counts), then its histograms go. Every
			// exit on the node comes here: the others cost nothing.
			p, _ := s.lookup(e.Pid)
			counted := p != nil && p.info.rt != nil
			if counted {
				readRequests()
			}
			if p := s.forget(e.Pid); p != nil {
				send(agent.Event{Type: agent.Exit, Process: p.Process})
			}
			if counted {
				s.dropRequests(reqs, e.Pid)
			}
		case eventRequest:
			if p, _ := s.lookup(r.pid); p == nil || p.info.rt == nil {
				// A worker forked a moment ago (pre-fork servers) serves
				// before the discovery workers have looked at it: its
				// requests wait with it, as its pauses do, instead of
				// being dropped.
				if len(waiting) >= maxWaitingPIDs {
					s.countUnresolved()
					return false
				}
				waiting[r.pid] = []record{r}
				s.queue.push(r.pid, inspectSeen)
				return false
			}
			if ev, ok := s.requestEvent(&r.req); ok {
				send(ev)
			}
		case eventPause:
			p, known := s.lookup(e.Pid)
			if !known {
				// A process of an attached file not seen yet (its exec
				// record may still be queued): the workers look at it,
				// and its records wait.
				if len(waiting) >= maxWaitingPIDs {
					s.countUnresolved()
					return false
				}
				waiting[e.Pid] = []record{r}
				s.queue.push(e.Pid, inspectSeen)
				return false
			}
			if ev, ok := s.pauseEvent(p, e); ok {
				send(ev)
				return true
			}
		}
		return false
	}
	for {
		select {
		case <-ctx.Done():
			rd.Close()
			return nil
		case err := <-readErr:
			return err
		case <-tick.C:
			readRequests()
		case synced := <-s.flush:
			// Every flush asked for meanwhile is answered by one read.
			all := []chan struct{}{synced}
			for more := true; more; {
				select {
				case c := <-s.flush:
					all = append(all, c)
				default:
					more = false
				}
			}
			readRequests()
			for _, c := range all {
				send(agent.Event{Type: agent.Sync, Synced: c})
			}
		case e := <-s.side:
			if e.Type == agent.Exit {
				// An exit housekeeping found (its record was missed).
				readRequests()
				s.dropRequests(reqs, e.Process.PID)
			}
			if e.Type != agent.Exit && !s.current(e.Process) {
				// Sampled (CPU, hsperfdata) just before the process
				// exited, and its exit has gone out since: after it, the
				// sample would make the exporters count a dead process as
				// live again, and its series would never expire.
				continue
			}
			send(e)
		case pid := <-s.inspected:
			w, ok := waiting[pid]
			if !ok {
				continue
			}
			delete(waiting, pid)
			p, known := s.lookup(pid)
			for _, r := range w {
				if r.typ == eventRequest && (p == nil || p.info.rt == nil) {
					continue // not a process the agent tracks after all
				}
				if !known && r.typ == eventPause {
					// Gone before it could be inspected (or not
					// trackable): its pauses have no process to carry.
					s.countUnresolved()
					continue
				}
				if handle(r) {
					s.delay.observe(time.Since(r.at))
				}
			}
		case batch, ok := <-records:
			if !ok {
				return nil
			}
			sent := 0
			for _, r := range batch {
				if handle(r) {
					sent++
				}
			}
			// One clock read for the batch: its records were read at
			// the same time, and each waited at most until the last
			// was sent.
			if sent > 0 {
				s.delay.observeN(time.Since(batch[0].at), sent)
			}
			select {
			case free <- batch[:0]:
			default:
			}
		}
	}
}

func (s *Source) countUnresolved() {
	s.mu.Lock()
	s.unresolved++
	s.mu.Unlock()
}

// lookup returns the tracked process pid, and whether pause records of it
// can be decoded now (false: it must be inspected first).
func (s *Source) lookup(pid uint32) (*process, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[pid]
	if p == nil || p.info.rt == nil || p.Method == MethodHsperfdata {
		return p, false
	}
	return p, true
}

// current says whether p is still in the process table as the same
// process (not exited, its pid not reused).
func (s *Source) current(p agent.Process) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.procs[p.PID]
	return q != nil && q.StartTime == p.StartTime
}

// maxReasons bounds the distinct reasons one process can add as label
// values (the JVM's VM operations are the JVM's to name); past it they
// are reported as "other".
const maxReasons = 32

// pauseEvent turns a BPF pause record of a tracked process into an Event.
// Only the event loop calls it (p.reasons is its own).
func (s *Source) pauseEvent(p *process, e *bpfPwEvent) (agent.Event, bool) {
	if p.PID == s.self && s.cfg.SkipSelf {
		return agent.Event{}, false
	}
	ev := agent.Event{
		Type:     agent.Pause,
		Process:  p.Process,
		Start:    monoToWall(e.StartNs),
		Duration: time.Duration(e.DurationNs),
		Stopping: time.Duration(e.StoppingNs),
	}
	if e.Runtime != p.info.rt.ID() {
		// A second runtime in a process tracked for another (a JVM that
		// loads libpython through JNI), whose library is probed for some
		// other process: a process has one runtime here, and these are
		// not its pauses. Counted, not passed off as the first's.
		s.mu.Lock()
		s.otherRuntime++
		s.mu.Unlock()
		return agent.Event{}, false
	}
	if e.Flags&eventFlagCPU != 0 {
		ev.ThreadCPU, ev.ThreadCPUKnown = time.Duration(e.CpuNs), true
	}
	if plan := p.info.plan; plan != nil {
		f := plan.Decode(*e)
		ev.Reason, ev.Kind, ev.Collected, ev.CollectedKnown = f.reason, f.kind, f.collected, f.collectedKnown
	} else {
		ev.Reason, ev.Kind = "unknown ("+strconv.Itoa(int(e.Reason))+")", agent.KindOther
	}
	if p.reasons == nil {
		p.reasons = map[string]bool{}
	}
	if !p.reasons[ev.Reason] {
		if len(p.reasons) >= maxReasons {
			ev.Reason = "other"
		} else {
			p.reasons[ev.Reason] = true
		}
	}
	return ev, true
}

// requestEvent turns a BPF request record into an Event.
func (s *Source) requestEvent(r *bpfPwRequest) (agent.Event, bool) {
	s.mu.Lock()
	p := s.procs[r.Pid]
	s.mu.Unlock()
	if p == nil || p.info.rt == nil {
		return agent.Event{}, false
	}
	return agent.Event{
		Type:        agent.Request,
		Process:     p.Process,
		Start:       monoToWall(r.StartNs),
		Duration:    time.Duration(r.DurationNs),
		Port:        r.Port,
		PauseInside: time.Duration(r.PausedNs),
		CPUWait:     time.Duration(r.CpuWaitNs),
	}, true
}

// monoToWall converts a CLOCK_MONOTONIC timestamp to wall-clock time. The
// offset between the clocks is read again once the timestamps are 100 ms
// past the last reading: the records' own times say when, so converting
// reads no clock at all (one, then two clock reads per event were a
// measurable share of the agent's cost). A timestamp from before the
// reading uses it as it is: the offset drifts by microseconds a second.
func monoToWall(ns uint64) time.Time {
	off := clockOffset.Load()
	if off == nil || int64(ns)-off.mono > int64(100*time.Millisecond) {
		var ts unix.Timespec
		now := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return now
		}
		off = &monoOffset{mono: ts.Nano(), wallMinusMono: now.UnixNano() - ts.Nano()}
		clockOffset.Store(off)
	}
	return time.Unix(0, off.wallMinusMono+int64(ns))
}

type monoOffset struct {
	mono          int64 // CLOCK_MONOTONIC when the offset was read
	wallMinusMono int64
}

var clockOffset atomic.Pointer[monoOffset]

// delayBuckets is how many buckets delayHist has: upper bounds from 1 µs,
// each √2 times the last (up to 16.8 s), and one for the rest.
const delayBuckets = 48

// delayHist counts how long pause records took from the ring buffer to the
// exporters' channel: the agent's own added latency, which discovery work
// must not raise.
type delayHist struct {
	counts [delayBuckets + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func delayBound(i int) float64 { return 1e-6 * math.Pow(math.Sqrt2, float64(i)) }

// delayBounds are the upper bounds as durations, computed once: a math.Pow
// per bucket per pause was 8 % of the agent's CPU under a pause loop.
var delayBounds = func() (b [delayBuckets]time.Duration) {
	for i := range b {
		b[i] = time.Duration(delayBound(i) * 1e9)
	}
	return b
}()

func (h *delayHist) observe(d time.Duration) { h.observeN(d, 1) }

// observeN counts n delays of d.
func (h *delayHist) observeN(d time.Duration, n int) {
	i := 0
	for i < delayBuckets && d > delayBounds[i] {
		i++
	}
	h.counts[i].Add(uint64(n))
	h.sumNs.Add(int64(d) * int64(n))
}

// EventDelay returns the histogram of the delay from reading a pause
// record off the ring buffer to handing its Event to the exporters:
// cumulative counts by upper bound in seconds, the count and the sum.
func (s *Source) EventDelay() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, delayBuckets)
	for i := range delayBuckets {
		count += s.delay.counts[i].Load()
		buckets[delayBound(i)] = count
	}
	count += s.delay.counts[delayBuckets].Load()
	return buckets, count, time.Duration(s.delay.sumNs.Load()).Seconds()
}
