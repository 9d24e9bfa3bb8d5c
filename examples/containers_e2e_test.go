package examples

// The runtimes in container-shaped sandboxes (sandbox_test.go), against
// each runtime's own account, as the host tests do: Go's runtime/metrics,
// CPython's gc.callbacks, the JVM's -Xlog:safepoint. Every case runs under
// both ways a runtime enters the root (pivot_root, chroot), as another uid
// than the agent's, with its files on overlayfs.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// sandboxImage is the image the tests' containers run: the Go churn
// binary, the Python and Java workloads, over the host's / (which holds
// python3.11 and the JDK), with USER sandboxUID.
func sandboxImage(t *testing.T) *image {
	t.Helper()
	return newImage(t, sandboxUID, map[string]string{
		"app/churn":          buildChurn(t, "", false),
		"app/pychurn.py":     "testdata/pychurn.py",
		"app/JavaChurn.java": "testdata/JavaChurn.java",
	})
}

var rootModes = []rootMode{pivotRoot, chrootRoot}

// checkContainer checks the agent lists a sandboxed process with the
// method wanted and the container id of its cgroup.
func checkContainer(t *testing.T, a *agentProc, sb *sandbox, runtime, method, service string) {
	t.Helper()
	st := a.waitTracked(t, sb.pid, sb.started)
	t.Logf("tracked %v after exec: %+v", st.Since.Sub(sb.started), st)
	if st.Runtime != runtime || st.Method != method || st.Service != service {
		t.Fatalf("status %+v, want %s/%s/%s", st, runtime, method, service)
	}
	if st.ContainerID != sb.id {
		t.Errorf("container id %q, want %q (its cgroup)", st.ContainerID, sb.id)
	}
}

// sandboxGo runs the same Go binary in three containers of one image at
// once (three overlay mounts of one lower file: three inodes to the
// agent, one to the kernel's uprobes), each counted exactly.
func sandboxGo(t *testing.T, a *agentProc, img *image, mode rootMode) {
	var cs []*sandbox
	for i := range 3 {
		service := fmt.Sprintf("sbx-go-%s-%d", mode, i)
		sb := img.start(t, sandboxSpec{mode: mode, uid: -1, argv: []string{"/app/churn"},
			env: []string{"OTEL_SERVICE_NAME=" + service, "CHURN_MODE=gc", "CHURN_SECONDS=1.5", "GOMAXPROCS=2"}})
		checkContainer(t, a, sb, "go", "uprobe", service)
		cs = append(cs, sb)
	}
	for i, sb := range cs {
		compareGC(t, a, fmt.Sprintf("sbx-go-%s-%d", mode, i), (&churnProc{sb.workload}).run(t))
	}
}

// sandboxPython runs Debian's python3.11 (USDT, in the executable) as the
// image's user, and a pyenv CPython 3.12 (uprobes on libpython, a mapped
// library: found through the process's maps and root) as uid 0 inside,
// since its files are under the host's /root.
func sandboxPython(t *testing.T, a *agentProc, img *image, mode rootMode) {
	for _, tc := range []struct {
		name, interp, method string
		uid                  int
	}{
		{"debian-3.11", "/usr/bin/python3.11", "usdt", -1},
		{"pyenv-3.12", filepath.Join(pyenvVersions, "3.12.1", "bin", "python3.12"), "uprobe", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			service := fmt.Sprintf("sbx-py-%s-%s", tc.name, mode)
			sb := img.start(t, sandboxSpec{mode: mode, uid: tc.uid, argv: []string{tc.interp, "/app/pychurn.py"},
				env: []string{"OTEL_SERVICE_NAME=" + service, "CHURN_COLLECTIONS=400", "CHURN_SECONDS=10"}})
			checkContainer(t, a, sb, "python", tc.method, service)
			runPython(t, a, &pyProc{sb.workload}, service, tc.method)
		})
	}
}

