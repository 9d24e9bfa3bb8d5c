// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * Server-side request latency of tracked processes, from tracepoints only.
 *
 * A connection is keyed by its struct sock, not by thread (Go and the JVM
 * move work across threads). A request starts when its first bytes reach
 * the socket (sock:sk_data_ready), so requests that queue while the world
 * is stopped carry that wait; it ends with the last write before the
 * server reads again, the next request's data arrives, or the close.
 * Without sk_data_ready (older kernels) it starts at the first read.
 *
 * Overlap with pauses is exact and O(1): P(t), the process's cumulative
 * STW time up to t (pause_state: finished pauses plus the part of one in
 * progress), is taken at the start and at every write; the request
 * carries P(last write) - P(start).
 */

/* Local ports to trace; empty = all ports of traced processes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} traced_ports SEC(".maps");

/* Request histograms, per (tgid, port, paused) and CPU (see event.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	/* 2 KiB per CPU each: allocated as services appear, not up front. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pw_req_key);
	__type(value, struct pw_req_hist);
} req_hists SEC(".maps");

/* A zeroed histogram: the initial value of a new entry (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_req_hist);
} req_zero SEC(".maps");

/* Latency objectives (ns) the agent pushes when it tracks a process. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pw_req_objective_key);
	__type(value, __u64);
} req_objectives SEC(".maps");

/*
 * Bumped by the agent after each change of req_objectives: a histogram's
 * copy of its objective taken at another generation is looked up again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} req_objectives_gen SEC(".maps");

/*
 * The stories' token bucket, per CPU: credit in ns of time, one story
 * costs STORY_INTERVAL_NS (at most 200 a second per CPU, in bursts of up
 * to 200). A pause at high request concurrency overlaps most requests
 * (the Go example under wrk: most of them), and exemplars and `watch` need
 * a few of them, not all; their counts are in the histograms.
 */
#define STORY_INTERVAL_NS (1000000000ULL / 200)
#define STORY_BURST_NS (200 * STORY_INTERVAL_NS)
/* A request with this much pause inside it is always told. */
#define STORY_ALWAYS_PAUSED_NS 1000000ULL

struct story_bucket {
	__u64 credit_ns;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct story_bucket);
} story_tokens SEC(".maps");

/*
 * tell_story says whether a request that a pause overlapped by paused ns
 * crosses the ring buffer: a long pause inside it always, else while the
 * CPU's token bucket has credit. What the bucket holds back is not lost:
 * the request is counted in its histogram like any other.
 */
static __always_inline bool tell_story(__u64 paused)
{
	if (paused >= STORY_ALWAYS_PAUSED_NS)
		return true;
	__u32 zero = 0;
	struct story_bucket *b = bpf_map_lookup_elem(&story_tokens, &zero);
	if (!b)
		return false;
	__u64 now = bpf_ktime_get_ns();
	__u64 credit = b->credit_ns + (now - b->last_ns);
	if (credit > STORY_BURST_NS || now < b->last_ns)
		credit = STORY_BURST_NS;
	b->last_ns = now;
	if (credit < STORY_INTERVAL_NS) {
		b->credit_ns = credit;
		return false;
	}
	b->credit_ns = credit - STORY_INTERVAL_NS;
	return true;
}

/* Bucket boundaries in ns, ascending (event.h), set by the agent before load. */
volatile const __u64 req_bounds[PW_REQ_BOUNDS] = {};

/* Configuration from the agent, set before load. */
/*
 * Every request crosses the ring buffer, not only those with a story: the
 * tests of the connection state machine check each request's stamps.
 */
volatile const __u8 req_every = 0;
volatile const __u8 filter_ports = 0;
/*
 * sock:sk_data_ready exists: requests start at arrival, and reads and
 * writes are handled at syscall entry alone (a write's entry stands for
 * its end: microseconds apart), so the per-thread argument map and the
 * exit programs are not needed on the hot path.
 */
volatile const __u8 arrival_mode = 0;

#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262
#define AF_INET 2
#define AF_INET6 10

/*
 * Requests are TCP connections (MPTCP ones included: a Go >= 1.24 server
 * listens with MPTCP). The sock: tracepoints carry the socket's family and
 * protocol in their record, so every other socket (Unix, UDP, netlink:
 * most of a node's socket traffic) leaves on two compares, before any
 * helper call or map lookup.
 */
static __always_inline bool is_tcp(__u16 family, __u16 protocol)
{
	return (family == AF_INET || family == AF_INET6) && (protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP);
}

enum conn_state {
	CONN_IDLE = 0,       /* between requests */
	CONN_ARRIVED = 1,    /* request bytes arrived, not read yet */
	CONN_READING = 2,    /* the server is reading the request */
	CONN_RESPONDING = 3, /* the server has written part of a final response */
	/*
	 * Adopted mid-request (adopt.c): the request began before the agent,
	 * so it is not measured. Its response moves the connection to
	 * ADOPTED_RESPONDING, and the next request's data (the first request
	 * boundary seen) makes it idle.
	 */
	CONN_ADOPTED_READING = 4,
	CONN_ADOPTED_RESPONDING = 5,
};

/*
 * A connection's state is changed from process context (syscalls on any
 * CPU) and from softirq (sk_data_ready, inet_sock_set_state) on another
 * CPU at the same time. bpf_spin_lock is refused in tracing programs, so
 * every transition is a compare-and-swap of seq = generation << 8 | state:
 * whoever moves a request out of CONN_RESPONDING is the only one who
 * reports it, and the generation (bumped by every transition) makes a CAS
 * fail when the connection went round the cycle in between (no ABA).
 */
