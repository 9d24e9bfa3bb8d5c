// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * One BPF collection for every runtime: the pause programs of all runtimes
 * and (later) the request programs share the maps below, so a request can
 * read its process's pause state in the kernel.
 */
#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "event.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/*
 * Force the contract types into BTF, so bpf2go emits Go mirrors of the
 * structs and the Go contract test can read the enums.
 */
struct pw_contract {
	struct pw_event event;
	struct pw_request request;
	struct pw_pause_state pause_state;
	enum pw_event_type event_type;
	enum pw_stat stat;
	enum pw_usdt_arg_kind usdt_arg_kind;
	enum pw_event_flag event_flag;
	struct pw_usdt_spec usdt_spec;
	struct pw_mapping_state mapping_state;
};
const struct pw_contract *unused_pw_contract __attribute__((unused));

#define EVENTS_BYTES (1 << 20)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

/* LRU: a process whose exit we missed must not pin an entry forever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, struct pw_pause_state);
} pause_state SEC(".maps");

/* One thread's call of the collector, for the calls that are not (yet) a
 * collection: nested ones, and automatic ones before the generation is known. */
struct py_call {
	__u64 start_ns;
	__u64 sp;      /* stack pointer at the outermost call's entry */
	__u32 depth;   /* collector frames of this thread on the stack; 0: none (the
			* entry stays between calls, python.c) */
	__u32 pending; /* automatic call, generation not chosen yet */
};

/* Here, not in python.c, so handle_exit can drop an exiting thread's entry:
 * a killed process may die inside its collector, and its tid come back. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct py_call);
} py_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/*
 * Wake the reader only once a batch has piled up; it also polls every
 * 100 ms, so a lone event waits at most that long. One wakeup per event
 * cost the agent more CPU than everything else it does per pause.
 */
#define WAKEUP_BYTES (32 << 10)

static __always_inline __u64 submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
									      : BPF_RB_NO_WAKEUP;
}

static __always_inline void count_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		(*v)++;
}

