// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * Connections accepted where no program saw it: before the agent started,
 * or before discovery had marked the process traced. Adopted by walking
 * every open file of every traced process (a task_file iterator; the agent
 * runs adopt_listeners, then adopt_conns) at start and again after
 * processes become traced. Without this, a keep-alive connection accepted
 * before the agent (every DaemonSet rollout restarts it) is never measured.
 *
 * Server side: a connection is adopted when its local port is one the
 * same process listens on (a socket of its in TCP_LISTEN). accept()ed
 * connections share their listener's port; a connection the process
 * opened itself has an ephemeral port, which connect() never picks while
 * a listener holds it.
 */

/* tgid << 32 | port: a local port a traced process listens on. Filled by
 * pass 1 and emptied by the agent after pass 2. Not an LRU: a process with
 * thousands of listeners, visited after another, would evict the other's
 * ports and with them every connection it had (measured: 5,000 listeners
 * in one process left 0 of 1,510 connections adopted). Full, a port is
 * counted (PW_STAT_CONN_LOST) and its connections are not adopted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} listen_ports SEC(".maps");

#define TCP_ESTABLISHED 1
#define TCP_LISTEN 10
/*
 * Go (1.24+) listens with MPTCP by default: the listener is an MPTCP
 * socket, and a plain-TCP client's connection falls back to a TCP one.
 */
#define IPPROTO_MPTCP 262

/* inet_sock_of returns the IPv4/IPv6 socket behind file of protocol proto, or NULL. */
static __always_inline struct sock *inet_sock_of(struct file *file, __u16 proto)
{
	if (!file)
		return NULL;
	struct socket *so = bpf_sock_from_file(file);
	if (!so)
		return NULL;
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != proto)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	return sk;
}

/* listen_port records sk's port as one tgid listens on, if sk is a listener. */
static __always_inline void listen_port(__u32 tgid, struct sock *sk)
{
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN)
		return;
	__u64 key = ((__u64)tgid << 32) | BPF_CORE_READ(sk, __sk_common.skc_num);
	__u8 one = 1;
	if (bpf_map_update_elem(&listen_ports, &key, &one, BPF_ANY))
		count_stat(PW_STAT_CONN_LOST);
}

/* Pass 1: the ports each traced process listens on. */
SEC("iter/task_file")
int adopt_listeners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (!is_traced(tgid))
		return 0;
	listen_port(tgid, inet_sock_of(ctx->file, IPPROTO_TCP));
	listen_port(tgid, inet_sock_of(ctx->file, IPPROTO_MPTCP));
	return 0;
}

/*
 * mid_request says whether an adopted connection may be inside a request
 * that is still arriving: data not read yet, or data received after the
 * server last sent. Between requests the last data on the connection is
 * the server's response. A connection the server has read a whole request
 * from and not answered yet is idle as far as this goes, which is right:
 * its response (a write on an idle connection) is ignored, and the next
 * request's data starts a request. The clocks are jiffies (1-4 ms): data
 * received in the tick of the server's last send is taken as answered, so
 * a request whose first segments arrived in that tick and whose rest had
 * not when the agent started is measured from its later segments. Any
 * other request in progress is not measured.
 */
static __always_inline bool mid_request(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (BPF_CORE_READ(tp, rcv_nxt) != BPF_CORE_READ(tp, copied_seq))
		return true;
	if (BPF_CORE_READ(tp, bytes_received) == 0)
		return false;
	__u32 rcvd = BPF_CORE_READ(tp, inet_conn.icsk_ack.lrcvtime), sent = BPF_CORE_READ(tp, lsndtime);
	return (__s32)(rcvd - sent) > 0;
}

/*
 * Pass 2: every established connection of a traced process on a port it
 * listens on. One already known (accepted since the agent started) is
 * left as it is. A request in progress is not measured (its start was
 * before the agent): the connection waits for the next request boundary
 * (CONN_ADOPTED_*). Writes tgid, fd (2 x u32) per adopted connection.
 */
SEC("iter/task_file")
int adopt_conns(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (!is_traced(tgid))
		return 0;
	/* (An MPTCP connection's socket is not a tcp_sock: not adopted.) */
	struct sock *sk = inet_sock_of(ctx->file, IPPROTO_TCP);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED)
		return 0;
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u64 lkey = ((__u64)tgid << 32) | port;
	if (!bpf_map_lookup_elem(&listen_ports, &lkey))
		return 0;
	if (filter_ports && !bpf_map_lookup_elem(&traced_ports, &port))
		return 0;
	__u32 fd = ctx->fd;
	__u64 skv = (__u64)sk;
	struct conn c = {.tgid = tgid, .fd = fd, .port = port, .tcp = 1,
			 .seq = mid_request(sk) ? CONN_ADOPTED_READING : CONN_IDLE};
	if (bpf_map_update_elem(&conns, &skv, &c, BPF_NOEXIST))
		return 0; /* known already: tracked since its accept */
	__u64 key = ((__u64)tgid << 32) | fd;
	if (bpf_map_update_elem(&fd_socks, &key, &skv, BPF_ANY)) {
		count_stat(PW_STAT_CONN_LOST);
		return 0;
	}
	__u32 rec[2] = {tgid, fd};
	bpf_seq_write(ctx->meta->seq, rec, sizeof(rec));
	return 0;
}