#define CONN_STATE(seq) ((__u8)((seq) & 0xff))

struct conn {
	__u64 start_ns;        /* first bytes of the current request arrived (or were read) */
	__u64 last_write_ns;   /* completion of the last response write */
	__u64 paused_start;    /* P(start_ns) */
	__u64 paused_write;    /* P(last_write_ns) */
	__u64 seq;             /* generation << 8 | enum conn_state; changed by CAS only */
	__u64 cpu_wait;        /* run-queue wait of its serving threads since start_ns (starved) */
	__u64 cpu_seen;        /* cpu_wait is accounted up to here */
	__u32 tgid;
	__u32 fd;
	__u16 port;
	__u8 flags;            /* PW_EVENT_F_READ_START */
	__u8 tcp;              /* a plain TCP socket, whose tcp_sock may be read (an MPTCP one is not) */
	__u32 write_seq;       /* the socket's write_seq at the start (or at an interim response) */
	__u64 next_ns;         /* the next request's data arrived while this one's response write was in flight */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* tgid << 32 | fd */
	__type(value, __u64); /* struct sock * */
} fd_socks SEC(".maps");

enum sys_op {
	OP_READ = 2,
	OP_WRITE = 3,
	OP_INTERIM = 4, /* a write of an interim (1xx) response */
};

struct sys_args {
	__u64 ts;
	__u32 fd;
	__u32 op;
};

/* Arguments of the syscall in progress, per thread, for its exit. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct sys_args);
} sys_args SEC(".maps");

/* Layout of every syscalls:sys_enter_* / sys_exit_* tracepoint record. */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

/* P(now): the process's cumulative STW time, a pause in progress included. */
static __always_inline __u64 paused_at(__u32 tgid, __u64 now)
{
	struct pw_pause_state *st = bpf_map_lookup_elem(&pause_state, &tgid);
	if (!st)
		return 0;
	__u64 p = st->paused_total_ns;
	if (st->in_progress && now > st->start_ns)
		p += now - st->start_ns;
	return p;
}

/*
 * P(at) for a moment at in the past (a request stamped when it is found,
 * after the fact): P(now) minus the part of (at, now] that the last pause
 * (or the one in progress) covered. Earlier pauses inside (at, now] are
 * not known, so this can only be too high, making the pause time inside
 * the request too low, never too high.
 */
static __always_inline __u64 paused_at_past(__u32 tgid, __u64 at, __u64 now)
{
	struct pw_pause_state *st = bpf_map_lookup_elem(&pause_state, &tgid);
	if (!st)
		return 0;
	__u64 p = st->paused_total_ns, s = st->start_ns;
	__u64 e = st->in_progress ? now : st->last_end_ns;
	if (st->in_progress && now > s)
		p += now - s;
	if (s < at)
		s = at;
	if (e > s)
		p = p > e - s ? p - (e - s) : 0;
	return p;
}

/*
 * The kernel's cumulative run-queue wait of each thread that served a
 * tracked connection (task_struct->sched_info.run_delay, CONFIG_SCHED_INFO)
 * at its last RD_SAMPLES reads and writes of one, with their times: the
 * wait a thread had between two moments is the difference of the samples
 * around them. Task storage: freed with the thread.
 */
#define RD_SAMPLES 8
struct thread_rd {
	__u64 at[RD_SAMPLES]; /* CLOCK_MONOTONIC, ns; 0: empty */
	__u64 rd[RD_SAMPLES]; /* run_delay then, ns */
	__u32 next;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_rd);
} thread_run_delay SEC(".maps");

/*
 * starved adds to c's request the run-queue wait of the current thread
 * (the one reading or writing it, in its syscall) since the request's
 * last accounted moment (cpu_seen: its start, then each of its reads
 * and writes): time runnable but not running, which includes the time
 * its cgroup was CFS-throttled (a throttled group's tasks stay queued).
 * run_delay is brought up to date when the thread is switched in, so it
 * is exact here, where the thread runs. The baseline is the thread's
 * latest sample at or before cpu_seen, so a request queued behind
 * another that the thread was serving while starved gets that wait too
 * (it waited for the same thread); the wait between that sample and
 * cpu_seen may be counted, and the whole is capped at now - cpu_seen.
 * With several serving threads (Go moves goroutines) each adds its own
 * wait; end_request caps the sum at the duration.
 */
