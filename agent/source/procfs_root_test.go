package source

import "testing"

func TestUnderRoot(t *testing.T) {
	for _, tc := range []struct {
		name, root, mapped, want string
	}{
		{"host process", "/", "/usr/lib/jvm/lib/server/libjvm.so", "/usr/lib/jvm/lib/server/libjvm.so"},
		{"pivot_root container: printed from its root", "/", "/usr/lib/libpython3.11.so.1.0", "/usr/lib/libpython3.11.so.1.0"},
		{"chroot container", "/run/c/rootfs", "/run/c/rootfs/usr/lib/jvm/lib/server/libjvm.so", "/usr/lib/jvm/lib/server/libjvm.so"},
		{"chroot, root with a trailing slash", "/run/c/rootfs/", "/run/c/rootfs/tmp/hsperfdata_app/1", "/tmp/hsperfdata_app/1"},
		{"a sibling directory sharing the prefix", "/run/c/rootfs", "/run/c/rootfs2/usr/lib/libjvm.so", "/run/c/rootfs2/usr/lib/libjvm.so"},
		{"mapped outside the root (opened before chroot)", "/run/c/rootfs", "/usr/lib/libjvm.so", "/usr/lib/libjvm.so"},
		{"unreachable root printed relative", "rootfs", "/usr/lib/libjvm.so", "/usr/lib/libjvm.so"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := underRoot(tc.root, tc.mapped); got != tc.want {
				t.Errorf("underRoot(%q, %q) = %q, want %q", tc.root, tc.mapped, got, tc.want)
			}
		})
	}
}
