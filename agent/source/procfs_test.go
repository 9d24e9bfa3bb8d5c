package source

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseStartTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want uint64
		err  bool
	}{
		{"plain", "1234 (churn) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 5 0 48669 1000 10 18446744073709551615", 48669, false},
		{"comm with spaces and parens", "99 (a) b (c) R 1 99 99 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0 0", 777, false},
		{"no comm", "1234 churn S", 0, true},
		{"short", "1 (x) S 1 2 3", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tc.stat))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("= %d, %v; want %d, err=%v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseServiceName(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"PATH=/bin\x00OTEL_SERVICE_NAME=checkout\x00SECRET=x\x00", "checkout"},
		{"MY_OTEL_SERVICE_NAME=nope\x00", ""},
		{"OTEL_SERVICE_NAME=\x00", ""},
		// A process picks its own environment: the name is sanitised here,
		// at the source, before it reaches any label (issue 9).
		{"OTEL_SERVICE_NAME=bad\xff\x00", "bad\uFFFD"},
		{"OTEL_SERVICE_NAME=a\nb\x1b[0m\u202e\x00", "ab[0m"},
		{"", ""},
	} {
		if got := parseServiceName([]byte(tc.env)); got != tc.want {
			t.Errorf("parseServiceName(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

// Every file in testdata/cgroup is a /proc/<pid>/cgroup as the kubelet
// and a container runtime leave it; each must have a row here.
func TestParseCgroup(t *testing.T) {
	const id = "aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233"
	want := map[string]struct{ id, pod string }{
		"containerd-systemd":                {"4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4", "1b2c3d4e-0000-1111-2222-333344445555"},
		"containerd-systemd-v1":             {id, "7c6b5a49-3827-4161-a5f4-e3d2c1b0a998"},
		"containerd-cgroupfs-v1":            {id, "5e0c9d1a-3b2f-4c6d-8e7f-90a1b2c3d4e5"},
		"containerd-cgroupfs-guaranteed-v1": {id, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
		"cgroupfs-v1":                       {"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", "8a7b6c5d-0000-1111-2222-333344445555"},
		"crio-systemd":                      {id, "2d3e4f50-6172-4384-95a6-b7c8d9e0f1a2"},
		"crio-cgroupfs-v1":                  {id, "2d3e4f50-6172-4384-95a6-b7c8d9e0f1a2"},
		"crio-cgroupfs-v2":                  {id, "2d3e4f50-6172-4384-95a6-b7c8d9e0f1a2"},
		"cri-dockerd-systemd":               {id, "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"},
		"cgroupns-relative-v2":              {id, "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"},
		"kind-nested-v2":                    {id, "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a"},
		// A container outside Kubernetes: an id, no pod.
		"docker":    {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ""},
		"docker-v1": {id, ""},
		// A process in a pod's cgroup but in no container's (a sandbox
		// being set up): no container, so no identity at all.
		"pod-cgroup-only": {"", ""},
		"host":            {"", ""},
		"host-v1":         {"", ""},
	}
	ents, err := os.ReadDir("testdata/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			w, ok := want[e.Name()]
			if !ok {
				t.Fatalf("fixture %s has no expected result in this table", e.Name())
			}
			b, err := os.ReadFile(filepath.Join("testdata/cgroup", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			id, pod := parseCgroup(b)
			if id != w.id || pod != w.pod {
				t.Errorf("= (%q, %q), want (%q, %q)", id, pod, w.id, w.pod)
			}
			if got := parseContainerID(b); got != w.id {
				t.Errorf("parseContainerID = %q, want %q", got, w.id)
			}
		})
		delete(want, e.Name())
	}
	for name := range want {
		t.Errorf("no fixture testdata/cgroup/%s", name)
	}
}

// The live /proc of the test process itself: the readers agree with Go.
func TestProcFSSelf(t *testing.T) {
	p := procFS("/proc")
	pid := uint32(os.Getpid())
	if tg, err := p.tgid(pid); err != nil || tg != pid {
		t.Errorf("tgid = %d, %v", tg, err)
	}
	if st, err := p.startTime(pid); err != nil || st == 0 {
		t.Errorf("startTime = %d, %v", st, err)
	}
	exe, _ := os.Executable()
	if got := p.exeName(pid); got != filepath.Base(exe) {
		t.Errorf("exeName = %q, want %q", got, filepath.Base(exe))
	}
}
