// Command l4proxy is a TCP (L4) proxy in front of a backend (issue 16,
// case 10): each accepted connection is joined to a new one to -to, bytes
// copied both ways. -copy says how: "splice" is io.Copy between the two
// TCP connections (Go splices socket to socket through a pipe); "mmsg"
// moves them with recvmmsg and sendmmsg. It prints its address once it
// listens.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	to := flag.String("to", "", "backend address")
	mode := flag.String("copy", "splice", "splice or mmsg")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", *to)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			defer b.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src *net.TCPConn) {
				if *mode == "mmsg" {
					copyMmsg(dst, src)
				} else {
					io.Copy(dst, src)
				}
				dst.CloseWrite()
				done <- struct{}{}
			}
			go pipe(b.(*net.TCPConn), c.(*net.TCPConn))
			go pipe(c.(*net.TCPConn), b.(*net.TCPConn))
			<-done
			<-done
		}()
	}
}

type iovec struct {
	base *byte
	len  uint64
}

type msghdr struct {
	name       *byte
	namelen    uint32
	_          uint32
	iov        *iovec
	iovlen     uint64
	control    *byte
	controllen uint64
	flags      int32
	_          uint32
}

type mmsghdr struct {
	hdr msghdr
	len uint32
	_   uint32
}

// copyMmsg copies src to dst until EOF, one recvmmsg and one sendmmsg
// (of one message each: a stream has no message boundaries) at a time.
func copyMmsg(dst, src *net.TCPConn) {
	rs, _ := src.SyscallConn()
	ws, _ := dst.SyscallConn()
	buf := make([]byte, 64<<10)
	for {
		iov := iovec{&buf[0], uint64(len(buf))}
		m := mmsghdr{hdr: msghdr{iov: &iov, iovlen: 1}}
		var n int
		var errno syscall.Errno
		rerr := rs.Read(func(fd uintptr) bool {
			r, _, e := syscall.Syscall6(sysRecvmmsg, fd, uintptr(unsafe.Pointer(&m)), 1, 0, 0, 0)
			errno = e
			n = int(r)
			return e != syscall.EAGAIN
		})
		if rerr != nil || errno != 0 || n < 1 || m.len == 0 {
			return
		}
		for off := uint32(0); off < m.len; {
			out := iovec{&buf[off], uint64(m.len - off)}
			w := mmsghdr{hdr: msghdr{iov: &out, iovlen: 1}}
			werr := ws.Write(func(fd uintptr) bool {
				_, _, e := syscall.Syscall6(sysSendmmsg, fd, uintptr(unsafe.Pointer(&w)), 1, 0, 0, 0)
				errno = e
				return e != syscall.EAGAIN
			})
			if werr != nil || errno != 0 || w.len == 0 {
				return
			}
			off += w.len
		}
	}
}

// x86-64 numbers (the syscall package lacks sendmmsg).
const (
	sysRecvmmsg = 299
	sysSendmmsg = 307
)
