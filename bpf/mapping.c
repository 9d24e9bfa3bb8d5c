// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * The mapping signal: a process mapped a file executable (dlopen of
 * libjvm.so, libpython, libnode... at any time after exec), so the agent
 * reads its memory maps again. This replaces polling the maps after exec.
 *
 * syscalls:sys_enter_mmap has the arguments (prot, flags, fd) but runs
 * before the mapping exists; sys_exit_mmap runs after, with only the
 * address. So the entry marks the thread when the call maps a file
 * executable, and the exit of a marked call emits: when the agent reads
 * /proc/<pid>/maps, the mapping is there. Every mmap of every process on
 * the node passes both programs, so each leaves in its first
 * instructions unless the call is one of these (rare: a loader maps each
 * library's code once).
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

/*
 * Calls of mmap that map a file executable and have not returned yet,
 * by thread; mmap_exec_inflight counts them, so that the exit program of
 * every other call returns after one load instead of a hash lookup. A
 * count left high (an entry evicted, a thread that never returned) only
 * costs the lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tid */
	__type(value, __u8);
} mmap_exec SEC(".maps");

__u64 mmap_exec_inflight = 0;

struct mmap_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 addr, len, prot, flags, fd, off;
};

struct mmap_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

SEC("tracepoint/syscalls/sys_enter_mmap")
int enter_mmap(struct mmap_enter_ctx *ctx)
{
	if (!(ctx->prot & PROT_EXEC) || (ctx->flags & MAP_ANONYMOUS) || (__s32)ctx->fd < 0)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u8 one = 1;
	if (bpf_map_update_elem(&mmap_exec, &tid, &one, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&mmap_exec_inflight, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct mmap_exit_ctx *ctx)
{
	if (!mmap_exec_inflight)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!bpf_map_lookup_elem(&mmap_exec, &tid))
		return 0;
	if (bpf_map_delete_elem(&mmap_exec, &tid) == 0)
		__sync_fetch_and_add(&mmap_exec_inflight, -1);
	if (ctx->ret < 0 && ctx->ret >= -4095)
		return 0; /* failed: nothing was mapped */

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
	e->tid = tid;
	/* Pauses of a runtime just loaded go unseen until the agent looks. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	struct pw_mapping_state fresh = {.last_ns = now};
	bpf_map_update_elem(&mapping_signals, &tgid, &fresh, BPF_ANY);
	return 0;
}
