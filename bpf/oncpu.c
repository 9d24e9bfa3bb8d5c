// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * On-CPU time of one thread between two probes of that thread: the CPU a
 * collection running on the calling thread costs (CPython's collector,
 * HotSpot's VM thread inside a GC safepoint). The kernel's own per-thread
 * sum (se.sum_exec_runtime) is only brought up to date at ticks and
 * scheduler events, so reading it at the two probes is off by up to a tick
 * each, and a collection is often shorter than a tick. Instead the thread's
 * on-CPU intervals are timed here: from the begin probe, every sched_switch
 * off the CPU closes an interval and every switch onto it opens one, and
 * the end probe closes the last. Minimum kernel: 5.8 (tracepoint ring
 * buffer programs); nothing here needs more than a classic tracepoint.
 *
 * Cost: one load per context switch while no tracked thread is in a
 * collection, two hash lookups while one is (oncpu_active > 0).
 * sched_process_exit ends the timing of a thread that ends inside a pause
 * (a JVM exits inside its last safepoint), so the count comes back to 0;
 * its entry stays until the LRU takes it.
 */

struct oncpu_thread {
	__u64 since; /* start of the current on-CPU interval, 0 while off CPU */
	__u64 acc;   /* on-CPU time of the closed intervals */
	__u32 on;    /* between oncpu_begin and oncpu_end */
	__u32 _pad;
};

/* LRU: a thread killed inside a collection must not pin its entry. A
 * thread's entry stays between its collections (on says whether one
 * runs): an insert and a delete per collection cost more than the rest
 * of the timing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, struct oncpu_thread);
} oncpu SEC(".maps");

/* Threads between oncpu_begin and oncpu_end; while 0, sched_switch returns
 * at once. An entry the LRU evicts leaves it one too high, which costs the
 * two lookups, never a wrong figure. */
volatile __s64 oncpu_active;

/* oncpu_begin starts timing thread tid at now (the caller's clock read). */
static __always_inline void oncpu_begin(__u32 tid, __u64 now)
{
	struct oncpu_thread *t = bpf_map_lookup_elem(&oncpu, &tid);
	if (!t) {
		struct oncpu_thread n = { .since = now, .on = 1 };
		if (!bpf_map_update_elem(&oncpu, &tid, &n, BPF_ANY))
			__sync_fetch_and_add(&oncpu_active, 1);
		return;
	}
	if (!t->on)
		__sync_fetch_and_add(&oncpu_active, 1);
	t->since = now;
	t->acc = 0;
	t->on = 1;
}

/* oncpu_end returns 0 and the thread's on-CPU time from oncpu_begin to
 * now (the caller's clock read) in *ns, or -1 when the begin was not seen
 * (attached mid-collection). */
static __always_inline int oncpu_end(__u32 tid, __u64 now, __u64 *ns)
{
	struct oncpu_thread *t = bpf_map_lookup_elem(&oncpu, &tid);
	if (!t || !t->on)
		return -1;
	__u64 acc = t->acc;
	if (t->since && now > t->since)
		acc += now - t->since;
	t->on = 0;
	__sync_fetch_and_add(&oncpu_active, -1);
	*ns = acc;
	return 0;
}

/* oncpu_drop forgets a begin that turned out not to be a collection. */
static __always_inline void oncpu_drop(__u32 tid)
{
	struct oncpu_thread *t = bpf_map_lookup_elem(&oncpu, &tid);
	if (t && t->on) {
		t->on = 0;
		__sync_fetch_and_add(&oncpu_active, -1);
	}
}

/* /sys/kernel/tracing/events/sched/sched_switch/format */
struct sched_switch_args {
	__u64 _common;
	char prev_comm[16];
	__s32 prev_pid;
	__s32 prev_prio;
	__s64 prev_state;
	char next_comm[16];
	__s32 next_pid;
	__s32 next_prio;
};

SEC("tracepoint/sched/sched_switch")
int handle_sched_switch(struct sched_switch_args *ctx)
{
	if (oncpu_active <= 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u32 prev = ctx->prev_pid, next = ctx->next_pid;
	struct oncpu_thread *t = bpf_map_lookup_elem(&oncpu, &prev);
	if (t && t->on && t->since) {
		t->acc += now - t->since;
		t->since = 0;
	}
	t = bpf_map_lookup_elem(&oncpu, &next);
	if (t && t->on)
		t->since = now;
	return 0;
}
