package agent

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcessStart: this test process's own start, from its
// /proc/self/stat field 22, lands shortly before now (the test binary
// started at most minutes ago), and a start time in the future is refused.
func TestProcessStart(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no procfs")
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ticks, err := strconv.ParseUint(fields[19], 10, 64) // field 22 of stat
	if err != nil {
		t.Fatal(err)
	}
	got := ProcessStart(ticks)
	if age := time.Since(got); age < 0 || age > time.Minute {
		t.Fatalf("ProcessStart(%d) = %v, %v ago; want this process's start, a little before now", ticks, got, age)
	}
	if !ProcessStart(1 << 62).IsZero() {
		t.Fatal("a start time in the future gave a time")
	}
}
