package examples

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// spinConn is a client connection read by spinning on a non-blocking
// socket: it has an answer's last byte microseconds after the server's
// send delivered it, and sends its next line at once, often before that
// send has returned in the server (sock:sock_send_length not yet run).
type spinConn struct {
	fd  int
	buf []byte
}

func dialSpin(t *testing.T, port int) *spinConn {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return &spinConn{fd: fd, buf: make([]byte, 64<<10)}
}

// line reads until the data read so far ends with a newline.
func (s *spinConn) line(t *testing.T) {
	t.Helper()
	for {
		n, err := unix.Read(s.fd, s.buf)
		switch {
		case err == unix.EAGAIN:
			continue
		case err != nil:
			t.Fatalf("read: %v", err)
		case n == 0:
			t.Fatal("server closed")
		case s.buf[n-1] == '\n':
			return
		}
	}
}

func (s *spinConn) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := unix.Write(s.fd, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// The last write of an answer completes (sock:sock_send_length) after the
// client, spinning on another CPU, already had its bytes and sent its next
// request: that request's arrival ends the answer, and the late write must
// not be taken as the next request's response (the request's own read
// then found it answered and counted it twice, a tiny one and the real
// one). Answers in several writes, and a greeting before the first
// request; a Python server (each connection a thread) pinned to one CPU,
// the client to the other.
func TestRequestLateTailWrite(t *testing.T) {
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs: the client spins on one while the server writes on the other")
	}
	a := startAgent(t, freePort(t))
	for _, tc := range []struct {
		mode        string
		conns, each int
	}{
		{"steps", 20, 300}, // 8 small writes then the last: 6 of 4000 were counted twice
		{"greet", 1500, 2}, // the greeting's write: 4 of 500 connections had one request too many
	} {
		t.Run(tc.mode, func(t *testing.T) {
			service := "tailwrite-" + tc.mode
			cmd, first, _ := startLineServer(t, service, nil, "/usr/bin/python3.11", "testdata/tailwrite.py", tc.mode)
			var ready struct{ Listening int }
			if err := json.Unmarshal([]byte(first), &ready); err != nil || ready.Listening == 0 {
				t.Fatalf("tailwrite.py said %q", first)
			}
			var set unix.CPUSet
			set.Set(1)
			if err := unix.SchedSetaffinity(cmd.Process.Pid, &set); err != nil {
				t.Fatal(err)
			}
			a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())

			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var mine unix.CPUSet
			unix.SchedGetaffinity(0, &mine)
			set.Zero()
			set.Set(0)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				t.Fatal(err)
			}
			defer unix.SchedSetaffinity(0, &mine)

			client := hdrhistogram.New(1, 60_000_000, 3) // µs
			var clientMax time.Duration
			for range tc.conns {
				c := dialSpin(t, ready.Listening)
				if tc.mode == "greet" {
					c.line(t)
				}
				for range tc.each {
					t0 := time.Now()
					c.send(t, []byte("req\n"))
					c.line(t)
					d := time.Since(t0)
					clientMax = max(clientMax, d)
					client.RecordValue(d.Microseconds() + 1) // rounded up
				}
				unix.Close(c.fd)
			}
			want := tc.conns * tc.each
			shapeCheck(t, a.requestRowAtLeast(t, service, ready.Listening, int64(want)), want, 0, clientMax)
			checkServerWithinClient(t, a.requestHist(t, service, ready.Listening), client)
		})
	}
}
