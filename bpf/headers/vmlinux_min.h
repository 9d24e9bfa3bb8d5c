/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types pausewatch's BPF programs touch, declared by hand
 * instead of a multi-megabyte bpftool dump. Every struct carries
 * preserve_access_index, so field accesses become CO-RE relocations that
 * libbpf/cilium resolve against the running kernel's BTF: the offsets below
 * only have to name the fields, not match any particular kernel.
 */
#ifndef __VMLINUX_MIN_H__
#define __VMLINUX_MIN_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 pid_t;
typedef _Bool bool;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum {
	false = 0,
	true = 1,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

/* x86-64 register file as the kernel saves it on a uprobe trap. */
struct pt_regs {
	long unsigned int r15;
	long unsigned int r14;
	long unsigned int r13;
	long unsigned int r12;
	long unsigned int bp;
	long unsigned int bx;
	long unsigned int r11;
	long unsigned int r10;
	long unsigned int r9;
	long unsigned int r8;
	long unsigned int ax;
	long unsigned int cx;
	long unsigned int dx;
	long unsigned int si;
	long unsigned int di;
	long unsigned int orig_ax;
	long unsigned int ip;
	long unsigned int cs;
	long unsigned int flags;
	long unsigned int sp;
	long unsigned int ss;
} __attribute__((preserve_access_index));

/* Kernel layouts are the kernel's: -Wpadded guards our own contract only. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"

/*
 * The path from a task to the socket behind one of its fds:
 * task->files->fdt->fd[n]->private_data (a struct socket) ->sk.
 */
struct file {
	void *private_data;
} __attribute__((preserve_access_index));

/* What a task_file iterator program is given (a stable ABI: no relocation). */
struct bpf_iter_meta {
	void *seq; /* struct seq_file */
	__u64 session_id;
	__u64 seq_num;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

/* CONFIG_SCHED_INFO: run_delay is the task's total run-queue wait, ns. */
struct sched_info {
	unsigned long long run_delay;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
	struct sched_info sched_info;
	pid_t pid;
	pid_t tgid;
} __attribute__((preserve_access_index));

struct sock_common {
	__u16 skc_num; /* local port, host order */
	unsigned short skc_family;
	volatile unsigned char skc_state; /* TCP_* */
} __attribute__((preserve_access_index));

struct sk_buff_head {
	__u32 qlen;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct sk_buff_head sk_receive_queue;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

/* A TCP socket: tcp_mstamp is its last packet received or sent, in µs of
 * the TCP clock (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns). */
struct inet_connection_sock {
	struct {
		__u32 lrcvtime; /* jiffies of the last data received */
	} icsk_ack;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u64 tcp_mstamp;
	__u32 rcv_nxt;        /* next sequence number expected */
	__u32 copied_seq;     /* head of yet unread data */
	__u32 lsndtime;       /* jiffies of the last data sent */
	__u64 bytes_received; /* data bytes received */
	__u32 write_seq;      /* tail+1 of the data queued to send */
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

/* An io_uring request (the kernel's struct io_kiocb) and an accept's arguments. */
struct io_kiocb {
	union {
		struct file *file; /* the file the request operates on */
	};
	__u8 opcode; /* IORING_OP_* */
} __attribute__((preserve_access_index));

struct io_accept {
	__u32 file_slot; /* non-zero: into a fixed-file slot, not the fd table */
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
};

#pragma clang diagnostic pop

#endif /* __VMLINUX_MIN_H__ */
