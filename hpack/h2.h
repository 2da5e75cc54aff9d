/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * HTTP/2 frame walker (RFC 9113) for one direction of a connection, shared
 * by the sk_msg program and userspace. It looks only at the start of what
 * is not yet decided and says what to do:
 *   GW_ACT_NEED n   wait until n bytes are there (kernel: cork)
 *   GW_ACT_PASS n   the next n bytes need no look (preface, DATA, SETTINGS...):
 *                   skipped in O(1) (kernel: apply_bytes), never read
 *   GW_ACT_BLOCK n  a whole HEADERS frame of n bytes: decide its header block
 *   GW_ACT_FAIL     cannot follow: the connection fails closed
 *   GW_ACT_DIVERT   a HEADERS frame whose block the kernel cannot see whole
 *                   (CONTINUATION follows, or over GW_H2_MAX_BLOCK): the
 *                   userspace fallback takes the connection from this frame
 *                   on (h->reason says which; nothing else changed)
 * Direction-independent: the same walker serves client->server (sk_msg) and,
 * later, server-side verdict programs.
 */
#ifndef GW_H2_H
#define GW_H2_H

#include "hpack.h"

#define H2_PREFACE_LEN        24   /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
#define H2_FRAME_HEADER_LEN   9
#define H2_FRAME_DATA         0x0
#define H2_FRAME_HEADERS      0x1
#define H2_FRAME_PUSH_PROMISE 0x5
#define H2_FRAME_CONTINUATION 0x9
#define H2_FLAG_END_STREAM    0x1
#define H2_FLAG_END_HEADERS   0x4
#define H2_FLAG_PADDED        0x8
#define H2_FLAG_PRIORITY      0x20

/* the largest HEADERS frame decided in the kernel (SETTINGS_MAX_FRAME_SIZE
 * default, RFC 9113 6.5.2); larger ones go to the fallback (issue 4) */
#define GW_H2_MAX_BLOCK       16384

enum gw_h2_stage { GW_H2_PREFACE = 0, GW_H2_FRAMES, GW_H2_FAILED };
enum gw_h2_act { GW_ACT_NEED = 0, GW_ACT_PASS, GW_ACT_BLOCK, GW_ACT_FAIL, GW_ACT_DIVERT };

struct gw_h2 {
	__u8  stage;        /* enum gw_h2_stage */
	__u8  reason;       /* why it failed */
	__u16 pad0;
	__u32 last_stream;  /* highest client stream id opened */
	__u64 blocks;       /* header blocks decided */
	struct gw_hp_table table;
};

/* the current HEADERS frame */
struct gw_h2_frame {
	__u32 len;          /* payload length */
	__u32 stream;
	__u8  type, flags;
	__u8  is_request;   /* opens a new stream (else: trailers) */
	__u8  pad0;
	__u32 blk_off;      /* header block within the frame (from its first byte) */
	__u32 blk_len;
};

/* file scope, GW_TABLE (hpack_tables.h): see there */
GW_TABLE char gw_h2_preface[H2_PREFACE_LEN] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r";

static __always_inline void gw_h2_init(struct gw_h2 *h)
{
	h->stage = GW_H2_PREFACE;
	h->reason = 0;
	h->last_stream = 0;
	h->blocks = 0;
	gw_hp_table_init(&h->table);
}

static __always_inline int gw_h2_fail(struct gw_h2 *h, __u8 reason)
{
	h->stage = GW_H2_FAILED;
	h->reason = reason;
	return GW_ACT_FAIL;
}

/* Reads the frame header at offset 0 into *f. -1: not all 9 bytes there. */
static __always_inline int gw_h2_read_header(GW_SRC_T *src, struct gw_h2_frame *f)
{
	int b[H2_FRAME_HEADER_LEN];
	__u32 i;

	for (i = 0; i < H2_FRAME_HEADER_LEN; i++) {
		b[i] = gw_src_byte(src, i);
		if (b[i] < 0)
			return -1;
	}
	f->len = ((__u32)b[0] << 16) | ((__u32)b[1] << 8) | (__u32)b[2];
	f->type = b[3];
	f->flags = b[4];
	f->stream = (((__u32)b[5] << 24) | ((__u32)b[6] << 16) | ((__u32)b[7] << 8) |
		     (__u32)b[8]) & 0x7fffffff;
	return 0;
}

