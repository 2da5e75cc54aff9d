/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Where the walker reads (conn.h, struct gw_src), kept in the run's scratch
 * (conn_state.h, struct gw_walk_state). */
#ifndef GW_SRC_POS_H
#define GW_SRC_POS_H

#include "grpcwall.h"

#define GW_BLKBUF_LEN 16384 /* gw_blkbuf: a header block (GW_H2_MAX_BLOCK), a power of two */
#define GW_CARRY_MAX 32 /* the server side's carry (struct gw_srv_conn), a power of two */

/* map memory: the verifier tracks no value for it */
struct gw_src_pos {
	__u32 base;     /* offset of what is read, from the data start */
	__u32 pre_len;  /* GW_SRC_SKB: the first pre_len bytes walked are pre[] */
	__u32 buf_off;  /* GW_SRC_SKB: buffer bytes [buf_off, buf_off + buf_len) are */
	__u32 buf_len;  /* in gw_src.buf (the header block being parsed, copied once) */
	__u8 pre[GW_CARRY_MAX]; /* (carried from the last buffer), then the buffer's */
};

#endif
