package source

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pausewatch/pausewatch/agent/usdt"
)

// This file is the attach side: what each file (inode) turned out to be,
// its probes, and who holds them. Files are read and probes placed by the
// discovery workers, never by the event loop, and never while s.mu is
// held: a scrape's Status takes s.mu and must not wait for an ELF parse.

// fileKey identifies an executable by inode: uprobes bind to inodes, so one
// attach covers every process (in any container) running that file.
type fileKey struct{ dev, ino uint64 }

func statKey(fi os.FileInfo) fileKey {
	st := fi.Sys().(*syscall.Stat_t)
	return fileKey{uint64(st.Dev), st.Ino}
}

// fileInfo is what one file turned out to be, and its probes. The fields
// after ready are written once, before ready is closed; links, slots and
// refs are guarded by Source.mu.
type fileInfo struct {
	ready chan struct{} // closed once recognised
	gone  bool          // could not be read (its process exited): not cached

	rt      Runtime // nil when no runtime was found
	plan    Plan    // nil when method is "none"
	method  string
	why     string // when method is "none"
	version string

	attachMu sync.Mutex // held while the probes are placed
	attached bool       // an attach was tried (links, or method "none")
	links    []link.Link
	slots    []uint64  // usdt_specs slots the links read
	refs     int       // processes (tracked or pending) and in-flight inspections holding it
	idle     time.Time // when refs last fell to 0 with links kept (see lingerFor)
}

func (f *fileInfo) runtime() string {
	if f.rt == nil {
		return ""
	}
	return f.rt.Name()
}

// resolve returns what the file f (opened once by the caller, at path) is,
// reading it once per inode; the returned info is pinned (refs) and the
// caller unpins it unless a process keeps it. nil when the file could not
// be read (the process is gone). offer lists the runtimes to try, in order.
func (s *Source) resolve(key fileKey, path string, f *os.File, exe bool, offer []Runtime) *fileInfo {
	s.mu.Lock()
	info := s.files[key]
	if info != nil {
		info.refs++
		if !info.idle.IsZero() { // run again while its probes linger
			s.idleFiles--
			info.idle = time.Time{}
		}
		s.mu.Unlock()
		<-info.ready
		if info.gone {
			s.unpin(key, info)
			return nil
		}
		return info
	}
	info = &fileInfo{ready: make(chan struct{}), refs: 1}
	s.files[key] = info
	s.mu.Unlock()

	s.recognise(info, path, f, exe, offer)
	if info.gone {
		s.mu.Lock()
		if s.files[key] == info {
			delete(s.files, key)
		}
		s.mu.Unlock()
	}
	close(info.ready)
	if info.gone {
		s.unpin(key, info)
		return nil
	}
	return info
}

// recognise offers the file to each runtime in turn; the first that does
// not say "not mine" has it. Only the open file is read: its path is the
// process's to change meanwhile.
func (s *Source) recognise(info *fileInfo, path string, of *os.File, exe bool, offer []Runtime) {
	name := path
	if exe {
		name = readlinkOr(path)
	}
	f := &file{path: path, name: name, exe: exe, f: of}
	for _, rt := range offer {
		plan, err := rt.Recognise(f)
		if errors.Is(err, errNotMine) {
			continue
		}
		info.rt = rt
		if err != nil {
			info.method, info.why = MethodNone, err.Error()
			var ve versionError
			if errors.As(err, &ve) {
				info.version = ve.runtimeVersion()
			}
			return
		}
		info.plan, info.method, info.version = plan, plan.Method(), plan.Version()
		return
	}
}

// readlinkOr resolves /proc/<pid>/exe to the executable's path, for its name.
func readlinkOr(path string) string {
	if t, err := os.Readlink(path); err == nil {
		return t
	}
	return path
}

// unpin drops one hold on a file. When the last goes, the file keeps its
// probes for lingerFor (see sweepIdle): uprobes bind to the inode, so a
// program that runs again and again (a build's compiler, a CLI in a loop)
// is captured from its first instruction instead of losing the pauses it
// makes while its new process is inspected and attached afresh. Files
// without probes stay cached until pruned.
func (s *Source) unpin(key fileKey, info *fileInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpinLocked(key, info)
}