/* Where the header block of the HEADERS frame at offset 0 is: after the Pad
 * Length byte and the PRIORITY fields, before the padding. Sets blk_off and
 * blk_len. -1: a protocol error (or the Pad Length byte is not there). */
static __always_inline int gw_h2_headers_span(GW_SRC_T *src, struct gw_h2_frame *f)
{
	__u32 pad = 0, pri = 0;

	if (f->flags & H2_FLAG_PADDED) {
		int p = gw_src_byte(src, H2_FRAME_HEADER_LEN);

		if (p < 0 || f->len < 1)
			return -1;
		pad = (__u32)p + 1;  /* the Pad Length byte, and the padding */
	}
	if (f->flags & H2_FLAG_PRIORITY)
		pri = 5;
	if (pad + pri > f->len)
		return -1;
	f->blk_off = H2_FRAME_HEADER_LEN + pri + (pad ? 1 : 0);
	f->blk_len = f->len - pri - pad;
	return 0;
}

/* Looks at the bytes at offset 0 (`avail` of them are there) and returns
 * an enum gw_h2_act with *n set. For GW_ACT_BLOCK, *f describes the frame. */
static __always_inline int gw_h2_next(struct gw_h2 *h, GW_SRC_T *src, __u32 avail,
				      struct gw_h2_frame *f, __u32 *n)
{
	__u32 i, len;

	if (h->stage == GW_H2_FAILED)
		return GW_ACT_FAIL;
	if (h->stage == GW_H2_PREFACE) {
		if (avail < H2_PREFACE_LEN) {
			*n = H2_PREFACE_LEN;
			return GW_ACT_NEED;
		}
		for (i = 0; i < H2_PREFACE_LEN - 1; i++)
			if (gw_src_byte(src, i) != (__u8)gw_h2_preface[i])
				return gw_h2_fail(h, GW_REASON_NOT_H2);
		if (gw_src_byte(src, H2_PREFACE_LEN - 1) != '\n')
			return gw_h2_fail(h, GW_REASON_NOT_H2);
		h->stage = GW_H2_FRAMES;
		*n = H2_PREFACE_LEN;
		return GW_ACT_PASS;
	}
	if (avail < H2_FRAME_HEADER_LEN) {
		*n = H2_FRAME_HEADER_LEN;
		return GW_ACT_NEED;
	}
	if (gw_h2_read_header(src, f))
		return gw_h2_fail(h, GW_REASON_NOMEM);
	len = f->len;
	*n = H2_FRAME_HEADER_LEN + len;
	if (f->type == H2_FRAME_CONTINUATION)
		return gw_h2_fail(h, GW_REASON_CONTINUATION);
	if (f->type == H2_FRAME_PUSH_PROMISE) /* a client never sends it */
		return gw_h2_fail(h, GW_REASON_PROTOCOL);
	if (f->type != H2_FRAME_HEADERS)
		return GW_ACT_PASS;
	if (!f->stream || !(f->stream & 1))
		return gw_h2_fail(h, GW_REASON_PROTOCOL);
	if (!(f->flags & H2_FLAG_END_HEADERS)) {
		h->reason = GW_REASON_CONTINUATION;
		return GW_ACT_DIVERT;
	}
	if (len > GW_H2_MAX_BLOCK) {
		h->reason = GW_REASON_BOUND;
		return GW_ACT_DIVERT;
	}
	if (avail < H2_FRAME_HEADER_LEN + len)
		return GW_ACT_NEED;
	if (gw_h2_headers_span(src, f))
		return gw_h2_fail(h, GW_REASON_PROTOCOL);
	f->is_request = f->stream > h->last_stream;
	if (f->is_request)
		h->last_stream = f->stream;
	return GW_ACT_BLOCK;
}

/* What the fallback and the kernel hand each other when a connection
 * moves between them: the walker is at a frame boundary, past the preface. */
struct gw_h2_model {
	__u32 last_stream;
	__u32 has_spill;    /* spill holds records (else: none, whatever it holds) */
	struct gw_hp_table table;
	struct gw_hp_spill spill;
};

#endif /* GW_H2_H */
