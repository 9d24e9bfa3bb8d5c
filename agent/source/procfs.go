package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no comm field")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("stat: %d fields after comm, want at least 20", len(fields))
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: starttime: %w", err)
	}
	return v, nil
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
