package examples

// Container-shaped sandboxes for the end-to-end tests: what a container
// runtime does to a process, done with unshare, overlayfs and cgroups (no
// engine starts on this machine: Debian's podman and crun refuse a cgroup
// v1 hybrid host without CAP_SYS_RESOURCE).
//
// An image is a stack of lower layers: the host's / as the base layer (the
// runtimes' files: /usr/lib/jvm, /usr/bin/python3.11) and an app layer
// with the workload's files, an /etc/passwd naming its user and an empty,
// opaque /tmp. Each sandbox mounts its own overlay of the image (upper and
// work directories of its own, as containerd's snapshotter does, in the
// host's mount namespace), then runs the workload in new mount, pid, uts
// and ipc namespaces with that overlay as its root, a proc of its own,
// its own hostname, as the image's user (no user namespace: Docker's and
// Kubernetes' default, so the uid is the same inside and out), in a cgroup
// named /docker/<64 hex> in every v1 hierarchy and in the unified one.
// Its /tmp is the overlay's: hsperfdata files live on overlayfs, as they
// do in a container without an emptyDir on /tmp.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rootMode is how the runtime enters the container's root.
type rootMode string

const (
	// pivotRoot is what runc and crun do: pivot_root into the rootfs and
	// detach the old root, so nothing outside is reachable or named.
	pivotRoot rootMode = "pivot_root"
	// chrootRoot is runc --no-pivot (and Docker's DOCKER_RAMDISK): the
	// rootfs is only chroot'ed into, so the kernel names its files by
	// their full path in the mount namespace.
	chrootRoot rootMode = "chroot"
)

// image is a set of lower layers that sandboxes share, on a tmpfs of the
// test's (overlayfs refuses an upper or lower directory inside the host's
// /, which is the base layer).
type image struct {
	fs  string // the tmpfs
	app string // the app layer
	uid int    // the image's USER
	n   int    // sandboxes started
}

// sandboxUID is the image's user: a uid the host's /etc/passwd does not
// name, so every file it owns is visibly the container's.
const sandboxUID = 1234

// requireSandbox skips when this machine cannot build sandboxes.
func requireSandbox(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"unshare", "setpriv", "pivot_root", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (util-linux/coreutils) not installed", tool)
		}
	}
}

// newImage builds the app layer: files maps a path in the container to a
// file on the host (copied, world-readable, executable if it was).
func newImage(t *testing.T, uid int, files map[string]string) *image {
	t.Helper()
	img := &image{fs: t.TempDir(), uid: uid}
	if err := unix.Mount("tmpfs", img.fs, "tmpfs", 0, "size=512m,mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(img.fs, unix.MNT_DETACH) })
	img.app = filepath.Join(img.fs, "layers", "app")
	tmp := filepath.Join(img.app, "tmp")
	mkdir(t, tmp, 0o1777)
	os.Chmod(tmp, 0o1777) // past the umask
	// Opaque: the container's /tmp starts empty, not with the host's.
	if err := unix.Setxattr(tmp, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatalf("mark %s opaque: %v", tmp, err)
	}
	mkdir(t, filepath.Join(img.app, "etc"), 0o755)
	for name, line := range map[string]string{
		"passwd": fmt.Sprintf("app:x:%d:%d:app:/tmp:/usr/sbin/nologin\n", uid, uid),
		"group":  fmt.Sprintf("app:x:%d:\n", uid),
	} {
		host, err := os.ReadFile(filepath.Join("/etc", name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(img.app, "etc", name), append(host, line...), 0o644)
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		mkdir(t, filepath.Join(img.app, filepath.Dir(dst)), 0o755)
		write(t, filepath.Join(img.app, dst), b, mode)
	}
	return img
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

// sandbox is one running container.
type sandbox struct {
	*workload        // pid is the workload's pid on the host
	id        string // the container id in its cgroup path
	rootfs    string // the overlay, as the host sees it
	upper     string // the container's writable layer (its /tmp is here)
}

// sandboxSpec is what a container's config says.
type sandboxSpec struct {
	mode rootMode
	uid  int      // -1: the image's user
	env  []string // besides PATH and HOME
	argv []string // the command, as the container resolves it
}

// start runs a workload in a new sandbox of the image and waits for its
// "ready" line.
func (img *image) start(t *testing.T, spec sandboxSpec) *sandbox {
	t.Helper()
	img.n++
	dir := filepath.Join(img.fs, fmt.Sprintf("c%d", img.n))
	sb := &sandbox{rootfs: filepath.Join(dir, "rootfs"), upper: filepath.Join(dir, "upper")}
	work := filepath.Join(dir, "work")
	for _, d := range []string{sb.rootfs, sb.upper, work} {
		mkdir(t, d, 0o755)
	}
	opts := fmt.Sprintf("lowerdir=%s:/,upperdir=%s,workdir=%s", img.app, sb.upper, work)
	if err := unix.Mount("overlay", sb.rootfs, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	var id [32]byte
	rand.Read(id[:])
	sb.id = hex.EncodeToString(id[:])
	cgroups := containerCgroups(t, sb.id)
	// Runs after the workload's own cleanup (which kills it): cleanups
	// run last registered first.
	t.Cleanup(func() {
		for _, cg := range cgroups {
			// A killed pid namespace takes a moment to empty its cgroup.
			for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		unix.Unmount(sb.rootfs, unix.MNT_DETACH)
	})

	uid := spec.uid
	if uid < 0 {
		uid = img.uid
	}
	hostname := "sbx-" + sb.id[:12]
	user := []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups", "--"}
	var inner string
	switch spec.mode {
	case pivotRoot:
		inner = `cd "$1" && mkdir -p .oldroot && pivot_root . .oldroot && cd / && mount -t proc proc /proc && ` +
			`umount -l /.oldroot && rmdir /.oldroot && hostname "$2" && shift 2 && exec "$@"`
	case chrootRoot:
		inner = `mount -t proc proc "$1/proc" && hostname "$2" && r="$1" && shift 2 && exec chroot "$r" "$@"`
	default:
		t.Fatalf("root mode %q", spec.mode)
	}
	// The outer shell joins the cgroups (so everything the container
	// runs is in them from its first instruction), then becomes unshare,
	// whose child is the container's pid 1.
	outer := `for f in $CGROUP_PROCS; do echo $$ > "$f"; done; unset CGROUP_PROCS; exec "$@"`
	args := []string{"-c", outer, "sh", "unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
		"--propagation", "private", "--", "sh", "-c", inner, "sh", sb.rootfs, hostname}
	args = append(append(args, user...), spec.argv...)
	cmd := exec.Command("sh", args...)
	cmd.Dir = "/"
	var procs []string
	for _, cg := range cgroups {
		procs = append(procs, filepath.Join(cg, "cgroup.procs"))
	}
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp",
		"CGROUP_PROCS=" + strings.Join(procs, " ")}, spec.env...)
	sb.workload = runWorkload(t, cmd, env)
	// The workload is the child unshare forked (the shells exec'd).
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sb.pid, sb.pid))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		t.Fatalf("children of unshare %q: %v", b, err)
	}
	sb.pid = uint32(pid)
	sb.check(t, uid, hostname)
	return sb
}

