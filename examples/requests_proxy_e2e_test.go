package examples

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Case 10 of issue 16: requests through a Go L4 proxy, whose bytes never
// pass read or write: io.Copy between two TCP connections splices socket
// to socket, and a proxy may batch with recvmmsg/sendmmsg. Each request on
// the proxy's port counts once, no longer than the client saw it.
func TestRequestL4Proxy(t *testing.T) {
	requireRoot(t)
	bin := buildL4Proxy(t)
	a := startAgent(t, freePort(t))
	backend := startServer(t, "go", "proxy-backend", freePort(t), false)
	for _, mode := range []string{"splice", "mmsg"} {
		t.Run(mode, func(t *testing.T) {
			service := "l4proxy-" + mode
			cmd, addr, _ := startLineServer(t, service, nil, bin, "-to", fmt.Sprintf("127.0.0.1:%d", backend.port), "-copy", mode)
			a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
			const conns, each = 5, 10 // keep-alive: the proxy's copy loops run across requests
			var clientMax time.Duration
			client := hdrhistogram.New(1, 60_000_000, 3) // µs
			for range conns {
				k := dialKeepAlive(t, port(addr))
				for range each {
					d := k.get(t)
					clientMax = max(clientMax, d)
					client.RecordValue(d.Microseconds() + 1) // rounded up
				}
				k.c.Close()
			}
			shapeCheck(t, a.requestRowAtLeast(t, service, port(addr), conns*each), conns*each, 0, clientMax)
			checkServerWithinClient(t, a.requestHist(t, service, port(addr)), client)
		})
	}
}

// Uploads with Expect: 100-continue through the L4 proxy: the proxy relays
// the backend's 100 Continue, and each upload counts once on its port.
// With sendmmsg the interim answer is recognised in the batch's first
// buffer. Not with splice: its bytes are in a pipe, not a user buffer, and
// each upload counts twice there (docs/requests.md, limitations).
func TestRequestL4ProxyContinue(t *testing.T) {
	requireRoot(t)
	if err := buildShapes(); err != nil {
		t.Fatal(err)
	}
	bin := buildL4Proxy(t)
	a := startAgent(t, freePort(t))
	_, backend, _ := startLineServer(t, "proxy-continue-backend", nil, shapesBin, "-upload-work", "5ms")
	service := "l4proxy-continue-mmsg"
	cmd, addr, _ := startLineServer(t, service, nil, bin, "-to", backend, "-copy", "mmsg")
	a.waitTracked(t, uint32(cmd.Process.Pid), time.Now())
	const n = 20
	tr := &http.Transport{MaxConnsPerHost: 1, ExpectContinueTimeout: 10 * time.Second}
	client := &http.Client{Transport: tr}
	body := bytes.Repeat([]byte("u"), 64<<10)
	var clientMax time.Duration
	continues := 0
	for range n {
		d, continued, _ := uploadContinue(t, client, addr, body)
		clientMax = max(clientMax, d)
		if continued {
			continues++
		}
	}
	tr.CloseIdleConnections() // the last request ends at the client's FIN
	if continues != n {
		t.Fatalf("client got %d interim 100 Continue answers, want %d: the scenario did not happen", continues, n)
	}
	shapeCheck(t, a.requestRowAtLeast(t, service, port(addr), n), n, 0, clientMax)
}

// buildL4Proxy builds testdata/l4proxy into the test's build directory
// and returns its path.
func buildL4Proxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(buildDir, "l4proxy")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "testdata/l4proxy"
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/l4proxy: %v\n%s", err, out)
	}
	return bin
}
