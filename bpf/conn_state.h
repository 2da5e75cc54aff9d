/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage (gw_conns). Include after h2.h:
 * the kernel through conn.h, userspace (the fallback helper marks its pool
 * sockets) through hpack/userspace.h. */
#ifndef GW_CONN_STATE_H
#define GW_CONN_STATE_H

#define GW_CONN_POLICED 0x1  /* identity + service matched at connect */
#define GW_CONN_IN_MAP  0x2  /* inserted in the sockhash              */
#define GW_CONN_FAILED  0x4  /* failed closed: every send is dropped  */
#define GW_CONN_POOL    0x8  /* the fallback helper's end of a pool pair */
#define GW_CONN_DIVERTED 0x10 /* sends go to the fallback helper      */

struct gw_conn {
	struct gw_conn_origin origin;
	__u32 flags;
	__u16 ident, service;   /* resolved for `generation` */
	__u64 generation;
	__u64 cookie;           /* socket cookie (not available to sk_msg) */
	__u32 pool_slot;        /* GW_CONN_POOL / GW_CONN_DIVERTED: gw_pool index */
	__u32 pad1;
	struct gw_h2 h2;        /* frame walker and HPACK model */
};

#endif
