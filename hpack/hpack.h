/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The HPACK model (RFC 7541) of one direction of an HTTP/2 connection, as
 * plain C that compiles for BPF and for userspace. It parses every field of
 * a header block, keeps a model of the dynamic table that knows, for each
 * entry holding a :path, the path's keyed hashes, and resolves the block's
 * :path (literal or indexed, raw or Huffman).
 *
 * The parser is a resumable step function: gw_hp_step() does a bounded
 * amount of work (one field header, or up to GW_HP_CHUNK string bytes) and
 * keeps all its state in caller-provided memory (BPF: map memory), so the
 * kernel drives it from bpf_loop() and tests from a plain loop.
 *
 * Bytes are read through gw_src_byte(src, off), which the includer defines
 * before including this file, together with the type GW_SRC_T.
 *
 * Bounds (what happens beyond them: the block fails with a reason):
 *   GW_HP_ENTRIES     live dynamic table entries modelled  -> GW_REASON_TABLE
 *   GW_HP_MAX_TABLE   largest table size update followed  -> GW_REASON_TABLE
 *   GW_PATH_MAX - 1   longest :path decided               -> GW_REASON_PATH_LONG (denied)
 *   65535             longest header name                 -> GW_REASON_BOUND
 *   GW_HPN_MAXLEN     longest name a later field refers to -> GW_REASON_TABLE
 *                     by index (a longer one is entered, its length not kept)
 *
 * The table model is small (gw_hp_table, 600 bytes): per entry its length
 * and a name code; :path entries' records (keyed hashes, length, is it a
 * canonical /service/method) in a ring of the newest GW_HP_PATHS. A record
 * pushed out of the ring while its entry is live goes to the spill
 * (gw_hp_spill, one record per entry), which the includer provides when
 * the ring overflows: the kernel makes it for the few connections that
 * keep more :path entries than the ring holds. A :path entry whose record
 * is gone (no spill could be made) is denied when referred to
 * (GW_REASON_TABLE). Entry numbers are 32 bits and wrap: a record is looked
 * for only for an entry whose name code says it was recorded
 * (GW_HPN_PATH_REC), and its own record is the newest with its number, so
 * a record of an entry numbered alike 2^32 entries ago is never taken.
 */
#ifndef GW_HPACK_H
#define GW_HPACK_H

#include "grpcwall.h"
#include "siphash.h"
#include "hpack_tables.h"

#define GW_HP_ENTRIES     128
#define GW_HP_MASK        (GW_HP_ENTRIES - 1)
#define GW_HP_DEFAULT_MAX 4096   /* SETTINGS_HEADER_TABLE_SIZE default, RFC 7540 6.5.2 */
#define GW_HP_MAX_TABLE   65536
#define GW_HP_OVERHEAD    32     /* RFC 7541 4.1: entry size = name + value + 32 */
#define GW_HP_CHUNK       16     /* string bytes per step */

/* an entry's name code (gw_hp_table.name) */
#define GW_HPN_MAXLEN   252 /* codes 0..252: the name's length */
#define GW_HPN_PATH_REC 253 /* :path, recorded (gw_hp_path_finish): a record says what it is */
#define GW_HPN_PATH     254 /* :path, not recorded (a block's other :path, trailers) */
#define GW_HPN_LONG     255 /* a name longer than GW_HPN_MAXLEN: length not kept */

/* :path record flags */
#define GW_HPE_PATH  0x1  /* a record */
#define GW_HPE_VALID 0x2  /* the value is a canonical /service/method */
#define GW_HPE_REWRITTEN 0x4 /* denied when it went in: the server's entry holds
			      * the rewritten path, not this one */

#define GW_HP_PATHS 8     /* :path records in the table model itself */

struct gw_hp_prec {
	__u64 h_exact;   /* keyed hash of the path (GW_MATCH_EXACT) */
	__u64 h_svc;     /* keyed hash of "/service/" (GW_MATCH_SERVICE) */
	__u32 ins;       /* the entry's number (gw_hp_table.ins when it went in) */
	__u16 path_len;  /* GW_PATH_MAX: longer */
	__u8  flags;
	__u8  pad0;
	__u32 h_exact_fold; /* GW_MATCH_EXACT_FOLD hash's low 32 bits (GW_FOLD_KEY) */
	__u32 h_svc_fold;   /* GW_MATCH_SERVICE_FOLD */
};

