// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * The mapping signal: a process mapped a file executable (dlopen of
 * libjvm.so, libpython, libnode... at any time after exec), so the agent
 * reads its memory maps again. This replaces polling the maps after exec.
 *
 * One program, at syscalls:sys_exit_mmap: the mapping exists by then, so
 * when the agent reads /proc/<pid>/maps it is there. The exit record has
 * only the address, but the call's arguments (prot, flags, fd) are still
 * in the registers the syscall entry saved (bpf_task_pt_regs). An entry
 * program marking the thread for its exit would cost a second tracepoint
 * on every mmap of every process: measured here, the kernel's dispatch of
 * a syscall tracepoint costs more than the 50 ns budget of an untracked
 * syscall by itself, whatever the program does.
 *
 * At most one signal per process per window (mapping_window_ns): a
 * process mapping many libraries (or executable memfds over and over)
 * costs one re-inspection per window. A call inside the window only sets
 * pending; the agent, one window after each signal it gets, reads pending
 * and looks again if it is set, so nothing mapped in the window is missed.
 */

#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20

/* The window, set by the agent before load (mappingWindow in Go). */
volatile const __u64 mapping_window_ns = 200000000;

struct mmap_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct mmap_exit_ctx *ctx)
{
	/* Every mmap of every process passes here: leave at once unless it
	 * mapped a file executable. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	/* x86-64 syscall arguments: prot in rdx, flags in r10, fd in r8. */
	if (!(regs->dx & PROT_EXEC) || (regs->r10 & MAP_ANONYMOUS) || (__s32)regs->r8 < 0)
		return 0;
	if (ctx->ret < 0 && ctx->ret >= -4095)
		return 0; /* failed: nothing was mapped */

	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 now = bpf_ktime_get_ns();
	struct pw_mapping_state *st = bpf_map_lookup_elem(&mapping_signals, &tgid);
	if (st && now - st->last_ns < mapping_window_ns) {
		st->pending = 1;
		count_stat(PW_STAT_MAPPING_LIMITED);
		return 0;
	}
	struct pw_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* No window opens: the next mapping tries again. */
		count_stat(PW_STAT_RINGBUF_LOST);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = PW_EVENT_MAPPED;
	e->pid = tgid;
	e->tid = (__u32)id;
	/* A new window, in place: a pending set by another thread of the
	 * process from now on lands in the state the agent will read. */
	if (st) {
		st->last_ns = now;
		st->pending = 0;
	} else {
		struct pw_mapping_state fresh = {.last_ns = now};
		bpf_map_update_elem(&mapping_signals, &tgid, &fresh, BPF_ANY);
	}
	/* Pauses of a runtime just loaded go unseen until the agent looks. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}