static __always_inline void starved(struct conn *c, __u64 now)
{
	__u64 since = c->cpu_seen;
	struct task_struct *t = bpf_get_current_task_btf();
	struct thread_rd *h = bpf_task_storage_get(&thread_run_delay, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!h)
		return;
	/* A trusted BTF pointer: a plain load, not a bpf_probe_read_kernel call. */
	__u64 rd = t->sched_info.run_delay;
	/*
	 * The latest sample at or before since, else the oldest one. Only
	 * this thread writes its samples, in time order round the ring, so
	 * walking back from the newest the first at or before since is it:
	 * usually the newest itself (the thread's last call was on this
	 * connection), one step, not eight.
	 */
	__u64 base_at = 0, base_rd = 0, old_at = 0, old_rd = 0;
	__u32 newest = h->next + RD_SAMPLES - 1;
	for (int j = 0; j < RD_SAMPLES; j++) {
		__u32 i = (newest - j) % RD_SAMPLES;
		__u64 at = h->at[i];
		if (!at)
			break; /* never written: nothing older either */
		if (at <= since) {
			base_at = at;
			base_rd = h->rd[i];
			break;
		}
		old_at = at;
		old_rd = h->rd[i];
	}
	if (!base_at && old_at)
		base_rd = old_rd, base_at = old_at;
	__u32 k = h->next % RD_SAMPLES;
	h->at[k] = now;
	h->rd[k] = rd;
	h->next = k + 1;
	c->cpu_seen = now;
	/* A thread seen for the first time has no baseline: its past waits are unknown. */
	if (!base_at || rd <= base_rd || now <= since)
		return;
	__u64 wait = rd - base_rd;
	if (wait > now - since)
		wait = now - since;
	c->cpu_wait += wait;
}

/*
 * write_seq_of returns the sequence number after the last byte the server
 * has queued on c's socket sk (tcp_sock write_seq, advanced inside
 * tcp_sendmsg before sock:sock_send_length runs), 0 unless it is plain
 * TCP in arrival mode, the only place it is compared.
 */
static __always_inline __u32 write_seq_of(struct conn *c, __u64 sk)
{
	if (!arrival_mode || !c->tcp)
		return 0;
	return BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
}

/*
 * queued_before says whether the server has queued no byte on c's socket
 * sk since c's request began (or since its interim response): always
 * false where write_seq_of has no sequence to compare.
 */
static __always_inline bool queued_before(struct conn *c, __u64 sk)
{
	if (!arrival_mode || !c->tcp)
		return false;
	return write_seq_of(c, sk) == c->write_seq;
}

/* conn_cas moves c from exactly seen to state to; true if this caller did. */
static __always_inline bool conn_cas(struct conn *c, __u64 seen, __u8 to)
{
	__u64 next = (((seen >> 8) + 1) << 8) | to;
	return __sync_val_compare_and_swap(&c->seq, seen, next) == seen;
}

/*
 * bucket_of returns the histogram bucket of d ns: the first i with
 * d <= req_bounds[i], PW_REQ_BOUNDS above them all. A binary search
 * unrolled to 8 steps (2^8 > PW_REQ_BOUNDS), bounded for the verifier.
 */
static __always_inline __u32 bucket_of(__u64 d)
{
	__u32 lo = 0, hi = PW_REQ_BOUNDS;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u32 mid = (lo + hi) >> 1;
		if (lo < hi && mid < PW_REQ_BOUNDS) {
			if (d <= req_bounds[mid])
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	return lo;
}

/*
 * objective_of returns the objective of tgid's port in ns, 0 if none,
 * from h's copy while the agent has changed no objective since it was
 * taken (an array lookup, inlined), else from req_objectives (one or two
 * hash lookups). h is this CPU's: no other writer.
 */
static __always_inline __u64 objective_of(struct pw_req_hist *h, __u32 tgid, __u16 port)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&req_objectives_gen, &zero);
	if (!gen)
		return 0;
	__u64 g = *(volatile __u64 *)gen;
	if (h->objective_gen == g)
		return h->objective_ns;
	struct pw_req_objective_key k = {.tgid = tgid, .port = port};
	__u64 *o = bpf_map_lookup_elem(&req_objectives, &k);
	if (!o) {
		k.port = 0;
		o = bpf_map_lookup_elem(&req_objectives, &k);
	}
	h->objective_ns = o ? *o : 0;
	h->objective_gen = g;
	return h->objective_ns;
}

/*
 * count_request adds one request to its histogram on this CPU and
 * classifies a breach of its objective by the rule of agent.Breach (cause
 * "pause" when it would have met the objective without the pause inside
 * it, else "cpu" when it would have without the run-queue wait of its
 * serving threads inside it, else "other"). A request the map has no room for is counted as lost.
 */
static __always_inline void count_request(__u32 tgid, __u16 port, __u64 dur, __u64 paused, __u64 cpu)
{
	struct pw_req_key k = {.tgid = tgid, .port = port, .paused = paused > 0};
	struct pw_req_hist *h = bpf_map_lookup_elem(&req_hists, &k);
	if (!h) {
		__u32 zero = 0;
		struct pw_req_hist *z = bpf_map_lookup_elem(&req_zero, &zero);
		if (!z)
			return;
		bpf_map_update_elem(&req_hists, &k, z, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&req_hists, &k);
		if (!h) {
			count_stat(PW_STAT_REQ_UNCOUNTED);
			return;
		}
	}
	/* Per-CPU values: no other CPU writes these, plain adds suffice. */
	__u32 b = bucket_of(dur);
	if (b < PW_REQ_BUCKETS)
		h->buckets[b]++;
	h->sum_ns += dur;
	h->pause_ns += paused;
	if (!h->min_ns || dur < h->min_ns)
		h->min_ns = dur;
	if (dur > h->max_ns)
		h->max_ns = dur;
	__u64 obj = objective_of(h, tgid, port);
	if (obj && dur > obj) {
		if (paused >= dur || dur - paused <= obj)
			h->breach_pause++;
		else if (cpu >= dur || dur - cpu <= obj)
			h->breach_cpu++;
		else
			h->breach_other++;
	}
}