// check verifies the sandbox is what it claims: other namespaces than
// the host's, pid 1 inside, the uid, the cgroup, the root.
func (sb *sandbox) check(t *testing.T, uid int, hostname string) {
	t.Helper()
	for _, ns := range []string{"mnt", "pid", "uts", "ipc"} {
		self, _ := os.Readlink("/proc/self/ns/" + ns)
		their, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", sb.pid, ns))
		if err != nil || their == self {
			t.Fatalf("sandbox pid %d: %s namespace %q is the host's (%v)", sb.pid, ns, their, err)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sb.pid))
	if err != nil {
		t.Fatal(err)
	}
	var nspid, uids string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			nspid = strings.Join(strings.Fields(v), " ")
		}
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			uids = strings.Fields(v)[1]
		}
	}
	if nspid != fmt.Sprintf("%d 1", sb.pid) || uids != strconv.Itoa(uid) {
		t.Fatalf("sandbox pid %d: NSpid %q, euid %s; want pid 1 inside, uid %d", sb.pid, nspid, uids, uid)
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sb.pid))
	if err != nil || !strings.Contains(string(cg), "/docker/"+sb.id) {
		t.Fatalf("sandbox pid %d not in cgroup /docker/%s: %q (%v)", sb.pid, sb.id, cg, err)
	}
	t.Logf("sandbox %s (%s): pid %d (1 inside), uid %d, rootfs %s", hostname, sb.id[:12], sb.pid, uid, sb.rootfs)
}

// containerCgroups creates /docker/<id> in every cgroup hierarchy a
// container runtime's cgroupfs driver uses here (v1 controllers, the
// named systemd one, the unified v2 one) and returns their directories.
// cpuset is left out: a new cpuset takes no task until its cpus and mems
// are set, which has nothing to do with what is tested.
func containerCgroups(t *testing.T, id string) []string {
	t.Helper()
	var dirs []string
	for _, h := range []string{"pids", "memory", "cpu", "cpuacct", "blkio", "devices", "freezer", "systemd", "unified"} {
		root := filepath.Join("/sys/fs/cgroup", h)
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue // not mounted here
		}
		dir := filepath.Join(root, "docker", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("create cgroup %s: %v", dir, err)
		}
		dirs = append(dirs, dir)
	}
	if len(dirs) == 0 {
		t.Skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	return dirs
}