func (s *Source) unpinLocked(key fileKey, info *fileInfo) {
	info.refs--
	if info.refs > 0 || info.links == nil {
		return
	}
	if s.files[key] != info || s.k == nil {
		s.detachLocked(key, info)
		return
	}
	info.idle = time.Now()
	s.idleFiles++
	if s.idleFiles > maxIdleFiles {
		s.sweepIdleLocked(time.Time{})
	}
}

// Files whose last process exited keep their probes this long, and at
// most this many of them do (the oldest go first): 10 s covers a program
// run in a loop or by a build, and what an idle file holds (a few links,
// a few spec slots) is bounded whatever runs.
const (
	lingerFor    = 10 * time.Second
	maxIdleFiles = 64
)

// sweepIdle takes the probes off files idle for lingerFor.
func (s *Source) sweepIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepIdleLocked(time.Now().Add(-lingerFor))
}

// sweepIdleLocked detaches the idle files idle since before cutoff; with a
// zero cutoff, the oldest one (the bound was passed). s.mu is held.
func (s *Source) sweepIdleLocked(cutoff time.Time) {
	var oldestKey fileKey
	var oldest *fileInfo
	for key, f := range s.files {
		if f.idle.IsZero() {
			continue
		}
		if cutoff.IsZero() {
			if oldest == nil || f.idle.Before(oldest.idle) {
				oldestKey, oldest = key, f
			}
		} else if f.idle.Before(cutoff) {
			s.detachLocked(key, f)
		}
	}
	if oldest != nil {
		s.detachLocked(oldestKey, oldest)
	}
}

// detachLocked takes a file's probes off (in the background: closing
// uprobe links waits for RCU grace periods) and forgets the file, so the
// next process of it attaches afresh. s.mu is held.
func (s *Source) detachLocked(key fileKey, info *fileInfo) {
	links, slots := info.links, info.slots
	if !info.idle.IsZero() {
		s.idleFiles--
		info.idle = time.Time{}
	}
	info.links, info.slots = nil, nil
	if s.files[key] == info {
		delete(s.files, key)
	}
	s.closing.Add(1)
	go func() {
		defer s.closing.Done()
		closeLinks(links)
		// Only now that no program reads them.
		s.specs.release(slots)
	}()
}

// attachFile places the file's probes once, for every process of it,
// through f, the file that was parsed (opened by the caller, who holds a
// pin). It returns the method and why afterwards.
func (s *Source) attachFile(info *fileInfo, f *os.File) (method, why string, err error) {
	info.attachMu.Lock()
	defer info.attachMu.Unlock()
	s.mu.Lock()
	k := s.k
	if info.attached || info.plan == nil || k == nil {
		method, why = info.method, info.why
		s.mu.Unlock()
		return method, why, nil
	}
	s.mu.Unlock()
	links, slots, err := s.placeProbes(k, f, info.plan)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		return info.method, info.why, err
	}
	info.attached = true
	info.links, info.slots = links, slots
	return info.method, info.why, nil
}

// markUnprobed records that a file's attach failed, for every process of it.
func (s *Source) markUnprobed(info *fileInfo, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info.attached = true
	info.method, info.why = MethodNone, why
}

// placeProbes puts a plan's probes on f's inode, through /proc/self/fd:
// the very file that was parsed, whatever its path names by now.
func (s *Source) placeProbes(k *kernel, f *os.File, plan Plan) ([]link.Link, []uint64, error) {
	if k.uprobes == uprobeNone {
		return nil, nil, errNoUprobes
	}
	ex, err := link.OpenExecutable(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return nil, nil, fmt.Errorf("open executable for uprobes: %w", err)
	}
	p := &probeSet{ex: ex, specs: s.specs, multi: k.uprobes == uprobeMulti}
	links, err := p.result(plan.Attach(p, &k.objs))
	if err != nil {
		return nil, nil, err
	}
	return links, p.slots, nil
}

func (s *Source) pruneFiles() {
	for k, f := range s.files {
		if f.refs <= 0 && f.links == nil {
			delete(s.files, k)
		}
	}
}