/*
 * end_request reports the request in progress on c, if it has a response,
 * and makes c idle. Two CPUs may get here for the same request at once
 * (a close or read on one, data-ready or a state change in softirq on the
 * other): the fields are read first, then the one CAS that takes the
 * connection out of CONN_RESPONDING decides who reports, so each request
 * is reported exactly once. A writer on a third CPU can only make the
 * copy a little older (its write then lands in the next generation).
 */
static __always_inline void end_request(struct conn *c)
{
	__u64 seen = *(volatile __u64 *)&c->seq;
	if (CONN_STATE(seen) != CONN_RESPONDING)
		return;
	__u64 start = c->start_ns, end = c->last_write_ns;
	__u64 p0 = c->paused_start, p1 = c->paused_write, cpu = c->cpu_wait;
	__u32 tgid = c->tgid, fd = c->fd;
	__u16 port = c->port;
	__u8 flags = c->flags;
	if (!conn_cas(c, seen, CONN_IDLE))
		return; /* another CPU ended it (or it moved on): theirs to report */
	if (end < start)
		return;
	__u64 dur = end - start, paused = p1 > p0 ? p1 - p0 : 0;
	if (cpu > dur)
		cpu = dur;
	count_request(tgid, port, dur, paused, cpu);
	/*
	 * Only a request with a story crosses the ring buffer: one a pause
	 * overlapped (its exemplar, `watch`), within the story budget. The
	 * histograms have the rest.
	 */
	if (!req_every && (!paused || !tell_story(paused)))
		return;
	struct pw_request *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_stat(PW_STAT_RINGBUF_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = PW_EVENT_REQUEST;
	e->pid = tgid;
	e->fd = fd;
	e->port = port;
	e->flags = flags;
	e->start_ns = start;
	e->duration_ns = dur;
	e->paused_ns = paused;
	e->cpu_wait_ns = cpu;
	bpf_ringbuf_submit(e, submit_flags());
}

/*
 * start_request starts a request on c, which was seen idle (seen). The
 * fields are written while the connection is idle, which nobody else acts
 * on; the CAS then publishes them. Starters of one socket are serialised
 * by the socket (softirq receive under its lock, reads after it).
 */
static __always_inline void start_request(struct conn *c, __u64 seen, __u64 now, __u8 flags, __u8 to, __u64 sk)
{
	c->start_ns = now;
	c->flags = flags;
	c->write_seq = write_seq_of(c, sk);
	c->next_ns = 0;
	c->paused_start = paused_at(c->tgid, now);
	c->paused_write = c->paused_start;
	c->cpu_wait = 0;
	c->cpu_seen = now;
	conn_cas(c, seen, to);
}

/*
 * past_adopted makes an adopted connection whose unmeasured request has
 * been answered idle, at the first sign of the next request (its data
 * arriving or being read); returns the connection's seq after it.
 */
static __always_inline __u64 past_adopted(struct conn *c)
{
	__u64 seen = *(volatile __u64 *)&c->seq;
	if (CONN_STATE(seen) == CONN_ADOPTED_RESPONDING && conn_cas(c, seen, CONN_IDLE))
		seen = *(volatile __u64 *)&c->seq;
	return seen;
}

/* reading says whether a connection's request is still being received. */
static __always_inline bool reading(__u8 st)
{
	return st == CONN_ARRIVED || st == CONN_READING || st == CONN_ADOPTED_READING;
}

/*
 * response_write records a completed response write at now on c's socket
 * sk. Writes on an idle connection are server-initiated data, not a
 * response.
 */
static __always_inline void response_write(struct conn *c, __u32 tgid, __u64 now, __u64 sk)
{
	__u64 seen = *(volatile __u64 *)&c->seq;
	if (CONN_STATE(seen) == CONN_IDLE || CONN_STATE(seen) == CONN_ADOPTED_RESPONDING)
		return;
	if (CONN_STATE(seen) == CONN_ADOPTED_READING) {
		conn_cas(c, seen, CONN_ADOPTED_RESPONDING);
		return;
	}
	/*
	 * A write that queued nothing since this request began (write_seq
	 * where its start took it) is no answer to it: its bytes were all
	 * queued before, the tail of the last response (or a greeting) whose
	 * completion is seen only now. The client, which already had them
	 * (loopback delivers inside the send), sent this request while the
	 * writer had yet to reach sock:sock_send_length; its arrival ended
	 * the last request at its previous write (or found the connection
	 * idle). Taken as this request's response, the request's own read
	 * then found it responding and counted it twice (a tiny one, then
	 * the real one from the read).
	 */
	if ((CONN_STATE(seen) == CONN_ARRIVED || CONN_STATE(seen) == CONN_READING) && queued_before(c, sk))
		return;
	c->last_write_ns = now;
	c->paused_write = paused_at(tgid, now);
	starved(c, now);
	/* A failed CAS means the state moved under us; look once more. */
	if (CONN_STATE(seen) != CONN_RESPONDING && !conn_cas(c, seen, CONN_RESPONDING)) {
		seen = *(volatile __u64 *)&c->seq;
		if (CONN_STATE(seen) == CONN_ARRIVED || CONN_STATE(seen) == CONN_READING)
			conn_cas(c, seen, CONN_RESPONDING);
	}
	/*
	 * The client had this response and sent its next request before
	 * this write was seen to complete (handle_sk_data_ready kept its
	 * arrival): the request ends here and the next one began then. A
	 * server that splices from the socket passes no receive tracepoint
	 * that would tell them apart later, so without this the two were
	 * one request.
	 */
	__u64 next = c->next_ns;
	if (!next)
		return;
	end_request(c);
	seen = *(volatile __u64 *)&c->seq;
	if (CONN_STATE(seen) != CONN_IDLE || next > now)
		return;
	start_request(c, seen, next, 0, CONN_ARRIVED, sk);
	c->paused_start = paused_at_past(tgid, next, now);
	c->paused_write = c->paused_start;
}

/*
 * received records a read that returned data (n > 0), begun at start_ts
 * and completed at now: it ends the response in progress only then. A
 * read that returns EAGAIN or nothing (Go's net/http parks a one-byte
 * background read on every connection while the handler runs) says
 * nothing about the request.
 */
static __always_inline void received(struct conn *c, __u64 start_ts, __u64 now, __u64 sk)
{
	__u64 seen = past_adopted(c);
	switch (CONN_STATE(seen)) {
	case CONN_ARRIVED:
		starved(c, now);
		conn_cas(c, seen, CONN_READING);
		return;
	case CONN_READING:
		starved(c, now);
		return;
	case CONN_RESPONDING:
		/*
		 * Data read after a final response: the next request. With
		 * arrival stamps its arrival would have ended the response
		 * already, so here it arrived before the response was done
		 * (pipelined) or had no arrival stamp: it starts at the read.
		 */
		end_request(c);
		seen = *(volatile __u64 *)&c->seq;
		if (CONN_STATE(seen) != CONN_IDLE)
			return;
		/* fallthrough */
	case CONN_IDLE:
		start_request(c, seen, start_ts, PW_EVENT_F_READ_START, CONN_READING, sk);
		starved(c, now); /* the thread's baseline: nothing of this request yet */
		return;
	}
}

/*
 * is_interim says whether buf starts an HTTP interim response
 * ("HTTP/1.x 1xx", except 101 Switching Protocols, which is final for
 * the HTTP exchange): 100 Continue and 103 Early Hints come before the
 * request is complete, so they must not end it. No byte pattern tells
 * an interim answer from a final one in general; HTTP's is the one
 * interim response in wide use, so it is the one recognised.
 */
static __always_inline bool is_interim(const void *buf)
{
	char b[12];
	if (!buf || bpf_probe_read_user(b, sizeof(b), buf))
		return false;
	if (b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/' || b[5] != '1' ||
	    b[6] != '.' || b[8] != ' ' || b[9] != '1')
		return false;
	return !(b[10] == '0' && b[11] == '1');
}

/* The first buffer of a write-like syscall nr with arguments a1 (buf or iov / msghdr). */
#define NR_WRITE 1
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_SENDMSG 46
#define NR_SENDMMSG 307

struct user_iovec {
	void *base;
	__u64 len;
};

struct user_msghdr_min {
	void *name;
	__s32 namelen;
	__u32 _pad;
	struct user_iovec *iov;
};

static __always_inline const void *first_buf(long nr, __u64 a1)
{
	struct user_iovec iov = {};
	switch (nr) {
	case NR_WRITE:
	case NR_SENDTO:
		return (const void *)a1;
	case NR_WRITEV:
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)a1))
			return NULL;
		return iov.base;
	case NR_SENDMSG:
	/*
	 * An mmsghdr starts with its msghdr: an L4 proxy that batches with
	 * sendmmsg relays a backend's 100 Continue (without this each upload
	 * through it was two requests, 800 for 400).
	 */
	case NR_SENDMMSG: {
		struct user_msghdr_min m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a1) ||
		    bpf_probe_read_user(&iov, sizeof(iov), m.iov))
			return NULL;
		return iov.base;
	}
	}
	return NULL;
}