static __always_inline void emit_simple(__u8 type, __u32 pid)
{
	struct pw_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_stat(PW_STAT_RINGBUF_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->pid = pid;
	e->tid = pid;
	/* New processes are wanted promptly (tracked within 1 s of exec). */
	bpf_ringbuf_submit(e, type == PW_EVENT_EXEC ? BPF_RB_FORCE_WAKEUP : submit_flags());
}

/*
 * pause_begin marks a pause of process tgid as in progress. start_ns is the
 * runtime's own timestamp where it has one (Go's worldStop.startedStopping).
 */
/* pause_state_of returns tgid's pause state, made on first use; NULL
 * only when the map refuses a new entry. */
static __always_inline struct pw_pause_state *pause_state_of(__u32 tgid)
{
	struct pw_pause_state *st = bpf_map_lookup_elem(&pause_state, &tgid);
	if (!st) {
		struct pw_pause_state zero = {};
		bpf_map_update_elem(&pause_state, &tgid, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&pause_state, &tgid);
	}
	return st;
}

static __always_inline void pause_begin(__u32 tgid, __u8 runtime, __u64 start_ns, __u32 reason)
{
	struct pw_pause_state *st = pause_state_of(tgid);
	if (!st)
		return;
	st->start_ns = start_ns;
	st->reason = reason;
	st->runtime = runtime;
	st->stopping_ns = 0;
	st->end_tid = 0;
	st->in_progress = 1;
}

/*
 * The ring buffer is shared by every process on the node: one collecting
 * in a loop (CPython's gc.collect(0) runs 200k times a second) would fill
 * it and blind the agent to every other process's pauses (measured: 7 % of
 * a Go service's lost beside such a loop). So each process may send at most
 * PAUSE_RATE pause records a second, in bursts of up to a second's worth;
 * past that its pauses still count in its kernel totals (requests' pause
 * time stays exact) and are counted as lost (PW_STAT_PAUSE_RATE), not sent.
 * Real collectors stay far below it (a Go service in a ReadMemStats loop
 * reaches 30k a second, CPython's gen0 under allocation a few thousand).
 */
#define PAUSE_RATE 20000
#define PAUSE_COST_NS (1000000000ULL / PAUSE_RATE)
#define PAUSE_BURST_NS 1000000000ULL

/*
 * pause_budget takes one record from st's budget at now; false if none is
 * left. While the ring buffer is over half full (the agent is behind: a
 * loaded node, or several loops at once) only a process that has sent
 * little lately (more of its burst left than the ring is full) gets
 * through: the loops' records wait, every other process's go on.
 */
static __always_inline bool pause_budget(struct pw_pause_state *st, __u64 now)
{
	__u64 credit = st->credit_ns;
	if (now > st->credit_at)
		credit += now - st->credit_at;
	if (!st->credit_at || credit > PAUSE_BURST_NS)
		credit = PAUSE_BURST_NS;
	st->credit_at = now;
	/*
	 * Over half full, the credit a process needs rises with the fill: a
	 * flat half left the loops' bursts (half a second each, 10k records)
	 * free to fill the rest of the ring, and several at once overflowed it
	 * (a Go service beside three Python loops and a ReadMemStats loop lost
	 * 9 of 174 pauses, beside a loop forking four more 81 of 138; with
	 * refused records charged but the flat half, still 8 of 214). Each
	 * burst now stops the sooner the fuller the ring, short of full for
	 * any number of them; a process that has sent little lately has almost
	 * a full burst and goes on.
	 */
	__u64 need = PAUSE_COST_NS;
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (avail > EVENTS_BYTES / 2)
		need = PAUSE_BURST_NS / EVENTS_BYTES * (avail < EVENTS_BYTES ? avail : EVENTS_BYTES);
	if (credit < need) {
		/*
		 * Refused while the ring is over half full, a record costs all
		 * the same: else a loop held back refilled to the mark in a
		 * fraction of a second and sent its whole rate from there.
		 */
		if (need > PAUSE_COST_NS)
			credit = credit > PAUSE_COST_NS ? credit - PAUSE_COST_NS : 0;
		st->credit_ns = credit;
		return false;
	}
	st->credit_ns = credit - PAUSE_COST_NS;
	return true;
}

/*
 * pause_end closes the pause of tgid (state st, which the caller has
 * looked up: one lookup per program) that began at start_ns and ended at
 * end_ns, and adds it to the process's cumulative paused time. It returns
 * the filled event, reserved in the ring buffer, for the caller to
 * complete and submit; NULL when it cannot be recorded (counted).
 */
static __always_inline struct pw_event *pause_end(struct pw_pause_state *st, __u32 tgid, __u32 tid, __u8 runtime,
						  __u64 start_ns, __u64 end_ns, __u64 stopping_ns, __u32 reason)
{
	if (end_ns < start_ns)
		return NULL;
	__u64 d = end_ns - start_ns;

	__sync_fetch_and_add(&st->paused_total_ns, d);
	__sync_fetch_and_add(&st->pauses, 1);
	/* The last pause, for requests stamped in the past (request.c). */
	st->start_ns = start_ns;
	st->last_end_ns = end_ns;
	st->in_progress = 0;
	st->end_tid = 0;
	st->runtime = runtime;
	/* The kernel's clock, not end_ns: a process must not set its own budget. */
	if (!pause_budget(st, bpf_ktime_get_ns())) {
		count_stat(PW_STAT_PAUSE_RATE);
		return NULL;
	}

	struct pw_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_stat(PW_STAT_RINGBUF_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = PW_EVENT_PAUSE;
	e->runtime = runtime;
	e->pid = tgid;
	e->tid = tid;
	e->reason = reason;
	e->start_ns = start_ns;
	e->duration_ns = d;
	e->stopping_ns = stopping_ns;
	return e;
}

/*
 * pause_in_progress returns the state of tgid's pause that pause_begin
 * marked, or NULL (counted) when there is none: the end probe fired
 * without its begin, e.g. the agent attached mid-pause.
 */
static __always_inline struct pw_pause_state *pause_in_progress(__u32 tgid)
{
	struct pw_pause_state *st = bpf_map_lookup_elem(&pause_state, &tgid);
	if (!st || !st->in_progress) {
		count_stat(PW_STAT_UNPAIRED_END);
		return NULL;
	}
	return st;
}

/* Processes whose connections are traced (set by the agent, and by
 * handle_fork for the children of traced processes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} traced SEC(".maps");

/*
 * A prefilter for traced, one bit per tgid: tracepoints that fire for
 * every process (reads, writes, sock:, io_uring) test it first. An array
 * lookup is inlined by the verifier (no helper call, no hash), so an
 * untracked process leaves in a handful of instructions; a hash lookup
 * cost 70-100 ns per call here. traced stays the authority: a set bit
 * only sends the caller on to it, so a bit left set costs time, never
 * correctness; a tgid with an entry in traced always has its bit set
 * (both are set bit first, cleared bit last, with atomic OR/AND: the
 * agent through set_traced_bit, handle_fork and handle_exit directly).
 * Declared for PID_MAX_LIMIT on 64-bit (2^22); the agent sizes it to
 * pid_max at load, so a tgid past it (pid_max raised later) has no word
 * and goes by traced alone. Not BPF_F_MMAPABLE: that puts the words in
 * vmalloc memory, and the TLB miss on it cost ~50 ns per call here (a
 * VM); a 4 KiB array is kmalloc'd, in the kernel's direct map.
 */
#define PW_TGID_LIMIT (1u << 22)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PW_TGID_LIMIT / 64);
	__type(key, __u32);
	__type(value, __u64);
} traced_bits SEC(".maps");

static __always_inline __u64 *traced_word(__u32 tgid)
{
	__u32 k = tgid >> 6;
	return bpf_map_lookup_elem(&traced_bits, &k);
}

static __always_inline void trace_tgid(__u32 tgid)
{
	__u64 *w = traced_word(tgid);
	if (w)
		__sync_fetch_and_or(w, 1ULL << (tgid & 63));
	__u8 one = 1;
	bpf_map_update_elem(&traced, &tgid, &one, BPF_ANY);
}

static __always_inline void untrace_tgid(__u32 tgid)
{
	bpf_map_delete_elem(&traced, &tgid);
	__u64 *w = traced_word(tgid);
	if (w)
		__sync_fetch_and_and(w, ~(1ULL << (tgid & 63)));
}

/* The agent's way to set or clear a bit atomically (a map update would
 * rewrite the whole word, undoing a bit handle_fork set meanwhile). */
SEC("syscall")
int set_traced_bit(struct pw_traced_bit *a)
{
	__u32 tgid = a->tgid;
	__u64 *w = traced_word(tgid);
	if (!w)
		return 0;
	if (a->set)
		__sync_fetch_and_or(w, 1ULL << (tgid & 63));
	else
		__sync_fetch_and_and(w, ~(1ULL << (tgid & 63)));
	return 0;
}

/* is_traced: the bit first (cheap, and clear for almost every caller), then traced. */
static __always_inline bool is_traced(__u32 tgid)
{
	__u64 *w = traced_word(tgid);
	/* (No word: a tgid past the pid_max the agent sized it for.) */
	if (w && !((*w >> (tgid & 63)) & 1))
		return false;
	return bpf_map_lookup_elem(&traced, &tgid) != NULL;
}

/* Here, not in mapping.c, so handle_exit can drop an exited process's
 * window: a new process given the same pid must not find its first
 * signal folded into a window whose follow-up nobody will make. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, struct pw_mapping_state);
} mapping_signals SEC(".maps");

#include "oncpu.c"

/* Process discovery: exec and exit of every process on the node. */

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	emit_simple(PW_EVENT_EXEC, bpf_get_current_pid_tgid() >> 32);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	bpf_map_delete_elem(&py_calls, &id);
	/* A thread can end inside a pause it began: a JVM exits inside its
	 * last safepoint, which never ends. */
	oncpu_drop((__u32)id);
	/* Only the thread group leader's exit ends the process for us. */
	if ((__u32)id != tgid)
		return 0;
	bpf_map_delete_elem(&pause_state, &tgid);
	/* A child traced from its fork that the agent never took over must
	 * not leave its pid traced for whoever gets it next. */
	untrace_tgid(tgid);
	bpf_map_delete_elem(&mapping_signals, &tgid);
	emit_simple(PW_EVENT_EXIT, tgid);
	return 0;
}

#include "usdt.c"
#include "golang.c"
#include "jvm.c"
#include "python.c"
#include "node.c"
#include "request.c"
#include "adopt.c"
#include "mapping.c"
