/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "grpcwall.h"
#include "src_pos.h"

/*
 * Where the walker and hpack/ read the bytes they decide: the data of an
 * sk_msg message (what a policed client writes) or of an sk_skb buffer
 * (what a policed server receives). The walker is written once; every
 * copy of its step function fixes `kind` to a constant (gw_walk_step), so
 * clang keeps one branch of each accessor below and the verifier sees only
 * the context fields of its own program type.
 */
enum gw_src_kind {
	GW_SRC_MSG = 0, /* ctx: struct sk_msg_md * */
	GW_SRC_SKB = 1, /* ctx: struct __sk_buff * */
};

struct gw_src {
	void *ctx;
	struct gw_src_pos *pos;
	__u8 *buf;      /* GW_SRC_SKB: gw_blkbuf of this CPU (pos->buf_off, buf_len), or NULL */
	__u32 kind;     /* enum gw_src_kind */
};
#define GW_SRC_T struct gw_src

#define GW_SRC_OFF_MAX 0x7fff /* offsets read are < 32 KiB: keeps umax + 1 under the verifier's 0xffff */

static __always_inline void *gw_src_data(struct gw_src *s)
{
	if (s->kind == GW_SRC_SKB)
		return (void *)(long)((struct __sk_buff *)s->ctx)->data;
	return (void *)(long)((struct sk_msg_md *)s->ctx)->data;
}

static __always_inline void *gw_src_end(struct gw_src *s)
{
	if (s->kind == GW_SRC_SKB)
		return (void *)(long)((struct __sk_buff *)s->ctx)->data_end;
	return (void *)(long)((struct sk_msg_md *)s->ctx)->data_end;
}

static __always_inline int gw_src_byte(struct gw_src *s, __u32 off)
{
	void *data, *end;
	__u32 o = s->pos->base + off;
	unsigned char *p, b;

	if (s->kind == GW_SRC_SKB) {
		if (o < s->pos->pre_len)
			return o < GW_CARRY_MAX ? s->pos->pre[o & (GW_CARRY_MAX - 1)] : -1;
		/* the header block being parsed: copied once (gw_walk_step) */
		if (s->buf && o - s->pos->pre_len - s->pos->buf_off < s->pos->buf_len)
			return s->buf[(o - s->pos->pre_len - s->pos->buf_off) & (GW_BLKBUF_LEN - 1)];
		/* received data is mostly in pages (GRO, veth, loopback):
		 * read by copy, at any offset, nothing linearised */
		if (bpf_skb_load_bytes(s->ctx, o - s->pos->pre_len, &b, 1))
			return -1;
		return b;
	}
	data = gw_src_data(s);
	end = gw_src_end(s);
	if (o >= GW_SRC_OFF_MAX)
		return -1;
	p = data + o;
	if ((void *)(p + 1) > end)
		return -1;
	return *p;
}

/* Makes bytes [off, off + n) of a message readable from gw_src_data:
 * returns where off is then (a pull moves the data start to off), or -1.
 * (A buffer is read by copy, gw_src_byte: the walker never pulls one.) */
static __always_inline int gw_src_pull(struct gw_src *s, __u32 off, __u32 n)
{
	return bpf_msg_pull_data(s->ctx, off, off + n, 0) ? -1 : 0;
}

/* Writes one byte at offset o from the data start (the :path rewrite of a
 * denied RPC); 0 or -1. */
static __always_inline int gw_src_write(struct gw_src *s, __u32 o, __u8 val)
{
	__u8 *data, *end;

	if (s->kind == GW_SRC_SKB) /* (a header block never starts in the carry) */
		return o < s->pos->pre_len || bpf_skb_store_bytes(s->ctx, o - s->pos->pre_len, &val, 1, 0) ? -1 : 0;
	data = gw_src_data(s);
	end = gw_src_end(s);
	if (o >= GW_SRC_OFF_MAX || data + o + 1 > end)
		return -1;
	data[o] = val;
	return 0;
}

#include "h2.h"

#include "conn_state.h"

#endif
