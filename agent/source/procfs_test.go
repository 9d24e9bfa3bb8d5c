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

func TestParseContainerID(t *testing.T) {
	for file, want := range map[string]string{
		"containerd-systemd": "4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4",
		"docker":             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"cgroupfs-v1":        "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
		"host":               "",
	} {
		b, err := os.ReadFile(filepath.Join("testdata/cgroup", file))
		if err != nil {
			t.Fatal(err)
		}
		if got := parseContainerID(b); got != want {
			t.Errorf("%s: %q, want %q", file, got, want)
		}
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
