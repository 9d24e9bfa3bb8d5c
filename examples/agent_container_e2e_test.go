package examples

// The agent in a container: the binary from the image `make image`
// builds, run the way the DaemonSet in deploy/kubernetes/ runs it, by a
// container init of the test's own (the test binary re-executed, since
// the image has no shell and no tools): new mount, pid, uts and ipc
// namespaces; the image's root filesystem (under an overlay, as a
// runtime's snapshotter gives it) pivot_root'ed into and then read-only;
// a proc of its own pid namespace at /proc and a sysfs of its own
// (read-only, with /sys/kernel/btf) as runtimes mount them; the
// DaemonSet's volumes: the host's /proc read-only at /host/proc (passed
// as --procfs), the host's tracefs read-only at /sys/kernel/tracing, the
// host's cgroup tree read-only at /host/sys/fs/cgroup; uid 0 with exactly
// the DaemonSet's capabilities (bounding set and effective set, the
// inheritable set empty), no_new_privs (allowPrivilegeEscalation: false).
//
// Not as the DaemonSet: the DaemonSet has hostPID: true; here the agent
// has a pid namespace of its own, the harder case (its own pid is 1 to
// itself, every pid it reads through /host/proc and from BPF is the
// host's). The network namespace is the host's (the test scrapes it on
// 127.0.0.1), and no ConfigMap is mounted (flags only).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// containerInitEnv, when set, makes the test binary a container init
// (see TestMain): its value is a containerInitSpec in JSON.
const containerInitEnv = "PAUSEWATCH_TEST_CONTAINER_INIT"

type containerInitSpec struct {
	Root     string   // the container's root filesystem, a directory on the host
	Hostname string   //
	Caps     []string // Kubernetes names: the only capabilities left
	Argv     []string // argv[0] is the path inside the root
	Env      []string
}

// capNumbers are the capabilities a DaemonSet may add, by Kubernetes name.
var capNumbers = map[string]int{"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3,
	"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14,
	"SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39,
	"CHECKPOINT_RESTORE": 40}

