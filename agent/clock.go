package agent

import (
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time: 100 on
// every Linux architecture the agent builds for (the kernel fixes it for
// user space whatever its own HZ).
const clockTicks = 100

// ProcessStart returns when a process started, in wall-clock time, from
// its start time in clock ticks since boot (Process.StartTime). Boot is
// placed through CLOCK_BOOTTIME, the clock the kernel counts start times
// on, so the result is exact to a tick (10 ms); /proc/stat's btime would
// only be exact to the second. It returns the zero time when the clock
// cannot be read or the start time is not in the past.
func ProcessStart(startTicks uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	sinceBoot := time.Duration(ts.Nano())
	started := time.Duration(startTicks) * (time.Second / clockTicks)
	if startTicks > uint64(sinceBoot/(time.Second/clockTicks)) || started > sinceBoot {
		return time.Time{}
	}
	return time.Now().Add(started - sinceBoot)
}