/* sock_of returns the struct sock behind fd of the current task, or 0. */
static __always_inline __u64 sock_of(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return 0;
	return (__u64)BPF_CORE_READ(so, sk);
}

/*
 * Read mode (no arrival stamps): reads and writes are finished at their
 * syscall exit, with the fd kept from the entry in sys_args. With arrival
 * stamps they are taken at their completion from the sock: tracepoints,
 * which name the socket, and none of these run (no per-thread map).
 */
static __always_inline int enter(__u32 fd, __u32 op, __u64 buf_arg, long nr)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_traced(id >> 32))
		return 0;
	if (op == OP_WRITE) {
		/* Only the first write of a response can be an interim one. */
		__u64 key = (id & 0xffffffff00000000ULL) | fd;
		__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
		if (!sk)
			return 0;
		struct conn *c = bpf_map_lookup_elem(&conns, sk);
		if (!c)
			return 0;
		if (reading(CONN_STATE(*(volatile __u64 *)&c->seq)) && is_interim(first_buf(nr, buf_arg)))
			op = OP_INTERIM;
	}
	struct sys_args a = {.ts = bpf_ktime_get_ns(), .fd = fd, .op = op};
	__u32 tid = (__u32)id;
	bpf_map_update_elem(&sys_args, &tid, &a, BPF_ANY);
	return 0;
}

/*
 * start_queued starts a request on c, which is idle, when the socket sk
 * (just accepted, so nobody has read it) already holds data. The client
 * often sends its request before the server accepts (data waits in the
 * socket with the connection): sk_data_ready found no connection then.
 * The wait in the accept queue is the server's (a stopped accept loop
 * makes it long), so the request starts at the socket's last received
 * packet, TCP's tcp_mstamp: nothing else touches a socket nobody has
 * read, so that is the request's last segment (or a later ACK), never
 * before its first byte arrived. Failing that, at now, marked as a start
 * at a read.
 */
