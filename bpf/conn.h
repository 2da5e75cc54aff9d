/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "grpcwall.h"

/* hpack/ reads sk_msg data through this source (see hpack/hpack.h) */
struct gw_msg_src {
	struct sk_msg_md *msg;
	__u32 base;     /* offset of the header block in msg data */
	__u32 pad0;
};
#define GW_SRC_T struct gw_msg_src

static __always_inline int gw_src_byte(struct gw_msg_src *s, __u32 off)
{
	void *data = (void *)(long)s->msg->data;
	void *end = (void *)(long)s->msg->data_end;
	__u32 o = s->base + off;
	unsigned char *p;

	if (o >= 0x7fff) /* frames read are < 32 KiB; keeps umax + 1 under the verifier's 0xffff */
		return -1;
	p = data + o;
	if ((void *)(p + 1) > end)
		return -1;
	return *p;
}

#include "h2.h"

#define GW_CONN_POLICED 0x1  /* identity + service matched at connect */
#define GW_CONN_IN_MAP  0x2  /* inserted in the sockhash              */
#define GW_CONN_FAILED  0x4  /* failed closed: every send is dropped  */

struct gw_conn {
	struct gw_conn_origin origin;
	__u32 flags;
	__u16 ident, service;   /* resolved for `generation` */
	__u64 generation;
	__u64 cookie;           /* socket cookie (not available to sk_msg) */
	struct gw_h2 h2;        /* frame walker and HPACK model */
};

#endif