// sandboxJVM runs JavaChurn as the image's user; its safepoint log and
// its hsperfdata file are in the container's /tmp, on the overlay.
func sandboxJVM(t *testing.T, a *agentProc, img *image, mode rootMode, method string) {
	service := fmt.Sprintf("sbx-jvm-%s-%s", method, mode)
	sb := img.start(t, sandboxSpec{mode: mode, uid: -1, argv: []string{"java", "-Xmx64m",
		"-Xlog:safepoint=info:file=/tmp/safepoint.log:timenanos", "-XX:+UseG1GC", "/app/JavaChurn.java"},
		env: []string{"OTEL_SERVICE_NAME=" + service, "CHURN_SECONDS=3"}})
	checkContainer(t, a, sb, "jvm", method, service)
	runJava(t, a, &javaProc{workload: sb.workload, log: filepath.Join(sb.upper, "tmp", "safepoint.log")}, service, method)
}

func TestContainersGo(t *testing.T) {
	requireSandbox(t)
	img := sandboxImage(t)
	a := startAgent(t, 19890)
	for _, mode := range rootModes {
		t.Run(string(mode), func(t *testing.T) { sandboxGo(t, a, img, mode) })
	}
}

func TestContainersPython(t *testing.T) {
	requireSandbox(t)
	img := sandboxImage(t)
	a := startAgent(t, 19891)
	for _, mode := range rootModes {
		t.Run(string(mode), func(t *testing.T) { sandboxPython(t, a, img, mode) })
	}
}

func TestContainersJVM(t *testing.T) {
	requireSandbox(t)
	requireJava(t)
	img := sandboxImage(t)
	for _, tc := range []struct {
		method string
		args   []string
		port   int
	}{
		{"usdt", nil, 19892},
		{"hsperfdata", []string{"--no-jvm-probes"}, 19893},
	} {
		t.Run(tc.method, func(t *testing.T) {
			a := startAgent(t, tc.port, tc.args...)
			for _, mode := range rootModes {
				t.Run(string(mode), func(t *testing.T) { sandboxJVM(t, a, img, mode, tc.method) })
			}
		})
	}
}

// TestContainersLeastPrivilege: the agent as uid 65534 with exactly the
// DaemonSet's capabilities (no CAP_SYS_ADMIN: no map_files) against
// sandboxed workloads of uid 1234, chroot'ed (the harder case for paths):
// Go and Python pauses, JVM safepoints through USDT, then through
// hsperfdata alone (the 0600 file on the container's overlay /tmp).
func TestContainersLeastPrivilege(t *testing.T) {
	requireSandbox(t)
	caps := daemonSetCaps(t)
	prefix := setprivAs(t, caps)
	bin := nobodyAgentBin(t)
	img := sandboxImage(t)
	a := launchAgent(t, 19894, prefix, bin, nil)
	a.waitReady(t)
	checkCreds(t, a.cmd.Process.Pid, caps)
	t.Run("go", func(t *testing.T) {
		sb := img.start(t, sandboxSpec{mode: chrootRoot, uid: -1, argv: []string{"/app/churn"},
			env: []string{"OTEL_SERVICE_NAME=sbx-go-nobody", "CHURN_MODE=gc", "CHURN_SECONDS=1.5", "GOMAXPROCS=2"}})
		checkContainer(t, a, sb, "go", "uprobe", "sbx-go-nobody")
		compareGC(t, a, "sbx-go-nobody", (&churnProc{sb.workload}).run(t))
	})
	t.Run("python", func(t *testing.T) {
		sb := img.start(t, sandboxSpec{mode: chrootRoot, uid: -1, argv: []string{"/usr/bin/python3.11", "/app/pychurn.py"},
			env: []string{"OTEL_SERVICE_NAME=sbx-py-nobody", "CHURN_COLLECTIONS=400", "CHURN_SECONDS=10"}})
		checkContainer(t, a, sb, "python", "usdt", "sbx-py-nobody")
		runPython(t, a, &pyProc{sb.workload}, "sbx-py-nobody", "usdt")
	})
	if _, err := exec.LookPath("java"); err != nil {
		return
	}
	t.Run("jvm-usdt", func(t *testing.T) { sandboxJVM(t, a, img, chrootRoot, "usdt") })
	t.Run("jvm-hsperfdata", func(t *testing.T) {
		h := launchAgent(t, 19895, prefix, bin, nil, "--no-jvm-probes")
		h.waitReady(t)
		for _, mode := range rootModes {
			t.Run(string(mode), func(t *testing.T) { sandboxJVM(t, h, img, mode, "hsperfdata") })
		}
	})
}