static __always_inline void start_queued(struct conn *c, __u64 sk, __u32 tgid, __u16 protocol)
{
	__u64 seen = *(volatile __u64 *)&c->seq;
	if (CONN_STATE(seen) != CONN_IDLE || BPF_CORE_READ((struct sock *)sk, sk_receive_queue.qlen) == 0)
		return;
	__u64 now = bpf_ktime_get_ns(), at = now;
	__u8 flags = PW_EVENT_F_READ_START;
	/* (Read mode stamps every start at a read: this one at the accept.) */
	if (arrival_mode && protocol == IPPROTO_TCP) {
		__u64 last = BPF_CORE_READ((struct tcp_sock *)sk, tcp_mstamp) * 1000;
		if (last && last <= now && now - last < 60ULL * 1000000000) {
			at = last;
			flags = 0;
		}
	}
	start_request(c, seen, at, flags, CONN_ARRIVED, sk);
	if (at < now) {
		c->paused_start = paused_at_past(tgid, at, now);
		c->paused_write = c->paused_start;
	}
}

/*
 * accepted tracks the connection accept returned. It needs nothing from
 * the accept's entry (the fd is the return value), so a thread that was
 * already blocked in accept when its process became traced (or when the
 * agent started) still has its connection tracked.
 */
static __always_inline int accepted(__s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (ret < 0 || !is_traced(tgid))
		return 0;
	__u32 fd = (__u32)ret;
	__u64 sk = sock_of(fd);
	if (!sk)
		return 0;
	/* (Any other connection would be left by every program that follows it.) */
	__u16 family = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_family);
	__u16 protocol = BPF_CORE_READ((struct sock *)sk, sk_protocol);
	if (!is_tcp(family, protocol))
		return 0;
	__u16 port = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_num);
	if (filter_ports && !bpf_map_lookup_elem(&traced_ports, &port))
		return 0;
	struct conn c = {.tgid = tgid, .fd = fd, .port = port, .seq = CONN_IDLE, .tcp = protocol == IPPROTO_TCP};
	start_queued(&c, sk, tgid, protocol);
	__u64 key = ((__u64)tgid << 32) | fd;
	if (bpf_map_update_elem(&conns, &sk, &c, BPF_ANY) ||
	    bpf_map_update_elem(&fd_socks, &key, &sk, BPF_ANY)) {
		count_stat(PW_STAT_CONN_LOST);
		return 0;
	}
	/*
	 * Data that arrived between the look at the queue and the insert
	 * found no connection at sk_data_ready. A server that reads with
	 * read/recv would start the request at its read, but one that
	 * splices from the socket (an L4 proxy's io.Copy) passes no receive
	 * tracepoint: without this its first request would go uncounted.
	 * sk_data_ready may run on another CPU now; the CAS from idle lets
	 * one of the two start it.
	 */
	if (CONN_STATE(c.seq) == CONN_IDLE) {
		struct conn *m = bpf_map_lookup_elem(&conns, &sk);
		if (m)
			start_queued(m, sk, tgid, protocol);
	}
	return 0;
}

static __always_inline int leave(__s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!is_traced(tgid))
		return 0;
	struct sys_args *a = bpf_map_lookup_elem(&sys_args, &tid);
	if (!a)
		return 0;
	__u32 fd = a->fd, op = a->op;
	__u64 ts = a->ts;
	bpf_map_delete_elem(&sys_args, &tid);
	if (ret < 0)
		return 0;

	__u64 key = ((__u64)tgid << 32) | fd;
	__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
	if (!sk)
		return 0;
	struct conn *c = bpf_map_lookup_elem(&conns, sk);
	if (!c)
		return 0;
	if (ret == 0)
		return 0;
	if (op == OP_READ)
		received(c, ts, bpf_ktime_get_ns(), *sk); /* no arrival seen: the request starts at its read */
	else if (op == OP_WRITE)
		response_write(c, tgid, bpf_ktime_get_ns(), *sk);
	return 0;
}

/* Layout of sock:sk_data_ready. */
struct sk_data_ready_ctx {
	__u64 common;
	__u64 skaddr;
	__u16 family;
	__u16 protocol;
	__u32 _pad;
	__u64 ip;
};

/* Data reached a socket: the start of a request on an idle connection. */
SEC("tracepoint/sock/sk_data_ready")
int handle_sk_data_ready(struct sk_data_ready_ctx *ctx)
{
	if (!is_tcp(ctx->family, ctx->protocol))
		return 0;
	__u64 sk = ctx->skaddr;
	struct conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (!c)
		return 0;
	/*
	 * Data after a final response: the next request, so the last one is
	 * done. (After an interim response the state is still CONN_READING:
	 * the rest of the request arriving changes nothing.)
	 */
	end_request(c);
	__u64 seen = past_adopted(c);
	__u8 st = CONN_STATE(seen);
	if (st == CONN_IDLE) {
		start_request(c, seen, bpf_ktime_get_ns(), 0, CONN_ARRIVED, sk);
	} else if ((st == CONN_ARRIVED || st == CONN_READING) && c->tcp && !c->next_ns &&
		   write_seq_of(c, sk) != c->write_seq) {
		/*
		 * Still reading, yet the server has queued bytes since the
		 * request began (write_seq moved) whose write was not seen to
		 * complete: the response is being written and the client,
		 * which already has it (loopback delivers inside the send),
		 * sent its next request while the writer was preempted before
		 * sock:sock_send_length. That write ends this request and
		 * starts the next at this arrival (response_write). Without a
		 * write in flight, more data is more of the same request.
		 */
		c->next_ns = bpf_ktime_get_ns();
	}
	return 0;
}