// probeSet collects the uprobes put on one file, so that a failed attach
// takes back the ones already placed. Every runtime attaches through it.
// With perf-PMU uprobes each address is attached (and is one link) at
// once; with uprobe_multi the addresses are gathered per program and
// direction and attached by result, one link each: a handful of links per
// file instead of one per address, and one unregister (a few RCU grace
// periods) per link at shutdown instead of per address.
type probeSet struct {
	ex     *link.Executable
	specs  *specAllocator
	multi  bool
	links  []link.Link
	slots  []uint64      // usdt_specs slots taken, released with the links
	groups []*multiGroup // multi: in the order first added
}

// multiGroup is what one uprobe_multi link will carry.
type multiGroup struct {
	what    []string // distinct probe names, for errors
	prog    *ebpf.Program
	ret     bool
	addrs   []uint64
	cookies []uint64
	refCtrs []uint64
	anyRef  bool
}

// add places prog at opts.Address, a file offset; with ret, as a
// uretprobe on the function that starts there (C code only).
func (p *probeSet) add(what string, prog *ebpf.Program, ret bool, opts link.UprobeOptions) error {
	if p.multi {
		p.group(what, prog, ret).addSite(what, opts)
		return nil
	}
	attach := p.ex.Uprobe
	if ret {
		attach = p.ex.Uretprobe
	}
	l, err := attach(what, prog, &opts)
	if err != nil {
		return fmt.Errorf("attach %s at %#x: %w", what, opts.Address, err)
	}
	p.links = append(p.links, l)
	return nil
}

// group returns the pending uprobe_multi link of prog in direction ret.
func (p *probeSet) group(what string, prog *ebpf.Program, ret bool) *multiGroup {
	for _, g := range p.groups {
		if g.prog == prog && g.ret == ret {
			return g
		}
	}
	g := &multiGroup{prog: prog, ret: ret}
	p.groups = append(p.groups, g)
	return g
}

func (g *multiGroup) addSite(what string, opts link.UprobeOptions) {
	if !slices.Contains(g.what, what) {
		g.what = append(g.what, what)
	}
	g.addrs = append(g.addrs, opts.Address)
	g.cookies = append(g.cookies, opts.Cookie)
	// 0 means "no semaphore" to the kernel, per address.
	g.refCtrs = append(g.refCtrs, opts.RefCtrOffset)
	g.anyRef = g.anyRef || opts.RefCtrOffset != 0
}

// attach creates the group's uprobe_multi link.
func (g *multiGroup) attach(ex *link.Executable) (link.Link, error) {
	opts := &link.UprobeMultiOptions{Addresses: g.addrs, Cookies: g.cookies}
	if g.anyRef {
		opts.RefCtrOffsets = g.refCtrs
	}
	attach := ex.UprobeMulti
	if g.ret {
		attach = ex.UretprobeMulti
	}
	l, err := attach(nil, g.prog, opts)
	if err != nil {
		return nil, fmt.Errorf("attach %s (%d addresses, first %#x) as uprobe_multi: %w",
			strings.Join(g.what, ", "), len(g.addrs), g.addrs[0], err)
	}
	return l, nil
}

// withArgs is add for a program that reads arguments: it gets a spec of
// its own in usdt_specs (an empty one reads as "unknown"), named by the
// cookie. A shared or default cookie would read another probe's spec.
func (p *probeSet) withArgs(what string, prog *ebpf.Program, ret bool, opts link.UprobeOptions, args []usdt.Arg) error {
	cookie, err := p.specs.add(args)
	if err != nil {
		return err
	}
	p.slots = append(p.slots, cookie)
	opts.Cookie = cookie
	return p.add(what, prog, ret, opts)
}

