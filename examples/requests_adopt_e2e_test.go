package examples

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Case 12 of issue 16: connections that were open before the agent
// started (an agent restart, as in every DaemonSet rollout) and a thread
// already blocked in accept() when it started. After the agent is ready,
// every request counts, on the old connections and on new ones.

// keepAliveConn is one client connection that sends requests one at a time.
type keepAliveConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, port int) *keepAliveConn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{c: c, r: bufio.NewReader(c)}
}

// get sends one request and reads its whole response; it returns how long
// that took.
func (k *keepAliveConn) get(t *testing.T) time.Duration {
	t.Helper()
	t0 := time.Now()
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: pausewatch\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return time.Since(t0)
}

// blockedInAccept says whether a thread of pid is inside accept/accept4.
func blockedInAccept(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		nr := strings.Fields(string(b))
		if len(nr) > 0 && (nr[0] == "43" || nr[0] == "288") { // x86-64 accept, accept4
			return true
		}
	}
	return false
}

func TestRequestAdoptedConns(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		// start runs the server (no agent yet) and returns its pid and port.
		start func(t *testing.T, service string) (pid, port int)
		// accepting: a thread of it blocks in accept() (checked).
		accepting bool
	}{
		{"go", func(t *testing.T, service string) (int, int) {
			s := startServer(t, "go", service, freePort(t), false)
			return int(s.pid), s.port
		}, false},
		{"jvm", func(t *testing.T, service string) (int, int) {
			s := startServer(t, "jvm", service, freePort(t), false)
			return int(s.pid), s.port
		}, false},
		{"jvm-blocking-accept", func(t *testing.T, service string) (int, int) {
			requireJava(t)
			cmd, first, _ := startLineServer(t, service, nil, "java", "-Xmx64m", "testdata/KeepAlive.java")
			var port int
			if _, err := fmt.Sscan(first, &port); err != nil {
				t.Fatalf("KeepAlive.java said %q", first)
			}
			return cmd.Process.Pid, port
		}, true},
		{"python-blocking-accept", func(t *testing.T, service string) (int, int) {
			cmd, first, _ := startLineServer(t, service, nil, "/usr/bin/python3.11", "testdata/keepalive.py")
			var port int
			if _, err := fmt.Sscan(first, &port); err != nil {
				t.Fatalf("keepalive.py said %q", first)
			}
			return cmd.Process.Pid, port
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			service := "adopt-" + tc.name
			pid, port := tc.start(t, service)
			const old, fresh, each = 4, 4, 25
			var conns []*keepAliveConn
			for range old {
				k := dialKeepAlive(t, port)
				k.get(t) // before the agent: not counted
				conns = append(conns, k)
			}
			if tc.accepting {
				deadline := time.Now().Add(5 * time.Second)
				for !blockedInAccept(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("pid %d is not blocked in accept", pid)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			a := startAgent(t, freePort(t)) // ready: from here every request counts
			if !strings.Contains(a.logs.String(), "adopted connections open before the agent") {
				t.Fatalf("the agent did not adopt connections")
			}
			var clientMax time.Duration
			client := hdrhistogram.New(1, 60_000_000, 3) // µs
			for range fresh {
				conns = append(conns, dialKeepAlive(t, port))
			}
			for range each {
				for _, k := range conns {
					d := k.get(t)
					clientMax = max(clientMax, d)
					client.RecordValue(d.Microseconds() + 1) // rounded up
				}
			}
			for _, k := range conns {
				k.c.Close() // each connection's last request ends at its close
			}
			want := int64((old + fresh) * each)
			row := a.requestRowAtLeast(t, service, port, want)
			t.Logf("pid %d: %d requests after the agent was ready on %d old and %d new connections; agent counted %d, max %.2fms (client max %.2fms)",
				pid, want, old, fresh, row.Requests, row.Max*1e3, ms(clientMax))
			if row.Requests != want {
				t.Errorf("agent counted %d requests, the client made %d after it was ready", row.Requests, want)
			}
			if row.Max > 1.01*clientMax.Seconds() {
				t.Errorf("longest request %.2fms, above the client's %.2fms", row.Max*1e3, ms(clientMax))
			}
			checkServerWithinClient(t, a.requestHist(t, service, port), client)
		})
	}
}

// Connections a process accepted after its exec but before the agent had
// inspected it (the agent is stopped meanwhile, so that window is sure to
// hold them) are adopted once it is traced: every request afterwards counts.
// The server is exec'd by a shell started before the agent: a child the
// test (a traced Go process) forked after the agent started would be
// traced from its fork.
func TestRequestAdoptedBeforeTracked(t *testing.T) {
	requireRoot(t)
	service := "adopt-before-tracked"
	cmd := exec.Command("sh", "-c", "read go && exec /usr/bin/python3.11 testdata/keepalive.py")
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+service)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	a := startAgent(t, freePort(t))
	agentPID := a.cmd.Process.Pid
	if err := syscall.Kill(agentPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			syscall.Kill(agentPID, syscall.SIGCONT)
		}
	})
	io.WriteString(stdin, "go\n")
	out := bufio.NewScanner(stdout)
	var port int
	if !out.Scan() {
		t.Fatal("keepalive.py did not start")
	}
	if _, err := fmt.Sscan(out.Text(), &port); err != nil {
		t.Fatalf("keepalive.py said %q", out.Text())
	}
	const n, each = 4, 25
	var conns []*keepAliveConn
	for range n {
		k := dialKeepAlive(t, port)
		k.get(t) // accepted and answered before the agent knows the process
		conns = append(conns, k)
	}
	syscall.Kill(agentPID, syscall.SIGCONT)
	stopped = false
	a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(a.logs.String(), "adopted connections accepted before their process was traced"); {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not adopt the connections accepted before it traced the process")
		}
		time.Sleep(100 * time.Millisecond)
	}
	client := hdrhistogram.New(1, 60_000_000, 3) // µs
	for range each {
		for _, k := range conns {
			client.RecordValue(k.get(t).Microseconds() + 1)
		}
	}
	for _, k := range conns {
		k.c.Close()
	}
	want := int64(n * each)
	row := a.requestRowAtLeast(t, service, port, want)
	t.Logf("%d requests on %d connections accepted before the process was traced; agent counted %d", want, n, row.Requests)
	if row.Requests != want {
		t.Errorf("agent counted %d requests, the client made %d after the process was traced", row.Requests, want)
	}
	checkServerWithinClient(t, a.requestHist(t, service, port), client)
}
