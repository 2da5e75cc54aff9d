// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * grpcwall datapath.
 *
 * sockops: at connect() (in the connecting task's context) record the
 * task's cgroup ancestry and the destination; if that makes the connection
 * policed under the live policy, put the socket in gw_sockhash once it is
 * established, which binds the sk_msg program to it.
 *
 * sk_msg: runs on every write of a policed connection. It follows the
 * client's HTTP/2 stream one frame per run (hpack/h2.h): frames other
 * than HEADERS are passed with apply_bytes without a look at their payload;
 * a HEADERS frame is corked until whole, pulled, its header block parsed by
 * the shared HPACK model (hpack/hpack.h) from bpf_loop, and its :path
 * decided against the live policy. A denied RPC has the first character of
 * its :path rewritten in place (HPACK-consistently), so the server refuses
 * that RPC alone; anything the parser cannot follow fails the connection
 * (SK_DROP) with an event.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "grpcwall.h"
#include "maps.h"
#include "resolve.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

/* IPv4 destination of the connection: plain AF_INET, or an AF_INET6 socket
 * connected to a v4-mapped address (::ffff:a.b.c.d), which is what gRPC
 * C-core and Node use. Returns 0 for real IPv6 (not policed yet). */
static __always_inline __u32 gw_remote_ip4(struct bpf_sock_ops *skops)
{
	if (skops->family == AF_INET)
		return skops->remote_ip4;
	if (skops->family == AF_INET6 && skops->remote_ip6[0] == 0 &&
	    skops->remote_ip6[1] == 0 &&
	    skops->remote_ip6[2] == bpf_htonl(0x0000ffff))
		return skops->remote_ip6[3];
	return 0;
}

static __always_inline __u32 gw_local_ip4(struct bpf_sock_ops *skops)
{
	__u32 a4 = skops->local_ip4, a6 = skops->local_ip6[3];

	/* both loads at fixed offsets: clang would otherwise merge them into
	 * one ctx load at a computed offset, which the verifier refuses */
	asm volatile("" : "+r"(a4), "+r"(a6));
	return skops->family == AF_INET ? a4 : a6; /* v4-mapped: policed only then */
}

static __always_inline void gw_record_origin(struct bpf_sock_ops *skops,
					     struct gw_conn_origin *o)
{
	__u32 level, n = 0;
	__u64 id;

	/* ancestors from the task's own cgroup up to (not incl.) the root */
	o->cgroups[0] = bpf_get_current_cgroup_id();
	n = 1;
	for (level = GW_CGROUP_DEPTH; level > 0; level--) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id || id == o->cgroups[0])
			continue;
		if (n < GW_CGROUP_DEPTH)
			o->cgroups[n++] = id;
	}
	o->ncgroups = n;
	o->daddr = gw_remote_ip4(skops);
	o->dport = (__u16)(skops->remote_port >> 16); /* network order */
	o->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

SEC("sockops")
int gw_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct gw_config *cfg;
	struct gw_conn *c;
	__u64 cookie;

	if ((skops->family != AF_INET && skops->family != AF_INET6) || !sk)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		struct gw_conn_origin o = {};

		cfg = gw_get_config();
		if (!cfg || !cfg->generation)
			break;
		gw_record_origin(skops, &o);
		if (!o.daddr)
			break; /* IPv6 destinations are not policed yet */
		if (!gw_resolve_service(o.daddr, o.dport, cfg->active_slot))
			break; /* other destinations are not tracked at all */
		if (!gw_resolve_ident(&o, cfg->active_slot))
			break; /* nor processes without an identity */
		c = bpf_sk_storage_get(&gw_conns, sk, NULL,
				       BPF_SK_STORAGE_GET_F_CREATE);
		if (!c)
			break;
		__builtin_memcpy(&c->origin, &o, sizeof(o));
		c->flags = GW_CONN_POLICED;
		c->generation = 0; /* resolve again on first use */
		c->cookie = bpf_get_socket_cookie(skops);
		gw_h2_init(&c->h2);
		break;
	}
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (!c || !(c->flags & GW_CONN_POLICED))
			break;
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_sock_hash_update(skops, &gw_sockhash, &cookie, BPF_NOEXIST)) {
			/* cannot police it: fail closed, the writer sees errors */
			c->flags |= GW_CONN_FAILED;
			break;
		}
		c->flags |= GW_CONN_IN_MAP;
		c->origin.saddr = gw_local_ip4(skops);
		c->origin.sport = skops->local_port;
		gw_count(GW_CNT_CONNS_OPENED, 1);
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (c && (c->flags & GW_CONN_IN_MAP)) {
			c->flags &= ~GW_CONN_IN_MAP;
			gw_count(GW_CNT_CONNS_CLOSED, 1);
		}
		break;
	}
	return 1;
}


