/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The userspace fallback (`grpcwall proxy`) for header blocks the kernel
 * cannot see whole. Shared by the BPF programs and the helper.
 *
 * The helper owns GW_POOL_SLOTS connected loopback socket pairs. It puts
 * its end of pair i in gw_sockhash (key: that socket's cookie, published in
 * gw_fb_ret) and marks it GW_CONN_POOL in gw_conns. When a policed
 * connection meets such a block, its sk_msg program claims a free slot,
 * copies its table model into gw_pool[i] and from then on redirects every
 * byte it sends (BPF_F_INGRESS) into the helper's socket. The helper reads,
 * decides with full HPACK, and writes the bytes back; the pool socket's
 * program redirects them (egress) out of the original connection.
 *
 * Ownership (one writer per field, no locks):
 *   gw_pool[i]      kernel: claim, epoch, model at divert, bytes diverted
 *   gw_fb_ret       helper: u64 cells, slot * GW_FB_RET_CELLS + cell
 *   gw_fb_model[i]  helper: model at the last handback point
 *   gw_fb_stats[0]  helper: pid and what it decided
 * Handing back: the helper, at a frame boundary with nothing held back,
 * writes gw_fb_model[i] and then GW_FB_HANDBACK = epoch << 40 | bytes
 * written. The kernel resumes the connection only when that equals its own
 * epoch and bytes diverted, so no byte is ever reordered.
 */
#ifndef GW_FALLBACK_H
#define GW_FALLBACK_H

#include "grpcwall.h"

#define GW_POOL_SLOTS   32
#define GW_FB_MAX_BLOCK (1 << 20)  /* largest header block the helper decides */

enum gw_fb_cell {
	GW_FB_COOKIE = 0,    /* cookie of the helper's socket (0: none) */
	GW_FB_HANDBACK,      /* epoch << 40 | bytes re-sent, at a handback point */
	GW_FB_FAILED,        /* epoch the helper gave up on: fail that connection */
	GW_FB_RET_CELLS,
};
#define GW_FB_BYTES_MASK ((1ULL << 40) - 1)
#define GW_FB_PACK(epoch, bytes) (((__u64)(epoch) << 40) | ((bytes) & GW_FB_BYTES_MASK))

/* A slot's life: FREE -> CLAIMING (the kernel claims it, compare-and-swap)
 * -> BUSY (once it wrote the connection's cookie, epoch and model) -> FREE
 * (handed back whole) or RECYCLE (its connection failed while diverted:
 * the kernel sets it; or closed: the helper sees its cookie gone from
 * gw_sockhash) -> FREE (the helper, after it opened new pool sockets for
 * the slot, so no byte of the old connection can reach the next one). */
enum gw_pool_state {
	GW_POOL_FREE = 0,
	GW_POOL_BUSY = 1,
	GW_POOL_RECYCLE = 2,
	GW_POOL_CLAIMING = 3,
};

struct gw_pool_slot {
	__u32 busy;          /* enum gw_pool_state */
	__u32 epoch;         /* bumped at every claim */
	__u64 conn_cookie;   /* the diverted connection's key in gw_sockhash */
	__u64 pool_cookie;   /* the helper socket bytes go to, fixed at claim */
	__u64 diverted;      /* bytes redirected to the helper this epoch */
	__u32 reason;        /* why: GW_REASON_CONTINUATION or GW_REASON_BOUND */
	__u32 passthrough;   /* first bytes diverted that the kernel walked already:
			      * the helper forwards them unparsed */
	struct gw_conn_origin origin;
	struct gw_h2_model model; /* the table model at the claim */
};

struct gw_fb_stats {
	__u32 pid;           /* the running helper (0: none) */
	__u32 slots;
	__u64 started_ns;    /* CLOCK_MONOTONIC */
	__u64 blocks;        /* header blocks decided in userspace */
	__u64 big_blocks;    /* ... of them continued or over the kernel bound */
	__u64 bytes;         /* bytes passed through */
	__u64 allowed, denied, audited;
	__u64 failed;        /* connections it could not follow */
};

GW_ABI_ASSERT(gw_pool_slot, 5008);
GW_ABI_ASSERT(gw_fb_stats, 72);

#endif /* GW_FALLBACK_H */
