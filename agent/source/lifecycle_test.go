package source

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/usdt"
)

// memSpecMap stands in for the usdt_specs array: the allocator only
// stores into it, and the test checks what it stored.
type memSpecMap map[uint32]bpfPwUsdtSpec

func (m memSpecMap) Put(k, v any) error {
	m[k.(uint32)] = *v.(*bpfPwUsdtSpec)
	return nil
}

func TestSpecAllocatorSharesAndReleases(t *testing.T) {
	m := memSpecMap{}
	a := newSpecAllocator(m, 4)
	argsOf := func(n int64) []usdt.Arg {
		return []usdt.Arg{{Kind: usdt.ArgRegMem, Val: n, RegOffset: 32, Size: 4, Signed: true}}
	}
	x1, err := a.add(argsOf(112))
	if err != nil {
		t.Fatal(err)
	}
	x2, _ := a.add(argsOf(112))
	if x1 != x2 || a.inUse() != 1 {
		t.Fatalf("identical specs got slots %d and %d (%d in use), want one shared", x1, x2, a.inUse())
	}
	if got := m[uint32(x1)].Args[0].Val; got != 112 {
		t.Fatalf("stored spec reads offset %d, want 112", got)
	}
	a.release([]uint64{x1})
	if a.inUse() != 1 {
		t.Fatalf("slot freed while a probe still uses it")
	}
	a.release([]uint64{x2})
	if a.inUse() != 0 {
		t.Fatalf("%d slots in use after the last release", a.inUse())
	}

	// Far more short-lived users than slots: each one's slots come back.
	for i := 0; i < 3000; i++ {
		var taken []uint64
		for j := int64(0); j < 3; j++ {
			idx, err := a.add(argsOf(int64(i)*8 + j))
			if err != nil {
				t.Fatalf("user %d: %v", i, err)
			}
			if idx >= 4 {
				t.Fatalf("slot %d beyond the map's 4 entries", idx)
			}
			if got := m[uint32(idx)].Args[0].Val; got != int64(i)*8+j {
				t.Fatalf("slot %d holds %d, want %d", idx, got, int64(i)*8+j)
			}
			taken = append(taken, idx)
		}
		a.release(taken)
	}
	if a.inUse() != 0 {
		t.Fatalf("%d slots leaked", a.inUse())
	}

	// More distinct live specs than slots: a clear error, nothing stored.
	var live []uint64
	for j := int64(0); j < 4; j++ {
		idx, err := a.add(argsOf(1000 + j))
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, idx)
	}
	if _, err := a.add(argsOf(2000)); err == nil {
		t.Fatal("a fifth distinct spec fit in four slots")
	}
	a.release(live)
	if _, err := a.add(argsOf(2000)); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// writeStat writes a /proc/<pid>/stat whose start time is start.
func writeStat(t *testing.T, root string, pid uint32, start uint64) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (x y) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0", pid, start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileForgetsUnseenExits(t *testing.T) {
	root := t.TempDir()
	s := New(Config{ProcFS: root})
	info := &fileInfo{rt: goRuntime{}, method: MethodUprobe}
	track := func(pid uint32, start uint64) {
		p := &process{info: info}
		p.Process = agent.Process{PID: pid, StartTime: start, Runtime: "go", Method: MethodUprobe, Service: fmt.Sprint("svc", pid)}
		info.refs++
		s.procs[pid] = p
	}
	track(100, 5000) // alive
	track(101, 5001) // exited, exit record lost
	track(102, 5002) // exited, pid reused by another process
	writeStat(t, root, 100, 5000)
	writeStat(t, root, 102, 9999)

	gone := s.reconcile()
	var pids []uint32
	for _, p := range gone {
		pids = append(pids, p.PID)
	}
	if len(pids) != 2 || s.procs[100] == nil || s.procs[101] != nil || s.procs[102] != nil {
		t.Fatalf("forgot %v, left %d processes; want 101 and 102 forgotten, 100 kept", pids, len(s.procs))
	}
	if info.refs != 1 {
		t.Fatalf("file references %d, want 1 (the live process)", info.refs)
	}
}

