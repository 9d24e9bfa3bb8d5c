// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * CPython collections. A collection runs with the GIL held, so every Python
 * thread of the process waits for it: a stop-the-world pause for the
 * process's requests. Two ways in, one pair of programs:
 *   USDT python:gc__start(int generation) / python:gc__done(long collected)
 *     (--with-dtrace builds; semaphore-guarded, the Go side sets RefCtrOffset)
 *   uprobe at the entry of the collector function found in .symtab
 *     (gc_collect_main, collect, _PyGC_Collect) and a uretprobe at its
 *     return: C frames do not move, so uretprobes are safe here.
 * The attach cookie indexes usdt_specs, which says where the generation
 * (start) or the collected count (done) is; no spec means unknown.
 */

#define PY_GEN_UNKNOWN 0xff

SEC("uprobe/py_gc_start")
int py_gc_start(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 gen = PY_GEN_UNKNOWN;
	if (usdt_arg(ctx, 0, &gen) || gen > 2)
		gen = PY_GEN_UNKNOWN;
	pause_begin(tgid, PW_RUNTIME_PYTHON, bpf_ktime_get_ns(), (__u32)gen);
	return 0;
}

SEC("uprobe/py_gc_done")
int py_gc_done(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 end = bpf_ktime_get_ns();

	struct pw_pause_state *ps = pause_in_progress(tgid);
	if (!ps)
		return 0;
	struct pw_event *e = pause_end(tgid, (__u32)id, PW_RUNTIME_PYTHON, ps->start_ns, end, 0, ps->reason);
	if (!e)
		return 0;
	__u64 collected = 0;
	if (!usdt_arg(ctx, 0, &collected)) {
		e->aux = collected;
		e->flags |= PW_EVENT_F_AUX;
	}
	bpf_ringbuf_submit(e, submit_flags());
	return 0;
}
