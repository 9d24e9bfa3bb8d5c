package main

// What a process the agent does not track pays per syscall: tight
// write+read loops in perl (no runtime the agent knows, so it is never
// tracked), over a pipe (the loop: no agent program fires on a
// pipe's read or write on this kernel) and over a Unix socket pair (the
// sock: tracepoints fire on every socket's send and receive, and must
// leave early). CPU time per syscall from perl's rusage, in runs without
// and with the agent interleaved, and the BPF time the agent's programs
// spent in the with-runs.

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

var loops = []struct{ name, open string }{
	{"pipe", `pipe(R, W) or die "pipe: $!";`},
	{"socket", `use Socket; socketpair(R, W, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";`},
}

const loopBody = ` my $b; for (1 .. $ARGV[0]) { syswrite(W, "x", 1) == 1 or die; sysread(R, $b, 1) == 1 or die }`

// loopRun is the CPU time per syscall of one loop of n write+read pairs.
func loopRun(ctx context.Context, open string, n int) (float64, error) {
	cmd := exec.CommandContext(ctx, "perl", "-e", open+loopBody, fmt.Sprint(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("perl loop: %w: %s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return float64(cpu.Nanoseconds()) / float64(2*n), nil
}

func (b *bench) syscallCost(ctx context.Context) error {
	pairs, n := 6, 300_000
	if b.quick {
		pairs, n = 1, 100_000
	}
	// First loops to warm the caches and the CPU, not counted.
	for _, l := range loops {
		if _, err := loopRun(ctx, l.open, n); err != nil {
			return err
		}
	}
	without, with := map[string][]float64{}, map[string][]float64{}
	progs := map[string]map[string]progStat{}
	for i := 0; ; i++ {
		for _, l := range loops {
			ns, err := loopRun(ctx, l.open, n)
			if err != nil {
				return err
			}
			without[l.name] = append(without[l.name], ns)
		}
		if i == pairs {
			break
		}
		a, err := b.startAgent(ctx)
		if err != nil {
			return err
		}
		names := map[uint32]string{}
		for _, l := range loops {
			p0, err := bpfPrograms(a.pid, names)
			if err != nil {
				a.stop()
				return err
			}
			ns, err := loopRun(ctx, l.open, n)
			if err != nil {
				a.stop()
				return err
			}
			p1, err := bpfPrograms(a.pid, names)
			if err != nil {
				a.stop()
				return err
			}
			with[l.name] = append(with[l.name], ns)
			if progs[l.name] == nil {
				progs[l.name] = map[string]progStat{}
			}
			for k, s := range bpfDelta(p0, p1) {
				t := progs[l.name][k]
				t.name, t.runs, t.ns = k, t.runs+s.runs, t.ns+s.ns
				progs[l.name][k] = t
			}
		}
		a.stop()
		b.progress("syscall loops round %d: pipe %.0f -> %.0f ns, socket %.0f -> %.0f ns per syscall without -> with",
			i, without["pipe"][i], with["pipe"][i], without["socket"][i], with["socket"][i])
	}
	var s strings.Builder
	for _, l := range loops {
		var added, noise []float64
		w0 := without[l.name]
		for i, w := range with[l.name] {
			added = append(added, w-(w0[i]+w0[i+1])/2)
			noise = append(noise, w0[i+1]-w0[i])
		}
		b.atMostNet(fmt.Sprintf("untracked process, %s write+read loop: added CPU per syscall", l.name), added, "ns",
			fmt.Sprintf("%s; noise floor without-without %s; %.0f ns/syscall without", spread(added), spread(noise), median(w0)), 50)
		_, ns := total(progs[l.name])
		calls := float64(2 * n * len(with[l.name]))
		b.atMost(fmt.Sprintf("untracked process, %s write+read loop: agent BPF time per syscall", l.name), float64(ns)/calls, "ns",
			"every call of the agent's programs meanwhile, machine-wide, over the loop's syscalls", 50, true)

		type row struct {
			name    string
			perCall float64
			runs    uint64
		}
		var rows []row
		for _, p := range progs[l.name] {
			if p.runs > 0 {
				rows = append(rows, row{p.name, float64(p.ns) / float64(p.runs), p.runs})
			}
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].runs > rows[j].runs })
		fmt.Fprintf(&s, "Agent programs that ran during the untracked %s loops (%d × %d write+read pairs; machine-wide calls):\n\n", l.name, len(with[l.name]), n)
		fmt.Fprintln(&s, "| program | runs | ns per run |")
		fmt.Fprintln(&s, "|---|---|---|")
		for _, r := range rows {
			fmt.Fprintf(&s, "| %s | %d | %.0f |\n", r.name, r.runs, r.perCall)
		}
		fmt.Fprintln(&s)
	}
	b.details = append(b.details, strings.TrimRight(s.String(), "\n"))
	return nil
}