// TestMappedLibIsTheMappedFile: a library found in a process's maps is
// opened once and only when its path still names the mapped file. A
// process that renames another file over the path after mapping it (to
// have the agent parse one file and probe another) gets nothing.
func TestMappedLibIsTheMappedFile(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libpython3.11.so.1.0")
	if err := os.WriteFile(lib, []byte("crafted: whatever the process likes"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 16, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	self := uint32(os.Getpid())
	p := procFS("/proc")

	path, lf, key, ok := p.mappedLib(self, pythonRuntime{}.Library)
	if !ok {
		t.Fatal("the mapped library is not found")
	}
	st, _ := f.Stat()
	if key != statKey(st) || !strings.HasSuffix(path, lib) {
		t.Errorf("found %s %+v, want %s %+v", path, key, lib, statKey(st))
	}
	lf.Close()

	// Another file renamed over the mapped one's name: refused.
	other := filepath.Join(dir, "real")
	if err := os.WriteFile(other, []byte("another file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, lib); err != nil {
		t.Fatal(err)
	}
	if path, lf, _, ok := p.mappedLib(self, pythonRuntime{}.Library); ok {
		lf.Close()
		t.Errorf("%s accepted after another file was renamed over the mapped one", path)
	}
}

// closeCounter is a probe link whose Close is counted (the other methods
// are never called by the bookkeeping under test).
type closeCounter struct {
	link.Link
	closed *atomic.Int32
}

func (c closeCounter) Close() error { c.closed.Add(1); return nil }

// TestIdleFilesLinger: a file whose last process exited keeps its probes
// for lingerFor, is taken back by the next process of it without a new
// attach, and past maxIdleFiles the oldest idle file is detached.
func TestIdleFilesLinger(t *testing.T) {
	s := New(Config{ProcFS: t.TempDir()})
	s.k = &kernel{}
	s.specs = &specAllocator{}
	var closed atomic.Int32
	add := func(ino uint64) (fileKey, *fileInfo) {
		key := fileKey{1, ino}
		info := &fileInfo{ready: make(chan struct{}), refs: 1, links: []link.Link{closeCounter{closed: &closed}}}
		close(info.ready)
		s.files[key] = info
		return key, info
	}
	key, info := add(1)
	s.unpin(key, info)
	if s.files[key] != info || info.links == nil || s.idleFiles != 1 {
		t.Fatalf("last process gone: file kept %v, links %d, idle %d; want kept with its links, 1 idle", s.files[key] == info, len(info.links), s.idleFiles)
	}
	// The next process of it resolves to the same file, probes and all.
	if got := s.resolve(key, "", nil, true, nil); got != info || s.idleFiles != 0 || info.refs != 1 {
		t.Fatalf("resolve of an idle file: same %v, idle %d, refs %d; want the same file, 0 idle, 1 ref", got == info, s.idleFiles, info.refs)
	}
	s.unpin(key, info)

	s.sweepIdle() // not idle for lingerFor yet
	if s.files[key] != info {
		t.Fatal("idle file detached before lingerFor")
	}
	info.idle = time.Now().Add(-lingerFor - time.Second)
	s.sweepIdle()
	s.closing.Wait()
	if s.files[key] != nil || closed.Load() != 1 || s.idleFiles != 0 {
		t.Fatalf("after lingerFor: file kept %v, links closed %d, idle %d; want gone, 1, 0", s.files[key] != nil, closed.Load(), s.idleFiles)
	}

	// The bound: one more idle file than allowed detaches the oldest.
	closed.Store(0)
	var first fileKey
	base := time.Now().Add(-time.Second)
	for i := range maxIdleFiles + 1 {
		k, f := add(uint64(100 + i))
		if i == 0 {
			first = k
		}
		s.unpin(k, f)
		if i < maxIdleFiles {
			f.idle = base.Add(time.Duration(i) * time.Millisecond) // in order
		}
	}
	s.closing.Wait()
	if s.idleFiles != maxIdleFiles || closed.Load() != 1 || s.files[first] != nil {
		t.Fatalf("%d idle files: %d kept, %d detached, oldest kept %v; want %d kept, the oldest detached",
			maxIdleFiles+1, s.idleFiles, closed.Load(), s.files[first] != nil, maxIdleFiles)
	}
}