struct gw_hp_table {
	__u32 max_size;  /* from size updates; GW_HP_DEFAULT_MAX at start */
	__u32 size;
	__u32 ins;       /* entries ever inserted: newest is ins - 1 */
	__u32 n;         /* live entries */
	__u16 len[GW_HP_ENTRIES];  /* name + value bytes (entry size - 32) */
	__u8  name[GW_HP_ENTRIES]; /* name code: length, GW_HPN_PATH, GW_HPN_LONG */
	__u32 p_next;    /* :path records ever written: the next goes to p_next % GW_HP_PATHS */
	__u32 pad0;
	struct gw_hp_prec p[GW_HP_PATHS];
};

/* records pushed out of the ring while their entry was live, by entry slot */
struct gw_hp_spill {
	struct gw_hp_prec r[GW_HP_ENTRIES];
};

/* how the block's :path was written */
enum gw_path_how {
	GW_PATH_NONE = 0,
	GW_PATH_LIT_RAW,
	GW_PATH_LIT_HUFF,
	GW_PATH_IDX_STATIC,
	GW_PATH_IDX_DYN,
};

enum gw_hp_state {
	GW_HP_FIELD = 0,  /* at the first byte of a field representation */
	GW_HP_STR,        /* inside a string's bytes */
	GW_HP_DONE,
	GW_HP_ERR,
};

enum gw_str_mode {
	GW_STR_SKIP = 0,  /* neither :path nor inserted: jump over it */
	GW_STR_COUNT,     /* inserted Huffman string: count decoded length */
	GW_STR_NAME,      /* new name: length, and is it ":path"? */
	GW_STR_PATH,      /* :path value: decode into path[] */
};

/* parser state for one header block; lives in map memory in the kernel */
struct gw_hp_block {
	__u32 off;        /* next byte, relative to the block start */
	__u32 end;        /* block length */
	__u8  st;         /* enum gw_hp_state */
	__u8  err;        /* enum gw_reason when st == GW_HP_ERR */
	__u8  at_start;   /* no field yet: size updates allowed (RFC 7541 4.2) */
	__u8  f_insert;   /* current field: literal with incremental indexing */
	__u8  f_is_path;  /* current field's name is :path */
	__u8  s_which;    /* 0 name, 1 value */
	__u8  s_mode;     /* enum gw_str_mode */
	__u8  s_huff;
	__u8  h_state;    /* Huffman decoder state */
	__u8  h_accept;
	__u8  name_match; /* new name still equals ":path" so far */
	__u8  npath;      /* :path fields in the block: 0, 1, or 2 for more (gw_hp_count_path) */
	__u8  path_how;   /* enum gw_path_how */
	__u8  path_valid; /* /service/method, canonical characters */
	__u8  path_long;  /* longer than GW_PATH_MAX - 1 */
	__u8  path_inserted; /* the literal :path went into the table */
	__u16 f_name_len; /* decoded name length of the current field */
	__u16 path_len;   /* decoded :path length (capped at GW_PATH_MAX) */
	__u16 svc_len;    /* length of "/service/" in path */
	__u8  path_lost;  /* indexed :path whose record is gone */
	__u8  path_rewritten; /* indexed :path: GW_HPE_REWRITTEN */
	__u8  path_mark;  /* literal: a canonical path with '-' for its '/' (gw_hp_deny_rewrite's) */
	__u32 f_rep_off;  /* current field's first byte */
	__u32 s_off, s_end;
	__u32 s_dlen;     /* decoded bytes of the current string so far */
	__u32 path_rep_off; /* :path: first byte of its representation */
	__u32 path_val_off; /* :path literal: first byte of the value string */
	__u32 path_rep_len; /* :path indexed: bytes of the index */
	__u32 path_ins;     /* :path literal inserted: its entry number (t->ins) */
	__u32 h_exact_fold, h_svc_fold; /* a canonical path's, in lower case (GW_FOLD_KEY) */
	__u32 pad2;
	__u64 h_exact, h_svc;
	char  path[GW_PATH_MAX];
};

struct gw_hp_keys {
	__u64 k0, k1;
};

static __always_inline void gw_hp_table_init(struct gw_hp_table *t)
{
	__u32 i;

	t->max_size = GW_HP_DEFAULT_MAX;
	t->size = 0;
	t->ins = 0;
	t->n = 0;
	t->p_next = 0;
	for (i = 0; i < GW_HP_PATHS; i++) /* no record of an earlier connection stays */
		t->p[i].flags = 0;
}

