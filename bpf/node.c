// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * Node.js (V8) collections. V8 brackets the atomic pause of every
 * collection, on the thread that runs it, with GCTracer::StartInSafepoint()
 * and GCTracer::StopInSafepoint(), both called from
 * Heap::PerformGarbageCollection(collector, reason, collector_reason) once
 * the isolate's safepoint is reached. Uprobes at the three function
 * entries: PerformGarbageCollection leaves the collector (SysV ABI: this in
 * RDI, collector in ESI) for the thread, StartInSafepoint opens the pause,
 * StopInSafepoint closes it. C++ frames do not move, but only entries are
 * probed anyway. Timed by bpf_ktime at the probes.
 */

/* This runtime's number in records (event.h); in BTF for TestContract. */
enum pw_runtime_node { PW_RUNTIME_NODE = 4 };
const enum pw_runtime_node *unused_pw_runtime_node __attribute__((unused));

/* The collector of the collection a thread is in, + 1 (0: unknown). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, __u32);
} node_collector SEC(".maps");

SEC("uprobe/node_perform_gc")
int node_perform_gc(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	/* GarbageCollector: SCAVENGER, MARK_COMPACTOR, MINOR_MARK_SWEEPER. */
	__u32 c = (__u32)(ctx->si & 0xff);
	c = c <= 2 ? c + 1 : 0;
	bpf_map_update_elem(&node_collector, &tid, &c, BPF_ANY);
	return 0;
}

SEC("uprobe/node_start_safepoint")
int node_start_safepoint(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u32 *c = bpf_map_lookup_elem(&node_collector, &tid);
	pause_begin(id >> 32, PW_RUNTIME_NODE, bpf_ktime_get_ns(), c ? *c : 0);
	return 0;
}

SEC("uprobe/node_stop_safepoint")
int node_stop_safepoint(struct pt_regs *ctx)
{
	__u64 end = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	bpf_map_delete_elem(&node_collector, &tid);
	struct pw_pause_state *ps = pause_in_progress(tgid);
	if (!ps)
		return 0;
	struct pw_event *e = pause_end(ps, tgid, tid, PW_RUNTIME_NODE, ps->start_ns, end, 0, ps->reason);
	if (e)
		bpf_ringbuf_submit(e, submit_flags());
	return 0;
}
