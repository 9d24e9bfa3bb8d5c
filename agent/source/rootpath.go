package source

import (
	"os"
	"path/filepath"
	"strings"
)

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