static __always_inline void gw_hp_block_init(struct gw_hp_block *b, __u32 len)
{
	b->off = 0;
	b->end = len;
	b->st = GW_HP_FIELD;
	b->err = 0;
	b->at_start = 1;
	b->npath = 0;
	b->path_how = GW_PATH_NONE;
	b->path_valid = 0;
	b->path_long = 0;
	b->path_inserted = 0;
	b->path_lost = 0;
	b->path_rewritten = 0;
	b->path_mark = 0;
	b->path_len = 0;
	b->svc_len = 0;
	b->h_exact = 0;
	b->h_svc = 0;
	b->h_exact_fold = 0;
	b->h_svc_fold = 0;
}

static __always_inline int gw_hp_fail(struct gw_hp_block *b, __u8 reason)
{
	b->st = GW_HP_ERR;
	b->err = reason;
	return -1;
}

/* Evicts from the oldest end until size + need <= max (RFC 7541 4.4):
 * one entry per step, 1 to stop. */
struct gw_hp_evict_ctx {
	struct gw_hp_table *t;
	__u32 need;
};

static long gw_hp_evict_step(__u32 i, void *ctx)
{
	struct gw_hp_evict_ctx *x = (struct gw_hp_evict_ctx *)ctx;
	struct gw_hp_table *t = x->t;
	__u32 old;

	(void)i;
	if (!t->n || t->size + x->need <= t->max_size)
		return 1;
	old = (t->ins - t->n) & GW_HP_MASK;
	t->size -= (__u32)t->len[old] + GW_HP_OVERHEAD;
	t->n--;
	return 0;
}

static __always_inline void gw_hp_evict(struct gw_hp_table *t, __u32 need)
{
	struct gw_hp_evict_ctx x = { .t = t, .need = need };
#ifdef __bpf__
	/* bpf_loop: a loop of up to 128 data-dependent steps, inlined, is
	 * walked once per step count by the verifier at every state that
	 * reaches it; as a callback it is checked once */
	bpf_loop(GW_HP_ENTRIES, gw_hp_evict_step, &x, 0);
#else
	__u32 i;

	for (i = 0; i < GW_HP_ENTRIES; i++)
		if (gw_hp_evict_step(i, &x))
			break;
#endif
}

/* Adds an entry at the newest end. Returns -1 when the model cannot hold
 * it (more live entries than GW_HP_ENTRIES). */
static __always_inline int gw_hp_insert(struct gw_hp_table *t, __u32 name_len,
					__u32 value_len, struct gw_hp_block *b,
					__u8 is_path)
{
	__u32 size = name_len + value_len + GW_HP_OVERHEAD, k;

	if (is_path)
		b->path_ins = t->ins; /* unchanged t->ins afterwards: not inserted */
	gw_hp_evict(t, size);
	if (size > t->max_size) {
		/* RFC 7541 4.4: larger than the table: the table is emptied */
		t->n = 0;
		t->size = 0;
		if (is_path)
			b->path_inserted = 0; /* not entered: its number goes to the next entry */
		return 0;
	}
	if (t->n >= GW_HP_ENTRIES)
		return -1;
	k = t->ins & GW_HP_MASK;
	t->len[k] = size - GW_HP_OVERHEAD; /* size <= max_size <= GW_HP_MAX_TABLE */
	/* a :path's record: gw_hp_path_finish() */
	t->name[k] = is_path ? GW_HPN_PATH : name_len <= GW_HPN_MAXLEN ? name_len : GW_HPN_LONG;
	t->ins++;
	t->n++;
	t->size += size;
	return 0;
}

/* The byte at *off if it is before end (then *off moves on), else -1. */
static __always_inline int gw_hp_take(GW_SRC_T *src, __u32 *off, __u32 end)
{
	int c;

	if (*off >= end)
		return -1;
	c = gw_src_byte(src, *off);
	if (c >= 0)
		(*off)++;
	return c;
}

