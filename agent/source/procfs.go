package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pausewatch/pausewatch/agent"
)

// procFS reads what the agent needs to know about a process from a procfs
// root (normally /proc; tests point it at testdata).
type procFS string

func (p procFS) path(pid uint32, elem ...string) string {
	return filepath.Join(append([]string{string(p), strconv.FormatUint(uint64(pid), 10)}, elem...)...)
}

// startTime returns field 22 of /proc/<pid>/stat (clock ticks since boot).
// The comm field may hold spaces and parentheses, so parse from the last ')'.
func (p procFS) startTime(pid uint32) (uint64, error) {
	b, err := os.ReadFile(p.path(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseStartTime(b)
}

func parseStartTime(stat []byte) (uint64, error) {
	fields, err := statFields(stat, 20)
	if err != nil {
		return 0, err
	}
	// fields[0] is field 3, so starttime (22) is [19].
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: starttime: %w", err)
	}
	return v, nil
}

// statFields splits a /proc/<pid>/stat line after the comm, which is the
// process's to choose and may hold spaces and ')': fields[0] is field 3
// (state). It fails unless there are at least n.
func statFields(stat []byte, n int) ([]string, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("stat: no comm field")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < n {
		return nil, fmt.Errorf("stat: %d fields after comm, want at least %d", len(fields), n)
	}
	return fields, nil
}

// serviceEnv is the only variable ever read from a process's environment:
// environments hold secrets, so nothing else is kept, logged or exported.
const serviceEnv = "OTEL_SERVICE_NAME"

// serviceName returns OTEL_SERVICE_NAME from the process environment, or "".
// Like every string read from a process, it comes back through
// agent.LabelValue: whoever starts the process chooses its bytes.
func (p procFS) serviceName(pid uint32) string {
	b, err := os.ReadFile(p.path(pid, "environ"))
	if err != nil {
		return ""
	}
	return parseServiceName(b)
}

func parseServiceName(environ []byte) string {
	prefix := []byte(serviceEnv + "=")
	for kv := range bytes.SplitSeq(environ, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return agent.LabelValue(string(v))
		}
	}
	return ""
}

// maxServiceLen bounds a service name taken from a process (its
// environment, command line or executable): label values are kept in
// every series and sent with every event.
const maxServiceLen = 128

// labelValue makes a process-supplied name a valid label value: Prometheus
// refuses (and client_golang's WithLabelValues panics on) invalid UTF-8,
// so bad bytes become U+FFFD, and the length is bounded at a rune boundary.
func labelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxServiceLen {
		return s
	}
	cut := maxServiceLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// exeName returns the base name of the process's executable.
func (p procFS) exeName(pid uint32) string {
	target, err := os.Readlink(p.path(pid, "exe"))
	if err != nil {
		return ""
	}
	return agent.LabelValue(filepath.Base(strings.TrimSuffix(target, " (deleted)")))
}

// containerIDRe finds a container id as the last element of a cgroup path:
// a bare 64-hex-digit directory (the cgroupfs driver, with containerd,
// Docker or cri-dockerd) or a systemd scope named <runtime>-<id>.scope
// (cri-containerd-, crio-, docker-). CRI-O's cgroupfs form is crio-<id>.
// conmon's scope (crio-conmon-<id>.scope) matches too, but conmon is no
// runtime process, so the agent never asks about it.
var containerIDRe = regexp.MustCompile(`([0-9a-f]{64})(?:\.scope)?$`)

// podUIDRe finds the pod uid the kubelet puts in the pod's cgroup name:
// pod<uid> with the cgroupfs driver (kubepods/burstable/pod<uid>), and
// kubepods-<qos>-pod<uid>.slice with the systemd driver, where systemd's
// naming turns the uid's dashes into underscores.
var podUIDRe = regexp.MustCompile(`(?:^|[/-])pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?/`)

// containerID returns the container id and the pod uid from
// /proc/<pid>/cgroup (cgroup v2 "0::/..." line, or any v1 line), as set by
// containerd, CRI-O or Docker with either cgroup driver; "" outside
// containers, and an empty pod uid for a container that no kubelet made.
func (p procFS) containerID(pid uint32) (id, podUID string) {
	b, err := os.ReadFile(p.path(pid, "cgroup"))
	if err != nil {
		return "", ""
	}
	return parseCgroup(b)
}

// parseContainerID returns the container id of parseCgroup.
func parseContainerID(cgroup []byte) string {
	id, _ := parseCgroup(cgroup)
	return id
}

// parseCgroup reads the container id and pod uid from the first line of
// /proc/<pid>/cgroup whose path ends in a container. Paths may be relative
// to the reader's cgroup namespace (0::/../../kubepods.slice/...): an agent
// in a pod of a cgroup v2 node sees them so, and the patterns are anchored
// on names, not on the root.
func parseCgroup(cgroup []byte) (id, podUID string) {
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	for sc.Scan() {
		_, path, ok := strings.Cut(sc.Text(), "::")
		if !ok {
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			path = parts[2]
		}
		m := containerIDRe.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		if u := podUIDRe.FindStringSubmatch(path); u != nil {
			podUID = strings.ReplaceAll(u[1], "_", "-")
		}
		// The patterns admit hex digits, dashes and underscores only; the
		// gate is passed all the same, so a change of pattern cannot let
		// bytes through.
		return agent.LabelValue(m[1]), agent.LabelValue(podUID)
	}
	return "", ""
}

