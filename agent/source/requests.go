package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pausewatch/pausewatch/agent"
)

// requestReadEvery is how often the event loop reads the kernel's request
// histograms (and at every exit of a process): counts reach the exporters
// at most this late, whatever the request rate.
const requestReadEvery = time.Second

// untrackedGrace is how many reads the entries of a pid the agent does not
// track are kept (see reqTable.untracked).
const untrackedGrace = 10

// reqTable is what the event loop remembers of the kernel's request
// histograms (bpf/request.c req_hists): the cumulative values of each
// entry as last read, to hand on the difference.
type reqTable struct {
	last map[bpfPwReqKey]*agent.RequestHist
	// untracked counts the reads in a row that found an entry of a pid
	// the agent does not track: a forked worker not inspected yet (on a
	// loaded node discovery can take seconds) keeps its counts for
	// untrackedGrace reads; after that they are not the agent's.
	untracked map[uint32]int
	per       []bpfPwReqHist // per-CPU values, reused
}

func newReqTable() *reqTable {
	return &reqTable{last: map[bpfPwReqKey]*agent.RequestHist{}, untracked: map[uint32]int{}}
}

// sumCPUs folds the per-CPU values of one entry into h (cumulative).
func sumCPUs(per []bpfPwReqHist, h *agent.RequestHist) {
	*h = agent.RequestHist{}
	for i := range per {
		c := &per[i]
		for b, n := range c.Buckets {
			h.Buckets[b] += n
		}
		h.Sum += time.Duration(c.SumNs)
		h.PauseInside += time.Duration(c.PauseNs)
		h.BreachPause += c.BreachPause
		h.BreachCPU += c.BreachCpu
		h.BreachOther += c.BreachOther
		if c.MinNs > 0 && (h.Min == 0 || time.Duration(c.MinNs) < h.Min) {
			h.Min = time.Duration(c.MinNs)
		}
		h.Max = max(h.Max, time.Duration(c.MaxNs))
	}
}

// since sets d to cur minus last and says whether anything was counted in
// between. The kernel's values only grow; one that shrank means the entry
// was deleted and made again (a reused pid), so all of cur is new.
func since(cur, last, d *agent.RequestHist) bool {
	reset := cur.Sum < last.Sum || cur.PauseInside < last.PauseInside ||
		cur.BreachPause < last.BreachPause || cur.BreachCPU < last.BreachCPU || cur.BreachOther < last.BreachOther
	for i := range cur.Buckets {
		reset = reset || cur.Buckets[i] < last.Buckets[i]
	}
	if reset {
		*d = *cur
		return true
	}
	moved := false
	for i := range cur.Buckets {
		d.Buckets[i] = cur.Buckets[i] - last.Buckets[i]
		moved = moved || d.Buckets[i] > 0
	}
	d.Sum = cur.Sum - last.Sum
	d.PauseInside = cur.PauseInside - last.PauseInside
	d.BreachPause = cur.BreachPause - last.BreachPause
	d.BreachCPU = cur.BreachCPU - last.BreachCPU
	d.BreachOther = cur.BreachOther - last.BreachOther
	d.Min, d.Max = cur.Min, cur.Max
	return moved || d.BreachPause > 0 || d.BreachCPU > 0 || d.BreachOther > 0
}

type reqPort struct {
	pid  uint32
	port uint16
}

