package examples

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// bpfIDs are the ids of the BPF objects behind one process's file
// descriptors, by kind ("prog", "map", "link").
type bpfIDs map[string][]uint32

func (ids bpfIDs) count() int { return len(ids["prog"]) + len(ids["map"]) + len(ids["link"]) }

// bpfIDsOf reads the ids of the BPF programs, maps and links pid holds, from
// /proc/<pid>/fdinfo: a BPF object's fd shows "prog_id:", "map_id:" or
// "link_id:". A link's fdinfo also names its program (prog_id), which the
// process then holds through the link; it is counted as the process's too.
func bpfIDsOf(t *testing.T, pid int) bpfIDs {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read fdinfo: %v", err)
	}
	seen := map[string]bool{}
	ids := bpfIDs{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // the fd was closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			key, val, ok := strings.Cut(sc.Text(), ":")
			kind, isID := strings.CutSuffix(key, "_id")
			if !ok || !isID || (kind != "prog" && kind != "map" && kind != "link") {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32)
			if err != nil || seen[kind+val] {
				continue
			}
			seen[kind+val] = true
			ids[kind] = append(ids[kind], uint32(id))
		}
		f.Close()
	}
	return ids
}

// bpfExists says whether the kernel still has the object with this id,
// by opening it by id (BPF_*_GET_FD_BY_ID), as `bpftool prog show id N`
// does. Ids are allocated cyclically, so an id does not come back to
// another object within a test.
func bpfExists(t *testing.T, kind string, id uint32) bool {
	t.Helper()
	var err error
	switch kind {
	case "prog":
		var p *ebpf.Program
		if p, err = ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
		}
	case "map":
		var m *ebpf.Map
		if m, err = ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
		}
	case "link":
		var l link.Link
		if l, err = link.NewFromID(link.ID(id)); err == nil {
			l.Close()
		}
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, os.ErrNotExist):
		return false
	case errors.Is(err, ebpf.ErrNotSupported) && kind == "link":
		// A link type this cilium/ebpf cannot wrap (it exists, or opening
		// it would have said ENOENT first).
		return true
	}
	t.Fatalf("open %s %d by id: %v", kind, id, err)
	return false
}

// stillThere returns "kind id" of every object of ids that exists.
func stillThere(t *testing.T, ids bpfIDs) []string {
	var left []string
	for kind, list := range ids {
		for _, id := range list {
			if bpfExists(t, kind, id) {
				left = append(left, fmt.Sprintf("%s %d", kind, id))
			}
		}
	}
	slices.Sort(left)
	return left
}

// terminate sends the agent SIGTERM and measures how long it takes to exit
// and for the kernel to free ids. The kernel frees an object when its last
// reference goes: a program after an RCU grace period, the maps it used
// after that; so ids get 5 s past the exit rather than failing on a race
// with the kernel's own cleanup. left is what is still there then.
func terminate(t *testing.T, a *agentProc, ids bpfIDs) (exited, gone time.Duration, left []string) {
	t.Helper()
	sent := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		exited = time.Since(sent)
		a.done <- err
		if err != nil {
			t.Errorf("agent exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit within 30s of SIGTERM")
	}
	for {
		left = stillThere(t, ids)
		if len(left) == 0 || time.Since(sent) > exited+5*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return exited, time.Since(sent), left
}

// startBpftrace runs a bpftrace script until the test ends and waits until
// its probe is attached.
func startBpftrace(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("bpftrace")
	if err != nil {
		t.Skip("bpftrace not installed (apt-get install bpftrace): the test proves the check ignores other BPF users")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-e", script)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("bpftrace: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Attaching ") {
				attached <- true
				break
			}
		}
		close(attached)
		for sc.Scan() { // drain, so bpftrace never blocks on its stdout
		}
	}()
	select {
	case ok := <-attached:
		if !ok {
			t.Fatal("bpftrace ended before attaching")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bpftrace did not attach within 60s")
	}
	return cmd
}

// TestShutdownLeavesNothing: after SIGTERM, nothing the agent created is
// left in the kernel. What it created is known exactly, the objects behind
// its own file descriptors, so the check holds whatever else uses BPF on
// the machine: a second agent and a bpftrace script run beside it and load
// and keep their own objects throughout, which a before/after count of the
// whole machine would have blamed on the agent. Also measured: SIGTERM to
// exit, and SIGTERM to the last object gone.
func TestShutdownLeavesNothing(t *testing.T) {
	requireRoot(t)
	a := startAgent(t, 19474)
	c := startChurn(t, buildChurn(t, "", false), "churn-shutdown", "gc", 1)
	a.waitTracked(t, c.pid, c.started)

	// The others start after the agent, so their objects are created
	// while it runs; they outlive it.
	bt := startBpftrace(t, "tracepoint:syscalls:sys_enter_getpid { @ = count(); }")
	other := startAgent(t, 19476)
	other.waitTracked(t, c.pid, c.started)

	ids := bpfIDsOf(t, a.cmd.Process.Pid)
	select {
	case err := <-a.done: // a zombie's fdinfo is empty: say why
		a.done <- err
		t.Fatalf("agent exited before SIGTERM: %v", err)
	default:
	}
	if len(ids["prog"]) == 0 || len(ids["map"]) == 0 || len(ids["link"]) == 0 {
		t.Fatalf("agent holds %d programs, %d maps, %d links; want some of each (uprobes on churn are attached)",
			len(ids["prog"]), len(ids["map"]), len(ids["link"]))
	}
	if left := stillThere(t, ids); len(left) != ids.count() {
		t.Fatalf("only %d of the agent's %d objects found by id while it runs: the existence check is broken", len(left), ids.count())
	}
	// The other agent's links come and go with the processes it probes
	// (other tests' and builds' short-lived Go programs), so only its
	// programs and maps, loaded once at start, are expected to stay.
	otherAgent := bpfIDsOf(t, other.cmd.Process.Pid)
	others := bpfIDsOf(t, bt.Process.Pid)
	others["prog"] = append(others["prog"], otherAgent["prog"]...)
	others["map"] = append(others["map"], otherAgent["map"]...)
	for kind, list := range ids {
		for _, id := range list {
			if slices.Contains(others[kind], id) || slices.Contains(otherAgent[kind], id) {
				t.Fatalf("%s %d held by the agent and by another BPF user: the ids do not tell them apart", kind, id)
			}
		}
	}

	exited, gone, left := terminate(t, a, ids)
	for _, o := range left {
		t.Errorf("%s, created by the agent, still in the kernel %v after it exited", o, gone-exited)
	}
	t.Logf("agent held %d programs, %d maps, %d links; SIGTERM to exit %v, to the last object gone %v",
		len(ids["prog"]), len(ids["map"]), len(ids["link"]), exited.Round(time.Millisecond), gone.Round(time.Millisecond))
	// Generous: the issue measured 1.7 s idle and up to 16.5 s under load
	// before shutdown was made parallel; a DaemonSet's default grace period
	// is 30 s.
	if exited > 10*time.Second {
		t.Errorf("SIGTERM to exit took %v, want under 10s", exited)
	}

	// The others were not disturbed: their objects are all still there,
	// so "gone" above is about the agent, not everything.
	if still := stillThere(t, others); len(still) != others.count() {
		t.Errorf("%d of the other BPF users' %d objects gone with the agent (%d left: %v)",
			others.count()-len(still), others.count(), len(still), still)
	}
}
