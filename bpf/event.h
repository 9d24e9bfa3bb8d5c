/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * The C<->Go contract of pausewatch: every record the BPF programs put in the
 * ring buffer, and the per-process state that other programs (request
 * latency) read. Go mirrors these through bpf2go (-type flags) and
 * agent/source's BTF layout test fails when the two drift apart.
 *
 * Rules: fixed-width fields, explicit padding, no pointers, 8-byte aligned,
 * so the same layout holds on amd64 and arm64 and Go can decode it directly.
 * Every ring-buffer record starts with its type (enum pw_event_type), so
 * the reader knows which struct it is from its first byte.
 */
#ifndef __PAUSEWATCH_EVENT_H__
#define __PAUSEWATCH_EVENT_H__

/* event.type */
enum pw_event_type {
	PW_EVENT_PAUSE = 1, /* one stop-the-world pause has ended */
	PW_EVENT_EXEC = 2,  /* a process called execve: inspect it */
	PW_EVENT_EXIT = 3,  /* a thread group leader exited */
	PW_EVENT_REQUEST = 4, /* one request served: struct pw_request */
	PW_EVENT_FORK = 5,    /* a traced process forked a child (no exec): pid = the child */
	PW_EVENT_MAPPED = 6,  /* a process mapped a file executable (mapping.c): look at its maps again */
};

/* event.flags */
enum pw_event_flag {
	PW_EVENT_F_AUX = 1,        /* aux holds a value (Python: objects collected; Go < 1.21: return site - RET) */
	PW_EVENT_F_READ_START = 2, /* request started at its first read, not at data arrival */
	PW_EVENT_F_CPU = 4,        /* cpu_ns holds the pausing thread's on-CPU time in the pause */
};

/*
 * event.runtime and pause_state.runtime: each runtime's BPF file defines its
 * own, PW_RUNTIME_<NAME> in an enum pw_runtime_<name> (named, so it is in
 * BTF, where TestContract checks it against the runtime's Go ID()).
 */

/* Ring buffer record of a pause (PW_EVENT_PAUSE), an exec or an exit. */
struct pw_event {
	__u8 type;         /* enum pw_event_type: first in every record */
	__u8 runtime;      /* the runtime's PW_RUNTIME_* (its BPF file) */
	__u8 flags;        /* PW_EVENT_F_* */
	__u8 _pad;
	__u32 pid;         /* tgid, in the root pid namespace */
	__u32 tid;
	__u32 reason;      /* runtime-specific reason code */
	__u64 start_ns;    /* CLOCK_MONOTONIC, the runtime's own clock where it has one */
	__u64 duration_ns; /* whole pause: stop requested .. world restarted */
	__u64 stopping_ns; /* time to stop (Go stopping time, JVM time-to-safepoint); 0 = unknown */
	__u64 aux;         /* runtime-specific (objects collected, ...) */
	char detail[40];   /* runtime-specific text (JVM: the VM operation), NUL-terminated */
	__u64 cpu_ns;      /* PW_EVENT_F_CPU: on-CPU time of the thread that ran the pause (Python's
			    * collector, HotSpot's VM thread), sched_switch-exact (oncpu.c) */
};

/* Ring buffer record of one request served (PW_EVENT_REQUEST). */
struct pw_request {
	__u8 type;         /* PW_EVENT_REQUEST */
	__u8 flags;        /* PW_EVENT_F_READ_START */
	__u16 port;        /* local port */
	__u32 pid;         /* tgid */
	__u32 fd;          /* the connection's descriptor in pid */
	__u32 _pad;
	__u64 start_ns;    /* when its first bytes reached the socket (or were read), CLOCK_MONOTONIC */
	__u64 duration_ns; /* to its last response write */
	__u64 paused_ns;   /* stop-the-world time of pid within it */
	__u64 cpu_wait_ns; /* run-queue wait of the threads serving it within it (request.c starved) */
};

/*
 * Requests aggregated in the kernel: every request completes into a
 * per-CPU histogram of its (process, local port, paused), breaches of its
 * objective are classified there, and only those with a story (a pause
 * inside them: exemplars, `watch`) cross the ring buffer. The bucket boundaries (req_bounds, nanoseconds, set by the agent
 * before load) merge the classic boundaries of the exporters with those
 * of the native-histogram schema 3 (2^(k/8) s, k = -160..64, floored to
 * whole ns), so that both exported forms are exact. Bucket 0 holds
 * requests <= req_bounds[0] (the native zero bucket), bucket i
 * (req_bounds[i-1], req_bounds[i]], the last one those above
 * req_bounds[PW_REQ_BOUNDS-1] (256 s).
 */
enum pw_req_const {
	PW_REQ_BOUNDS = 241,
	PW_REQ_BUCKETS = PW_REQ_BOUNDS + 1,
};

