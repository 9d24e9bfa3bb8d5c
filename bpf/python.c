// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * CPython collections. A collection runs with the GIL held, so every Python
 * thread of the process waits for it: a stop-the-world pause for the
 * process's requests. Two ways in, one set of programs:
 *   USDT python:gc__start(int generation) / python:gc__done(long collected)
 *     (--with-dtrace builds; semaphore-guarded, the Go side sets RefCtrOffset)
 *   uprobe at the entry of the collector function found in .symtab
 *     (collect, gc_collect_main, _PyGC_Collect, and the compiler clones
 *     whose convention is verified) and a uretprobe at its return: C frames
 *     do not move, so uretprobes are safe here.
 * The attach cookie indexes usdt_specs, which says where the generation
 * (start) or the collected count (done) is; no spec means unknown.
 *
 * A call of the collector is not always a collection. CPython 3.13's
 * automatic path calls gc_collect_main(tstate, -1 (auto), ...), which
 * picks the generation itself and may return without collecting; and a
 * collector entered while a collection runs (gc.collect() from a finalizer)
 * returns at once on its "collecting" flag. So only the outermost call of a
 * thread counts, and an automatic one only once the collector has named
 * the generation it collects: py_gc_gen, at the entry of invoke_gc_callback,
 * which every collection calls with the chosen generation (what gc.callbacks
 * report) and which the paths that do not collect never reach.
 */

/* This runtime's number in records (event.h); in BTF for TestContract. */
enum pw_runtime_python { PW_RUNTIME_PYTHON = 3 };
const enum pw_runtime_python *unused_pw_runtime_python __attribute__((unused));

#define PY_GEN_UNKNOWN 0xff

SEC("uprobe/py_gc_start")
int py_gc_start(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 now = bpf_ktime_get_ns();

	struct py_call *c = bpf_map_lookup_elem(&py_calls, &id);
	/* Nested: the outer call holds the "collecting" flag, this one
	 * returns without collecting. A nested call's frame is below the
	 * outer one's (the stack grows down); a call at or above it means the
	 * recorded call returned unseen (its probes were detached and placed
	 * again meanwhile), and this one is outermost. */
	if (c && c->depth > 0 && ctx->sp < c->sp) {
		c->depth++;
		return 0;
	}
	__u64 gen = PY_GEN_UNKNOWN;
	if (usdt_arg(ctx, 0, &gen))
		gen = PY_GEN_UNKNOWN;
	/* GENERATION_AUTO (3.13+): a pause only once one is chosen. */
	__u32 pending = (__s64)gen == -1;
	/* The thread's entry stays between its calls (depth 0): written in
	 * place, not inserted and deleted per collection, which cost more
	 * than the rest of the two programs. */
	if (c) {
		c->start_ns = now;
		c->sp = ctx->sp;
		c->depth = 1;
		c->pending = pending;
	} else {
		struct py_call call = { .start_ns = now, .sp = ctx->sp, .depth = 1, .pending = pending };
		bpf_map_update_elem(&py_calls, &id, &call, BPF_ANY);
	}
	/* The collector runs on this thread: its on-CPU time is the GC CPU. */
	oncpu_begin((__u32)id, now);
	if (pending)
		return 0;
	if (gen > 2)
		gen = PY_GEN_UNKNOWN;
	pause_begin(tgid, PW_RUNTIME_PYTHON, now, (__u32)gen);
	return 0;
}

/* The collector named the generation it collects (3.13+ automatic calls). */
SEC("uprobe/py_gc_gen")
int py_gc_gen(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct py_call *c = bpf_map_lookup_elem(&py_calls, &id);
	if (!c || c->depth != 1 || !c->pending)
		return 0;
	__u64 gen = PY_GEN_UNKNOWN;
	if (usdt_arg(ctx, 0, &gen) || gen > 2)
		gen = PY_GEN_UNKNOWN;
	c->pending = 0;
	pause_begin(id >> 32, PW_RUNTIME_PYTHON, c->start_ns, (__u32)gen);
	return 0;
}

SEC("uprobe/py_gc_done")
int py_gc_done(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 end = bpf_ktime_get_ns();

	struct py_call *c = bpf_map_lookup_elem(&py_calls, &id);
	if (c && c->depth > 0) {
		if (c->depth > 1) {
			c->depth--;
			return 0;
		}
		__u32 pending = c->pending;
		c->depth = 0;
		c->pending = 0;
		/* An automatic call that found nothing to collect. */
		if (pending) {
			oncpu_drop((__u32)id);
			return 0;
		}
	}
	__u64 cpu = 0;
	int cpu_err = oncpu_end((__u32)id, end, &cpu);
	/* No entry: the agent attached mid-call; pause_in_progress counts it. */
	struct pw_pause_state *ps = pause_in_progress(tgid);
	if (!ps)
		return 0;
	struct pw_event *e = pause_end(ps, tgid, (__u32)id, PW_RUNTIME_PYTHON, ps->start_ns, end, 0, ps->reason);
	if (!e)
		return 0;
	if (!cpu_err) {
		e->cpu_ns = cpu;
		e->flags |= PW_EVENT_F_CPU;
	}
	__u64 collected = 0;
	if (!usdt_arg(ctx, 0, &collected)) {
		e->aux = collected;
		e->flags |= PW_EVENT_F_AUX;
	}
	bpf_ringbuf_submit(e, submit_flags());
	return 0;
}
