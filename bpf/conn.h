/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "grpcwall.h"

/* hpack/ reads sk_msg data through this source (see hpack/hpack.h) */
struct gw_msg_src {
	struct sk_msg_md *msg;
	__u32 *base;    /* offset of what is read from msg data (map memory:
			 * the verifier tracks no value for it) */
};
#define GW_SRC_T struct gw_msg_src

static __always_inline int gw_src_byte(struct gw_msg_src *s, __u32 off)
{
	void *data = (void *)(long)s->msg->data;
	void *end = (void *)(long)s->msg->data_end;
	__u32 o = *s->base + off;
	unsigned char *p;

	if (o >= 0x7fff) /* frames read are < 32 KiB; keeps umax + 1 under the verifier's 0xffff */
		return -1;
	p = data + o;
	if ((void *)(p + 1) > end)
		return -1;
	return *p;
}

#include "h2.h"

#include "conn_state.h"

#endif
