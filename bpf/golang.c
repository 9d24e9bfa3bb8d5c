// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * Go stop-the-world pauses, timed by the runtime's own clock (nanotime is
 * CLOCK_MONOTONIC, like bpf_ktime_get_ns). Probes sit at function entries
 * and at RET instructions found by disassembly, never uretprobes: Go moves
 * stacks and a hijacked return address crashes the process.
 *
 * Registers follow Go's internal ABI (amd64: RAX, RBX, RCX, RDI, RSI, ...),
 * structs passed field by field:
 *   stopTheWorldWithSema(reason) worldStop        1.22+, RET: AL=reason, RBX=startedStopping,
 *                                                  1.23+: RCX=finishedStopping
 *   startTheWorldWithSema(now, w worldStop) int64  entry: RAX=now, BL=reason, RCX=startedStopping,
 *                                                  1.23+: RDI=finishedStopping; RET: RAX=now used
 * Go 1.21 has no worldStop: stopTheWorldWithSema(reason) entry gives the
 * reason and the start is taken there with bpf_ktime_get_ns.
 * Go 1.17-1.20: stopTheWorldWithSema() takes no argument at all, so the
 * start is taken the same way and the reason comes from the caller of
 * startTheWorldWithSema(emitTraceEvent bool) int64: the return address at
 * its RET, sent relative to that RET (PIE-independent) for the agent to
 * match against the call sites it found in the binary.
 */

/* This runtime's number in records (event.h); in BTF for TestContract. */
enum pw_runtime_go { PW_RUNTIME_GO = 1 };
const enum pw_runtime_go *unused_pw_runtime_go __attribute__((unused));

/* Cookie bits, set per attach by the Go side from the binary's Go version. */
#define GO_COOKIE_HAS_FINISHED 1 /* worldStop.finishedStopping exists (1.23+) */
#define GO_COOKIE_NO_REASON 2    /* stopTheWorldWithSema has no reason argument (< 1.21) */
#define GO_COOKIE_CALLER 4       /* send the return site of startTheWorldWithSema (< 1.21) */

struct go_world_stop {
	__u64 started;
	__u64 finished;
	__u32 reason;
	__u32 _pad;
};

/* Arguments seen at the entry of startTheWorldWithSema, for its RET (same thread). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, struct go_world_stop);
} go_start_args SEC(".maps");

/* 1.22+: RET of stopTheWorldWithSema, the world is stopped. */
SEC("uprobe/go_stop_ret")
int go_stop_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	pause_begin(tgid, PW_RUNTIME_GO, ctx->bx, ctx->ax & 0xff);
	return 0;
}

/* 1.17-1.21: entry of stopTheWorldWithSema; no runtime timestamp to read yet. */
SEC("uprobe/go_stop_entry")
int go_stop_entry(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	/* Before 1.21 AL holds whatever the caller left there, not a reason. */
	__u32 reason = (bpf_get_attach_cookie(ctx) & GO_COOKIE_NO_REASON) ? 0 : ctx->ax & 0xff;
	pause_begin(tgid, PW_RUNTIME_GO, bpf_ktime_get_ns(), reason);
	return 0;
}

/* 1.22+: entry of startTheWorldWithSema carries the worldStop by value. */
SEC("uprobe/go_start_entry")
int go_start_entry(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct go_world_stop w = {
		.started = ctx->cx,
		.reason = ctx->bx & 0xff,
	};
	if (bpf_get_attach_cookie(ctx) & GO_COOKIE_HAS_FINISHED)
		w.finished = ctx->di;
	bpf_map_update_elem(&go_start_args, &tid, &w, BPF_ANY);
	return 0;
}

/* RET of startTheWorldWithSema: RAX is the runtime's end timestamp. */
SEC("uprobe/go_start_ret")
int go_start_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	__u64 end = ctx->ax;

	struct go_world_stop *w = bpf_map_lookup_elem(&go_start_args, &tid);
	if (w) {
		__u64 stopping = 0;
		if (w->finished > w->started)
			stopping = w->finished - w->started;
		struct pw_event *e = pause_end(tgid, tid, PW_RUNTIME_GO, w->started, end, stopping, w->reason);
		if (e)
			bpf_ringbuf_submit(e, submit_flags());
		bpf_map_delete_elem(&go_start_args, &tid);
		return 0;
	}

	/* Go 1.17-1.21: the begin came from go_stop_entry. */
	struct pw_pause_state *st = pause_in_progress(tgid);
	if (!st)
		return 0;
	__u64 ret_addr = 0;
	int have_caller = 0;
	if (bpf_get_attach_cookie(ctx) & GO_COOKIE_CALLER) {
		/*
		 * At the RET, RSP points at the return address (on g0's stack,
		 * which never moves). ctx->ip is the probed RET itself (the
		 * kernel rewinds it to the breakpoint address before running
		 * uprobe handlers), so the difference is the same in every
		 * mapping of the file, PIE or not.
		 */
		have_caller = bpf_probe_read_user(&ret_addr, sizeof(ret_addr), (void *)ctx->sp) == 0;
	}
	struct pw_event *e = pause_end(tgid, tid, PW_RUNTIME_GO, st->start_ns, end, 0, st->reason);
	if (e) {
		if (have_caller) {
			e->aux = ret_addr - ctx->ip;
			e->flags |= PW_EVENT_F_AUX;
		}
		bpf_ringbuf_submit(e, submit_flags());
	}
	return 0;
}
