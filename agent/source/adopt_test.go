package source

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Connections accepted before the agent (here: before the process was
// traced) are adopted by adoptConns; a request in progress then is not
// measured, and the next one is, in full.
func TestAdoptConns(t *testing.T) {
	ms := time.Millisecond
	h := newConnHarness(t, true)
	// exchange serves one whole request; took is the server's own time,
	// the lower bound the case expects the agent to report.
	exchange := func(c net.Conn, fd int, request string, took time.Duration, response string) {
		h.send(c, request)
		h.read(fd)
		h.sleep(took)
		h.write(fd, response)
	}
	for _, tc := range []struct {
		name   string
		before func(c net.Conn, fd int) // before adoption
		after  func(c net.Conn, fd int)
		want   []time.Duration // lower bounds of the reported requests
	}{
		{"idle keep-alive connection: the next request counts", func(c net.Conn, fd int) {
			exchange(c, fd, "GET /old", 0, "200 old")
		}, func(c net.Conn, fd int) {
			exchange(c, fd, "GET /1", 20*ms, "200 one")
		}, []time.Duration{20 * ms}},
		{"request unread at adoption: not measured, the next one is", func(c net.Conn, fd int) {
			exchange(c, fd, "GET /old", 0, "200 old")
			h.sleep(20 * ms) // a tick or more after the response
			h.send(c, "GET /in-progress")
		}, func(c net.Conn, fd int) {
			h.read(fd)
			h.write(fd, "200 in progress")
			exchange(c, fd, "GET /2", 15*ms, "200 two")
		}, []time.Duration{15 * ms}},
		{"request half read at adoption: its rest does not start a request", func(c net.Conn, fd int) {
			h.sleep(20 * ms)
			h.send(c, "GET / HTTP/1.1\r\n")
			h.read(fd)
		}, func(c net.Conn, fd int) {
			exchange(c, fd, "Host: x\r\n\r\n", 0, "200 in progress")
			exchange(c, fd, "GET /3", 10*ms, "200 three")
		}, []time.Duration{10 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.requests() // drain
			h.startClock()
			// Accepted while the process was not traced: unseen.
			if err := h.k.untrace(h.pid); err != nil {
				t.Fatal(err)
			}
			c, fd := h.connect()
			tc.before(c, fd)
			if err := h.k.trace(h.pid); err != nil {
				t.Fatal(err)
			}
			conns, procs, err := h.k.adoptConns()
			if err != nil {
				t.Fatal(err)
			}
			// This process holds both ends: the client end (its own
			// connection, on an ephemeral port) is not a server's.
			if conns != 1 || procs != 1 {
				t.Fatalf("adopted %d connections of %d processes, want the server end only", conns, procs)
			}
			tc.after(c, fd)
			syscall.Close(fd)
			late := h.late()
			got := h.requests()
			if len(got) != len(tc.want) {
				t.Fatalf("%d requests reported, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, e := range got {
				if d := time.Duration(e.DurationNs); d < tc.want[i] || d > tc.want[i]+30*ms+late {
					t.Errorf("request %d took %v, want %v (+ 30 ms + the test's own lateness, %v)", i, d, tc.want[i], late)
				}
			}
		})
	}
}

// A traced process with thousands of listeners, visited after another
// (a higher pid), must not push the other's listening ports out of the
// adoption pass: with an LRU of 4,096 ports, its 5,000 left the other's
// connection unadopted. The ports are gone after the pass.
func TestAdoptBesideManyListeners(t *testing.T) {
	const listeners = 5000
	if os.Getenv("PW_TEST_LISTENERS") != "" {
		for range listeners {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
			if err == nil {
				err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
			}
			if err == nil {
				err = syscall.Listen(fd, 1)
			}
			if err != nil {
				fmt.Println("listen:", err)
				os.Exit(1)
			}
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin) // until the test closes it
		os.Exit(0)
	}
	h := newConnHarness(t, true)
	if err := h.k.objs.Traced.Delete(h.pid); err != nil {
		t.Fatal(err)
	}
	c, fd := h.connect()
	defer c.Close()
	defer syscall.Close(fd)
	if err := h.k.objs.Traced.Put(h.pid, uint8(1)); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestAdoptBesideManyListeners$")
	cmd.Env = append(os.Environ(), "PW_TEST_LISTENERS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	child := uint32(cmd.Process.Pid)
	if err := h.k.objs.Traced.Put(child, uint8(1)); err != nil {
		t.Fatal(err)
	}
	defer h.k.objs.Traced.Delete(child)

	conns, procs, err := h.k.adoptConns()
	if err != nil {
		t.Fatal(err)
	}
	if conns != 1 || procs != 1 {
		t.Errorf("adopted %d connections of %d processes beside %d listeners of pid %d (this is %d), want this process's one", conns, procs, listeners, child, h.pid)
	}
	var key uint64
	var val uint8
	if it := h.k.objs.ListenPorts.Iterate(); it.Next(&key, &val) {
		t.Errorf("listen_ports still holds %#x after the pass", key)
	}
}