struct pw_req_key {
	__u32 tgid;
	__u16 port;   /* local port */
	__u8 paused;  /* 1: a pause of tgid overlapped the request */
	__u8 _pad;
};

/*
 * One CPU's share of a (process, port, paused) histogram; cumulative. No
 * count field: the agent sums the buckets, so the count and the buckets it
 * reads always agree, even mid-update.
 */
struct pw_req_hist {
	__u64 sum_ns;
	__u64 pause_ns;     /* stop-the-world time inside these requests */
	__u64 breach_pause; /* over the objective, and within it without the pause inside */
	__u64 breach_cpu;   /* not pause, and within it without the run-queue wait inside */
	__u64 breach_other; /* over the objective otherwise */
	__u64 min_ns;       /* 0: none yet */
	__u64 max_ns;
	/*
	 * The BPF side's copy of the (process, port) objective, valid while
	 * objective_gen equals req_objectives_gen: two hash lookups saved on
	 * each request. Not for the agent to read.
	 */
	__u64 objective_ns;
	__u64 objective_gen;
	__u64 buckets[PW_REQ_BUCKETS];
};

/* Key of req_objectives: port 0 holds the objective of every other port. */
struct pw_req_objective_key {
	__u32 tgid;
	__u16 port;
	__u16 _pad;
};

/* The context of set_traced_bit, which the agent runs (BPF_PROG_RUN). */
struct pw_traced_bit {
	__u32 tgid;
	__u32 set; /* 1: set the tgid's bit, 0: clear it */
};

/*
 * Per-process pause state, keyed by tgid. The pause programs write it; the
 * request programs read it to know how much STW time fell inside a request
 * (paused_total_ns at start vs end, plus the part of a pause in progress).
 */
struct pw_pause_state {
	__u64 start_ns;        /* start of the pause in progress, or of the last one */
	__u64 paused_total_ns; /* cumulative STW time of this process since tracked */
	__u64 pauses;          /* cumulative number of pauses */
	__u64 last_end_ns;     /* end of the last finished pause (it began at start_ns) */
	__u32 reason;          /* reason of the pause in progress */
	__u8 in_progress;
	__u8 runtime;
	__u8 _pad[2];
	/* The process's budget of pause records (pause_budget): credit in ns, as of credit_at. */
	__u64 credit_ns;
	__u64 credit_at;
	__u64 stopping_ns;     /* stopping time of the pause in progress, 0 = unknown (Go 1.23+) */
	__u32 end_tid;         /* the thread whose end probe closes it (Go: the entry of
				* startTheWorldWithSema names its RET's thread); 0 = any */
	__u32 _pad2;
};

/*
 * Per-process state of the mapping signal (mapping.c), keyed by tgid: at
 * most one PW_EVENT_MAPPED per window; the agent reads pending one window
 * after a signal to know whether mappings were folded into it.
 */
struct pw_mapping_state {
	__u64 last_ns;  /* when the last signal was emitted, CLOCK_MONOTONIC */
	__u32 pending;  /* executable mappings since then that emitted nothing */
	__u32 _pad;
};

/* Where a USDT argument lives (agent/usdt.ArgKind). */
enum pw_usdt_arg_kind {
	PW_USDT_ARG_CONST = 1,   /* the value is val */
	PW_USDT_ARG_REG = 2,     /* in the register at reg_off in struct pt_regs */
	PW_USDT_ARG_REG_MEM = 3, /* in user memory at register + val */
};

struct pw_usdt_arg {
	__s64 val;
	__u32 reg_off;
	__u8 kind; /* enum pw_usdt_arg_kind */
	__u8 size; /* 1, 2, 4 or 8 bytes */
	__u8 is_signed;
	__u8 _pad;
};

#define PW_USDT_MAX_ARGS 3

/* Argument locations of one USDT probe site; its index is the attach cookie. */
struct pw_usdt_spec {
	struct pw_usdt_arg args[PW_USDT_MAX_ARGS];
};

/* Index into the stats array (per-CPU counters exported as metrics). */
enum pw_stat {
	PW_STAT_RINGBUF_LOST = 0, /* bpf_ringbuf_reserve failed: event dropped */
	PW_STAT_UNPAIRED_END = 1, /* pause end without a begin (attached mid-pause) */
	PW_STAT_CONN_LOST = 2,    /* a connection could not be tracked (map full) */
	PW_STAT_UNCOVERED_ACCEPT = 3, /* io_uring accept into a fixed-file slot: connection not measured */
	PW_STAT_MAPPING_LIMITED = 4, /* a mapping signal folded into its window's (rate limit) */
	PW_STAT_REQ_UNCOUNTED = 5, /* a request's histogram could not be created (map full) */
	PW_STAT_PAUSE_RATE = 6,    /* a pause over its process's record budget: counted, not sent */
	PW_STAT_MAX = 7,
};

#endif /* __PAUSEWATCH_EVENT_H__ */