// readRequests reads every request histogram in the kernel and returns
// one RequestCounts event per tracked (pid, port) that served requests
// since the last read. Entries of processes the agent does not track are
// deleted (their requests are not the agent's to count, as before the
// kernel aggregated them); only the event loop calls it.
func (s *Source) readRequests(t *reqTable) ([]agent.Event, error) {
	s.mu.Lock()
	k := s.k
	s.mu.Unlock()
	if k == nil || k.objs.ReqHists == nil {
		return nil, nil
	}
	var (
		key   bpfPwReqKey
		cur   agent.RequestHist
		out   []agent.Event
		index = map[reqPort]int{}
		stale []bpfPwReqKey
		seen  = map[uint32]bool{}
	)
	it := k.objs.ReqHists.Iterate()
	for it.Next(&key, &t.per) {
		p, _ := s.lookup(key.Tgid)
		if p == nil || p.info.rt == nil || (p.PID == s.self && s.cfg.SkipSelf) {
			if !seen[key.Tgid] {
				seen[key.Tgid] = true
				t.untracked[key.Tgid]++
			}
			if t.untracked[key.Tgid] > untrackedGrace {
				stale = append(stale, key)
			}
			continue
		}
		delete(t.untracked, key.Tgid)
		sumCPUs(t.per, &cur)
		last := t.last[key]
		if last == nil {
			last = &agent.RequestHist{}
			t.last[key] = last
		}
		var d agent.RequestHist
		if since(&cur, last, &d) {
			rp := reqPort{key.Tgid, key.Port}
			i, ok := index[rp]
			if !ok {
				i = len(out)
				index[rp] = i
				out = append(out, agent.Event{Type: agent.RequestCounts, Process: p.Process, Port: key.Port,
					Start: time.Now(), Requests: &agent.RequestHists{}})
			}
			if key.Paused != 0 {
				out[i].Requests.Paused = d
			} else {
				out[i].Requests.Unpaused = d
			}
		}
		*last = cur
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read request histograms: %w", err)
	}
	for _, sk := range stale {
		s.deleteRequestEntry(k, t, sk)
	}
	for pid, n := range t.untracked {
		if !seen[pid] || n > untrackedGrace {
			delete(t.untracked, pid)
		}
	}
	return out, nil
}

// dropRequests deletes the request histograms of an exited process, once
// their final values have been read (readRequests), so nothing leaks and
// a reused pid starts from zero.
func (s *Source) dropRequests(t *reqTable, pid uint32) {
	s.mu.Lock()
	k := s.k
	s.mu.Unlock()
	if k == nil || k.objs.ReqHists == nil {
		return
	}
	for key := range t.last {
		if key.Tgid == pid {
			s.deleteRequestEntry(k, t, key)
		}
	}
}

func (s *Source) deleteRequestEntry(k *kernel, t *reqTable, key bpfPwReqKey) {
	delete(t.last, key)
	if err := k.objs.ReqHists.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		s.log.Debug("request histogram: delete", "pid", key.Tgid, "err", err)
	}
}

// pushObjectives puts the latency objectives of p's ports in the kernel,
// which classifies each request's breach by them; s.mu is held.
func (s *Source) pushObjectivesLocked(p *process) {
	if s.cfg.Objective == nil || s.k == nil {
		return
	}
	put := func(port uint16) {
		o, ok := s.cfg.Objective(p.Process, port)
		if !ok || o <= 0 {
			return
		}
		key := bpfPwReqObjectiveKey{Tgid: p.PID, Port: port}
		if err := s.k.objs.ReqObjectives.Put(key, uint64(o)); err != nil {
			s.log.Warn("request objectives: map", "pid", p.PID, "err", err)
		}
	}
	put(0)
	for _, port := range s.cfg.ObjectivePorts {
		if port != 0 {
			put(port)
		}
	}
	s.objectivesChangedLocked()
}

// objectivesChangedLocked bumps req_objectives_gen after req_objectives
// changed: the kernel keeps a copy of each histogram's objective, taken at
// a generation, and looks it up again once the generation moves on.
func (s *Source) objectivesChangedLocked() {
	s.objGen++
	if err := s.k.objs.ReqObjectivesGen.Put(uint32(0), s.objGen); err != nil {
		s.log.Warn("request objectives: generation", "err", err)
	}
}

// dropObjectivesLocked removes what pushObjectivesLocked put; s.mu is held.
func (s *Source) dropObjectivesLocked(pid uint32) {
	if s.cfg.Objective == nil || s.k == nil {
		return
	}
	for _, port := range append([]uint16{0}, s.cfg.ObjectivePorts...) {
		s.k.objs.ReqObjectives.Delete(bpfPwReqObjectiveKey{Tgid: pid, Port: port})
	}
	s.objectivesChangedLocked()
}

// Flush reads the kernel's request histograms now and returns once every
// exporter has recorded them (agent.Run has passed the agent.Sync sent
// after them), so a scrape or an OTLP collection that flushes first counts
// every request served before it, not up to requestReadEvery fewer.
// Concurrent calls share one read. It returns at once, nil, when the event
// loop is not running (not started yet, or stopped); ctx's error when ctx
// ends first.
func (s *Source) Flush(ctx context.Context) error {
	select {
	case <-s.looping:
	default:
		return nil
	}
	synced := make(chan struct{})
	select {
	case s.flush <- synced:
	case <-s.ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-synced:
		return nil
	case <-s.ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