struct gw_decision {
	__u8  verdict;
	__u8  reason;
	__u16 rule;
};

static __always_inline void gw_rule_count(struct gw_config *cfg, __u16 rule, __u8 verdict)
{
	__u32 idx = (cfg->active_slot & 1) * GW_MAX_RULES + (rule & (GW_MAX_RULES - 1));
	struct gw_rule_counters *rc = bpf_map_lookup_elem(&gw_rule_counters, &idx);

	if (!rc)
		return;
	if (verdict == GW_VERDICT_ALLOW)
		rc->allowed++;
	else if (verdict == GW_VERDICT_AUDIT)
		rc->audited++;
	else
		rc->denied++;
}

/* Decides the block's :path for the connection's identity and service:
 * deny beats audit beats allow across the exact, service and `*` entries;
 * what matches none gets the pair's default entry (deny or audit). */
static __always_inline void gw_decide(struct gw_conn *c, struct gw_config *cfg,
				      struct gw_decision *d)
{
	struct gw_hp_block *b = &c->h2.blk;
	struct gw_pair_key pk = {};
	struct gw_method_val *v, *best = NULL;
	void *inner;
	__u64 key;
	int r;

	d->verdict = GW_VERDICT_DENY;
	d->reason = GW_REASON_POLICY;
	d->rule = 0;
	r = gw_hp_path_reason(b);
	if (r >= 0) {
		d->reason = r;
		return;
	}
	pk.slot = cfg->active_slot;
	pk.ident = c->ident;
	pk.service = c->service;
	inner = bpf_map_lookup_elem(&gw_policy, &pk);
	if (!inner) {
		d->reason = GW_REASON_NO_RULE;
		return;
	}
	key = b->h_exact;
	v = bpf_map_lookup_elem(inner, &key);
	if (v)
		best = v;
	key = b->h_svc;
	v = bpf_map_lookup_elem(inner, &key);
	if (v && (!best || gw_verdict_rank(v->verdict) > gw_verdict_rank(best->verdict)))
		best = v;
	key = cfg->hash_any;
	v = bpf_map_lookup_elem(inner, &key);
	if (v && (!best || gw_verdict_rank(v->verdict) > gw_verdict_rank(best->verdict)))
		best = v;
	if (!best) {
		key = cfg->hash_default;
		best = bpf_map_lookup_elem(inner, &key);
	}
	if (!best) {
		d->reason = GW_REASON_NO_RULE;
		return;
	}
	d->verdict = best->verdict;
	d->rule = best->rule;
}

