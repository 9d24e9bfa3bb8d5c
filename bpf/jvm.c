// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * HotSpot safepoints. Every safepoint, whatever the collector, is bracketed
 * by hs_private:safepoint__begin/end (no arguments), fired on the VM thread
 * at the start of SafepointSynchronize::begin() and the end of ::end(). The
 * VM operation run inside (hotspot:vmops__begin, arg0 = its name) is the
 * cause; hotspot:gc__begin (arg0 = full) inside marks a collector pause.
 * The same programs serve the symbol fallback (uprobes on
 * SafepointSynchronize::begin/end), which has no operation name.
 */

/* This runtime's number in records (event.h); in BTF for TestContract. */
enum pw_runtime_jvm { PW_RUNTIME_JVM = 2 };
const enum pw_runtime_jvm *unused_pw_runtime_jvm __attribute__((unused));

#define JVM_REASON_GC 1   /* a collector ran inside the safepoint */
#define JVM_REASON_FULL 2 /* ... and it was a full collection */

struct jvm_state {
	char op[40];
	__u64 synced_ns; /* all threads reached the safepoint */
	__u32 flags;     /* JVM_REASON_* */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct jvm_state);
} jvm_state SEC(".maps");

SEC("uprobe/jvm_safepoint_begin")
int jvm_safepoint_begin(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct jvm_state zero = {};
	bpf_map_update_elem(&jvm_state, &tgid, &zero, BPF_ANY);
	/* The VM thread runs the safepoint: its on-CPU time inside a GC
	 * operation is GC CPU that the collector's own threads do not show. */
	__u64 now = bpf_ktime_get_ns();
	oncpu_begin((__u32)id, now);
	pause_begin(tgid, PW_RUNTIME_JVM, now, 0);
	return 0;
}

SEC("uprobe/jvm_vmop_begin")
int jvm_vmop_begin(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct jvm_state *st = bpf_map_lookup_elem(&jvm_state, &tgid);
	__u64 name = 0;
	/* Several operations can share a safepoint: the first names it. */
	if (!st || st->op[0] || usdt_arg(ctx, 0, &name) || !name)
		return 0;
	bpf_probe_read_user_str(st->op, sizeof(st->op), (void *)name);
	return 0;
}

SEC("uprobe/jvm_gc_begin")
int jvm_gc_begin(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct jvm_state *st = bpf_map_lookup_elem(&jvm_state, &tgid);
	__u64 full = 0;
	if (!st)
		return 0;
	st->flags |= JVM_REASON_GC;
	if (!usdt_arg(ctx, 0, &full) && full)
		st->flags |= JVM_REASON_FULL;
	return 0;
}

/*
 * Entry of RuntimeService::record_safepoint_synchronized (symbol table):
 * every thread has stopped, so begin..here is the time to safepoint.
 */
SEC("uprobe/jvm_safepoint_synced")
int jvm_safepoint_synced(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct jvm_state *st = bpf_map_lookup_elem(&jvm_state, &tgid);
	if (st && !st->synced_ns)
		st->synced_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uprobe/jvm_safepoint_end")
int jvm_safepoint_end(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 end = bpf_ktime_get_ns();
	__u64 cpu = 0;
	int cpu_err = oncpu_end((__u32)id, end, &cpu);

	struct pw_pause_state *ps = pause_in_progress(tgid);
	if (!ps)
		return 0;
	struct jvm_state *st = bpf_map_lookup_elem(&jvm_state, &tgid);
	__u64 stopping = 0;
	if (st && st->synced_ns > ps->start_ns && st->synced_ns <= end)
		stopping = st->synced_ns - ps->start_ns;
	struct pw_event *e = pause_end(ps, tgid, (__u32)id, PW_RUNTIME_JVM, ps->start_ns, end, stopping, st ? st->flags : 0);
	if (!e)
		return 0;
	if (st)
		__builtin_memcpy(e->detail, st->op, sizeof(e->detail));
	if (!cpu_err) {
		e->cpu_ns = cpu;
		e->flags |= PW_EVENT_F_CPU;
	}
	bpf_ringbuf_submit(e, submit_flags());
	return 0;
}
