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

/*
 * 1.22+: entry of startTheWorldWithSema carries the worldStop by value.
 * It goes into the process's pause state, for the RET on this thread: a
 * process restarts one world at a time (the world is stopped), so it
 * needs no map of its own. A map keyed by thread cost an LRU insert here
 * and a lookup and delete at the RET, most of the BPF time of a pause.
 */
SEC("uprobe/go_start_entry")
int go_start_entry(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pw_pause_state *st = pause_state_of(id >> 32);
	if (!st)
		return 0;
	__u64 started = ctx->cx, stopping = 0;
	if ((bpf_get_attach_cookie(ctx) & GO_COOKIE_HAS_FINISHED) && ctx->di > started)
		stopping = ctx->di - started;
	st->start_ns = started;
	st->reason = ctx->bx & 0xff;
	st->stopping_ns = stopping;
	st->runtime = PW_RUNTIME_GO;
	st->end_tid = (__u32)id;
	st->in_progress = 1;
	return 0;
}

/* RET of startTheWorldWithSema: RAX is the runtime's end timestamp. */
SEC("uprobe/go_start_ret")
int go_start_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	__u64 end = ctx->ax;

	struct pw_pause_state *st = bpf_map_lookup_elem(&pause_state, &tgid);
	if (!st || !st->in_progress) {
		count_stat(PW_STAT_UNPAIRED_END);
		return 0;
	}
	if (st->end_tid == tid) {
		/* 1.22+: the entry on this thread filled in the worldStop. */
		struct pw_event *e = pause_end(st, tgid, tid, PW_RUNTIME_GO, st->start_ns, end, st->stopping_ns, st->reason);
		if (e)
			bpf_ringbuf_submit(e, submit_flags());
		return 0;
	}

	/* Go 1.17-1.21: the begin came from go_stop_entry. (1.22+ also
	 * comes here when the entry was not seen: attached mid-call.) */
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
	struct pw_event *e = pause_end(st, tgid, tid, PW_RUNTIME_GO, st->start_ns, end, 0, st->reason);
	if (e) {
		if (have_caller) {
			e->aux = ret_addr - ctx->ip;
			e->flags |= PW_EVENT_F_AUX;
		}
		bpf_ringbuf_submit(e, submit_flags());
	}
	return 0;
}