static __always_inline void gw_emit(struct gw_conn *c, struct sk_msg_md *msg,
				    struct gw_config *cfg, __u8 verdict, __u8 reason,
				    __u16 rule, __u32 stream)
{
	struct gw_hp_block *b = &c->h2.blk;
	struct gw_path_text *t;
	struct gw_event *e;
	__u64 h;

	e = bpf_ringbuf_reserve(&gw_events, sizeof(*e), 0);
	if (!e) {
		gw_count(GW_CNT_EVENTS_LOST, 1);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->generation = cfg ? cfg->generation : 0;
	e->cookie = c->cookie;
	e->saddr = c->origin.saddr;
	e->daddr = c->origin.daddr;
	e->sport = c->origin.sport;
	e->dport = bpf_ntohs(c->origin.dport);
	e->ident = c->ident;
	e->service = c->service;
	e->rule = rule;
	e->verdict = verdict;
	e->reason = reason;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->conn_pid = c->origin.pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->stream_id = stream;
	e->pad0 = 0;
	e->path_len = 0;
	e->path[0] = 0;
	if (b->path_how == GW_PATH_LIT_RAW || b->path_how == GW_PATH_LIT_HUFF) {
		__builtin_memcpy(e->path, b->path, GW_PATH_MAX);
		e->path_len = b->path_len < GW_PATH_MAX ? b->path_len : GW_PATH_MAX;
	} else if (b->path_how == GW_PATH_IDX_DYN) {
		h = b->h_exact;
		t = bpf_map_lookup_elem(&gw_paths, &h);
		if (t) {
			__builtin_memcpy(e->path, t->text, GW_PATH_MAX);
			e->path_len = b->path_len < GW_PATH_MAX ? b->path_len : GW_PATH_MAX;
		}
	} else if (b->path_how == GW_PATH_IDX_STATIC) {
		e->path[0] = '/';
		e->path_len = 1;
	}
	bpf_ringbuf_submit(e, 0);
}

/* bpf_loop drives the shared parser; all its state is in map memory */
struct gw_loop_ctx {
	struct gw_msg_src src;
	struct gw_conn *c;
	struct gw_hp_keys keys;
};

static long gw_step_cb(__u32 i, void *ctx)
{
	struct gw_loop_ctx *lc = ctx;
	struct gw_conn *c = lc->c;

	return gw_hp_step(&c->h2.blk, &c->h2.table, &lc->src);
}

static long gw_path_cb(__u32 i, void *ctx)
{
	struct gw_loop_ctx *lc = ctx;

	return gw_hp_path_check_step(&lc->c->h2.blk, i);
}

/* The connection cannot be followed: every later send fails (SK_DROP is
 * sticky), and an event says why. */
static __always_inline int gw_fail(struct gw_conn *c, struct sk_msg_md *msg,
				   struct gw_config *cfg, __u8 reason, __u32 stream)
{
	c->flags |= GW_CONN_FAILED;
	c->h2.stage = GW_H2_FAILED;
	c->h2.reason = reason;
	gw_count(GW_CNT_DROPPED_CONNS, 1);
	if (reason == GW_REASON_PROTOCOL || reason == GW_REASON_NOT_H2 ||
	    reason == GW_REASON_TABLE)
		gw_count(GW_CNT_PARSE_ERRORS, 1);
	gw_emit(c, msg, cfg, GW_VERDICT_DENY, reason, 0, stream);
	return SK_DROP;
}

/* --- the userspace fallback (fallback.h) --- */

struct gw_copy_ctx {
	struct gw_hp_table *dst;
	struct gw_hp_table *src;
};

static long gw_copy_cb(__u32 i, void *ctx)
{
	struct gw_copy_ctx *cc = ctx;

	cc->dst->e[i & GW_HP_MASK] = cc->src->e[i & GW_HP_MASK];
	return 0;
}

/* copies a table model, one entry per bpf_loop step */
static __always_inline void gw_table_copy(struct gw_hp_table *dst, struct gw_hp_table *src)
{
	struct gw_copy_ctx cc = { .dst = dst, .src = src };

	dst->max_size = src->max_size;
	dst->size = src->size;
	dst->ins = src->ins;
	dst->n = src->n;
	bpf_loop(GW_HP_ENTRIES, gw_copy_cb, &cc, 0);
}

/* Sends the whole message into the helper's socket of slot p. */
static __always_inline int gw_to_helper(struct gw_conn *c, struct sk_msg_md *msg,
					struct gw_config *cfg, struct gw_pool_slot *p)
{
	__u64 key = p->pool_cookie;
	__u32 size = msg->size;

	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, 0);
	if (bpf_msg_redirect_hash(msg, &gw_sockhash, &key, BPF_F_INGRESS) != SK_PASS) {
		/* the helper is gone: what it had is lost, nothing passed unchecked */
		c->flags &= ~GW_CONN_DIVERTED;
		p->busy = 0;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	p->diverted += size;
	gw_count(GW_CNT_FALLBACK_BYTES, size);
	return SK_PASS;
}

#define GW_RESUME (-1)

/* A diverted connection sends: back to the kernel path if the helper has
 * handed back at exactly the bytes diverted so far, else to the helper. */
static __always_inline int gw_diverted(struct gw_conn *c, struct sk_msg_md *msg,
				       struct gw_config *cfg)
{
	__u32 slot = c->pool_slot, k;
	struct gw_pool_slot *p;
	struct gw_h2_model *m;
	__u64 *hb, *failed, want;

	p = bpf_map_lookup_elem(&gw_pool, &slot);
	k = slot * GW_FB_RET_CELLS + GW_FB_HANDBACK;
	hb = bpf_map_lookup_elem(&gw_fb_ret, &k);
	k = slot * GW_FB_RET_CELLS + GW_FB_FAILED;
	failed = bpf_map_lookup_elem(&gw_fb_ret, &k);
	if (!p || !hb || !failed) {
		c->flags &= ~GW_CONN_DIVERTED;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	if (*(volatile __u64 *)failed == p->epoch) {
		c->flags &= ~GW_CONN_DIVERTED;
		p->busy = 0;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	want = GW_FB_PACK(p->epoch, p->diverted);
	if (*(volatile __u64 *)hb != want)
		return gw_to_helper(c, msg, cfg, p);
	/* every diverted byte went on and the model was written before the
	 * handback mark: take the model back and release the slot */
	m = bpf_map_lookup_elem(&gw_fb_model, &slot);
	if (!m) {
		c->flags &= ~GW_CONN_DIVERTED;
		p->busy = 0;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	c->h2.last_stream = m->last_stream;
	gw_table_copy(&c->h2.table, &m->table);
	c->h2.stage = GW_H2_FRAMES;
	c->flags &= ~GW_CONN_DIVERTED;
	p->busy = 0;
	gw_count(GW_CNT_FALLBACK_RESUMED, 1);
	return GW_RESUME;
}

struct gw_claim_ctx {
	__u32 found;
};

/* one slot per step: a slot with a helper socket and not busy is ours */
static long gw_claim_cb(__u32 i, void *ctx)
{
	struct gw_claim_ctx *cl = ctx;
	struct gw_pool_slot *p;
	__u32 k = i * GW_FB_RET_CELLS + GW_FB_COOKIE;
	__u64 *ck = bpf_map_lookup_elem(&gw_fb_ret, &k);

	if (!ck || !*ck)
		return 0;
	p = bpf_map_lookup_elem(&gw_pool, &i);
	if (!p)
		return 0;
	if (__sync_val_compare_and_swap(&p->busy, 0, 1) != 0)
		return 0;
	cl->found = i;
	return 1;
}

/* A header block the kernel cannot see whole: claim a helper slot, give it
 * the table model and send this connection's bytes there from this frame
 * on. No helper running: the connection fails closed. */
static __always_inline int gw_divert(struct gw_conn *c, struct sk_msg_md *msg,
				     struct gw_config *cfg, int policed, __u8 reason,
				     __u32 stream)
{
	struct gw_claim_ctx cl = { .found = GW_POOL_SLOTS };
	struct gw_pool_slot *p;
	__u32 k, found;
	__u64 *ck;

	bpf_loop(GW_POOL_SLOTS, gw_claim_cb, &cl, 0);
	found = cl.found;
	if (found >= GW_POOL_SLOTS)
		return gw_fail(c, msg, cfg, reason, stream);
	k = found * GW_FB_RET_CELLS + GW_FB_COOKIE;
	ck = bpf_map_lookup_elem(&gw_fb_ret, &k);
	p = bpf_map_lookup_elem(&gw_pool, &found);
	if (!ck || !p)
		return gw_fail(c, msg, cfg, reason, stream);
	p->epoch += 1;
	p->conn_cookie = c->cookie;
	p->pool_cookie = *ck;
	p->diverted = 0;
	p->generation = cfg->generation;
	p->cfg_slot = cfg->active_slot;
	p->ident = c->ident;
	p->service = c->service;
	p->policed = policed;
	p->reason = reason;
	p->origin = c->origin;
	p->model.last_stream = c->h2.last_stream;
	gw_table_copy(&p->model.table, &c->h2.table);
	c->pool_slot = found;
	c->flags |= GW_CONN_DIVERTED;
	gw_count(GW_CNT_FALLBACK_BLOCKS, 1);
	return gw_to_helper(c, msg, cfg, p);
}

/* What the helper writes on its end of a pool pair goes out of the
 * diverted connection (egress: that socket's own program does not run). */
static __always_inline int gw_from_helper(struct gw_conn *c, struct sk_msg_md *msg)
{
	__u32 slot = c->pool_slot;
	struct gw_pool_slot *p = bpf_map_lookup_elem(&gw_pool, &slot);
	__u64 key;

	if (!p || !p->busy)
		return SK_DROP;
	key = p->conn_cookie;
	return bpf_msg_redirect_hash(msg, &gw_sockhash, &key, 0);
}

SEC("sk_msg")
int gw_sk_msg(struct sk_msg_md *msg)
{
	struct gw_loop_ctx lc = {};
	struct gw_h2_frame f = {};
	struct gw_decision d = {};
	struct gw_config *cfg;
	struct gw_conn *c;
	__u32 avail, want, n = 0, off = 0, o;
	__u8 val = 0, *data, *end;
	int act, r, policed;

	if (!msg->sk)
		return SK_DROP;
	c = bpf_sk_storage_get(&gw_conns, msg->sk, NULL, 0);
	if (!c)
		return SK_DROP;
	cfg = gw_get_config();
	if (!cfg)
		return SK_DROP;
	if (c->flags & GW_CONN_POOL)
		return gw_from_helper(c, msg);
	if (c->flags & GW_CONN_FAILED)
		return SK_DROP;
	/* identity and service under the live policy (once per generation) */
	policed = gw_refresh(c, cfg) == 0;
	if (c->flags & GW_CONN_DIVERTED) {
		r = gw_diverted(c, msg, cfg);
		if (r != GW_RESUME)
			return r;
	}

	/* linearise what the walker reads: the preface or a frame header,
	 * and a whole HEADERS frame once it is all there */
	avail = msg->size;
	want = c->h2.stage == GW_H2_PREFACE ? H2_PREFACE_LEN : H2_FRAME_HEADER_LEN;
	if (want > avail)
		want = avail;
	if (want && bpf_msg_pull_data(msg, 0, want, 0))
		return gw_fail(c, msg, cfg, GW_REASON_NOMEM, 0);
	if (c->h2.stage == GW_H2_FRAMES && avail >= H2_FRAME_HEADER_LEN) {
		data = (void *)(long)msg->data;
		end = (void *)(long)msg->data_end;
		if (data + H2_FRAME_HEADER_LEN > end)
			return gw_fail(c, msg, cfg, GW_REASON_NOMEM, 0);
		n = ((__u32)data[0] << 16) | ((__u32)data[1] << 8) | data[2];
		if (data[3] == H2_FRAME_HEADERS && n <= GW_H2_MAX_BLOCK &&
		    avail >= H2_FRAME_HEADER_LEN + n &&
		    bpf_msg_pull_data(msg, 0, H2_FRAME_HEADER_LEN + n, 0))
			return gw_fail(c, msg, cfg, GW_REASON_NOMEM, 0);
	}

	lc.src.msg = msg;
	lc.src.base = 0;
	act = gw_h2_next(&c->h2, &lc.src, avail, &f, &n);
	if (act == GW_ACT_NEED) {
		/* hold the bytes (the writer sees success) until n are there */
		bpf_msg_apply_bytes(msg, 0);
		bpf_msg_cork_bytes(msg, n);
		return SK_PASS;
	}
	if (act == GW_ACT_FAIL)
		return gw_fail(c, msg, cfg, c->h2.reason, f.stream);
	if (act == GW_ACT_DIVERT)
		return gw_divert(c, msg, cfg, policed, c->h2.reason, f.stream);
	bpf_msg_cork_bytes(msg, 0);
	if (act == GW_ACT_PASS) {
		bpf_msg_apply_bytes(msg, n);
		return SK_PASS;
	}

	/* GW_ACT_BLOCK: a whole HEADERS frame of n bytes at offset 0 */
	gw_count(GW_CNT_HEADER_BLOCKS, 1);
	lc.src.base = f.blk_off;
	lc.c = c;
	lc.keys.k0 = cfg->key0;
	lc.keys.k1 = cfg->key1;
	gw_hp_block_init(&c->h2.blk, f.blk_len);
	bpf_loop(2 * GW_H2_MAX_BLOCK + 8, gw_step_cb, &lc, 0);
	if (c->h2.blk.st != GW_HP_DONE)
		return gw_fail(c, msg, cfg,
			       c->h2.blk.st == GW_HP_ERR ? c->h2.blk.err : GW_REASON_BOUND,
			       f.stream);
	if (c->h2.blk.path_how == GW_PATH_LIT_RAW || c->h2.blk.path_how == GW_PATH_LIT_HUFF) {
		bpf_loop(GW_PATH_MAX + 1, gw_path_cb, &lc, 0);
		gw_hp_path_finish(&c->h2.blk, &c->h2.table, &lc.keys);
	}
	c->h2.blocks++;
	bpf_msg_apply_bytes(msg, n);
	if (!f.is_request)
		return SK_PASS; /* trailers: parsed to keep the table in step */

	if (c->h2.blk.path_inserted && c->h2.blk.path_how != GW_PATH_NONE) {
		__u64 h = c->h2.blk.h_exact;

		bpf_map_update_elem(&gw_paths, &h, c->h2.blk.path, BPF_ANY);
	}
	if (!policed)
		return SK_PASS; /* identity or service left the policy: unpoliced */
	gw_decide(c, cfg, &d);
	gw_rule_count(cfg, d.rule, d.verdict);
	if (d.verdict == GW_VERDICT_ALLOW) {
		gw_count(GW_CNT_ALLOWED, 1);
		return SK_PASS;
	}
	if (d.verdict == GW_VERDICT_AUDIT) {
		gw_count(GW_CNT_AUDITED, 1);
		gw_emit(c, msg, cfg, GW_VERDICT_AUDIT, d.reason, d.rule, f.stream);
		return SK_PASS;
	}

	/* deny this RPC alone: make its :path unroutable in place */
	gw_count(GW_CNT_DENIED, 1);
	if (c->h2.blk.npath > 1)
		return gw_fail(c, msg, cfg, GW_REASON_BAD_PATH, f.stream);
	r = gw_hp_deny_rewrite(&c->h2.blk, &lc.src, &off, &val);
	if (r < 0)
		return gw_fail(c, msg, cfg, d.reason == GW_REASON_POLICY ? GW_REASON_BAD_PATH : d.reason,
			       f.stream);
	if (r == 0) {
		o = f.blk_off + off;
		data = (void *)(long)msg->data;
		end = (void *)(long)msg->data_end;
		if (o >= 0x7fff || data + o + 1 > end)
			return gw_fail(c, msg, cfg, GW_REASON_NOMEM, f.stream);
		data[o] = val;
	}
	gw_emit(c, msg, cfg, GW_VERDICT_DENY, d.reason, d.rule, f.stream);
	return SK_PASS;
}

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

#define GW_TCP_ESTABLISHED 1

/*
 * Connections that predate attach (or a policy apply that made them
 * policed) were never put in the sockhash: their RPCs would go unchecked.
 * The loader runs this iterator over every TCP socket; a connected socket
 * whose cgroup carries an identity and whose destination is a service, and
 * that is not already policed, is reset (bpf_sock_destroy) so the client
 * reconnects, under policy. One line per reset goes to the loader.
 */
SEC("iter/tcp")
int gw_reset_predating(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct gw_conn_origin o = {};
	struct gw_config *cfg;
	struct tcp_sock *tp;
	struct cgroup *cg, *anc;
	struct gw_conn *c;
	__u32 daddr = 0, i;
	int level;

	if (!skc)
		return 0;
	cfg = gw_get_config();
	if (!cfg || !cfg->generation)
		return 0;
	if (skc->skc_state != GW_TCP_ESTABLISHED)
		return 0;
	if (skc->skc_family == AF_INET) {
		daddr = skc->skc_daddr;
	} else if (skc->skc_family == AF_INET6) {
		if (skc->skc_v6_daddr.in6_u.u6_addr32[0] || skc->skc_v6_daddr.in6_u.u6_addr32[1] ||
		    skc->skc_v6_daddr.in6_u.u6_addr32[2] != bpf_htonl(0x0000ffff))
			return 0;
		daddr = skc->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		return 0;
	}
	if (!gw_resolve_service(daddr, skc->skc_dport, cfg->active_slot))
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	/* the socket's cgroup and its ancestors, deepest first */
	cg = BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_cgrp_data.cgroup);
	if (!cg)
		return 0;
	level = BPF_CORE_READ(cg, level);
	o.cgroups[0] = BPF_CORE_READ(cg, kn, id);
	o.ncgroups = 1;
	for (i = 1; i < GW_CGROUP_DEPTH; i++) {
		if ((int)i > level)
			break;
		anc = NULL;
		bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[level - i]);
		if (!anc)
			break;
		o.cgroups[i] = BPF_CORE_READ(anc, kn, id);
		o.ncgroups = i + 1;
	}
	if (!gw_resolve_ident(&o, cfg->active_slot))
		return 0;
	c = bpf_sk_storage_get(&gw_conns, tp, NULL, 0);
	if (c && (c->flags & GW_CONN_IN_MAP))
		return 0; /* policed already */
	if (bpf_sock_destroy(skc))
		return 0;
	gw_count(GW_CNT_CONNS_RESET, 1);
	BPF_SEQ_PRINTF(ctx->meta->seq, "%pI4:%u\n", &daddr, bpf_ntohs(skc->skc_dport));
	return 0;
}
