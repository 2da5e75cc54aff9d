/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Where the walker reads (conn.h, struct gw_src), kept in the run's scratch
 * (conn_state.h, struct gw_walk_state). */
#ifndef GW_SRC_POS_H
#define GW_SRC_POS_H

#include "grpcwall.h"

#define GW_CARRY_MAX 32 /* the server side's carry (struct gw_srv_conn), a power of two */

/* map memory: the verifier tracks no value for it */
struct gw_src_pos {
	__u32 base;     /* offset of what is read, from the data start */
	__u32 pre_len;  /* GW_SRC_SKB: the first pre_len bytes walked are pre[] */
	__u8 pre[GW_CARRY_MAX]; /* (carried from the last buffer), then the buffer's */
};

#endif
