package main

// The measured workload: an example server pinned to CPU 0 and wrk, the
// client, pinned to CPU 1 (the agent and the kernel's BPF work compete
// with whichever they land on, as they would on a node). wrk is C: the
// agent does not track it, so its syscalls leave the agent's programs
// early and its cost is not counted as the server's.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type server struct {
	cmd     *exec.Cmd
	pid     int
	port    int
	url     string
	service string
}

// freePort is a TCP port nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs runtime's example server (go, jvm or python) on CPU 0
// as service and returns once it serves, at most 60 s later (the JVM
// compiles Server.java first).
func (b *bench) startServer(ctx context.Context, runtime, service string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var args []string
	env := os.Environ()
	switch runtime {
	case "go":
		// One P: the server uses the core it is pinned to, no more.
		args = []string{b.exampleGo, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-churn-mb", "0"}
		env = append(env, "GOMAXPROCS=1")
	case "jvm":
		// The JDK server writes headers and body apart: without
		// TCP_NODELAY the body waits for the client's delayed ACK (40 ms),
		// and the server tops out near 400 req/s on 16 connections.
		args = []string{"java", "-Xmx512m", "-XX:+UseG1GC", "-Dsun.net.httpserver.nodelay=true", "java/Server.java", fmt.Sprint(port), "--no-churn"}
	case "python":
		args = []string{"/usr/bin/python3.11", "python/server.py", fmt.Sprint(port), "--no-churn"}
	default:
		return nil, fmt.Errorf("no example server for %q", runtime)
	}
	cmd := exec.Command("taskset", append([]string{"-c", "0"}, args...)...)
	cmd.Dir = filepath.Join(b.root, "examples")
	cmd.Env = append(env, "OTEL_SERVICE_NAME="+service)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", runtime, err)
	}
	b.cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &server{cmd: cmd, pid: cmd.Process.Pid, port: port, url: fmt.Sprintf("http://127.0.0.1:%d/", port), service: service}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get(s.url); err == nil {
			resp.Body.Close()
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s server not serving after 60 s", runtime)
}

type wrkResult struct {
	requests int64   // responses received
	rps      float64 // requests per second
	p99      float64 // ms
}

var (
	wrkCount = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkRate  = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkP99   = regexp.MustCompile(`(?m)^\s*99%\s+([0-9.]+)(us|ms|s)\b`)
)

// wrk drives url from CPU 1 with conns connections for d (whole seconds),
// through the Lua script when not empty.
func (b *bench) wrk(ctx context.Context, url string, d time.Duration, conns int, script string) (wrkResult, error) {
	args := []string{"-c", "1", "wrk", "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency"}
	if script != "" {
		args = append(args, "-s", script)
	}
	out, err := exec.CommandContext(ctx, "taskset", append(args, url)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m1, m2, m3 := wrkCount.FindStringSubmatch(out), wrkRate.FindStringSubmatch(out), wrkP99.FindStringSubmatch(out)
	if m1 == nil || m2 == nil || m3 == nil {
		return r, fmt.Errorf("wrk output not understood: %s", out)
	}
	r.requests, _ = strconv.ParseInt(m1[1], 10, 64)
	r.rps, _ = strconv.ParseFloat(m2[1], 64)
	r.p99, _ = strconv.ParseFloat(m3[1], 64)
	switch m3[2] {
	case "us":
		r.p99 /= 1000
	case "s":
		r.p99 *= 1000
	}
	if r.requests == 0 {
		return r, errors.New("wrk: no request answered")
	}
	return r, nil
}

// helper runs this program as a workload (see runHelper) with env, and
// returns once it printed "ready": the caller makes it start by writing a
// line to stdin, and reads its account from out.
type helperProc struct {
	cmd   *exec.Cmd
	pid   int
	stdin interface{ Close() error }
	write func(string) error
	out   *bufio.Scanner
}

func (b *bench) startHelper(args []string, env ...string) (*helperProc, error) {
	h, err := b.startHelperNoWait(args, env...)
	if err != nil {
		return nil, err
	}
	if !h.out.Scan() || !strings.HasPrefix(h.out.Text(), "ready") {
		return nil, fmt.Errorf("%s did not say ready: %q %v", args[0], h.out.Text(), h.out.Err())
	}
	return h, nil
}

// startHelperNoWait starts the helper and leaves its "ready" unread.
func (b *bench) startHelperNoWait(args []string, env ...string) (*helperProc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = filepath.Join(b.root, "examples")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	b.cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &helperProc{cmd: cmd, pid: cmd.Process.Pid, stdin: in, out: bufio.NewScanner(outp),
		write: func(s string) error { _, err := in.Write([]byte(s)); return err }}
	return h, nil
}
