/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Per-connection state kept in sk_storage (gw_conns). Include after h2.h:
 * the kernel through conn.h, userspace (the fallback helper marks its pool
 * sockets) through hpack/userspace.h. */
#ifndef GW_CONN_STATE_H
#define GW_CONN_STATE_H

#include "src_pos.h"

#define GW_CONN_POLICED 0x1  /* identity + service matched at connect */
#define GW_CONN_IN_MAP  0x2  /* inserted in the sockhash              */
#define GW_CONN_FAILED  0x4  /* failed closed: every send is dropped  */
#define GW_CONN_POOL    0x8  /* the fallback helper's end of a pool pair */
#define GW_CONN_DIVERTED 0x10 /* sends go to the fallback helper      */
#define GW_CONN_CHECKED 0x20  /* not policed: the egress guard looked (generation) */
#define GW_CONN_PASSIVE 0x40  /* accepted, its peer is a service address and port */
#define GW_CONN_SPILL   0x80  /* has a gw_spill (more live :path entries than the ring) */
#define GW_CONN_SERVER  0x100 /* server side: an accepted connection walked on receive
			       * (gw_srv_conns, gw_sk_skb) */
#define GW_CONN_PEER_LOCAL 0x200 /* server side: the caller is a socket of this host, known by its cgroup */
#define GW_CONN_PEER_WALKED 0x400 /* server side: ... and the client side walks it (gw_local_calls):
				   * that side counts and reports its RPCs */

/* The sk_msg program's walk over one message (grpcwall.bpf.c), in map
 * memory so that the verifier tracks no value of it across bpf_loop steps
 * (gw_scratch: nothing of it outlives the run). */
struct gw_walk_state {
	struct gw_h2_frame f; /* the HEADERS frame at off (BLOCK) */
	__u32 pad1;
	__u32 fo;         /* where the frame at off starts, from msg->data */
	__u32 size;       /* bytes in the message */
	__u32 off;        /* next byte to walk */
	__u32 n;          /* bytes of the frame at off (BLOCK) */
	__u32 t_ins, t_n, t_max; /* the HPACK table before the block (BLOCK) */
	__u32 need;       /* NEED: hold the message until it is this long */
	__u32 stream;     /* FAIL / DIVERT: the frame's stream */
	__u8  mode;       /* enum gw_walk_mode */
	__u8  res;        /* enum gw_walk_res */
	__u8  reason;     /* FAIL / DIVERT */
	__u8  policed;
	__u8  lin;        /* msg->data covers the message from its first byte */
	__u8  pad0[7];
	struct gw_src_pos pos; /* where the walker reads, from the data start */
};

/* What one program run works in and nothing after it reads: the walk over
 * a message and the parser of its header blocks. A per-CPU map of
 * GW_SCRATCH_SLOTS (gw_scratch), claimed per run with a compare-and-swap on
 * busy: a run preempted on its CPU (a preemptible kernel) keeps its slot
 * while another takes the next, the first free one from slot 0 (one try
 * unless runs are preempted mid-walk on the CPU). Only more runs preempted
 * mid-walk on one CPU than slots fail a write (GW_REASON_BUSY). Kept out of
 * gw_conn, whose every byte is per connection. */
#define GW_SCRATCH_SLOTS 64
struct gw_scratch {
	__u32 busy;
	__u32 pad0;
	struct gw_walk_state w;
	struct gw_hp_block blk;
};

/* Frames of the last message walked that came after its last HEADERS
 * frame (stream offsets, mod 2^32), the first GW_RESYNC_FRAMES of them:
 * where a short write may be picked up again (grpcwall.bpf.c, gw_resync).
 * A frame is its header [start, pay) and payload [pay, end); payload that
 * began in an earlier write is an entry with start == pay. */
#define GW_RESYNC_FRAMES 16
#define GW_RS_HEADER 0x80000000u /* span: a frame header at start (pay = start + 9) */
struct gw_resync {
	__u32 n;
	__u32 pad0;
	__u32 start[GW_RESYNC_FRAMES];
	__u32 span[GW_RESYNC_FRAMES]; /* end - start, | GW_RS_HEADER */
};

/* The last request header block the walker allowed with the HPACK table
 * left as it was (grpcwall.bpf.c, gw_repeat): the same bytes, under the
 * same generation and on the same table, decide the same, so they are
 * allowed again without a parse. A block that changes the table, a new
 * generation, a handover to or from the fallback and a new connect empty
 * it (len 0).
 * The bytes as 8-byte words: the whole words, then the last 8 bytes
 * (overlapping) when the length is no multiple of 8. */