// sites places prog at every site of a USDT probe, semaphore included.
func (p *probeSet) sites(what string, prog *ebpf.Program, sites []usdt.Probe, readsArgs bool) error {
	for _, site := range sites {
		opts := link.UprobeOptions{Address: site.Offset, RefCtrOffset: site.SemaphoreOffset}
		var err error
		if readsArgs {
			err = p.withArgs(what, prog, false, opts, site.Args)
		} else {
			err = p.add(what, prog, false, opts)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// result attaches the gathered uprobe_multi links and returns every placed
// link, or takes them all back on err (the caller's or an attach's).
func (p *probeSet) result(err error) ([]link.Link, error) {
	if err == nil {
		for _, g := range p.groups {
			var l link.Link
			if l, err = g.attach(p.ex); err != nil {
				break
			}
			p.links = append(p.links, l)
		}
	}
	p.groups = nil
	if err != nil {
		closeLinks(p.links)
		p.specs.release(p.slots)
		p.slots = nil
		return nil, err
	}
	return p.links, nil
}

// specAllocator stores USDT argument specs in the usdt_specs map and
// returns the index to use as the attach cookie. Identical specs share a
// slot; a slot is reference counted and reused once the last probe that
// used it is gone, so the map's bound is on distinct live specs, not on
// how many processes ever started.
type specAllocator struct {
	mu    sync.Mutex // workers attach, and closers release, concurrently
	m     specMap
	max   uint32
	next  uint32   // slots below next have been handed out once
	free  []uint32 // released slots, reused first
	slots map[bpfPwUsdtSpec]*specSlot
	byIdx map[uint32]*specSlot
}

type specSlot struct {
	idx  uint32
	spec bpfPwUsdtSpec
	refs int
}

// specMap is the part of *ebpf.Map the allocator uses.
type specMap interface {
	Put(key, value any) error
}

func newSpecAllocator(m specMap, max uint32) *specAllocator {
	return &specAllocator{m: m, max: max, slots: map[bpfPwUsdtSpec]*specSlot{}, byIdx: map[uint32]*specSlot{}}
}

// add returns the slot holding args, storing them if no live slot does.
func (a *specAllocator) add(args []usdt.Arg) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var spec bpfPwUsdtSpec
	for i, arg := range args {
		if i >= len(spec.Args) {
			break
		}
		s := &spec.Args[i]
		switch arg.Kind {
		case usdt.ArgConst:
			s.Kind = usdtArgConst
		case usdt.ArgReg:
			s.Kind = usdtArgReg
		case usdt.ArgRegMem:
			s.Kind = usdtArgRegMem
		}
		s.Val, s.RegOff, s.Size = arg.Val, arg.RegOffset, arg.Size
		if arg.Signed {
			s.IsSigned = 1
		}
	}
	if sl := a.slots[spec]; sl != nil {
		sl.refs++
		return uint64(sl.idx), nil
	}
	var idx uint32
	switch {
	case len(a.free) > 0:
		idx = a.free[len(a.free)-1]
	case a.next < a.max:
		idx = a.next
	default:
		return 0, fmt.Errorf("usdt_specs map full (%d distinct argument specs in use)", a.max)
	}
	if err := a.m.Put(idx, &spec); err != nil {
		return 0, fmt.Errorf("store USDT spec: %w", err)
	}
	if len(a.free) > 0 && a.free[len(a.free)-1] == idx {
		a.free = a.free[:len(a.free)-1]
	} else {
		a.next++
	}
	sl := &specSlot{idx: idx, spec: spec, refs: 1}
	a.slots[spec], a.byIdx[idx] = sl, sl
	return uint64(idx), nil
}

// release drops one reference to each slot; the caller has closed the
// probes that used them, so no program reads them any more.
func (a *specAllocator) release(idxs []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, i := range idxs {
		sl := a.byIdx[uint32(i)]
		if sl == nil {
			continue
		}
		if sl.refs--; sl.refs > 0 {
			continue
		}
		delete(a.slots, sl.spec)
		delete(a.byIdx, sl.idx)
		a.free = append(a.free, sl.idx)
	}
}

// inUse is the number of live slots.
func (a *specAllocator) inUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byIdx)
}

// closeLinks closes links concurrently. Taking a uprobe off waits for RCU
// grace periods (tens of milliseconds each, more on a busy machine): one
// after another, a few hundred links took many seconds at shutdown, while
// concurrent closes share their grace periods.
func closeLinks(links []link.Link) {
	if len(links) <= 1 {
		for _, l := range links {
			l.Close()
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrentCloses)
	for _, l := range links {
		sem <- struct{}{}
		wg.Go(func() {
			l.Close()
			<-sem
		})
	}
	wg.Wait()
}

// maxConcurrentCloses bounds the goroutines closeLinks starts.
const maxConcurrentCloses = 64
