package examples

// Requests to a server in a network namespace of its own, as a pod's:
// reached over a veth pair from the host's namespace (where the load
// generator runs, as a client on another node or a kube-proxy'd one
// would be), the agent on the host.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// netnsPeer makes a network namespace joined to the host's by a veth
// pair: the host's end hostIP/30, the namespace's nsIP/30. It returns
// the namespace's name; the test's end removes both.
func netnsPeer(t *testing.T, hostIP, nsIP string) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	var id [3]byte
	rand.Read(id[:])
	suffix := hex.EncodeToString(id[:])
	ns, host, peer := "pw-"+suffix, "pwh"+suffix, "pwc"+suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	// Deleting one end deletes the pair (and the namespace's end goes with
	// the namespace).
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ip("link", "set", peer, "netns", ns)
	ip("addr", "add", hostIP+"/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", ns, "addr", "add", nsIP+"/30", "dev", peer)
	ip("-n", ns, "link", "set", peer, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

// TestRequestsInNetns: the Go example server (with its deliberate pauses)
// in its own network namespace, under the open-loop load generator on the
// host: the agent counts the client's requests within 1 %, and every
// percentile of its server-side view is at most the client's.
func TestRequestsInNetns(t *testing.T) {
	requireRoot(t)
	const hostIP, nsIP, port = "10.213.97.1", "10.213.97.2", 19971
	const slo = 15 * time.Millisecond
	ns := netnsPeer(t, hostIP, nsIP)
	a := startAgent(t, 19972, "--slo", slo.String())

	const service = "req-go-netns"
	cmd := exec.Command("ip", "netns", "exec", ns, exampleGoBin, "-listen", fmt.Sprintf("%s:%d", nsIP, port),
		"-churn-mb", "0", "-pause-every", "250ms", "-ballast-mb", "8")
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+service)
	serverLog := &syncBuffer{} // its pause log, shown if the test fails
	cmd.Stdout, cmd.Stderr = serverLog, serverLog
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", serverLog.String())
		}
	})
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://%s:%d/", nsIP, port)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("server in netns %s not serving at %s after 20s", ns, url)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ip netns exec execs the server: one pid, in the other namespace.
	pid := uint32(cmd.Process.Pid)
	self, _ := os.Readlink("/proc/self/ns/net")
	their, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil || their == self {
		t.Fatalf("server pid %d: network namespace %q is the host's (%v)", pid, their, err)
	}
	st := a.waitTracked(t, pid, t0)
	t.Logf("server pid %d in %s (%s) at %s: %+v", pid, ns, their, url, st)

	initial := a.requestCount(t, service, port)
	warm := runLoad(t, url, 100, time.Second, slo)
	before := a.requestRowAtLeast(t, service, port, initial+warm.OK)
	histBefore := a.requestHist(t, service, port)
	load := runLoad(t, url, 150, 4*time.Second, slo)
	after := a.requestRowAtLeast(t, service, port, before.Requests+load.OK)
	window := a.requestHist(t, service, port).add(histBefore, -1)
	n := after.Requests - before.Requests
	t.Logf("client: %d ok, %d errors, p50 %.2fms p99 %.2fms; agent: %d requests (warm-up: client %d, agent %d)",
		load.OK, load.Errors, load.P50*1e3, load.P99*1e3, n, warm.OK, before.Requests-initial)
	if load.Errors > 0 {
		t.Fatalf("client saw %d errors", load.Errors)
	}
	if load.OK < 500 {
		t.Fatalf("only %d requests: too few to compare within 1%%", load.OK)
	}
	if !within(float64(n), float64(load.OK), 0.01, 0) {
		t.Errorf("request count: agent %d, client %d (want within 1%%)", n, load.OK)
	}
	if int64(window.count) != n {
		t.Errorf("histogram window holds %d requests, the report %d", window.count, n)
	}
	if load.Histogram == nil {
		t.Fatal("loadgen gave no histogram")
	}
	checkServerWithinClient(t, window, hdrhistogram.Import(load.Histogram))
}
