/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "grpcwall.h"

#define GW_CONN_POLICED 0x1  /* identity + service matched at connect */
#define GW_CONN_IN_MAP  0x2  /* inserted in the sockhash              */
#define GW_CONN_FAILED  0x4  /* failed closed: every send is dropped  */

struct gw_conn {
	struct gw_conn_origin origin;
	__u32 flags;
	__u16 ident, service;   /* resolved for `generation` */
	__u64 generation;
};

#endif