/* Layout of sock:sock_send_length and sock:sock_recv_length. */
struct sock_length_ctx {
	__u64 common;
	__u64 sk;
	__u16 family;
	__u16 protocol;
	__s32 ret;   /* bytes, or -errno */
	__s32 flags; /* MSG_* */
	__u32 _pad;
};

#define MSG_PEEK 2

/*
 * traced_conn returns the tracked connection of socket sk when the
 * current process, tgid, is traced: its traced_bits bit first (clear for
 * almost every caller), then the connection, and traced itself only when
 * the connection is not one this process accepted (a child it forked
 * serves it, or a recycled socket address). A process's bit is set before
 * it enters traced and cleared after it leaves it, and accepted() tracked
 * the connection for tgid only while tgid was in traced, so a set bit and
 * a connection of tgid's own say what the traced hash lookup would.
 */
static __always_inline struct conn *traced_conn(__u64 sk, __u32 tgid)
{
	__u64 *w = traced_word(tgid);
	if (w && !((*w >> (tgid & 63)) & 1))
		return NULL;
	struct conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (!c)
		return NULL;
	if (w && c->tgid == tgid)
		return c;
	return bpf_map_lookup_elem(&traced, &tgid) ? c : NULL;
}

/*
 * A send on a socket completed (arrival mode): a blocking write ends here,
 * not at its entry, which for a large body to a slow reader is seconds
 * earlier. Covers write, writev, send*, sendfile and splice to a socket.
 */
SEC("tracepoint/sock/sock_send_length")
int handle_sock_send_length(struct sock_length_ctx *ctx)
{
	/* The context's own fields first: they cost no call. */
	if (ctx->ret <= 0 || !is_tcp(ctx->family, ctx->protocol))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct conn *c = traced_conn(ctx->sk, id >> 32);
	if (!c)
		return 0;
	if (reading(CONN_STATE(*(volatile __u64 *)&c->seq))) {
		/*
		 * The first write of a response: an interim one leaves the
		 * request reading. The buffer is the syscall's, still mapped
		 * (we are inside it); its registers say which call it is.
		 */
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		/* (A BTF pointer: plain loads, no bpf_probe_read_kernel calls.) */
		if (is_interim(first_buf(regs->orig_ax, regs->si))) {
			/*
			 * The rest of the request (a body after 100 Continue)
			 * may follow: measured from here, it is no next request.
			 */
			c->write_seq = write_seq_of(c, ctx->sk);
			c->next_ns = 0;
			return 0;
		}
	}
	response_write(c, id >> 32, bpf_ktime_get_ns(), ctx->sk);
	return 0;
}

/*
 * A receive on a socket completed (arrival mode). Only a read that got
 * data counts: EAGAIN, EOF and MSG_PEEK read nothing of a new request.
 */
SEC("tracepoint/sock/sock_recv_length")
int handle_sock_recv_length(struct sock_length_ctx *ctx)
{
	if (ctx->ret <= 0 || (ctx->flags & MSG_PEEK) || !is_tcp(ctx->family, ctx->protocol))
		return 0;
	struct conn *c = traced_conn(ctx->sk, bpf_get_current_pid_tgid() >> 32);
	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	received(c, now, now, ctx->sk);
	return 0;
}

/*
 * The client closed its side (ESTABLISHED -> CLOSE_WAIT): the request in
 * progress has had its last write, whenever the server gets round to
 * closing the socket.
 */
struct inet_sock_set_state_ctx {
	__u64 common;
	__u64 skaddr;
	__s32 oldstate;
	__s32 newstate;
};

#define TCP_CLOSE_WAIT 8

SEC("tracepoint/sock/inet_sock_set_state")
int handle_inet_sock_set_state(struct inet_sock_set_state_ctx *ctx)
{
	if (ctx->newstate != TCP_CLOSE_WAIT)
		return 0;
	__u64 sk = ctx->skaddr;
	struct conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (c)
		end_request(c);
	return 0;
}

/* Layout of io_uring:io_uring_complete. */
struct io_uring_complete_ctx {
	__u64 common;
	__u64 ctx;
	__u64 req; /* struct io_kiocb * */
	__u64 user_data;
	__s32 res;
	__u32 cflags;
	__u64 extra1;
	__u64 extra2;
};

/* UAPI opcodes (linux/io_uring.h). */
#define IORING_OP_READV 1
#define IORING_OP_WRITEV 2
#define IORING_OP_SENDMSG 9
#define IORING_OP_RECVMSG 10
#define IORING_OP_ACCEPT 13
#define IORING_OP_READ 22
#define IORING_OP_WRITE 23
#define IORING_OP_SEND 26
#define IORING_OP_RECV 27
#define IORING_OP_SEND_ZC 47
#define IORING_OP_SENDMSG_ZC 48