// pids lists the numeric entries of the procfs root.
func (p procFS) pids() ([]uint32, error) {
	ents, err := os.ReadDir(string(p))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]uint32, 0, len(ents))
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out, nil
}

// tgid returns the thread group id of a task, so thread entries of
// /proc are not mistaken for processes.
func (p procFS) tgid(pid uint32) (uint32, error) {
	f, err := os.Open(p.path(pid, "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Tgid:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(n), err
		}
	}
	return 0, errors.New("status: no Tgid line")
}

// mappedLib finds a library the process has mapped (match tests its base
// name) and opens it. The file is opened once and proven to be the very
// file of the maps line (its device and inode, as perfMapping.openSame
// checks hsperfdata files): the path is the process's to change, and a
// process that renames another file over it after the maps were read must
// not have that file's contents parsed, or probes placed on it. The caller
// parses and attaches through the returned file only, and closes it. The
// key is the opened file's own identity, what uprobes bind to (on
// overlayfs the layer's inode, shared by every container of the image).
func (p procFS) mappedLib(pid uint32, match func(base string) bool) (string, *os.File, fileKey, bool) {
	f, err := os.Open(p.path(pid, "maps"))
	if err != nil {
		return "", nil, fileKey{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.IndexByte(line, '/')
		if i < 0 || !match(string(line[bytes.LastIndexByte(line, '/')+1:])) {
			continue
		}
		fields := strings.Fields(string(line[:i]))
		if len(fields) < 5 {
			continue
		}
		majMin := strings.SplitN(fields[3], ":", 2)
		if len(majMin) != 2 {
			continue
		}
		major, err1 := strconv.ParseUint(majMin[0], 16, 32)
		minor, err2 := strconv.ParseUint(majMin[1], 16, 32)
		ino, err3 := strconv.ParseUint(fields[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ino == 0 {
			continue
		}
		lib := string(line[i:])
		// Through the process's root, so containers' files resolve.
		m := perfMapping{rootPath: p.inRoot(pid, lib), path: lib, major: uint32(major), minor: uint32(minor), ino: ino}
		lf, err := m.openSame(m.rootPath)
		if err != nil {
			continue
		}
		fi, err := lf.Stat()
		if err != nil {
			lf.Close()
			continue
		}
		return m.rootPath, lf, statKey(fi), true
	}
	return "", nil, fileKey{}, false
}

// hsperfdataMapping finds the hsperfdata file a process has mapped.
func (p procFS) hsperfdataMapping(pid uint32) (perfMapping, error) {
	nspid, err := p.nsPID(pid)
	if err != nil {
		return perfMapping{}, err
	}
	f, err := os.Open(p.path(pid, "maps"))
	if err != nil {
		return perfMapping{}, fmt.Errorf("read maps: %w", err)
	}
	defer f.Close()
	m, err := findPerfMapping(f, nspid)
	if err != nil {
		return perfMapping{}, err
	}
	m.mapFile = p.path(pid, "map_files", m.mapFile)
	if m.rootPath != "" {
		m.rootPath = p.inRoot(pid, m.rootPath)
	}
	return m, nil
}

// nsPID returns the process's pid in its innermost pid namespace.
func (p procFS) nsPID(pid uint32) (string, error) {
	f, err := os.Open(p.path(pid, "status"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				return fields[len(fields)-1], nil
			}
		}
	}
	return "", errors.New("status: no NSpid line")
}

// maxCmdline bounds what is read of a command line (the kernel allows
// tens of MiB with a large stack limit). 256 KiB holds the longest real
// JVM class paths seen (Hadoop, Spark); a main class past it is not found.
const maxCmdline = 256 << 10

// cmdline returns /proc/<pid>/cmdline (NUL-separated), at most maxCmdline
// bytes, ending at an argument's end (a cut argument is left out).
func (p procFS) cmdline(pid uint32) []byte {
	f, err := os.Open(p.path(pid, "cmdline"))
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxCmdline+1))
	if len(b) > maxCmdline {
		b = b[:bytes.LastIndexByte(b[:maxCmdline], 0)+1]
	}
	return b
}

// inRoot returns where a path read from /proc/<pid>/maps is found from
// the agent: under /proc/<pid>/root.
//
// The kernel prints a mapped file's path (maps) and a process's root
// (the /proc/<pid>/root link) the same way, as seen from the reader. A
// process that pivot_root'ed into its container (runc, crun) has a root
// the agent cannot reach: both print from that root ("/usr/lib/...", "/").
// A process that only chroot'ed (runc --no-pivot, DOCKER_RAMDISK, `unshare
// --root`) has a root inside a mount tree the agent can name: both print
// the full path ("/var/lib/.../rootfs/usr/lib/...", "/var/lib/.../rootfs"),
// and the root's part must come off, or the path is looked for twice deep.
func (p procFS) inRoot(pid uint32, mapped string) string {
	root, err := os.Readlink(p.path(pid, "root"))
	if err != nil {
		root = "/"
	}
	return filepath.Join(p.path(pid, "root"), underRoot(root, mapped))
}

// underRoot is mapped relative to root, when both are printed from the
// same place (see inRoot); anything else is returned as it is.
func underRoot(root, mapped string) string {
	root = filepath.Clean(root)
	if root == "/" || !filepath.IsAbs(root) {
		return mapped
	}
	if rest, ok := strings.CutPrefix(mapped, root); ok && strings.HasPrefix(rest, "/") {
		return rest
	}
	return mapped
}
