// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * USDT argument reading. The Go side parses each probe's argument specs
 * from .note.stapsdt, stores them in usdt_specs and attaches the probe with
 * the spec's index as BPF cookie.
 */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct pw_usdt_spec);
} usdt_specs SEC(".maps");

/* usdt_arg reads argument idx of the probe that fired; 0 on success. */
static __always_inline int usdt_arg(struct pt_regs *ctx, __u32 idx, __u64 *out)
{
	__u32 key = (__u32)bpf_get_attach_cookie(ctx);
	struct pw_usdt_spec *spec = bpf_map_lookup_elem(&usdt_specs, &key);
	if (!spec || idx >= PW_USDT_MAX_ARGS)
		return -1;
	struct pw_usdt_arg *a = &spec->args[idx];
	__u64 v = 0;

	switch (a->kind) {
	case PW_USDT_ARG_CONST:
		v = a->val;
		break;
	case PW_USDT_ARG_REG:
		if (a->reg_off > sizeof(struct pt_regs) - 8)
			return -1;
		if (bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + a->reg_off))
			return -1;
		break;
	case PW_USDT_ARG_REG_MEM: {
		__u64 base = 0;
		if (a->reg_off > sizeof(struct pt_regs) - 8)
			return -1;
		if (bpf_probe_read_kernel(&base, sizeof(base), (void *)ctx + a->reg_off))
			return -1;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(base + a->val)))
			return -1;
		break;
	}
	default:
		return -1;
	}

	/* Keep the low size bytes, sign-extended when the spec says signed. */
	switch (a->size) {
	case 1:
		v = a->is_signed ? (__u64)(__s64)(__s8)v : (__u8)v;
		break;
	case 2:
		v = a->is_signed ? (__u64)(__s64)(__s16)v : (__u16)v;
		break;
	case 4:
		v = a->is_signed ? (__u64)(__s64)(__s32)v : (__u32)v;
		break;
	}
	*out = v;
	return 0;
}
