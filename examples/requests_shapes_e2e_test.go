package examples

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Response shapes the request state machine once cut short or split
// (issue 16, cases 7-9), against real servers: every request counted once,
// each at least as long as the server's own account of it and at most as
// long as the client's.

var shapesBin string

func buildShapes() error {
	shapesBin = filepath.Join(buildDir, "shapes")
	cmd := exec.Command("go", "build", "-o", shapesBin, ".")
	cmd.Dir = "testdata/shapes"
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build testdata/shapes: %v\n%s", err, out)
	}
	return nil
}

// freePort returns a loopback port nobody listens on now: other test runs
// share this machine, so fixed ports collide.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startLineServer runs a test server that prints a line on stdout once it
// serves (no probe request, so the agent sees only the test's requests),
// and returns it with the rest of its stdout, line by line.
func startLineServer(t *testing.T, service string, env []string, name string, args ...string) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "OTEL_SERVICE_NAME="+service), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1024)
	sc := bufio.NewScanner(stdout)
	go func() {
		defer close(lines)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case first, ok := <-lines:
		if !ok {
			t.Fatalf("%s exited before serving", name)
		}
		return cmd, first, lines
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not serving after 20s", name)
	}
	return nil, "", nil
}

// shapeCheck compares the agent's row for a service with what the server
// and the client measured of the same n requests. HDR keeps 2 significant
// digits in the agent: its min is at most 1% below the true minimum, its
// max at most 1% above the true maximum.
func shapeCheck(t *testing.T, row requestRow, n int, serverMin time.Duration, clientMax time.Duration) {
	t.Helper()
	t.Logf("agent: %d requests, min %.2fms max %.2fms; server at least %.2fms; client max %.2fms",
		row.Requests, row.Min*1e3, row.Max*1e3, ms(serverMin), ms(clientMax))
	if row.Requests != int64(n) {
		t.Errorf("agent counted %d requests, want %d", row.Requests, n)
	}
	if row.Min < 0.99*serverMin.Seconds() {
		t.Errorf("shortest request %.2fms, below the server's own %.2fms", row.Min*1e3, ms(serverMin))
	}
	if row.Max > 1.01*clientMax.Seconds() {
		t.Errorf("longest request %.2fms, above the client's %.2fms", row.Max*1e3, ms(clientMax))
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// uploadContinue PUTs body to addr's /upload with Expect: 100-continue
// and returns how long the client waited for the whole answer, whether
// an interim 100 Continue came, and the answer's body.
func uploadContinue(t *testing.T, client *http.Client, addr string, body []byte) (time.Duration, bool, []byte) {
	t.Helper()
	continued := false
	trace := &httptrace.ClientTrace{Got100Continue: func() { continued = true }}
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/upload", bytes.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return time.Since(t0), continued, got
}

func TestRequestShapes(t *testing.T) {
	requireRoot(t)
	if err := buildShapes(); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, freePort(t))

	// Case 7: net/http parks a one-byte background read on the connection
	// once the handler runs; the head is flushed, then 100 ms of work,
	// then the rest. One and two Ps: with one, the background read runs
	// between the two writes.
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("go-write-in-steps/GOMAXPROCS=%d", procs), func(t *testing.T) {
			service := fmt.Sprintf("shapes-steps-%d", procs)
			cmd, addr, _ := startLineServer(t, service, []string{fmt.Sprintf("GOMAXPROCS=%d", procs)}, shapesBin, "-work", "100ms")
			a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
			const n = 10
			tr := &http.Transport{MaxConnsPerHost: 1}
			client := &http.Client{Transport: tr}
			var clientMax time.Duration
			for i := 0; i < n; i++ {
				t0 := time.Now()
				resp, err := client.Get("http://" + addr + "/steps")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				clientMax = max(clientMax, time.Since(t0))
				if string(body) != "head\nrest\n" {
					t.Fatalf("body %q", body)
				}
			}
			tr.CloseIdleConnections() // the last request ends at the client's FIN
			shapeCheck(t, a.requestRowAtLeast(t, service, port(addr), n), n, 100*time.Millisecond, clientMax)
		})
	}

	// Case 9: uploads with Expect: 100-continue; the client sends the body
	// only after the interim answer, then the handler works 50 ms.
	t.Run("go-100-continue", func(t *testing.T) {
		service := "shapes-continue"
		cmd, addr, _ := startLineServer(t, service, nil, shapesBin, "-upload-work", "50ms")
		a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
		const n = 10
		tr := &http.Transport{MaxConnsPerHost: 1, ExpectContinueTimeout: 10 * time.Second}
		client := &http.Client{Transport: tr}
		body := bytes.Repeat([]byte("u"), 2<<20)
		var clientMax time.Duration
		continues := 0
		for i := 0; i < n; i++ {
			d, continued, got := uploadContinue(t, client, addr, body)
			clientMax = max(clientMax, d)
			if continued {
				continues++
			}
			if strings.TrimSpace(string(got)) != fmt.Sprint(len(body)) {
				t.Fatalf("server read %q bytes, sent %d", got, len(body))
			}
		}
		tr.CloseIdleConnections()
		if continues != n {
			t.Fatalf("client got %d interim 100 Continue answers, want %d: the scenario did not happen", continues, n)
		}
		shapeCheck(t, a.requestRowAtLeast(t, service, port(addr), n), n, 50*time.Millisecond, clientMax)
	})

	// Case 8: one blocking sendall of 8 MiB to a slow reader (Python).
	t.Run("python-blocking-sendall", func(t *testing.T) {
		service := "shapes-sendall"
		cmd, first, lines := startLineServer(t, service, nil, "/usr/bin/python3.11", "testdata/bigsend.py", fmt.Sprint(freePort(t)))
		var ready struct{ Listening int }
		if err := json.Unmarshal([]byte(first), &ready); err != nil || ready.Listening == 0 {
			t.Fatalf("bigsend.py said %q", first)
		}
		a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
		const n = 3
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ready.Listening))
		if err != nil {
			t.Fatal(err)
		}
		var clientMax, serverMin time.Duration
		buf := make([]byte, 64<<10)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if _, err := c.Write([]byte("GET /big HTTP/1.1\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			// A slow reader: 64 KiB every 4 ms (~16 MB/s), so the send
			// blocks for most of the body.
			want := 8<<20 + len("HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n")
			for got := 0; got < want; {
				k, err := c.Read(buf[:min(len(buf), want-got)])
				if err != nil {
					t.Fatal(err)
				}
				got += k
				time.Sleep(4 * time.Millisecond)
			}
			clientMax = max(clientMax, time.Since(t0))
			var srv struct {
				Server float64 `json:"server_seconds"`
			}
			if err := json.Unmarshal([]byte(<-lines), &srv); err != nil {
				t.Fatal(err)
			}
			d := time.Duration(srv.Server * 1e9)
			if i == 0 || d < serverMin {
				serverMin = d
			}
		}
		c.Close()
		if serverMin < 200*time.Millisecond {
			t.Fatalf("the server's sendall took only %v: the reader was not slow enough to block it", serverMin)
		}
		// The server stamps its sendall's return microseconds after the
		// send completes (the agent's end) and reads the request after it
		// arrives (the agent's start): allow 2 ms for the first part.
		shapeCheck(t, a.requestRowAtLeast(t, service, ready.Listening, n), n, serverMin-2*time.Millisecond, clientMax)
	})
}