// containerInit runs in the new namespaces as their pid 1: it sets up
// the container's mounts, enters its root, drops what the container may
// not have and executes the container's command. Any failure exits 125
// (as runc does) with the reason on stderr.
func containerInit(specJSON string) {
	// Capability bounding sets and no_new_privs are per thread: the exec
	// must happen on the thread that set them.
	runtime.LockOSThread()
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "container init: "+format+"\n", args...)
		os.Exit(125)
	}
	var spec containerInitSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fail("spec: %v", err)
	}
	must := func(what string, err error) {
		if err != nil {
			fail("%s: %v", what, err)
		}
	}
	r := spec.Root
	must("make / private", unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""))
	must("bind root", unix.Mount(r, r, "", unix.MS_BIND|unix.MS_REC, ""))
	for _, d := range []string{"proc", "sys", "host/proc", "host/sys/fs/cgroup", ".oldroot"} {
		must("mkdir "+d, os.MkdirAll(filepath.Join(r, d), 0o755))
	}
	must("mount proc", unix.Mount("proc", filepath.Join(r, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	must("mount sysfs", unix.Mount("sysfs", filepath.Join(r, "sys"), "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	// hostPath volumes, readOnly: a recursive bind, then read-only on
	// every mount of it (what runtimes do with rro, or kubelet's
	// recursiveReadOnly; the plain readOnly binds only the top one).
	for _, v := range []struct{ src, dst string }{
		{"/proc", "host/proc"},
		{"/sys/kernel/tracing", "sys/kernel/tracing"},
		{"/sys/fs/cgroup", "host/sys/fs/cgroup"},
	} {
		dst := filepath.Join(r, v.dst)
		must("bind "+v.src, unix.Mount(v.src, dst, "", unix.MS_BIND|unix.MS_REC, ""))
		must("read-only "+v.dst, unix.MountSetattr(unix.AT_FDCWD, dst, unix.AT_RECURSIVE,
			&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}))
	}
	must("chdir root", unix.Chdir(r))
	must("pivot_root", unix.PivotRoot(".", ".oldroot"))
	must("chdir /", unix.Chdir("/"))
	must("detach old root", unix.Unmount("/.oldroot", unix.MNT_DETACH))
	must("rmdir old root", os.Remove("/.oldroot"))
	must("read-only root", unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
	must("hostname", unix.Sethostname([]byte(spec.Hostname)))

	keep := map[int]bool{}
	for _, c := range spec.Caps {
		n, ok := capNumbers[c]
		if !ok {
			fail("capability %s unknown", c)
		}
		keep[n] = true
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	must("cap_last_cap", err)
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must("cap_last_cap", err)
	for c := 0; c <= last; c++ {
		if !keep[c] {
			must(fmt.Sprintf("drop capability %d from the bounding set", c), unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0))
		}
	}
	// uid 0 execs with the bounding set as its permitted and effective
	// sets, plus its inheritable set: cleared.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	must("capget", unix.Capget(&hdr, &data[0]))
	data[0].Inheritable, data[1].Inheritable = 0, 0
	must("capset", unix.Capset(&hdr, &data[0]))
	must("no_new_privs", unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
	must("exec "+spec.Argv[0], syscall.Exec(spec.Argv[0], spec.Argv, spec.Env))
}

// imageRoot is the image's root filesystem under an overlay of the
// test's: the upper layer takes the mount points, the image stays as
// buildah unpacked it.
func imageRoot(t *testing.T, rootfs string) string {
	t.Helper()
	fs := t.TempDir()
	if err := unix.Mount("tmpfs", fs, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	root, upper, work := filepath.Join(fs, "rootfs"), filepath.Join(fs, "upper"), filepath.Join(fs, "work")
	for _, d := range []string{root, upper, work} {
		mkdir(t, d, 0o755)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, upper, work)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	return root
}

// checkContainedAgent checks the agent's process is what the container
// should make of it, as the host sees it.
func checkContainedAgent(t *testing.T, pid int, caps []string) {
	t.Helper()
	for _, ns := range []string{"mnt", "pid", "uts", "ipc"} {
		self, _ := os.Readlink("/proc/self/ns/" + ns)
		their, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil || their == self {
			t.Fatalf("agent pid %d: %s namespace %q is the host's (%v)", pid, ns, their, err)
		}
	}
	var want uint64
	for _, c := range caps {
		want |= 1 << capNumbers[c]
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			got[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	wantCaps := fmt.Sprintf("%016x", want)
	wantStatus := map[string]string{"NSpid": fmt.Sprintf("%d 1", pid), "Uid": "0 0 0 0", "NoNewPrivs": "1",
		"CapEff": wantCaps, "CapPrm": wantCaps, "CapBnd": wantCaps, "CapInh": "0000000000000000"}
	for k, v := range wantStatus {
		if got[k] != v {
			t.Errorf("agent pid %d: %s %q, want %q", pid, k, got[k], v)
		}
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range []string{"/ ", "/host/proc ", "/sys/kernel/tracing ", "/host/sys/fs/cgroup ", "/sys "} {
		found := false
		for _, l := range strings.Split(string(mi), "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && f[4]+" " == mp {
				found = true
				if !slices.Contains(strings.Split(f[5], ","), "ro") {
					t.Errorf("agent's %s is not read-only: %s", mp, l)
				}
			}
		}
		if !found {
			t.Errorf("agent has no mount at %s", mp)
		}
	}
	if t.Failed() {
		t.Fatalf("agent's mounts:\n%s", mi)
	}
	t.Logf("agent: host pid %d, 1 inside; uid 0, CapEff %s (%v), NoNewPrivs 1; read-only /, /sys, /host/proc, /sys/kernel/tracing, /host/sys/fs/cgroup",
		pid, wantCaps, caps)
}

// TestAgentInContainer runs the image's agent in a container shaped as
// the DaemonSet's and checks it captures Go pauses exactly: of a host
// process, of a process in another container (its container id from its
// cgroup), and of itself (its host pid, not the 1 it sees).
func TestAgentInContainer(t *testing.T) {
	requireSandbox(t)
	caps := daemonSetCaps(t)
	_, _, rootfs := buildImage(t)
	root := imageRoot(t, rootfs)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t, 19970)
	spec, _ := json.Marshal(containerInitSpec{
		Root:     root,
		Hostname: "pausewatch-node",
		Caps:     caps,
		Argv:     []string{"/pausewatch", "--listen", addr, "--log-level", "debug", "--procfs", "/host/proc"},
		Env:      []string{"NODE_NAME=" + "test-node"},
	})
	cmd := exec.Command(self)
	cmd.Env = []string{containerInitEnv + "=" + string(spec)}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Pdeathsig:  syscall.SIGKILL,
	}
	a := runAgent(t, &agentProc{url: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1)}, cmd)
	a.waitReady(t)
	pid := a.cmd.Process.Pid
	checkContainedAgent(t, pid, caps)

	t.Run("host-go", func(t *testing.T) {
		c := startChurn(t, buildChurn(t, "", false), "churn-from-container", "gc", 1.5)
		st := a.waitTracked(t, c.pid, c.started)
		if st.Runtime != "go" || st.Method != "uprobe" || st.Service != "churn-from-container" {
			t.Fatalf("status %+v, want go/uprobe/churn-from-container", st)
		}
		compareGC(t, a, "churn-from-container", c.run(t))
	})
	t.Run("sandboxed-go", func(t *testing.T) {
		img := sandboxImage(t)
		sb := img.start(t, sandboxSpec{mode: pivotRoot, uid: -1, argv: []string{"/app/churn"},
			env: []string{"OTEL_SERVICE_NAME=sbx-go-from-container", "CHURN_MODE=gc", "CHURN_SECONDS=1.5", "GOMAXPROCS=2"}})
		checkContainer(t, a, sb, "go", "uprobe", "sbx-go-from-container")
		compareGC(t, a, "sbx-go-from-container", (&churnProc{sb.workload}).run(t))
	})
	t.Run("itself", func(t *testing.T) {
		// Listed under its host pid as "pausewatch": pid 1 to itself is
		// the host's init to everything it reads.
		var st *processStatus
		for _, p := range a.processes(t) {
			if p.PID == uint32(pid) {
				st = &p
			}
			if p.PID == 1 && p.Service == "pausewatch" {
				t.Errorf("the host's pid 1 is listed as the agent: %+v", p)
			}
		}
		if st == nil || st.Service != "pausewatch" || st.Runtime != "go" {
			t.Fatalf("agent's own host pid %d listed as %+v, want service pausewatch, runtime go", pid, st)
		}
		t.Logf("agent lists itself: %+v", *st)
	})
}
