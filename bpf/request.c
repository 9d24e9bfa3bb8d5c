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

/* Processes whose connections are traced (set by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} traced SEC(".maps");

/* Local ports to trace; empty = all ports of traced processes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} traced_ports SEC(".maps");

/* Configuration from the agent, set before load. */
volatile const __u8 filter_ports = 0;
/*
 * sock:sk_data_ready exists: requests start at arrival, and reads and
 * writes are handled at syscall entry alone (a write's entry stands for
 * its end: microseconds apart), so the per-thread argument map and the
 * exit programs are not needed on the hot path.
 */
volatile const __u8 arrival_mode = 0;

enum conn_state {
	CONN_IDLE = 0,       /* between requests */
	CONN_ARRIVED = 1,    /* request bytes arrived, not read yet */
	CONN_READING = 2,    /* the server is reading the request */
	CONN_RESPONDING = 3, /* the server has written part of a response */
};

struct conn {
	__u64 start_ns;        /* first bytes of the current request arrived (or were read) */
	__u64 last_write_ns;   /* last response write */
	__u64 paused_start;    /* P(start_ns) */
	__u64 paused_write;    /* P(last_write_ns) */
	__u32 tgid;
	__u32 fd;
	__u16 port;
	__u8 state;            /* enum conn_state */
	__u8 flags;            /* PW_EVENT_F_READ_START */
	__u32 _pad;
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
	OP_ACCEPT = 1,
	OP_READ = 2,
	OP_WRITE = 3,
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

static __always_inline bool is_traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced, &tgid) != NULL;
}

/* emit_request reports the request in progress on c and makes it idle. */
static __always_inline void emit_request(struct conn *c)
{
	if (c->state != CONN_RESPONDING || c->last_write_ns < c->start_ns) {
		c->state = CONN_IDLE;
		return;
	}
	struct pw_request *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	c->state = CONN_IDLE;
	if (!e) {
		count_stat(PW_STAT_RINGBUF_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = PW_EVENT_REQUEST;
	e->pid = c->tgid;
	e->fd = c->fd;
	e->port = c->port;
	e->flags = c->flags;
	e->start_ns = c->start_ns;
	e->duration_ns = c->last_write_ns - c->start_ns;
	e->paused_ns = c->paused_write > c->paused_start ? c->paused_write - c->paused_start : 0;
	bpf_ringbuf_submit(e, submit_flags());
}

static __always_inline void start_request(struct conn *c, __u64 now, __u8 flags)
{
	c->state = CONN_ARRIVED;
	c->start_ns = now;
	c->flags = flags;
	c->paused_start = paused_at(c->tgid, now);
	c->paused_write = c->paused_start;
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

static __always_inline int enter(__u32 fd, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_traced(id >> 32))
		return 0;
	if (arrival_mode && op != OP_ACCEPT) {
		__u64 key = (id & 0xffffffff00000000ULL) | fd;
		__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
		if (!sk)
			return 0;
		struct conn *c = bpf_map_lookup_elem(&conns, sk);
		if (!c)
			return 0;
		if (op == OP_READ) {
			/* Reading again after writing: the response is done. */
			if (c->state == CONN_RESPONDING)
				emit_request(c);
			else if (c->state == CONN_ARRIVED)
				c->state = CONN_READING;
			return 0;
		}
		if (c->state == CONN_IDLE)
			return 0; /* server-initiated data, not a response */
		__u64 now = bpf_ktime_get_ns();
		c->state = CONN_RESPONDING;
		c->last_write_ns = now;
		c->paused_write = paused_at(id >> 32, now);
		return 0;
	}
	struct sys_args a = {.ts = bpf_ktime_get_ns(), .fd = fd, .op = op};
	__u32 tid = (__u32)id;
	bpf_map_update_elem(&sys_args, &tid, &a, BPF_ANY);

	/*
	 * The server reading again after writing means the response is done
	 * (request/response protocols, no pipelining): report it now.
	 */
	if (op == OP_READ) {
		__u64 key = (id & 0xffffffff00000000ULL) | fd;
		__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
		if (sk) {
			struct conn *c = bpf_map_lookup_elem(&conns, sk);
			if (c && c->state == CONN_RESPONDING)
				emit_request(c);
		}
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

	if (op == OP_ACCEPT) {
		fd = (__u32)ret;
		__u64 sk = sock_of(fd);
		if (!sk)
			return 0;
		__u16 port = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_num);
		if (filter_ports && !bpf_map_lookup_elem(&traced_ports, &port))
			return 0;
		struct conn c = {.tgid = tgid, .fd = fd, .port = port, .state = CONN_IDLE};
		/*
		 * The client often sends its request before the server accepts
		 * (data waits in the socket with the connection): its arrival
		 * was not seen, so the request starts now, marked as such.
		 */
		if (BPF_CORE_READ((struct sock *)sk, sk_receive_queue.qlen) > 0)
			start_request(&c, bpf_ktime_get_ns(), PW_EVENT_F_READ_START);
		__u64 key = ((__u64)tgid << 32) | fd;
		if (bpf_map_update_elem(&conns, &sk, &c, BPF_ANY) ||
		    bpf_map_update_elem(&fd_socks, &key, &sk, BPF_ANY))
			count_stat(PW_STAT_CONN_LOST);
		return 0;
	}

	__u64 key = ((__u64)tgid << 32) | fd;
	__u64 *sk = bpf_map_lookup_elem(&fd_socks, &key);
	if (!sk)
		return 0;
	struct conn *c = bpf_map_lookup_elem(&conns, sk);
	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();

	if (op == OP_READ && ret > 0) {
		if (c->state == CONN_IDLE || c->state == CONN_RESPONDING) {
			/* No arrival seen (no sk_data_ready): start at the read. */
			if (c->state == CONN_RESPONDING)
				emit_request(c);
			start_request(c, ts, PW_EVENT_F_READ_START);
		}
		c->state = CONN_READING;
	} else if (op == OP_WRITE && ret > 0) {
		if (c->state == CONN_IDLE)
			return 0; /* server-initiated data, not a response */
		c->state = CONN_RESPONDING;
		c->last_write_ns = now;
		c->paused_write = paused_at(tgid, now);
	}
	return 0;
}

/* Data reached a socket: the start of a request on an idle connection. */
SEC("tracepoint/sock/sk_data_ready")
int handle_sk_data_ready(u64 *ctx)
{
	__u64 sk = ctx[1]; /* skaddr at offset 8 */
	struct conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (!c)
		return 0;
	if (c->state == CONN_RESPONDING)
		emit_request(c); /* the next request's data: the last one is done */
	if (c->state == CONN_IDLE)
		start_request(c, bpf_ktime_get_ns(), 0);
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
	if (c && c->state == CONN_RESPONDING)
		emit_request(c);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct sys_enter_ctx *ctx) { return enter(0, OP_ACCEPT); }
SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct sys_enter_ctx *ctx) { return enter(0, OP_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ); }
SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ); }
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ); }
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_READ); }
SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct sys_exit_ctx *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE); }
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE); }
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE); }
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE); }
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile64(struct sys_enter_ctx *ctx) { return enter(ctx->args[0], OP_WRITE); }
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
	if (c && c->state == CONN_RESPONDING) {
		emit_request(c);
	}
	bpf_map_delete_elem(&conns, &skv);
	bpf_map_delete_elem(&fd_socks, &key);
	return 0;
}
