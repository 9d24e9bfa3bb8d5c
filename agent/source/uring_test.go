package source

import (
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ring is a minimal io_uring (raw syscalls, one request at a time), so the
// tests can accept, receive and send the way an io_uring server does.
type ring struct {
	t        *testing.T
	fd       int
	sq, cq   []byte
	sqes     []byte
	p        uringParams
	sqTail   *uint32
	cqHead   *uint32
	cqTail   *uint32
	sqMask   uint32
	cqMask   uint32
	sqArray  []uint32
	userData uint64
}

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, user_addr (u64)
	cqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, user_addr (u64)
}

const (
	uringOpAccept = 13
	uringOpSend   = 26
	uringOpRecv   = 27
)

func newRing(t *testing.T) *ring {
	t.Helper()
	r := &ring{t: t}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&r.p)), 0)
	if e != 0 {
		t.Skipf("io_uring_setup: %v", e)
	}
	r.fd = int(fd)
	t.Cleanup(func() { unix.Close(r.fd) })
	mmap := func(off int64, size uint32) []byte {
		b, err := unix.Mmap(r.fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
		return b
	}
	r.sq = mmap(0, r.p.sqOff[6]+r.p.sqEntries*4)
	r.cq = mmap(0x8000000, r.p.cqOff[5]+r.p.cqEntries*16)
	r.sqes = mmap(0x10000000, r.p.sqEntries*64)
	r.sqTail = (*uint32)(unsafe.Pointer(&r.sq[r.p.sqOff[1]]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&r.sq[r.p.sqOff[2]]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&r.sq[r.p.sqOff[6]])), r.p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&r.cq[r.p.cqOff[0]]))
	r.cqTail = (*uint32)(unsafe.Pointer(&r.cq[r.p.cqOff[1]]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&r.cq[r.p.cqOff[2]]))
	return r
}

// do submits one request and waits for its completion; returns its result.
func (r *ring) do(op uint8, fd int, buf []byte, fileIndex uint32) int32 {
	r.t.Helper()
	tail := atomic.LoadUint32(r.sqTail)
	idx := tail & r.sqMask
	sqe := r.sqes[idx*64 : idx*64+64]
	clear(sqe)
	sqe[0] = op
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	if len(buf) > 0 {
		*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&buf[0])))
		*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(buf))
	}
	r.userData++
	*(*uint64)(unsafe.Pointer(&sqe[32])) = r.userData
	*(*uint32)(unsafe.Pointer(&sqe[44])) = fileIndex
	r.sqArray[idx] = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 1, 1 /* GETEVENTS */, 0, 0); e != 0 {
		r.t.Fatalf("io_uring_enter: %v", e)
	}
	head := atomic.LoadUint32(r.cqHead)
	if head == atomic.LoadUint32(r.cqTail) {
		r.t.Fatal("io_uring: no completion")
	}
	cqe := r.cq[r.p.cqOff[5]+(head&r.cqMask)*16:]
	res := *(*int32)(unsafe.Pointer(&cqe[8]))
	atomic.StoreUint32(r.cqHead, head+1)
	runtime.KeepAlive(buf) // the kernel wrote to it through a plain address
	return res
}

// A server that accepts, receives and sends through io_uring: its requests
// are measured like any other (the accept is seen at its completion).
func TestRequestIoUring(t *testing.T) {
	for _, arrival := range []bool{true, false} {
		t.Run(map[bool]string{true: "arrival", false: "read-start"}[arrival], func(t *testing.T) {
			h := newConnHarness(t, arrival)
			r := newRing(t)
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(h.port())))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fd := int(r.do(uringOpAccept, h.lfd, nil, 0))
			if fd < 0 {
				t.Fatalf("io_uring accept: %v", syscall.Errno(-fd))
			}
			buf := make([]byte, 4096)
			for _, work := range []time.Duration{20 * time.Millisecond, 10 * time.Millisecond} {
				h.send(c, "GET /")
				if n := r.do(uringOpRecv, fd, buf, 0); n <= 0 {
					t.Fatalf("io_uring recv: %d", n)
				}
				time.Sleep(work)
				if n := r.do(uringOpSend, fd, []byte("200 ok"), 0); n <= 0 {
					t.Fatalf("io_uring send: %d", n)
				}
			}
			syscall.Close(fd)
			got := h.requests()
			if len(got) != 2 {
				t.Fatalf("%d requests reported, want 2: %+v", len(got), got)
			}
			for i, want := range []time.Duration{20 * time.Millisecond, 10 * time.Millisecond} {
				if d := time.Duration(got[i].DurationNs); d < want {
					t.Errorf("request %d took %v, want at least %v", i, d, want)
				}
			}
		})
	}
}

// An io_uring accept into a fixed-file slot leaves no fd to find the
// connection by: it is counted as not measured.
func TestRequestIoUringDirectAcceptCounted(t *testing.T) {
	h := newConnHarness(t, true)
	r := newRing(t)
	slots := []int32{-1} // one sparse slot
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), 2 /* REGISTER_FILES */, uintptr(unsafe.Pointer(&slots[0])), 1, 0, 0); e != 0 {
		t.Skipf("io_uring_register files: %v", e)
	}
	before, err := h.k.stat(statUncoveredAccept)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(h.port())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := r.do(uringOpAccept, h.lfd, nil, 1 /* slot 0 */); res < 0 {
		t.Fatalf("io_uring accept into a slot: %v", syscall.Errno(-res))
	}
	after, err := h.k.stat(statUncoveredAccept)
	if err != nil {
		t.Fatal(err)
	}
	if after-before != 1 {
		t.Errorf("uncovered accepts went from %d to %d, want one more", before, after)
	}
}

// The collection loads on a kernel without io_uring: its program that
// reads io_uring's types checks they exist first. The kernel's own types,
// with io_uring's renamed away, stand in for such a kernel.
func TestLoadWithoutIoUring(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF programs")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	hidden := 0
	for typ, err := range kernel.All() {
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := typ.(*btf.Struct); ok && (s.Name == "io_kiocb" || s.Name == "io_accept") {
			s.Name = "hidden_" + s.Name
			hidden++
		}
	}
	if hidden != 2 {
		t.Fatalf("renamed %d io_uring types, want 2", hidden)
	}
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}})
	if err != nil {
		t.Fatalf("load without io_uring's types: %v", err)
	}
	coll.Close()
}
