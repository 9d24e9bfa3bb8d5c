package main

// What a process the agent does not track pays per syscall: a tight
// read/write loop over a pipe in perl (no runtime the agent knows, so it
// is never tracked), its CPU time per syscall from its rusage, in runs
// without and with the agent interleaved.

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

const pipeLoop = `pipe(R, W) or die "pipe: $!"; my $b; for (1 .. $ARGV[0]) { syswrite(W, "x", 1) == 1 or die; sysread(R, $b, 1) == 1 or die }`

// pipeRun is the CPU time per syscall of one loop of n write+read pairs.
func pipeRun(ctx context.Context, n int) (float64, error) {
	cmd := exec.CommandContext(ctx, "perl", "-e", pipeLoop, fmt.Sprint(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("perl pipe loop: %w: %s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return float64(cpu.Nanoseconds()) / float64(2*n), nil
}

func (b *bench) syscallCost(ctx context.Context) error {
	pairs, n := 8, 500_000
	if b.quick {
		pairs, n = 1, 200_000
	}
	// A first loop to warm the caches and the CPU, not counted.
	if _, err := pipeRun(ctx, n); err != nil {
		return err
	}
	var without, with []float64
	progs := map[string]progStat{}
	for i := 0; ; i++ {
		ns, err := pipeRun(ctx, n)
		if err != nil {
			return err
		}
		without = append(without, ns)
		b.progress("pipe loop round %d without agent: %.1f ns/syscall", i, ns)
		if i == pairs {
			break
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		a, err := b.startAgent(ctx, port)
		if err != nil {
			return err
		}
		names := map[uint32]string{}
		p0, err := bpfPrograms(a.pid, names)
		if err != nil {
			a.stop()
			return err
		}
		ns, err = pipeRun(ctx, n)
		if err != nil {
			a.stop()
			return err
		}
		p1, err := bpfPrograms(a.pid, names)
		a.stop()
		if err != nil {
			return err
		}
		for k, s := range bpfDelta(p0, p1) {
			t := progs[k]
			t.name, t.runs, t.ns = k, t.runs+s.runs, t.ns+s.ns
			progs[k] = t
		}
		with = append(with, ns)
		b.progress("pipe loop round %d with agent: %.1f ns/syscall", i, ns)
	}
	var added, noise []float64
	for i, w := range with {
		added = append(added, w-(without[i]+without[i+1])/2)
		noise = append(noise, without[i+1]-without[i])
	}
	b.atMost("untracked process: added CPU per syscall", median(added), "ns",
		fmt.Sprintf("%s; noise floor without-without %s; %.0f ns/syscall without", spread(added), spread(noise), median(without)), 50, true)

	// What one call of each program costs: the syscall programs run on
	// every read and write of every process and must leave early for an
	// untracked one (most calls here are perl's, the rest other
	// processes' on the machine).
	type row struct {
		name    string
		perCall float64
		runs    uint64
	}
	var rows []row
	for _, p := range progs {
		if p.runs > 0 {
			rows = append(rows, row{p.name, float64(p.ns) / float64(p.runs), p.runs})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].runs > rows[j].runs })
	var s strings.Builder
	fmt.Fprintf(&s, "BPF cost per call of each program that ran during the untracked pipe loop (%d × %d write+read pairs):\n\n", len(with), n)
	fmt.Fprintln(&s, "| program | runs | ns per run |")
	fmt.Fprintln(&s, "|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(&s, "| %s | %d | %.0f |\n", r.name, r.runs, r.perCall)
	}
	b.details = append(b.details, strings.TrimRight(s.String(), "\n"))
	return nil
}