/* Reads an HPACK integer with an n-bit prefix at *off (RFC 7541 5.1). */
static __always_inline int gw_hp_int(GW_SRC_T *src, __u32 *off, __u32 end,
				     __u8 nbits, __u32 *out)
{
	__u32 max = (1u << nbits) - 1, v, m = 0, i;
	int c;

	c = gw_hp_take(src, off, end);
	if (c < 0)
		return -1;
	v = c & max;
	if (v < max) {
		*out = v;
		return 0;
	}
	for (i = 0; i < 4; i++) { /* up to 2^28: more is never a sane length */
		c = gw_hp_take(src, off, end);
		if (c < 0)
			return -1;
		v += (__u32)(c & 0x7f) << m;
		m += 7;
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* The :path check, one decoded character at a time (d: its position): is
 * the path a canonical /service/method? Policy names allow the same
 * character sets (gw_path_class); anything else is denied, never
 * normalised. gw_hp_close_string() adds the length rules. */
static __always_inline void gw_hp_path_see(struct gw_hp_block *b, __u32 d, __u8 sym)
{
	if (d == 0) {
		if (sym != '/') {
			b->path_valid = 0;
			b->path_mark = sym == '-'; /* canonical but for it, so far */
		}
	} else if (sym == '/') {
		if (b->svc_len) {
			b->path_valid = 0; /* a third '/' */
			b->path_mark = 0;
		} else {
			b->svc_len = d + 1;
		}
	} else if (!(gw_path_class[sym] & (b->svc_len ? GW_PATHC_METHOD : GW_PATHC_SERVICE))) {
		b->path_valid = 0;
		b->path_mark = 0;
	}
}

/* Is entry number e (gw_hp_table.ins when it went in) still in the table? */
static __always_inline int gw_hp_live(const struct gw_hp_table *t, __u32 e)
{
	return t->ins - e - 1 < t->n;
}

/* Would recording the block's literal :path push a record of a live entry
 * out of the ring? Then gw_hp_path_finish() wants the spill. */
static __always_inline int gw_hp_path_spills(const struct gw_hp_block *b,
					     const struct gw_hp_table *t)
{
	const struct gw_hp_prec *o = &t->p[t->p_next & (GW_HP_PATHS - 1)];

	if (b->path_how != GW_PATH_LIT_RAW && b->path_how != GW_PATH_LIT_HUFF)
		return 0;
	if (!b->path_inserted || !gw_hp_live(t, b->path_ins))
		return 0;
	return (o->flags & GW_HPE_PATH) && gw_hp_live(t, o->ins);
}

/* The record of :path entry number e: the ring, then the spill (sp may be
 * NULL: none made). NULL when it is gone. */
static __always_inline const struct gw_hp_prec *gw_hp_path_rec(const struct gw_hp_table *t,
							       const struct gw_hp_spill *sp,
							       __u32 e)
{
	const struct gw_hp_prec *r;
	__u32 i;

	/* newest first: e is a recorded entry (GW_HPN_PATH_REC), and a record
	 * of an entry numbered e 2^32 entries ago is older than e's own, which
	 * is found first (or was pushed out, to the spill's slot, after it) */
	for (i = 1; i <= GW_HP_PATHS; i++) {
		r = &t->p[(t->p_next - i) & (GW_HP_PATHS - 1)];
		if ((r->flags & GW_HPE_PATH) && r->ins == e)
			return r;
	}
	if (!sp)
		return 0;
	r = &sp->r[e & GW_HP_MASK];
	return ((r->flags & GW_HPE_PATH) && r->ins == e) ? r : 0;
}

/* After the block: hash the literal :path and, if it went into the table
 * and is still there, record what later references need (the ring's
 * oldest record to the spill when its entry is live: sp, NULL when none
 * could be made, and that record is lost). */
static __always_inline void gw_hp_path_finish(struct gw_hp_block *b, struct gw_hp_table *t,
					      const struct gw_hp_keys *k,
					      struct gw_hp_spill *sp)
{
	struct gw_hp_prec *r;
	__u32 len = b->path_len;

	if (b->path_how != GW_PATH_LIT_RAW && b->path_how != GW_PATH_LIT_HUFF)
		return;
	if (!b->path_valid)
		b->svc_len = 0;
	/* every path gets its exact hash (indexed references, event names);
	 * only a canonical one can match a service wildcard */
	b->h_exact = gw_hash_path((const struct gw_hash_path *)b->path,
				  len < GW_PATH_MAX ? len : GW_PATH_MAX,
				  k->k0, k->k1, GW_MATCH_EXACT);
	b->h_svc = b->path_valid ? gw_hash_path((const struct gw_hash_path *)b->path, b->svc_len,
						 k->k0, k->k1, GW_MATCH_SERVICE) : 0;
	/* and in lower case, for the deny entries a server that ignores case
	 * would route it to (looked up only for a canonical path; computed
	 * for every one: no branch for the verifier to follow twice) */
	b->h_exact_fold = (__u32)gw_hash_path((const struct gw_hash_path *)b->path,
						   len < GW_PATH_MAX ? len : GW_PATH_MAX,
						   k->k0, k->k1, GW_MATCH_EXACT_FOLD);
	b->h_svc_fold = (__u32)gw_hash_path((const struct gw_hash_path *)b->path, b->svc_len,
						 k->k0, k->k1, GW_MATCH_SERVICE_FOLD);
	if (!b->path_inserted || !gw_hp_live(t, b->path_ins))
		return;
	r = &t->p[t->p_next & (GW_HP_PATHS - 1)];
	if ((r->flags & GW_HPE_PATH) && gw_hp_live(t, r->ins) && sp)
		sp->r[r->ins & GW_HP_MASK] = *r;
	r->flags = GW_HPE_PATH | (b->path_valid ? GW_HPE_VALID : 0);
	r->ins = b->path_ins;
	r->path_len = b->path_long ? GW_PATH_MAX : b->path_len;
	r->h_exact = b->h_exact;
	r->h_svc = b->h_svc;
	r->h_exact_fold = b->h_exact_fold;
	r->h_svc_fold = b->h_svc_fold;
	t->p_next++;
	t->name[b->path_ins & GW_HP_MASK] = GW_HPN_PATH_REC;
}

/* One more :path field. Saturates at 2, "more than one": a count that
 * wrapped (256 fields fit in a block) would read as none (taken for
 * trailers) or as one (decided on the last while a server may keep the
 * first). */
static __always_inline void gw_hp_count_path(struct gw_hp_block *b)
{
	if (b->npath < 2)
		b->npath++;
}

/* Can the block's :path be looked up in a policy? -1 if so, else the
 * reason it is denied unlooked: exactly one :path, not too long, a
 * canonical /service/method. */
static __always_inline int gw_hp_path_reason(const struct gw_hp_block *b)
{
	if (b->npath != 1)
		return GW_REASON_BAD_PATH;
	if (b->path_lost)
		return GW_REASON_TABLE;
	if (b->path_long)
		return GW_REASON_PATH_LONG;
	if (!b->path_valid)
		return GW_REASON_BAD_PATH;
	return -1;
}

/* Opens the string at b->off for the current field (name or value). */
static __always_inline int gw_hp_open_string(struct gw_hp_block *b, GW_SRC_T *src,
					     __u8 which)
{
	__u32 len, off = b->off;
	int c = gw_src_byte(src, off);

	if (c < 0 || off >= b->end)
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	if (gw_hp_int(src, &off, b->end, 7, &len))
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	if (len > b->end - off)
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	b->s_which = which;
	b->s_huff = (c & 0x80) ? 1 : 0;
	b->s_off = off;
	b->s_end = off + len;
	b->s_dlen = 0;
	b->h_state = 0;
	b->h_accept = 1;
	if (which == 0) {
		b->s_mode = GW_STR_NAME;
		b->name_match = 1;
		if (!b->s_huff && len != 5) { /* raw: the length decides */
			b->name_match = 0;
			b->s_mode = GW_STR_SKIP;
		}
	} else if (b->f_is_path) {
		b->s_mode = GW_STR_PATH;
		b->path_rep_off = b->f_rep_off;
		b->path_val_off = off;
		b->path_how = b->s_huff ? GW_PATH_LIT_HUFF : GW_PATH_LIT_RAW;
		b->path_len = 0;
		b->path_long = 0;
		b->path_valid = 1; /* until a character or the length says otherwise */
		b->path_mark = 0;
		b->svc_len = 0;
		if (!b->s_huff && len >= GW_PATH_MAX) { /* too long to decide */
			b->path_long = 1;
			b->s_mode = GW_STR_SKIP;
		}
	} else if (b->f_insert && b->s_huff) {
		b->s_mode = GW_STR_COUNT;
	} else {
		/* raw inserted strings: the encoded length is the length */
		b->s_mode = GW_STR_SKIP;
		b->s_dlen = len;
	}
	b->off = b->s_end;
	if (b->s_mode == GW_STR_SKIP || (!b->s_huff && b->s_mode == GW_STR_COUNT)) {
		b->s_dlen = len;
		b->s_off = b->s_end;
	}
	b->st = GW_HP_STR;
	return 0;
}

/* One decoded byte of the current string. */
static __always_inline void gw_hp_emit(struct gw_hp_block *b, __u8 sym)
{
	__u32 d = b->s_dlen;

	if (b->s_mode == GW_STR_NAME) {
		/* ":path", its letters in any case: a server that reads names
		 * in any case (RFC 9113 makes ":PATH" malformed) would route a
		 * ":PATH" field, so it is one more :path here (two fail). One
		 * compare, bit 5 set: 0x1a passes for ':' (a name no server
		 * takes; taken as :path it can only be denied or fail more) */
		if (d >= 5 || (sym | 0x20) != (__u8)(0x687461703aULL >> (d * 8)))
			b->name_match = 0;
	} else if (b->s_mode == GW_STR_PATH) {
		if (d < GW_PATH_MAX - 1)
			b->path[d & (GW_PATH_MAX - 1)] = sym;
		else
			b->path_long = 1;
		gw_hp_path_see(b, d, sym);
	}
	b->s_dlen = d + 1;
}

/* Finishes the current string. For a name, opens the value; for a value,
 * finishes the field. */
static __always_inline int gw_hp_close_string(struct gw_hp_block *b,
					      struct gw_hp_table *t,
					      GW_SRC_T *src)
{
	if (b->s_huff && !b->h_accept)
		return gw_hp_fail(b, GW_REASON_PROTOCOL); /* bad padding, 5.2 */
	if (b->s_which == 0) {
		if (b->s_dlen > 0xffff) /* table entries keep name lengths in 16 bits */
			return gw_hp_fail(b, GW_REASON_BOUND);
		b->f_name_len = b->s_dlen;
		b->f_is_path = b->name_match && b->s_dlen == 5;
		b->off = b->s_end;
		return gw_hp_open_string(b, src, 1);
	}
	if (b->f_is_path) {
		gw_hp_count_path(b);
		b->path_inserted = b->f_insert;
		b->path_len = b->s_dlen < GW_PATH_MAX ? b->s_dlen : GW_PATH_MAX;
		if (b->s_dlen >= GW_PATH_MAX)
			b->path_long = 1;
		/* service and method both non-empty, the whole path decided */
		if (b->path_long || b->path_len < 4 || b->svc_len < 3 ||
		    b->svc_len >= b->path_len) {
			b->path_valid = 0;
			b->path_mark = 0;
		}
	}
	if (b->f_insert &&
	    gw_hp_insert(t, b->f_name_len, b->s_dlen, b, b->f_is_path))
		return gw_hp_fail(b, GW_REASON_TABLE);
	b->st = GW_HP_FIELD;
	return 0;
}

/* Decodes up to GW_HP_CHUNK bytes of the current string. */
static __always_inline int gw_hp_string_chunk(struct gw_hp_block *b, GW_SRC_T *src)
{
	__u32 i, e, st;
	int c;

	for (i = 0; i < GW_HP_CHUNK; i++) {
		if (b->s_off >= b->s_end)
			break;
		c = gw_src_byte(src, b->s_off);
		if (c < 0)
			return gw_hp_fail(b, GW_REASON_PROTOCOL);
		b->s_off++;
		if (!b->s_huff) {
			gw_hp_emit(b, (__u8)c);
			continue;
		}
		st = b->h_state;
		e = gw_huff_dec[((st << 4) | ((__u32)c >> 4)) & 0xfff];
		if (GW_HUFF_FAIL(e))
			return gw_hp_fail(b, GW_REASON_PROTOCOL);
		if (GW_HUFF_EMIT(e))
			gw_hp_emit(b, GW_HUFF_SYM(e));
		st = GW_HUFF_NEXT(e);
		e = gw_huff_dec[((st << 4) | ((__u32)c & 0xf)) & 0xfff];
		if (GW_HUFF_FAIL(e))
			return gw_hp_fail(b, GW_REASON_PROTOCOL);
		if (GW_HUFF_EMIT(e))
			gw_hp_emit(b, GW_HUFF_SYM(e));
		b->h_state = GW_HUFF_NEXT(e);
		b->h_accept = GW_HUFF_ACCEPT(e);
	}
	return 0;
}

/* A field that refers to the table by index (indexed field). */
static __always_inline int gw_hp_indexed(struct gw_hp_block *b, struct gw_hp_table *t,
					 const struct gw_hp_spill *sp, __u32 idx, __u32 rep_len)
{
	const struct gw_hp_prec *r;
	__u32 i, e, code;

	if (idx == 0)
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	if (idx <= GW_HP_STATIC_ENTRIES) {
		if (idx == 4 || idx == 5) { /* ":path /" and ":path /index.html" */
			gw_hp_count_path(b);
			b->path_how = GW_PATH_IDX_STATIC;
			b->path_rep_off = b->f_rep_off;
			b->path_rep_len = rep_len;
			b->path_valid = 0;
			b->path_len = idx == 4 ? 1 : 11;
		}
		return 0;
	}
	i = idx - GW_HP_STATIC_ENTRIES - 1;
	if (i >= t->n)
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	e = t->ins - 1 - i;
	code = t->name[e & GW_HP_MASK];
	if (code == GW_HPN_PATH || code == GW_HPN_PATH_REC) {
		gw_hp_count_path(b);
		b->path_how = GW_PATH_IDX_DYN;
		b->path_rep_off = b->f_rep_off;
		b->path_rep_len = rep_len;
		r = code == GW_HPN_PATH_REC ? gw_hp_path_rec(t, sp, e) : 0;
		if (!r) { /* never recorded (not canonical: denied), or its record
			   * is gone (denied, GW_REASON_TABLE): gw_hp_path_reason */
			b->path_lost = code == GW_HPN_PATH_REC;
			b->path_valid = 0;
			b->path_len = 0;
			b->h_exact = 0;
			b->h_svc = 0;
			b->h_exact_fold = 0;
			b->h_svc_fold = 0;
			return 0;
		}
		b->path_lost = 0;
		b->path_rewritten = (r->flags & GW_HPE_REWRITTEN) ? 1 : 0;
		b->path_valid = (r->flags & GW_HPE_VALID) ? 1 : 0;
		b->path_len = r->path_len;
		b->path_long = r->path_len >= GW_PATH_MAX;
		b->h_exact = r->h_exact;
		b->h_svc = r->h_svc;
		b->h_exact_fold = r->h_exact_fold;
		b->h_svc_fold = r->h_svc_fold;
	}
	return 0;
}

/* Name of a literal field given by index: its length and whether it is :path. */
static __always_inline int gw_hp_name_ref(struct gw_hp_block *b, struct gw_hp_table *t,
					  __u32 idx)
{
	__u32 i, code;

	if (idx <= GW_HP_STATIC_ENTRIES) {
		b->f_name_len = gw_hp_static_name_len[idx & 63];
		b->f_is_path = idx == 4 || idx == 5;
		return 0;
	}
	i = idx - GW_HP_STATIC_ENTRIES - 1;
	if (i >= t->n)
		return gw_hp_fail(b, GW_REASON_PROTOCOL);
	code = t->name[(t->ins - 1 - i) & GW_HP_MASK];
	if (code == GW_HPN_LONG) /* a long name's length is not kept */
		return gw_hp_fail(b, GW_REASON_TABLE);
	b->f_is_path = code == GW_HPN_PATH || code == GW_HPN_PATH_REC;
	b->f_name_len = b->f_is_path ? 5 : code;
	return 0;
}

/* One step of the block parser. Returns 1 when the block is done (or
 * failed: see b->st), 0 to be called again. */
static __always_inline int gw_hp_step(struct gw_hp_block *b, struct gw_hp_table *t,
				      const struct gw_hp_spill *sp, GW_SRC_T *src)
{
	__u32 off, v;
	int c;

	if (b->st == GW_HP_STR) {
		if (b->s_off < b->s_end && b->s_mode != GW_STR_SKIP) {
			if (gw_hp_string_chunk(b, src))
				return 1;
			if (b->s_off < b->s_end)
				return 0;
		}
		if (gw_hp_close_string(b, t, src))
			return 1;
		return 0;
	}
	if (b->st != GW_HP_FIELD)
		return 1;
	off = b->off;
	if (off >= b->end) {
		b->st = GW_HP_DONE;
		return 1;
	}
	c = gw_src_byte(src, off);
	if (c < 0) {
		gw_hp_fail(b, GW_REASON_PROTOCOL);
		return 1;
	}
	b->f_rep_off = off;
	if (c & 0x80) {                         /* 6.1 indexed */
		if (gw_hp_int(src, &off, b->end, 7, &v)) {
			gw_hp_fail(b, GW_REASON_PROTOCOL);
			return 1;
		}
		b->off = off;
		b->at_start = 0;
		return gw_hp_indexed(b, t, sp, v, off - b->f_rep_off) ? 1 : 0;
	}
	if ((c & 0xe0) == 0x20) {               /* 6.3 dynamic table size update */
		if (gw_hp_int(src, &off, b->end, 5, &v)) {
			gw_hp_fail(b, GW_REASON_PROTOCOL);
			return 1;
		}
		if (!b->at_start) {             /* 4.2: only at the block's start */
			gw_hp_fail(b, GW_REASON_PROTOCOL);
			return 1;
		}
		if (v > GW_HP_MAX_TABLE) {
			gw_hp_fail(b, GW_REASON_TABLE);
			return 1;
		}
		t->max_size = v;
		gw_hp_evict(t, 0);
		b->off = off;
		return 0;
	}
	/* 6.2 literals: with incremental indexing (01), without (0000),
	 * never indexed (0001) */
	b->at_start = 0;
	b->f_insert = (c & 0xc0) == 0x40;
	if (gw_hp_int(src, &off, b->end, b->f_insert ? 6 : 4, &v)) {
		gw_hp_fail(b, GW_REASON_PROTOCOL);
		return 1;
	}
	b->off = off;
	if (v == 0)
		return gw_hp_open_string(b, src, 0) ? 1 : 0;
	if (gw_hp_name_ref(b, t, v))
		return 1;
	return gw_hp_open_string(b, src, 1) ? 1 : 0;
}

/* A denied literal :path was rewritten in place and went into the table:
 * the server's entry holds the rewritten path. Its record says so, and a
 * later reference to it that a policy allows cannot be let through as
 * that path (gw_hp_path_regranted). */
static __always_inline void gw_hp_mark_rewritten(const struct gw_hp_block *b,
						 struct gw_hp_table *t, struct gw_hp_spill *sp)
{
	struct gw_hp_prec *r;

	if (b->path_how != GW_PATH_LIT_RAW && b->path_how != GW_PATH_LIT_HUFF)
		return;
	if (!b->path_inserted || !gw_hp_live(t, b->path_ins))
		return;
	r = (struct gw_hp_prec *)gw_hp_path_rec(t, sp, b->path_ins);
	if (r)
		r->flags |= GW_HPE_REWRITTEN;
}

/* Does the block refer to a :path entry the server holds rewritten? Then
 * an allow cannot reach the server as the path the client meant. */
static __always_inline int gw_hp_path_regranted(const struct gw_hp_block *b)
{
	return b->path_how == GW_PATH_IDX_DYN && b->path_rewritten;
}

/* What to write so the server refuses the block's RPC while both HPACK
 * tables stay in step (same encoded and decoded lengths): the first
 * character of a canonical literal :path becomes '-' (raw, or Huffman
 * 011000 '/' -> 010110), and an indexed reference to a :path entry becomes
 * 0x85 (static ":path /index.html"). Not '%': a server that percent-decodes
 * :path before routing would read "/2Fpkg.Svc/M" made "%2Fpkg.Svc/M" as
 * "/pkg.Svc/M". A canonical path has only [A-Za-z0-9_.-] besides its two
 * '/', so "-pkg.Svc/M" decodes or normalises to no route. A literal that
 * is not canonical (or too long to tell) is not rewritten: the rest of it
 * is the client's ("/x/../pkg.Svc/M" made "-x/../pkg.Svc/M" is
 * "pkg.Svc/M" to a server that removes dot segments). Returns 0 with *off
 * and *val set, 1 when nothing needs writing (a static :path, "/" or
 * "/index.html", or a literal this rewrite made: a grpcwall in front, on
 * the client's host, denied it), -1 when the caller must fail the
 * connection: such a literal, no length-preserving rewrite, or no :path at
 * all (a request without one is no gRPC call). */
static __always_inline int gw_hp_deny_rewrite(const struct gw_hp_block *b, GW_SRC_T *src,
					      __u32 *off, __u8 *val)
{
	int c;

	switch (b->path_how) {
	case GW_PATH_LIT_RAW:
		/* a mark or a valid path is never long nor empty */
		if (b->path_mark)
			return 1;
		if (!b->path_valid)
			return -1;
		*off = b->path_val_off;
		*val = '-';
		return 0;
	case GW_PATH_LIT_HUFF:
		if (b->path_mark)
			return 1;
		if (!b->path_valid)
			return -1;
		c = gw_src_byte(src, b->path_val_off);
		if (c < 0 || (c & 0xfc) != 0x60)  /* must start with '/' (011000) */
			return -1;
		*off = b->path_val_off;
		*val = (__u8)((c & 0x03) | 0x58); /* '-' (010110): six bits too */
		return 0;
	case GW_PATH_IDX_DYN:
		if (b->path_rep_len != 1)
			return -1;
		*off = b->path_rep_off;
		*val = 0x85;
		return 0;
	case GW_PATH_IDX_STATIC:
		return 1;
	default:
		return -1;
	}
}

/* Is the block's one :path what gw_hp_deny_rewrite makes of a denied one,
 * unroutable on any gRPC server (a literal that is a canonical path with
 * '-' for its first '/', or a static entry: "/" or "/index.html")? A
 * walker behind another one (the server side of a connection whose client
 * side is walked on this host) passes such a block as the first one left
 * it. Never '%...' (what a client sends to a server that decodes it), nor
 * '-' before anything else ("-x/../pkg.Svc/M": the client's own). */
static __always_inline int gw_hp_path_unroutable(const struct gw_hp_block *b)
{
	if (b->npath != 1)
		return 0;
	switch (b->path_how) {
	case GW_PATH_LIT_RAW:
	case GW_PATH_LIT_HUFF:
		return b->path_mark; /* never long */
	case GW_PATH_IDX_STATIC:
		return 1;
	default:
		return 0;
	}
}

#endif /* GW_HPACK_H */