// port is the port of a host:port address.
func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// Case 6: a pre-fork server's workers (forked without exec by a tracked
// process) are traced from the fork: every request counted, none twice,
// with 8 clients at a time over 2 workers on new connections each.
func TestRequestPreforkWorkers(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, freePort(t))
	service := "prefork"
	port := freePort(t)
	cmd := exec.Command("/usr/bin/python3.11", "testdata/prefork.py", fmt.Sprint(port), "2")
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+service)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "listening" {
		t.Fatalf("prefork.py said %q", out.Text())
	}
	a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
	stdin.Write([]byte("fork\n"))
	if !out.Scan() {
		t.Fatal("prefork.py did not fork")
	}
	kids := strings.Fields(out.Text())
	t.Logf("workers %v of parent %d", kids, cmd.Process.Pid)

	const n, conc = 400, 8
	jobs := make(chan int, n)
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for range jobs {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	// Each worker is its own process: the agent's rows are per service
	// and port, so they add up in the one row.
	row := a.requestRowAtLeast(t, service, port, ok.Load())
	t.Logf("client: %d requests; agent: %d", ok.Load(), row.Requests)
	if row.Requests != ok.Load() {
		t.Errorf("agent counted %d requests, the client made %d", row.Requests, ok.Load())
	}
}