/*
 * An io_uring request of a traced process completed. Its reads and writes
 * of sockets pass sock_recvmsg/sock_sendmsg, so with the sock: tracepoints
 * they are seen there; its accepts pass no accept syscall, so the new
 * connection is tracked here, from the result (an fd) checked against the
 * listener the request named. An accept into a fixed-file slot (a direct
 * descriptor) has no fd: not measured, counted (PW_STAT_UNCOVERED_ACCEPT).
 * Without the sock: tracepoints (read mode) reads and writes are taken
 * here at their completion.
 */
SEC("tracepoint/io_uring/io_uring_complete")
int handle_io_uring_complete(struct io_uring_complete_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_traced(id >> 32))
		return 0;
	/*
	 * A kernel without io_uring has no io_kiocb to relocate against: the
	 * reads below would fail to load, and with them the whole collection.
	 */
	if (!bpf_core_type_exists(struct io_kiocb))
		return 0;
	struct io_kiocb *req = (struct io_kiocb *)ctx->req;
	__u8 op = BPF_CORE_READ(req, opcode);
	struct file *f = BPF_CORE_READ(req, file);
	struct socket *so = f ? BPF_CORE_READ(f, private_data) : NULL;
	if (op == IORING_OP_ACCEPT) {
		if (ctx->res < 0 || !so)
			return 0;
		/* (Fixed-file accepts came with file_slot, in 5.15.) */
		if (bpf_core_field_exists(((struct io_accept *)0)->file_slot) &&
		    BPF_CORE_READ((struct io_accept *)req, file_slot)) {
			count_stat(PW_STAT_UNCOVERED_ACCEPT);
			return 0;
		}
		/* The fd must be a socket on the listener's port: a connection it accepted. */
		__u64 sk = sock_of(ctx->res);
		struct sock *lsk = BPF_CORE_READ(so, sk);
		if (!sk || !lsk || BPF_CORE_READ((struct sock *)sk, __sk_common.skc_num) !=
					   BPF_CORE_READ(lsk, __sk_common.skc_num))
			return 0;
		return accepted(ctx->res);
	}
	if (arrival_mode || ctx->res <= 0 || !so)
		return 0;
	__u64 sk = (__u64)BPF_CORE_READ(so, sk);
	struct conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (!c)
		return 0;
	switch (op) {
	case IORING_OP_READV:
	case IORING_OP_RECVMSG:
	case IORING_OP_READ:
	case IORING_OP_RECV: {
		__u64 now = bpf_ktime_get_ns();
		received(c, now, now, sk);
		break;
	}
	case IORING_OP_WRITEV:
	case IORING_OP_SENDMSG:
	case IORING_OP_WRITE:
	case IORING_OP_SEND:
	case IORING_OP_SEND_ZC:
	case IORING_OP_SENDMSG_ZC:
		response_write(c, id >> 32, bpf_ktime_get_ns(), sk);
		break;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sys_exit_ctx *ctx) { return accepted(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sys_exit_ctx *ctx) { return accepted(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ, 0, 0); }
SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ, 0, 0); }
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ, 0, 0); }
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

/* recvmmsg/sendmmsg: one or more messages (ret: how many) on one socket. */
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int enter_recvmmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int enter_sendmmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

/*
 * splice(fd_in, off_in, fd_out, ...) moves bytes between a pipe and a
 * socket without passing user memory (an L4 proxy's io.Copy in Go): a
 * write when fd_out is a tracked connection, else a read of fd_in.
 */
SEC("tracepoint/syscalls/sys_enter_splice")
int enter_splice(struct sys_enter_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_traced(id >> 32))
		return 0;
	__u64 key = (id & 0xffffffff00000000ULL) | (__u32)ctx->args[2];
	if (bpf_map_lookup_elem(&fd_socks, &key))
		return enter(ctx->args[2], OP_WRITE, 0, 0);
	return enter(ctx->args[0], OP_READ, 0, 0);
}
SEC("tracepoint/syscalls/sys_exit_splice")
int exit_splice(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, ctx->args[1], ctx->nr); }
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, ctx->args[1], ctx->nr); }
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, ctx->args[1], ctx->nr); }
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, ctx->args[1], ctx->nr); }
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile64(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE, ctx->args[1], ctx->nr); }
SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile64(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct sys_enter_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_traced(id >> 32))
		return 0;
	__u64 key = (id & 0xffffffff00000000ULL) | (__u32)ctx->args[0];
	__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
	if (!sk)
		return 0;
	__u64 skv = *sk;
	struct conn *c = bpf_map_lookup_elem(&conns, &skv);
	if (c)
		end_request(c);
	bpf_map_delete_elem(&conns, &skv);
	bpf_map_delete_elem(&fd_socks, &key);
	return 0;
}

/*
 * A traced process forked a child without exec (pre-fork servers: gunicorn,
 * Apache prefork, multiprocessing): the child serves requests on sockets
 * it inherits or accepts, so it is traced from the fork, not from when the
 * agent gets round to it, and the agent is told to inspect it. A raw
 * tracepoint for the child's task: the classic one gives only its pid,
 * which does not tell a new process from a new thread. Untraced
 * processes pay the one lookup.
 */
SEC("raw_tracepoint/sched_process_fork")
int handle_fork(__u64 *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (!is_traced(parent))
		return 0;
	struct task_struct *child = (struct task_struct *)ctx[1]; /* (parent, child) */
	__u32 pid = BPF_CORE_READ(child, pid), tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid || tgid == parent)
		return 0; /* a thread */
	trace_tgid(tgid);
	emit_simple(PW_EVENT_FORK, tgid);
	return 0;
}