#define GW_REPEAT_MAX 64
struct gw_repeat {
	__u64 w[GW_REPEAT_MAX / 8];
	__u16 len;        /* block bytes; 0: nothing held (and at every new generation) */
	__u16 rule;
	__u32 pad0;
};

/* All that is kept per policed connection, at most 1 KiB: what every
 * sk_msg run reads comes first (the first 64 bytes, then the repeat and
 * the resync count); the ends, read for events and once per generation,
 * and the table model after. What a run works in is in gw_scratch; the
 * identity is read from the socket's cgroup, never kept (gw_refresh);
 * :path records beyond the table model's ring go to gw_spill, made for
 * the connections that need it. */
struct gw_conn {
	__u32 flags;
	__u16 ident, service;   /* resolved for `generation` */
	__u64 generation;
	__u64 cookie;           /* socket cookie (not available to sk_msg) */
	__u32 pool_slot;        /* GW_CONN_POOL / GW_CONN_DIVERTED: gw_pool index */
	/* The send-path invariant (egress guard, grpcwall.bpf.c): stream
	 * byte i has TCP sequence number seq0 + i; no payload byte at or past
	 * seq0 + approved leaves the host, and every sk_msg run checks that
	 * the socket holds exactly `approved` bytes before its message. */
	__u32 seq0;             /* ISN + 1, recorded at connect */
	__u64 approved;         /* stream bytes the walker let through */
	__u64 read_end;         /* stream offset past the last byte it read */
	__u32 skip;             /* payload bytes still to pass unread */
	__u32 read_off;         /* in the message being walked: past the last byte read */
	__u32 cork_done;        /* in a held message: bytes already walked */
	__u32 corked_for;       /* the held message is released at this size (0: none held) */
	__u64 sender;           /* pid_tgid of the task whose send was walked last */
	struct gw_repeat rp;
	struct gw_resync rs;
	struct gw_conn_ends ends;
	struct gw_h2 h2;        /* frame walker and HPACK model */
};

/* The server side's state (gw_srv_conns): the walker's gw_conn, and the
 * bytes of a preface or frame header cut at the end of the last buffer
 * (passed on: the server can do nothing with part of one), read again
 * before the next buffer's. */
/*
 * Server side, what the server writes back (gw_srv_msg): the streams the
 * receive side denied, and where the walk over the server's frames is.
 * A denied stream's answer is turned into PERMISSION_DENIED from grpcwall
 * (its Trailers-Only HEADERS kept as response headers and followed by
 * trailers of ours, or its RST_STREAM replaced by a Trailers-Only HEADERS
 * of ours); neither touches either side's HPACK table.
 */
#ifndef GW_DENIED_RING /* (tests build another layout with -DGW_DENIED_RING=9: make build/other/grpcwall) */
#define GW_DENIED_RING 8
#endif
#define GW_RULE_CLIENT_SIDE 0xffff /* gw_denied.rule: denied by this host's client side */
struct gw_denied {
	__u32 stream;           /* 0: free */
	__u16 rule;             /* 0: none (no identity, no rule allows it) */
	__u8  slot;             /* the policy slot of the rule */
	__u8  pad0;
};

struct gw_srv_resp {
	__u64 passed;           /* bytes the walk passed (with what it added) */
	__u32 seq0;             /* the server's first sequence number (ISN + 1) */
	__u32 skip;             /* payload bytes of the frame under way, still to pass */
	__u32 next;             /* denials recorded: the next goes to next % GW_DENIED_RING */
	__u8  hlen;             /* bytes of a frame header cut at the end of the last write */
	__u8  lost;             /* the walk lost the server's frames: nothing more is changed */
	__u8  pad0[2];
	__u8  hdr[16];          /* that header's bytes */
	struct gw_denied d[GW_DENIED_RING];
};

struct gw_srv_conn {
	struct gw_conn c;
	__u32 carry_len;        /* < H2_PREFACE_LEN */
	__u32 hold;             /* its gw_srv_holds slot + 1 while a frame is held; 0: none */
	__u64 held_ns;          /* time its frames were held, summed over released holds */
	__u8 carry[GW_CARRY_MAX];
	struct gw_srv_resp resp;
};

GW_ABI_ASSERT(gw_h2_model, 4768);
GW_ABI_ASSERT(gw_hp_spill, 4096);
GW_ABI_ASSERT(gw_scratch, 480);
GW_ABI_ASSERT(gw_conn, 1016); /* at most 1 KiB per connection (issue 10) */
GW_ABI_ASSERT(gw_srv_conn, 1104 + 8 * GW_DENIED_RING); /* 1168 */

#endif
