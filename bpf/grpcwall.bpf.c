// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * grpcwall datapath.
 *
 * sockops: at connect() (in the connecting task's context) record the
 * task's cgroup ancestry and the destination; if that makes the connection
 * policed under the live policy, put the socket in gw_sockhash once it is
 * established, which binds the sk_msg program to it.
 *
 * sk_msg: runs on every write of a policed connection. The walker
 * (gw_walk_step) follows the client's HTTP/2 stream over every frame of
 * the write in one run (hpack/h2.h): frames other than HEADERS are skipped
 * by length without a look at their payload; a HEADERS frame cut at the
 * end of the write is corked until whole; every whole header block is
 * parsed by the shared HPACK model (hpack/hpack.h) and its :path decided
 * against the live policy; the write then goes with one verdict. A denied
 * RPC has the first character of its :path rewritten in place
 * (HPACK-consistently), so the server refuses that RPC alone; anything the
 * parser cannot follow fails the connection (SK_DROP) with an event.
 *
 * The walker reads and writes its bytes through struct gw_src (conn.h) and
 * keeps its state in a struct gw_conn and a scratch slot: nothing in it is
 * particular to sk_msg, so an sk_skb program walks received bytes with the
 * same code (gw_sk_skb below, not attached by this version).
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

/* Whether this kernel lets socket programs (cgroup_skb, sk_skb, sock_ops,
 * sk_msg) read the current task: bpf_get_current_pid_tgid from Linux 6.10,
 * bpf_get_current_comm from 6.16 (before that, only tracing programs). The
 * loader sets them from its probes; the verifier never sees a call behind
 * a 0 here (a frozen read-only value), so older kernels load the programs
 * and events carry no pid or command. Nothing is decided by them. */
const volatile __u8 gw_have_pid = 1;
const volatile __u8 gw_have_comm = 1;

#define AF_INET 2
#define AF_INET6 10

/* An address as IPv6: IPv4 as v4-mapped (::ffff:a.b.c.d), which is also
 * how an AF_INET6 socket connected to an IPv4 address sees it (gRPC C-core
 * and Node do that). */
static __always_inline void gw_ip6_set(__u32 *a, int v4only, __u32 v4, __u32 a0, __u32 a1,
				       __u32 a2, __u32 a3)
{
	a[0] = v4only ? 0 : a0;
	a[1] = v4only ? 0 : a1;
	a[2] = v4only ? bpf_htonl(0x0000ffff) : a2;
	a[3] = v4only ? v4 : a3;
}

/* A context's address as IPv6: sockops' remote or local, a bpf_sock's dst
 * or src (side). Every field is loaded at its fixed offset (clang would otherwise merge
 * the loads into one ctx access at a computed offset, which the verifier
 * refuses). */
#define GW_CTX_IP6(skops, side, a)                                                   \
	do {                                                                         \
		__u32 v4 = (skops)->side##_ip4, a0 = (skops)->side##_ip6[0],          \
		      a1 = (skops)->side##_ip6[1], a2 = (skops)->side##_ip6[2],       \
		      a3 = (skops)->side##_ip6[3];                                    \
		asm volatile("" : "+r"(v4), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)); \
		gw_ip6_set(a, (skops)->family == AF_INET, v4, a0, a1, a2, a3);        \
	} while (0)

/* The path key of cg's ancestor at level i (1-based) chained onto *h; 0 when
 * there is none or its name cannot be read. */
static __always_inline int gw_cgroup_step(struct cgroup *cg, __u32 i, struct gw_config *cfg, __u64 *h)
{
	unsigned char name[GW_CGROUP_NAME_BUF];
	struct cgroup *anc = NULL;
	const char *np;
	int n;

	bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[i]);
	if (!anc)
		return 0;
	np = BPF_CORE_READ(anc, kn, name);
	n = bpf_probe_read_kernel_str(name, GW_CGROUP_NAME_MAX + 2, np);
	if (n <= 0)
		return 0;
	*h = gw_cgroup_hash(*h, name, n - 1, cfg->key0, cfg->key1);
	return 1;
}

/* The identity keys of a socket's cgroup path (hpack/siphash.h,
 * gw_cgroup_hash), one per level from the root down, every level an
 * identity can be at (GW_CGROUP_DEPTH): the fallback helper resolves a
 * diverted connection's identity from them, under this policy and later
 * ones, as gw_refresh does from the cgroup itself. */
static __always_inline void gw_origin_cgroups(struct cgroup *cg, struct gw_config *cfg,
					      struct gw_conn_origin *o)
{
	__u32 i, depth = GW_CGROUP_DEPTH;
	__u64 h = 0;
	int level;

	o->ncgroups = 0;
	o->level = 0;
	if (!cg)
		return;
	level = BPF_CORE_READ(cg, level);
	o->level = level;
	for (i = 1; i <= GW_CGROUP_DEPTH; i++) {
		if ((int)i > level || i > depth || !gw_cgroup_step(cg, i, cfg, &h))
			break;
		o->cgroups[i - 1] = h;
		o->ncgroups = i;
	}
}

/* Is cg the cgroup whose path key at depth `levels` is `key`, or below it? */
static __always_inline int gw_cgroup_under(struct cgroup *cg, struct gw_config *cfg, __u32 levels,
					   __u64 key)
{
	__u64 h = 0;
	__u32 i;

	if (!cg || !levels || levels > GW_CGROUP_DEPTH || (int)levels > BPF_CORE_READ(cg, level))
		return 0;
	for (i = 1; i <= GW_CGROUP_DEPTH; i++) {
		if (i > levels)
			break;
		if (!gw_cgroup_step(cg, i, cfg, &h))
			return 0;
	}
	return h == key;
}

/* The caller identity of a peer address under the slot's policy (gw_peers,
 * longest prefix); 0: no identity, every RPC of it is denied. */
static __always_inline __u16 gw_peer_ident(const __u32 *addr, __u32 slot)
{
	struct gw_peer_key k = {
		.prefixlen = GW_PEER_PREFIX_FIXED + 128,
		.slot = slot,
		.addr = { addr[0], addr[1], addr[2], addr[3] },
	};
	struct gw_peer_val *v = bpf_map_lookup_elem(&gw_peers, &k);

	return v ? v->ident : 0;
}

/* The protected service a connection accepted on local port `port` (host
 * order) by a socket of cgroup cg belongs to under the slot's policy: 0 if
 * none. */
static __always_inline __u16 gw_srv_service(struct cgroup *cg, struct gw_config *cfg, __u32 port,
					    __u32 slot)
{
	struct gw_srv_key k = { .slot = slot, .port = port };
	struct gw_srv_val *v = bpf_map_lookup_elem(&gw_srv_ports, &k);

	if (!v || !gw_cgroup_under(cg, cfg, v->levels, v->cgroup_key))
		return 0;
	return v->service;
}

/* gw_srv_service for the live generation gen, cached per cgroup and port
 * (gw_srv_svc_cache) */
static __always_inline __u16 gw_srv_service_of(struct cgroup *cg, struct gw_config *cfg, __u32 port,
					       __u64 gen)
{
	struct gw_srv_svc_key k = { .port = port, .slot = GW_SLOT_OF(gen) };
	struct gw_srv_svc_cached *v, nv = {};

	if (!cg)
		return 0;
	k.cgroup = BPF_CORE_READ(cg, kn, id);
	v = bpf_map_lookup_elem(&gw_srv_svc_cache, &k);
	if (v && v->generation == gen)
		return v->service;
	nv.generation = gen;
	nv.service = gw_srv_service(cg, cfg, port, k.slot);
	bpf_map_update_elem(&gw_srv_svc_cache, &k, &nv, BPF_ANY);
	return nv.service;
}

/* The identity a socket's cgroup path resolves to under the slot's policy
 * (the deepest level that is an identity wins: a process in
 * cloudcity/terminal/x carries cloudcity/terminal's identity unless
 * cloudcity/terminal/x is an identity of its own), read from the cgroup
 * and its ancestors' names, never kept: sockops at connect, gw_refresh at
 * every new generation, the egress guard and the reset iterator all see
 * the path as it is then. */
static __always_inline __u16 gw_cgroup_ident(struct cgroup *cg, struct gw_config *cfg, __u32 slot)
{
	struct gw_ident_key k = { .slot = slot };
	__u32 i, depth = cfg->ident_depth;
	struct gw_ident_val *v;
	__u16 ident = 0;
	__u64 h = 0;
	int level;

	if (!cg)
		return 0;
	level = BPF_CORE_READ(cg, level);
	for (i = 1; i <= GW_CGROUP_DEPTH; i++) {
		if ((int)i > level || i > depth || !gw_cgroup_step(cg, i, cfg, &h))
			break;
		k.path_hash = h;
		v = bpf_map_lookup_elem(&gw_idents, &k);
		if (v)
			ident = v->ident;
	}
	return ident;
}

/* gw_cgroup_ident, once per cgroup and policy generation: a cgroup v2
 * directory cannot be renamed (EPERM on the default hierarchy) and its id
 * is never reused, so its path, and the identity of that path under one
 * generation, stay what they were (gw_ident_cache). */
static __always_inline __u16 gw_ident_of(struct cgroup *cg, struct gw_config *cfg, __u64 gen)
{
	struct gw_ident_cached *v, nv = {};
	__u64 id;

	if (!cg)
		return 0;
	id = BPF_CORE_READ(cg, kn, id);
	v = bpf_map_lookup_elem(&gw_ident_cache, &id);
	if (v && v->generation == gen)
		return v->ident;
	nv.generation = gen;
	nv.ident = gw_cgroup_ident(cg, cfg, GW_SLOT_OF(gen));
	bpf_map_update_elem(&gw_ident_cache, &id, &nv, BPF_ANY);
	return nv.ident;
}

/* Re-resolves a connection's identity and service when the policy
 * generation moved since it was last looked at: the identity from the
 * socket's cgroup path as it is now (as the guard and the reset see it),
 * the service from its destination. 0: (still) policed, -1: not. */
static __always_inline int gw_refresh(struct gw_conn *c, struct gw_config *cfg, __u64 gen,
				      struct tcp_sock *tp)
{
	if (c->generation != gen) {
		c->ident = gw_ident_of(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup),
				       cfg, gen);
		c->service = gw_resolve_service(c->ends.daddr, c->ends.dport, GW_SLOT_OF(gen));
		c->generation = gen;
		c->rp.len = 0; /* its decision was under the last policy */
	}
	return (c->ident && c->service) ? 0 : -1;
}

/* A global function: the verifier checks it once per program, not once per
 * state of every caller (its 256-byte copies counted ~60,000 instructions
 * of the sk_msg program's verification on their own). */
__attribute__((noinline)) int gw_emit(struct gw_conn *c, struct gw_config *cfg, __u32 what, __u32 stream,
				      __u32 sslot);
/* (BPF calls take five arguments: verdict, reason and rule go packed; sslot:
 * the run's scratch slot + 1, whose parser names the stream's :path, or 0) */
#define gw_emit_conn(c, cfg, verdict, reason, rule, stream, sslot) \
	gw_emit(c, cfg, (__u32)(__u8)(verdict) | (__u32)(__u8)(reason) << 8 | (__u32)(__u16)(rule) << 16, \
		stream, sslot)

/* A policed connection that can no longer be followed: every later send
 * is dropped by sk_msg, every later payload byte by the egress guard. The
 * event names the RPC that broke it when there is one (stream != 0). */
static __always_inline void gw_fail_stream(struct gw_conn *c, struct gw_config *cfg, __u8 reason,
					   __u32 stream, __u32 sslot)
{
	if (c->flags & GW_CONN_FAILED)
		return;
	c->flags |= GW_CONN_FAILED;
	c->h2.stage = GW_H2_FAILED;
	c->h2.reason = reason;
	gw_count(GW_CNT_DROPPED_CONNS, 1);
	if (c->flags & GW_CONN_SERVER)
		gw_count(GW_CNT_SRV_FAILED, 1);
	if (reason == GW_REASON_PROTOCOL || reason == GW_REASON_NOT_H2 ||
	    reason == GW_REASON_TABLE)
		gw_count(GW_CNT_PARSE_ERRORS, 1);
	gw_emit_conn(c, cfg, GW_VERDICT_DENY, reason, 0, stream, sslot);
}

static __always_inline void gw_mark_failed(struct gw_conn *c, struct gw_config *cfg, __u8 reason)
{
	gw_fail_stream(c, cfg, reason, 0, 0);
}

#define GW_SEND_SHUTDOWN    2
#define GW_SOL_TCP          6
#define GW_TCP_USER_TIMEOUT 18
#define GW_FAILED_TIMEOUT_MS 1

/* (server side, gw_srv_holds) */
/* The connection's slot, or NULL when it has none or the slot is not its own */
static __always_inline struct gw_srv_hold *gw_hold_of(struct gw_srv_conn *sc, __u64 cookie)
{
	struct gw_hold_owner *o;
	__u32 idx;

	if (!sc->hold)
		return NULL;
	idx = sc->hold - 1;
	o = bpf_map_lookup_elem(&gw_srv_hold_owners, &idx);
	if (!o || o->owner != cookie)
		return NULL;
	return bpf_map_lookup_elem(&gw_srv_holds, &idx);
}

/* A hold slot counted against its caller's identity (gw_srv_hold_shares,
 * key: its share id): -1 when the identity holds its share already. Counted up first and taken back when over: two CPUs
 * cannot both pass on the last one. */
static __always_inline int gw_hold_share_take(__u32 key)
{
	__u32 zero = 0, *n = bpf_map_lookup_elem(&gw_srv_hold_shares, &key);
	struct gw_limits *l = bpf_map_lookup_elem(&gw_limits, &zero);
	__u32 max = l ? l->hold_share : 0;

	if (!n)
		return -1;
	if (__sync_fetch_and_add(n, 1) >= max && max) {
		__sync_fetch_and_sub(n, 1);
		return -1;
	}
	return 0;
}

/* (never below 0: a slot an older grpcwall claimed is counted nowhere; a
 * count that wrapped would lock its identity out of every slot) */
static __always_inline void gw_hold_share_give(__u32 key)
{
	__u32 *n = bpf_map_lookup_elem(&gw_srv_hold_shares, &key), old, i;

	if (!n)
		return;
	for (i = 0; i < 8; i++) { /* (a compare-and-swap lost to another CPU: again) */
		old = *n;
		if (!old || __sync_val_compare_and_swap(n, old, old - 1) == old)
			return;
	}
	/* lost 8 times (many CPUs taking and giving under one id): given
	 * back all the same, never kept for good (its identity would have a
	 * slot less until detach); a count that was 0 is put back, after a
	 * moment in which a take sees it wrapped and refuses (closed) */
	if (!__sync_fetch_and_sub(n, 1))
		__sync_fetch_and_add(n, 1);
}

/* (a global function: verified once, not at every place a hold is given
 * up) */
__attribute__((noinline)) int gw_hold_free(struct gw_srv_conn *sc, __u64 cookie)
{
	struct gw_hold_owner *o;
	struct gw_srv_hold *h;
	__u32 idx, share;

	if (!sc)
		return 0;
	if (sc->hold) {
		idx = sc->hold - 1;
		o = bpf_map_lookup_elem(&gw_srv_hold_owners, &idx);
		if (o && o->owner == cookie) {
			/* read while the slot is still its own: once freed,
			 * the next owner writes it */
			h = bpf_map_lookup_elem(&gw_srv_holds, &idx);
			share = 0;
			if (h) {
				share = h->share;
				h->share = 0; /* (a claim by an older grpcwall's program writes none) */
			}
			sc->held_ns += bpf_ktime_get_ns() - o->since;
			if (__sync_val_compare_and_swap(&o->owner, cookie, 0) == cookie && share)
				gw_hold_share_give(share - 1);
		}
	}
	sc->hold = 0;
	return 0;
}

/*
 * Server side: a connection accepted on the port of a protected service by
 * a socket of its server's cgroup gets receive-side state (gw_srv_conns:
 * caller identity from the peer address, the service) and goes into
 * gw_srv_sockhash, whose sk_skb verdict (gw_sk_skb) walks every byte the
 * server will read. This runs while the child is still in SYN_RECV, before
 * any payload is queued on it (TFO data and data in the last handshake ACK
 * included): the server reads nothing the walker did not pass.
 */
static __always_inline void gw_srv_accepted(struct bpf_sock_ops *skops, struct bpf_sock *sk,
					    struct gw_config *cfg, __u64 gen)
{
	struct gw_conn_ends o = {};
	struct tcp_sock *tp;
	struct gw_conn *c;
	__u64 cookie;
	__u16 service;
	int ms;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	service = gw_srv_service_of(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg,
				    skops->local_port, gen);
	if (!service)
		return;
	/* the caller is the source: saddr/sport the peer's, as events show a
	 * connection from its caller */
	GW_CTX_IP6(skops, remote, o.saddr);
	GW_CTX_IP6(skops, local, o.daddr);
	o.sport = bpf_ntohl(skops->remote_port) & 0xffff; /* host order, as the client side's */
	o.dport = bpf_htons((__u16)skops->local_port);   /* network order */
	cookie = bpf_get_socket_cookie(skops);
	{
		struct gw_srv_conn *nc = gw_srv_blank();

		if (nc)
			bpf_map_update_elem(&gw_srv_conns, &cookie, nc, BPF_ANY);
	}
	c = bpf_map_lookup_elem(&gw_srv_conns, &cookie); /* its gw_conn is at offset 0 */
	if (!c) {
		/* no state (gw_srv_conns full): in the map all the same, where
		 * the verdict drops every byte of a connection it has no state
		 * for. Out of it, the server would read them unwalked */
		gw_count(GW_CNT_DROPPED_CONNS, 1);
		bpf_sock_hash_update(skops, &gw_srv_sockhash, &cookie, BPF_NOEXIST);
		return;
	}
	__builtin_memcpy(&c->ends, &o, sizeof(o));
	c->flags = GW_CONN_POLICED | GW_CONN_SERVER;
	c->cookie = cookie;
	((struct gw_srv_conn *)c)->resp.seq0 = tp->write_seq; /* SYN-ACK sent: ISN + 1 */
	c->generation = 0; /* the caller is resolved at the first buffer (gw_srv_refresh) */
	c->service = service;
	gw_h2_init(&c->h2);
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	if (bpf_sock_hash_update(skops, &gw_srv_sockhash, &cookie, BPF_NOEXIST)) {
		/* not in the map: the server would read its bytes unwalked.
		 * Nothing in sockops can stop that; the event says so */
		gw_mark_failed(c, cfg, GW_REASON_NOT_IN_MAP);
		ms = GW_FAILED_TIMEOUT_MS;
		bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
		return;
	}
	c->flags |= GW_CONN_IN_MAP;
	gw_count(GW_CNT_SRV_CONNS, 1);
}

/* A policed connection to a protected server's port (of the live policy)
 * is noted in gw_local_calls: if its server is on this host, the server
 * side knows the caller as walked by the client side (gw_srv_caller). */
static __always_inline void gw_local_call_key(struct gw_local_call *k, struct gw_conn *c, struct tcp_sock *tp)
{
	k->net = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net, net_cookie);
	__builtin_memcpy(k->saddr, c->ends.saddr, sizeof(k->saddr));
	__builtin_memcpy(k->daddr, c->ends.daddr, sizeof(k->daddr));
	k->sport = c->ends.sport;
	k->dport = c->ends.dport;
}

/* 1: noted (its socket then reports its state changes: gw_note_closing) */
static __always_inline int gw_note_local_call(struct gw_conn *c, struct tcp_sock *tp, __u64 cookie)
{
	struct gw_local_call k = {};
	struct gw_config *cfg = gw_get_config();
	__u64 gen = cfg ? gw_live_gen(cfg) : 0;

	if (!gen || !gw_srv_port(bpf_ntohs(c->ends.dport), GW_SLOT_OF(gen)))
		return 0;
	gw_local_call_key(&k, c, tp);
	return bpf_map_update_elem(&gw_local_calls, &k, &cookie, BPF_ANY) == 0;
}

/* A noted socket closed by its process, its FIN queued after every byte it
 * wrote (FIN_WAIT1, or LAST_ACK from CLOSE_WAIT): the note says so, and the
 * server side goes on knowing it as walked for the bytes still to come,
 * while its socket is out of gw_sockhash (gw_srv_peer_kept). At CLOSE the
 * note goes: a socket closed in TCP_REPAIR mode sends no FIN and passes
 * through CLOSE before anything can take its connection over (its ends
 * stay in use until then), so what does is not taken for it. */
static __always_inline void gw_note_closing(struct bpf_sock_ops *skops, struct bpf_sock *sk)
{
	struct gw_local_call k = {};
	struct tcp_sock *tp;
	struct gw_conn *c;
	__u64 *v;

	if (skops->args[1] != BPF_TCP_FIN_WAIT1 && skops->args[1] != BPF_TCP_LAST_ACK &&
	    skops->args[1] != BPF_TCP_CLOSE)
		return;
	c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
	tp = bpf_skc_to_tcp_sock(sk);
	if (!c || !tp || (c->flags & (GW_CONN_POLICED | GW_CONN_IN_MAP)) != (GW_CONN_POLICED | GW_CONN_IN_MAP))
		return;
	gw_local_call_key(&k, c, tp);
	v = bpf_map_lookup_elem(&gw_local_calls, &k);
	if (!v || (*v & ~GW_LOCAL_CLOSING) != bpf_get_socket_cookie(skops))
		return;
	/* CLOSE: its FIN acknowledged (every byte it sent was received, and
	 * walked), or left without one: a disconnect or close in repair
	 * mode, which reaches FIN_WAIT1 first by shutdown(SHUT_WR) with the
	 * FIN never sent. Either way nothing of it is to come: the note goes */
	if (skops->args[1] == BPF_TCP_CLOSE)
		bpf_map_delete_elem(&gw_local_calls, &k);
	else
		__sync_fetch_and_or(v, GW_LOCAL_CLOSING);
}

SEC("sockops")
int gw_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct gw_config *cfg;
	struct tcp_sock *tp;
	struct gw_conn *c;
	__u64 cookie, gen;
	int ms;

	if ((skops->family != AF_INET && skops->family != AF_INET6) || !sk)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		struct gw_conn_ends o = {};
		__u16 ident;

		/* a socket connected again (after connect(AF_UNSPEC)) starts
		 * afresh: nothing of its last connection may stay (payload
		 * still to skip, resync records, the last sender), so its
		 * state is made anew below */
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (c) {
			cookie = bpf_get_socket_cookie(skops);
			/* a fallback slot it held is given back, and what the
			 * helper still sends for it is dropped (gw_from_helper).
			 * Before it leaves gw_sockhash: until then the slot is
			 * BUSY with a cookie in the map, which the helper neither
			 * recycles nor frees, so no other connection has it yet */
			if (c->flags & GW_CONN_DIVERTED) {
				__u32 slot = c->pool_slot;
				struct gw_pool_slot *p = bpf_map_lookup_elem(&gw_pool, &slot);

				if (p && p->conn_cookie == cookie)
					p->busy = GW_POOL_RECYCLE;
			}
			/* and out of gw_sockhash, where a TCP socket stays until
			 * it is closed: its psock (a held message, a verdict kept
			 * for bytes to come) goes with it */
			if (c->flags & GW_CONN_IN_MAP)
				bpf_map_delete_elem(&gw_sockhash, &cookie);
			bpf_sk_storage_delete(&gw_spill, sk);
			bpf_sk_storage_delete(&gw_conns, sk);
		}

		cfg = gw_get_config();
		gen = cfg ? gw_live_gen(cfg) : 0;
		if (!gen)
			break;
		tp = bpf_skc_to_tcp_sock(sk);
		if (!tp)
			break;
		/* where to first: the cgroup path is hashed only for a service */
		GW_CTX_IP6(skops, remote, o.daddr);
		o.dport = (__u16)(skops->remote_port >> 16); /* network order */
		if (!gw_service_port(o.dport, GW_SLOT_OF(gen)) ||
		    !gw_resolve_service(o.daddr, o.dport, GW_SLOT_OF(gen)))
			break; /* other destinations are not tracked at all */
		ident = gw_ident_of(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup),
				    cfg, gen);
		if (!ident)
			break; /* nor processes without an identity */
		if (gw_have_pid)
			o.pid = bpf_get_current_pid_tgid() >> 32;
		if (gw_have_comm)
			bpf_get_current_comm(o.comm, sizeof(o.comm));
		c = bpf_sk_storage_get(&gw_conns, sk, NULL,
				       BPF_SK_STORAGE_GET_F_CREATE);
		if (!c)
			break;
		__builtin_memcpy(&c->ends, &o, sizeof(o));
		c->flags = GW_CONN_POLICED;
		c->generation = 0; /* resolve again on first use */
		c->cookie = bpf_get_socket_cookie(skops);
		/* tcp_v4/v6_connect chose the ISN before this callback; nothing
		 * is queued yet, not even fast-open data. In TCP_REPAIR mode
		 * no SYN takes a number: the first byte goes at write_seq (the
		 * connection fails at ACTIVE_ESTABLISHED, and the egress guard
		 * holds back every byte from there) */
		c->seq0 = tp->write_seq + (BPF_CORE_READ_BITFIELD(tp, repair) ? 0 : 1);
		c->approved = 0;
		c->corked_for = 0;
		c->rp.len = 0;
		gw_h2_init(&c->h2);
		/* RTO: end a failed connection quickly. No STATE_CB: it would
		 * run the program twice more per connection (issue 10); the
		 * loader counts tracked connections in gw_sockhash, which drops
		 * a socket at close, and the helper recycles a slot whose
		 * connection left it. */
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_RTO_CB_FLAG);
		break;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		/* an accepted connection whose peer's address and port are a
		 * service's (a client bound to a service port, one in 28,000
		 * by chance): the egress guard and the reset take its own
		 * destination for a service; they leave it alone */
		__u16 dport = (__u16)(skops->remote_port >> 16); /* network order */
		__u32 daddr[4], slot;

		/* a policed client socket that met its peer's SYN while in
		 * SYN_SENT (simultaneous open) becomes established here, never
		 * at ACTIVE_ESTABLISHED: not in gw_sockhash, no walker runs on
		 * it. Failed, never relabelled: the guard drops its payload */
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (c && (c->flags & GW_CONN_POLICED)) {
			if (!(c->flags & GW_CONN_FAILED))
				gw_mark_failed(c, gw_get_config(), GW_REASON_UNWALKED);
			ms = GW_FAILED_TIMEOUT_MS;
			bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
			break;
		}
		cfg = gw_get_config();
		gen = cfg ? gw_live_gen(cfg) : 0;
		if (!gen)
			break;
		slot = GW_SLOT_OF(gen);
		gw_srv_accepted(skops, sk, cfg, gen);
		if (!gw_service_port(dport, slot))
			break;
		GW_CTX_IP6(skops, remote, daddr);
		if (!gw_resolve_service(daddr, dport, slot))
			break;
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (c)
			c->flags = GW_CONN_PASSIVE;
		break;
	}
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (!c || !(c->flags & GW_CONN_POLICED))
			break;
		GW_CTX_IP6(skops, local, c->ends.saddr);
		c->ends.sport = skops->local_port;
		if (c->flags & GW_CONN_FAILED)
			break;
		/* a send() that began during the handshake waits in plain
		 * tcp_sendmsg and goes on there, past sk_msg: its bytes could
		 * fill space the walker approved but the socket does not hold
		 * yet (a short write), where the guard lets them by */
		tp = bpf_skc_to_tcp_sock(sk);
		if (!tp || BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_write_pending)) {
			gw_mark_failed(c, gw_get_config(), GW_REASON_UNWALKED);
			ms = GW_FAILED_TIMEOUT_MS;
			bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
			break;
		}
		/* connected in TCP_REPAIR mode: established with no handshake,
		 * at sequence numbers the process chose, so it can go on with
		 * a connection the server already has (one this socket or
		 * another left without a RST, in repair mode) from any point
		 * of its byte stream. The walker cannot know where that is */
		if (BPF_CORE_READ_BITFIELD(tp, repair)) {
			gw_mark_failed(c, gw_get_config(), GW_REASON_REPAIR);
			ms = GW_FAILED_TIMEOUT_MS;
			bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
			break;
		}
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_sock_hash_update(skops, &gw_sockhash, &cookie, BPF_NOEXIST)) {
			/* no walker can run on it: the egress guard lets no
			 * payload byte out, the writer's data never arrives */
			gw_mark_failed(c, gw_get_config(), GW_REASON_NOT_IN_MAP);
			ms = GW_FAILED_TIMEOUT_MS; /* end it at the first timeout */
			bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
			break;
		}
		c->flags |= GW_CONN_IN_MAP;
		gw_count(GW_CNT_CONNS_OPENED, 1);
		if (gw_note_local_call(c, tp, cookie))
			bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_RTO_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* server-side sockets ask for it (gw_srv_accepted), and client
		 * sockets noted as calling a protected server here */
		gw_note_closing(skops, sk);
		if (skops->args[1] == BPF_TCP_CLOSE) {
			struct gw_srv_conn *sc;

			cookie = bpf_get_socket_cookie(skops);
			sc = bpf_map_lookup_elem(&gw_srv_conns, &cookie);
			if (sc) {
				__u32 i;

				gw_hold_free(sc, cookie); /* a frame held to the end */
				for (i = 0; i < GW_DENIED_RING; i++) /* denials never answered */
					if (sc->resp.d[i].stream)
						gw_count(GW_CNT_SRV_ANSWERS_KEPT, 1);
			}
			bpf_map_delete_elem(&gw_srv_spills, &cookie);
			bpf_map_delete_elem(&gw_srv_conns, &cookie);
		}
		break;
	case BPF_SOCK_OPS_RTO_CB:
		/* a failed connection whose bytes the guard holds back would
		 * retransmit for minutes: end it at the next timeout */
		c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
		if (!c || !(c->flags & GW_CONN_FAILED))
			break;
		ms = GW_FAILED_TIMEOUT_MS;
		bpf_setsockopt(skops, GW_SOL_TCP, GW_TCP_USER_TIMEOUT, &ms, sizeof(ms));
		break;
	}
	return 1;
}

struct gw_decision {
	__u8  verdict;
	__u8  reason;
	__u16 rule;
	__u8  local;        /* rule is the pair's (gw_method_val.local) */
};

static __always_inline void gw_rule_count(__u64 gen, __u16 rule, __u8 verdict)
{
	__u32 idx = GW_SLOT_OF(gen) * GW_MAX_RULES + (rule & (GW_MAX_RULES - 1));
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

/* The method-table entry under `key`, if any, into d. */
static __always_inline int gw_method_lookup(void *inner, __u64 key, struct gw_decision *d)
{
	struct gw_method_val *v = bpf_map_lookup_elem(inner, &key);

	if (!v)
		return 0;
	d->verdict = v->verdict;
	d->rule = v->rule;
	d->local = v->local;
	if (v->format != GW_TABLE_FORMAT) { /* written by another version: fail closed */
		d->verdict = GW_VERDICT_DENY;
		d->reason = GW_REASON_FORMAT;
	}
	return 1;
}

/* Decides the block's :path for the connection's identity and service:
 * the most specific entry found wins (exact, service wildcard, `*`, then
 * the pair's default entry). The compiler gives every key the verdict of
 * all entries that match the paths it is the most specific key for, so
 * the first hit is the whole decision: at most four lookups, one for an
 * exact entry; two more (GW_MATCH_*_FOLD) when a wildcard lets it pass. */
static __always_inline void gw_decide(struct gw_conn *c, struct gw_hp_block *b,
				      struct gw_config *cfg, struct gw_decision *d)
{
	struct gw_pair_key pk = {};
	void *inner;
	int r;

	d->verdict = GW_VERDICT_DENY;
	d->reason = GW_REASON_POLICY;
	d->rule = 0;
	r = gw_hp_path_reason(b);
	if (r >= 0) {
		d->reason = r;
		return;
	}
	pk.slot = GW_SLOT_OF(c->generation); /* the generation ident and service are of */
	pk.ident = c->ident;
	pk.service = c->service;
	inner = bpf_map_lookup_elem(&gw_policy, &pk);
	if (!inner) {
		d->reason = GW_REASON_NO_RULE;
		return;
	}
	/* each hit copies scalars out, so the ways join in one verifier state */
	if (gw_method_lookup(inner, b->h_exact, d))
		goto found;
	if (!gw_method_lookup(inner, b->h_svc, d) && !gw_method_lookup(inner, cfg->hash_any, d) &&
	    !gw_method_lookup(inner, cfg->hash_default, d)) {
		d->reason = GW_REASON_NO_RULE;
		return;
	}
	/* no exact entry: an enforcing deny entry that is the path in another
	 * case wins over what a wildcard lets pass (a server may route it
	 * there). Looked up only for a path a wildcard passes */
	if (d->verdict != GW_VERDICT_DENY && !gw_method_lookup(inner, GW_FOLD_KEY(b->h_exact_fold), d))
		gw_method_lookup(inner, GW_FOLD_KEY(b->h_svc_fold), d);
found:
	if (d->local && d->rule) { /* a shared table: which of the pair's rules */
		struct gw_pair_rules *pr = bpf_map_lookup_elem(&gw_pair_rules, &pk);
		__u16 i = d->rule - 1;

		d->rule = pr && i < pr->n ? pr->rule[i & (GW_PAIR_RULES - 1)] : 0;
	}
}

/* One event for the ring buffer. The block's :path goes with it only for
 * an RPC's stream (stream != 0): a connection-level failure names none. */
/* A reserved event with its time, generation, socket and ends filled in
 * (ports: source << 16 | destination, host order), or NULL (counted lost) */
static __always_inline struct gw_event *gw_event_open(__u64 gen, __u64 cookie, const __u32 *saddr,
						      const __u32 *daddr, __u32 ports)
{
	struct gw_event *e = bpf_ringbuf_reserve(&gw_events, sizeof(*e), 0);

	if (!e) {
		gw_count(GW_CNT_EVENTS_LOST, 1);
		return NULL;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->generation = gen;
	e->cookie = cookie;
	__builtin_memcpy(e->saddr, saddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, daddr, sizeof(e->daddr));
	e->sport = ports >> 16;
	e->dport = ports & 0xffff;
	return e;
}

__attribute__((noinline)) int gw_emit(struct gw_conn *c, struct gw_config *cfg, __u32 what, __u32 stream,
				      __u32 sslot)
{
	__u8 verdict = what & 0xff, reason = (what >> 8) & 0xff;
	__u16 rule = what >> 16;
	struct gw_hp_block *b;
	struct gw_path_text *t;
	struct gw_event *e;
	__u64 h;

	if (!c || !cfg) /* a global function's pointers may be NULL to the verifier */
		return 0;
	e = gw_event_open(c->generation, c->cookie, c->ends.saddr, c->ends.daddr,
			  (__u32)c->ends.sport << 16 | bpf_ntohs(c->ends.dport));
	if (!e)
		return 0;
	e->ident = c->ident;
	e->service = c->service;
	e->rule = rule;
	e->verdict = verdict;
	e->reason = reason;
	e->pid = gw_have_pid ? bpf_get_current_pid_tgid() >> 32 : 0;
	e->conn_pid = c->ends.pid;
	if (gw_have_comm)
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	else
		e->comm[0] = 0;
	e->stream_id = stream;
	e->side = !(c->flags & GW_CONN_SERVER) ? 0 : (c->flags & GW_CONN_PEER_LOCAL) ? 2 : 1;
	e->path_len = 0;
	e->path[0] = 0;
	if (!stream || !sslot) {
		/* nothing */
	} else if (!(b = gw_scratch_of(sslot))) {
		/* (the run's own slot, on this CPU: always there) */
	} else if (b->path_how == GW_PATH_LIT_RAW || b->path_how == GW_PATH_LIT_HUFF) {
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
	return 0;
}


/* The connection cannot be followed: every later send fails (SK_DROP is
 * sticky), and an event says why. */
static __always_inline int gw_fail(struct gw_conn *c, struct sk_msg_md *msg,
				   struct gw_config *cfg, __u8 reason, __u32 stream)
{
	gw_fail_stream(c, cfg, reason, stream, 0);
	return SK_DROP;
}

/* gw_fail in a walk, whose event names the stream's :path */
static __always_inline int gw_fail_walk(struct gw_conn *c, struct gw_config *cfg, __u8 reason,
					__u32 stream, __u32 sslot)
{
	gw_fail_stream(c, cfg, reason, stream, sslot);
	return SK_DROP;
}

/* --- the userspace fallback (fallback.h) --- */

struct gw_spill_copy_ctx {
	struct gw_hp_spill *dst;
	struct gw_hp_spill *src;
};

static long gw_spill_copy_cb(__u32 i, void *ctx)
{
	struct gw_spill_copy_ctx *cc = ctx;

	cc->dst->r[i & GW_HP_MASK] = cc->src->r[i & GW_HP_MASK];
	return 0;
}

/* copies a spill, one record per bpf_loop step */
static __always_inline void gw_spill_copy(struct gw_hp_spill *dst, struct gw_hp_spill *src)
{
	struct gw_spill_copy_ctx cc = { .dst = dst, .src = src };

	bpf_loop(GW_HP_ENTRIES, gw_spill_copy_cb, &cc, 0);
}

/* The connection's spill (GW_CONN_SPILL), made when create is set and
 * there is none yet. */
static __always_inline struct gw_hp_spill *gw_spill_of(struct gw_conn *c, struct bpf_sock *sk,
						       int create)
{
	struct gw_hp_spill *sp;

	if ((!create && !(c->flags & GW_CONN_SPILL)) || !sk)
		return NULL; /* the flag first: every parse step asks */
	sp = bpf_sk_storage_get(&gw_spill, sk, NULL, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (sp)
		c->flags |= GW_CONN_SPILL;
	return sp;
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
		p->busy = GW_POOL_RECYCLE;
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
	struct gw_hp_spill *sp;
	__u64 *hb, *failed, want;

	p = bpf_map_lookup_elem(&gw_pool, &slot);
	k = slot * GW_FB_RET_CELLS + GW_FB_HANDBACK;
	hb = bpf_map_lookup_elem(&gw_fb_ret, &k);
	k = slot * GW_FB_RET_CELLS + GW_FB_FAILED;
	failed = bpf_map_lookup_elem(&gw_fb_ret, &k);
	if (!p || !hb || !failed || p->busy != GW_POOL_BUSY || p->conn_cookie != c->cookie) {
		/* the slot is no longer this connection's (a restarted helper
		 * recycled it): its bytes are lost, fail closed */
		c->flags &= ~GW_CONN_DIVERTED;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	if (*(volatile __u64 *)failed == p->epoch) {
		c->flags &= ~GW_CONN_DIVERTED;
		p->busy = GW_POOL_RECYCLE;
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
		p->busy = GW_POOL_RECYCLE;
		return gw_fail(c, msg, cfg, GW_REASON_FALLBACK, 0);
	}
	c->h2.last_stream = m->last_stream;
	c->h2.table = m->table;
	if (m->has_spill) {
		sp = gw_spill_of(c, msg->sk, 1);
		if (!sp) {
			c->flags &= ~GW_CONN_DIVERTED;
			p->busy = GW_POOL_RECYCLE;
			return gw_fail(c, msg, cfg, GW_REASON_NOMEM, 0);
		}
		gw_spill_copy(sp, &m->spill);
	} else if (c->flags & GW_CONN_SPILL) {
		bpf_sk_storage_delete(&gw_spill, msg->sk);
		c->flags &= ~GW_CONN_SPILL;
	}
	c->rp.len = 0; /* a table the helper kept: nothing held from before */
	c->h2.stage = GW_H2_FRAMES;
	/* the helper re-sent exactly the bytes diverted: they are walked */
	c->approved += p->diverted;
	c->read_end = c->approved;
	c->skip = 0;
	c->read_off = 0;
	c->rs.n = 0;
	c->flags &= ~GW_CONN_DIVERTED;
	p->busy = GW_POOL_FREE; /* the helper holds nothing of it: claimable at once */
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
	if (__sync_val_compare_and_swap(&p->busy, GW_POOL_FREE, GW_POOL_CLAIMING) != GW_POOL_FREE)
		return 0;
	cl->found = i;
	return 1;
}

/* A header block the kernel cannot see whole: claim a helper slot, give it
 * the table model and send this connection's bytes there from this frame
 * on. No helper running: the connection fails closed. */
static __always_inline int gw_divert(struct gw_conn *c, struct sk_msg_md *msg,
				     struct tcp_sock *tp, struct gw_config *cfg, __u8 reason,
				     __u32 stream, __u32 walked, __u32 sslot)
{
	struct gw_claim_ctx cl = { .found = GW_POOL_SLOTS };
	struct gw_pool_slot *p;
	struct gw_hp_spill *sp;
	__u32 k, found;
	__u64 *ck;

	bpf_loop(GW_POOL_SLOTS, gw_claim_cb, &cl, 0);
	found = cl.found;
	if (found >= GW_POOL_SLOTS)
		return gw_fail_walk(c, cfg, reason, stream, sslot);
	k = found * GW_FB_RET_CELLS + GW_FB_COOKIE;
	ck = bpf_map_lookup_elem(&gw_fb_ret, &k);
	p = bpf_map_lookup_elem(&gw_pool, &found);
	if (!ck || !p) {
		if (p)
			p->busy = GW_POOL_FREE;
		return gw_fail_walk(c, cfg, reason, stream, sslot);
	}
	p->epoch += 1;
	p->conn_cookie = c->cookie;
	p->pool_cookie = *ck;
	p->diverted = 0;
	p->reason = reason;
	p->passthrough = walked; /* the message's first bytes: walked here already */
	__builtin_memcpy(p->origin.daddr, c->ends.daddr, sizeof(c->ends.daddr));
	__builtin_memcpy(p->origin.saddr, c->ends.saddr, sizeof(c->ends.saddr));
	p->origin.dport = c->ends.dport;
	p->origin.sport = c->ends.sport;
	p->origin.pid = c->ends.pid;
	__builtin_memcpy(p->origin.comm, c->ends.comm, sizeof(c->ends.comm));
	/* the helper resolves the identity from these keys, as gw_refresh would */
	gw_origin_cgroups(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg,
			  &p->origin);
	p->model.last_stream = c->h2.last_stream;
	p->model.table = c->h2.table;
	sp = gw_spill_of(c, msg->sk, 0);
	p->model.has_spill = sp ? 1 : 0;
	if (sp)
		gw_spill_copy(&p->model.spill, sp);
	c->pool_slot = found;
	c->flags |= GW_CONN_DIVERTED;
	/* BUSY only now: the helper reads a BUSY slot's cookie and epoch as
	 * this connection's (it recycles the slot once the cookie left
	 * gw_sockhash) */
	__sync_lock_test_and_set(&p->busy, GW_POOL_BUSY);
	c->rs.n = 0; /* positions from before the helper: never picked up again */
	c->rp.len = 0;
	c->corked_for = 0;
	c->cork_done = 0;
	c->read_off = 0;
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

	if (!p || p->busy != GW_POOL_BUSY)
		return SK_DROP;
	key = p->conn_cookie;
	return bpf_msg_redirect_hash(msg, &gw_sockhash, &key, 0);
}

/*
 * The walk over one message: one bpf_loop whose every step is small (a
 * frame header, a run of payload bytes, or one step of the header block
 * parser), with all state in the
 * walk context and in map memory, so the verifier sees one short callback.
 * All of the message is decided before any of it is sent: it then goes out
 * with one verdict (gw_send_self), or is held (cork) while a frame the
 * walker must read is not all there, or fails the connection.
 */
#define GW_WALK_STEPS (1 << 20) /* steps one program run takes at most */
#define GW_LIN_MAX    0x7fff    /* packet offsets the verifier follows (gw_src_byte) */

enum gw_walk_res {
	GW_WALK_MORE = 0, /* step budget spent: walked up to off */
	GW_WALK_DONE,     /* every byte of the message walked */
	GW_WALK_NEED,     /* a frame to read is cut at the end: hold until `need` */
	GW_WALK_DIVERT,   /* the fallback takes the connection from off on */
	GW_WALK_FAIL,
};

enum gw_walk_mode {
	GW_W_FRAME = 0,   /* at a frame boundary (or in skipped payload) */
	GW_W_BLOCK,       /* parsing the header block of the frame at off */
};

/* on the program's stack: pointers only, never written by the steps */
struct gw_walk {
	struct gw_src src;    /* its kind is fixed again by each step (gw_walk_step) */
	struct gw_conn *c;
	struct gw_config *cfg;
	struct gw_scratch *s; /* this run's (gw_scratch_claim) */
	__u32 sslot;          /* its index + 1, for events */
};

static __always_inline long gw_walk_stop(struct gw_walk *w, __u8 res, __u8 reason, __u32 stream)
{
	struct gw_walk_state *ws = &w->s->w;

	ws->res = res;
	ws->reason = reason;
	ws->stream = stream;
	return 1;
}

static __always_inline void gw_rs_record(struct gw_conn *c, __u32 start, __u32 pay, __u32 end)
{
	__u32 k = c->rs.n;

	if (k >= GW_RESYNC_FRAMES)
		return;
	k &= GW_RESYNC_FRAMES - 1;
	c->rs.start[k] = start;
	c->rs.span[k] = (end - start) | (pay != start ? GW_RS_HEADER : 0);
	c->rs.n++;
}

/* The frame at w->off (n bytes, `read` of them read) is walked. `frame`:
 * a frame that is not HEADERS (its place is recorded for gw_resync); else
 * the preface or a HEADERS frame, which clears that record. */
static __always_inline long gw_walk_advance(struct gw_walk *w, __u32 n, __u32 read, int frame)
{
	struct gw_conn *c = w->c;
	struct gw_walk_state *ws = &w->s->w;
	__u32 avail = ws->size - ws->off, at;

	if (!frame) {
		c->rs.n = 0;
	} else {
		at = (__u32)c->approved + ws->off;
		gw_rs_record(c, at, at + H2_FRAME_HEADER_LEN, at + n);
	}
	c->read_off = ws->off + read;
	if (n > avail) {
		c->skip = n - avail; /* the rest of its payload comes later */
		n = avail;
	}
	ws->off += n;
	ws->mode = GW_W_FRAME;
	return 0;
}

/* The repeat check (store 0: are the len bytes at off of the message's
 * data the block c->rp holds?) or its fill (store 1: hold them). A global
 * function, verified once: 8-byte loads, no byte loop. */
static __always_inline int gw_repeat_at(__u8 *data, __u8 *end, struct gw_repeat *r, __u32 off,
					__u32 len, __u32 store)
{
	__u8 *q;
	__u32 k, nw, o;
	__u64 v;

	if (!r)
		return 0;
	if (store)
		r->len = 0; /* nothing held until every word is */
	if (len < 8 || len > GW_REPEAT_MAX || off + len >= 0x7fff || (!store && r->len != len))
		return 0;
	nw = (len + 7) / 8;
	for (k = 0; k < GW_REPEAT_MAX / 8; k++) {
		if (k >= nw)
			break;
		o = off + ((k + 1) * 8 <= len ? k * 8 : len - 8);
		o &= 0x7fff; /* a no-op (off + len < 0x7fff) that bounds o for the verifier */
		q = data + o;
		if (q + 8 > end)
			return 0;
		v = *(__u64 *)q;
		if (store)
			r->w[k] = v;
		else if (r->w[k] != v)
			return 0;
	}
	if (store)
		r->len = len;
	return 1;
}

__attribute__((noinline)) int gw_repeat(struct sk_msg_md *msg, struct gw_repeat *r, __u32 off,
					__u32 len, __u32 store)
{
	if (!msg)
		return 0;
	return gw_repeat_at((void *)(long)msg->data, (void *)(long)msg->data_end, r, off, len, store);
}


/* The server side's spill (gw_srv_spills), as gw_spill_of */
static __always_inline struct gw_hp_spill *gw_srv_spill_of(struct gw_conn *c, int create)
{
	struct gw_hp_spill *sp, *blank;
	__u64 k = c->cookie;
	__u32 zero = 0;

	if (!create && !(c->flags & GW_CONN_SPILL))
		return NULL; /* the flag first: every parse step asks */
	sp = bpf_map_lookup_elem(&gw_srv_spills, &k);
	if (!sp && create) {
		blank = bpf_map_lookup_elem(&gw_spill_blank, &zero);
		if (blank)
			bpf_map_update_elem(&gw_srv_spills, &k, blank, BPF_NOEXIST);
		sp = bpf_map_lookup_elem(&gw_srv_spills, &k);
	}
	if (sp)
		c->flags |= GW_CONN_SPILL;
	return sp;
}

/* The repeat check or fill on the server side: the block is read from
 * the CPU's block buffer, where gw_walk_step copied it whole (its bytes
 * are mostly not linear in the buffer). Only for the block the buffer
 * holds, at offset `off` of the walk (which counts the carry first). */
static __always_inline int gw_repeat_blkbuf(struct gw_src *s, struct gw_repeat *r, __u32 off,
					    __u32 len, __u32 store)
{
	if (store)
		r->len = 0; /* nothing held until every word is */
	if (!s->buf || s->pos->buf_len != len || off < s->pos->pre_len || off - s->pos->pre_len != s->pos->buf_off)
		return 0;
	return gw_repeat_at(s->buf, s->buf + GW_BLKBUF_LEN, r, 0, len, store);
}

static __always_inline int gw_src_repeat(struct gw_src *s, struct gw_repeat *r, __u32 off,
					 __u32 len, __u32 store)
{
	if (s->kind == GW_SRC_SKB)
		return gw_repeat_blkbuf(s, r, off, len, store);
	return gw_repeat(s->ctx, r, off, len, store);
}

/* The connection's :path spill: gw_spill_of (sk_storage), or on the
 * receive side, which may not use sk_storage, gw_srv_spill_of (by cookie) */
static __always_inline struct gw_hp_spill *gw_src_spill(struct gw_src *s, struct gw_conn *c,
							int create)
{
	if (s->kind == GW_SRC_SKB)
		return gw_srv_spill_of(c, create);
	return gw_spill_of(c, ((struct sk_msg_md *)s->ctx)->sk, create);
}

/* Did the block just parsed leave the HPACK table as it found it? */
static __always_inline int gw_walk_table_kept(struct gw_walk *w)
{
	struct gw_hp_table *t = &w->c->h2.table;
	struct gw_walk_state *ws = &w->s->w;

	return t->ins == ws->t_ins && t->n == ws->t_n && t->max_size == ws->t_max;
}

/* Server side: stream `stream` was denied (rule, 0: none): its answer,
 * when the server writes it, is turned into PERMISSION_DENIED from
 * grpcwall (gw_srv_msg). The newest GW_DENIED_RING denials are kept: a
 * denial pushed out before its answer leaves it as the server wrote it. */
static __noinline int gw_srv_note_denied(struct gw_conn *c, __u32 stream, __u16 rule)
{
	struct gw_srv_conn *sc;
	__u32 i;

	if (!c)
		return 0;
	sc = bpf_map_lookup_elem(&gw_srv_conns, &c->cookie);
	if (!sc)
		return 0;
	if (sc->resp.lost) {
		/* the walk over the server's frames stopped: its answer stays */
		gw_count(GW_CNT_SRV_ANSWERS_KEPT, 1);
		return 0;
	}
	i = sc->resp.next++ & (GW_DENIED_RING - 1);
	if (sc->resp.d[i].stream) /* a denial still unanswered, pushed out */
		gw_count(GW_CNT_SRV_ANSWERS_KEPT, 1);
	sc->resp.d[i].rule = rule;
	sc->resp.d[i].slot = GW_SLOT_OF(c->generation);
	sc->resp.d[i].stream = stream;
	return 0;
}

/* The header block of the HEADERS frame at off is parsed and its :path
 * checked: decide, and rewrite a denied :path in place. */
static __always_inline long gw_walk_decide(struct gw_walk *w, struct gw_src *src)
{
	struct gw_decision d = {};
	struct gw_conn *c = w->c;
	struct gw_walk_state *ws = &w->s->w;
	struct gw_config *cfg = w->cfg;
	__u8 val = 0;
	__u32 off = 0, o, n = ws->n;
	int r;

	c->h2.blocks++;
	/* Trailers: parsed, the table kept in step. A block that names a
	 * :path is decided whatever its stream id says: a server that refuses
	 * a stream without counting its id as used (grpc-go: a HEADERS frame
	 * with a malformed field, answered by RST_STREAM) takes a later block
	 * on a lower id as a new request, where the walker counts every id it
	 * saw. Honest trailers carry no pseudo-header (RFC 9113 8.1). */
	if (!ws->f.is_request && !w->s->blk.npath)
		return gw_walk_advance(w, n, n, 0);
	if (w->s->blk.path_inserted && w->s->blk.path_how != GW_PATH_NONE) {
		__u64 h = w->s->blk.h_exact;

		/* a keyed hash names one text: written when missing only (an
		 * update allocates, every new connection would pay it) */
		if (!bpf_map_lookup_elem(&gw_paths, &h))
			bpf_map_update_elem(&gw_paths, &h, w->s->blk.path, BPF_ANY);
	}
	if (!ws->policed) {
		/* identity or service left the policy: everything passes, but an
		 * entry the server holds rewritten would read as a stale deny */
		if (gw_hp_path_regranted(&w->s->blk))
			return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_REGRANT, ws->f.stream);
		return gw_walk_advance(w, n, n, 0);
	}
	gw_decide(c, &w->s->blk, cfg, &d);
	if (d.verdict != GW_VERDICT_DENY && gw_hp_path_regranted(&w->s->blk))
		/* allowed now, denied when it went in: the server would read the
		 * rewritten path. The connection ends, the client reconnects */
		return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_REGRANT, ws->f.stream);
	if (src->kind == GW_SRC_SKB && (c->flags & GW_CONN_PEER_WALKED)) {
		/* the client side walked this RPC first, on this host: it
		 * counted and reported it, and made a :path it denied
		 * unroutable. Decided once: this side acts only on what it
		 * denies of what that side let through (and answers what
		 * that side denied as its own denials, rule unknown here) */
		if (d.verdict != GW_VERDICT_DENY)
			return gw_walk_advance(w, n, n, 0);
		if (gw_hp_path_unroutable(&w->s->blk)) {
			gw_srv_note_denied(c, ws->f.stream, GW_RULE_CLIENT_SIDE);
			return gw_walk_advance(w, n, n, 0);
		}
	}
	gw_rule_count(c->generation, d.rule, d.verdict);
	if (d.verdict == GW_VERDICT_ALLOW) {
		gw_count(GW_CNT_ALLOWED, 1);
		if (gw_walk_table_kept(w)) {
			/* the same bytes on this table decide the same: held for next time */
			c->rp.rule = d.rule;
			gw_src_repeat(src, &c->rp, ws->fo + ws->f.blk_off, ws->f.blk_len, 1);
		}
		return gw_walk_advance(w, n, n, 0);
	}
	if (d.verdict == GW_VERDICT_AUDIT) {
		gw_count(GW_CNT_AUDITED, 1);
		gw_emit_conn(c, cfg, GW_VERDICT_AUDIT, d.reason, d.rule, ws->f.stream, w->sslot);
		return gw_walk_advance(w, n, n, 0);
	}
	/* deny this RPC alone: make its :path unroutable in place */
	gw_count(GW_CNT_DENIED, 1);
	if (w->s->blk.npath > 1)
		return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_BAD_PATH, ws->f.stream);
	r = gw_hp_deny_rewrite(&w->s->blk, src, &off, &val);
	if (r < 0)
		return gw_walk_stop(w, GW_WALK_FAIL,
				    d.reason == GW_REASON_POLICY ? GW_REASON_BAD_PATH : d.reason,
				    ws->f.stream);
	if (r == 0) {
		o = ws->fo + ws->f.blk_off + off;
		if (gw_src_write(src, o, val))
			return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_NOMEM, ws->f.stream);
		gw_hp_mark_rewritten(&w->s->blk, &c->h2.table, gw_src_spill(src, c, 0));
	}
	if (src->kind == GW_SRC_SKB)
		gw_srv_note_denied(c, ws->f.stream, d.rule);
	gw_emit_conn(c, cfg, GW_VERDICT_DENY, d.reason, d.rule, ws->f.stream, w->sslot);
	return gw_walk_advance(w, n, n, 0);
}

/* One step of the walk. `kind` is a constant in each copy (gw_walk_cb_msg,
 * gw_walk_cb_skb): the source accessors keep only their branch for it. */
static __always_inline long gw_walk_step(struct gw_walk *w, const __u32 kind)
{
	struct gw_src src = { .ctx = w->src.ctx, .pos = w->src.pos, .buf = w->src.buf, .kind = kind };
	struct gw_conn *c = w->c;
	struct gw_walk_state *ws = &w->s->w;
	__u32 avail, want, n = 0, len, off;
	__u8 *data, *end;
	int act, fo;

	if (ws->mode == GW_W_BLOCK) {
		if (!gw_hp_step(&w->s->blk, &c->h2.table, gw_src_spill(&src, c, 0), &src))
			return 0;
		if (w->s->blk.st != GW_HP_DONE)
			return gw_walk_stop(w, GW_WALK_FAIL,
					    w->s->blk.st == GW_HP_ERR ? w->s->blk.err : GW_REASON_BOUND,
					    ws->f.stream);
		if (!gw_walk_table_kept(w))
			c->rp.len = 0; /* the held block may read otherwise now */
		{
			struct gw_hp_keys k = { .k0 = w->cfg->key0, .k1 = w->cfg->key1 };

			/* a :path record pushed out of the ring while its entry
			 * is live goes to the spill, made for it now */
			gw_hp_path_finish(&w->s->blk, &c->h2.table, &k,
					  gw_src_spill(&src, c,
						       gw_hp_path_spills(&w->s->blk, &c->h2.table)));
		}
		return gw_walk_decide(w, &src);
	}

	off = ws->off;
	if (off >= ws->size)
		return gw_walk_stop(w, GW_WALK_DONE, 0, 0);
	avail = ws->size - off;
	if (c->skip) {
		/* payload of a frame that began in an earlier write: never read */
		n = c->skip < avail ? c->skip : avail;
		len = (__u32)c->approved + off;
		gw_rs_record(c, len, len, len + c->skip);
		c->skip -= n;
		ws->off = off + n;
		return 0;
	}
	want = c->h2.stage == GW_H2_PREFACE ? H2_PREFACE_LEN : H2_FRAME_HEADER_LEN;
	if (kind == GW_SRC_SKB) {
		/* a buffer is read by copy (gw_src_byte), at any offset; a
		 * frame header in one copy, into the block buffer (free until
		 * the frame's block is parsed) */
		ws->fo = off;
		if (src.buf && c->h2.stage == GW_H2_FRAMES && avail >= H2_FRAME_HEADER_LEN &&
		    off >= ws->pos.pre_len &&
		    !bpf_skb_load_bytes(src.ctx, off - ws->pos.pre_len, src.buf, H2_FRAME_HEADER_LEN)) {
			ws->pos.buf_off = off - ws->pos.pre_len;
			ws->pos.buf_len = H2_FRAME_HEADER_LEN;
		} else {
			ws->pos.buf_len = 0;
		}
		goto read;
	}
	if (ws->lin && off + H2_FRAME_HEADER_LEN + GW_H2_MAX_BLOCK < GW_LIN_MAX) {
		/* data in one piece: the frame is read where it is */
		ws->fo = off;
		goto read;
	}
	/* make the preface or the frame header readable */
	ws->lin = 0; /* a message pull moves the data start: offsets from it are gone */
	if (want > avail)
		want = avail;
	fo = gw_src_pull(&src, off, want);
	if (fo < 0 || fo >= GW_LIN_MAX)
		return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_NOMEM, 0);
	ws->fo = fo;
	if (c->h2.stage == GW_H2_FRAMES && avail >= H2_FRAME_HEADER_LEN) {
		data = (__u8 *)gw_src_data(&src) + (fo & GW_LIN_MAX);
		end = gw_src_end(&src);
		if (data + H2_FRAME_HEADER_LEN > end)
			return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_NOMEM, 0);
		len = ((__u32)data[0] << 16) | ((__u32)data[1] << 8) | data[2];
		/* a whole HEADERS frame: all of it readable */
		if (data[3] == H2_FRAME_HEADERS && len <= GW_H2_MAX_BLOCK &&
		    avail >= H2_FRAME_HEADER_LEN + len) {
			fo = gw_src_pull(&src, off, H2_FRAME_HEADER_LEN + len);
			if (fo < 0 || fo >= GW_LIN_MAX)
				return gw_walk_stop(w, GW_WALK_FAIL, GW_REASON_NOMEM, 0);
			ws->fo = fo;
		}
	}
read:
	ws->pos.base = ws->fo;
	act = gw_h2_next(&c->h2, &src, avail, &ws->f, &n);
	switch (act) {
	case GW_ACT_NEED:
		ws->need = off + n;
		return gw_walk_stop(w, GW_WALK_NEED, 0, 0);
	case GW_ACT_FAIL:
		return gw_walk_stop(w, GW_WALK_FAIL, c->h2.reason, ws->f.stream);
	case GW_ACT_DIVERT:
		return gw_walk_stop(w, GW_WALK_DIVERT, c->h2.reason, ws->f.stream);
	case GW_ACT_BLOCK:
		gw_count(GW_CNT_HEADER_BLOCKS, 1);
		if (kind == GW_SRC_SKB && src.buf) {
			/* the whole block, copied once (never in the carry):
			 * the repeat check and the parse read it there */
			__u32 bo = ws->fo + ws->f.blk_off - ws->pos.pre_len, bl = ws->f.blk_len;

			ws->pos.buf_len = 0;
			if (ws->fo + ws->f.blk_off >= ws->pos.pre_len && bl && bl <= GW_BLKBUF_LEN &&
			    !bpf_skb_load_bytes(src.ctx, bo, src.buf, bl)) {
				ws->pos.buf_off = bo;
				ws->pos.buf_len = bl;
			}
		}
		if (ws->f.is_request && ws->policed && c->rp.len &&
		    gw_src_repeat(&src, &c->rp, ws->fo + ws->f.blk_off, ws->f.blk_len, 0)) {
			/* the allowed block again, on the same table: no parse
			 * (and the parser's last block is no longer this
			 * stream's: events name no path from it) */
			c->h2.blocks++;
			w->s->blk.path_how = GW_PATH_NONE;
			gw_rule_count(c->generation, c->rp.rule, GW_VERDICT_ALLOW);
			gw_count(GW_CNT_ALLOWED, 1);
			gw_count(GW_CNT_REPEATS, 1);
			return gw_walk_advance(w, n, n, 0);
		}
		ws->t_ins = c->h2.table.ins;
		ws->t_n = c->h2.table.n;
		ws->t_max = c->h2.table.max_size;
		gw_hp_block_init(&w->s->blk, ws->f.blk_len);
		ws->pos.base = ws->fo + ws->f.blk_off;
		ws->n = n;
		ws->mode = GW_W_BLOCK;
		return 0;
	}
	/* PASS: only the preface or the frame header was read */
	return gw_walk_advance(w, n, want, want == H2_FRAME_HEADER_LEN);
}

static long gw_walk_cb_msg(__u32 i, void *ctx)
{
	return gw_walk_step(ctx, GW_SRC_MSG);
}

static long gw_walk_cb_skb(__u32 i, void *ctx)
{
	return gw_walk_step(ctx, GW_SRC_SKB);
}

/* Sends the first n bytes of the message (n == msg->size: all of it) out of
 * its own socket. A redirect, not SK_PASS: for a redirect the kernel
 * clears the verdict before it sends, so when that send fails half way no
 * stale verdict carries the next write past the program (an SK_PASS
 * verdict would, tcp_bpf_send_verdict). */
static __always_inline int gw_send_self(struct gw_conn *c, struct sk_msg_md *msg, __u32 n)
{
	__u64 key = c->cookie;

	if (c->read_off)
		c->read_end = c->approved + c->read_off;
	c->approved += n;
	c->sender = bpf_get_current_pid_tgid();
	c->read_off = 0;
	c->cork_done = 0;
	c->corked_for = 0;
	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, n);
	return bpf_msg_redirect_hash(msg, &gw_sockhash, &key, 0);
}

/* Another task is in the middle of a send on this socket: waiting for the
 * socket lock (a redirect send between its verdict and its push) or for
 * send-buffer memory inside its push. Its bytes are approved but not yet
 * queued, which looks like a short write and must never be taken for one. */
static __always_inline int gw_other_sender(struct tcp_sock *tp)
{
	struct sock *sk = &tp->inet_conn.icsk_inet.sk;
	__u64 head = (__u64)(long)&sk->sk_lock.wq.head;
	__u64 next = (__u64)(long)BPF_CORE_READ(sk, sk_lock.wq.head.next);

	return BPF_CORE_READ(sk, sk_write_pending) != 0 || next != head;
}

/*
 * The socket holds fewer bytes than the walker let through: the last write
 * went out only in part (non-blocking socket with a full send buffer, a
 * signal) and its writer may now send anything in place of the rest. The
 * walk is picked up again at `actual` only where the walker's state there
 * is known without the bytes that did not go out: inside payload it
 * skipped, or at the start of a frame it recorded, with no HEADERS frame
 * in between. Returns 0 when picked up, -1 when the connection must fail.
 */
static __always_inline int gw_resync(struct gw_conn *c, struct tcp_sock *tp, __u32 actual)
{
	__u32 i, s, pay, e;

	/* only the thread whose write went out short may pick it up: a thread
	 * is in one send at a time, so its own push is over; another thread's
	 * may still be between its verdict and its push */
	if (c->corked_for || c->sender != bpf_get_current_pid_tgid() || gw_other_sender(tp))
		return -1;
	if ((__s32)(actual - (__u32)c->read_end) >= 0) {
		/* nothing read past actual: the rest is payload, skipped */
		c->skip += (__u32)c->approved - actual;
		goto picked_up;
	}
	for (i = 0; i < GW_RESYNC_FRAMES; i++) {
		if (i >= c->rs.n)
			return -1;
		s = c->rs.start[i];
		e = c->rs.span[i];
		pay = s + ((e & GW_RS_HEADER) ? H2_FRAME_HEADER_LEN : 0);
		e = s + (e & ~GW_RS_HEADER);
		if ((__s32)(actual - s) < 0)
			return -1; /* before the first recorded frame */
		if ((__s32)(actual - e) >= 0)
			continue;
		if ((__s32)(actual - pay) >= 0) {
			c->skip = e - actual; /* inside its payload */
		} else if (actual == s) {
			c->skip = 0; /* a frame boundary */
		} else {
			return -1; /* inside its frame header: not kept */
		}
		goto picked_up;
	}
	return -1;
picked_up:
	c->approved -= (__u32)c->approved - actual;
	c->read_end = c->approved;
	c->rs.n = 0;
	gw_count(GW_CNT_SHORT_WRITES, 1);
	return 0;
}

/* The walk over one message (see gw_walk_cb) and its verdict. */
static __always_inline int gw_walk_msg(struct gw_conn *c, struct sk_msg_md *msg,
				       struct gw_config *cfg, struct tcp_sock *tp,
				       struct gw_scratch *s, __u32 sslot, __u32 size,
				       int in_cork, int policed)
{
	struct gw_walk_state *ws;
	struct gw_walk w = {};
	__u32 off, need;

	ws = &s->w;
	if (!in_cork)
		c->rs.n = 0;
	w.src.ctx = msg;
	w.src.pos = &ws->pos;
	w.src.kind = GW_SRC_MSG;
	w.c = c;
	w.cfg = cfg;
	w.s = s;
	w.sslot = sslot;
	ws->size = size;
	ws->off = in_cork ? c->cork_done : 0; /* a held message: walked up to there */
	ws->mode = GW_W_FRAME;
	ws->res = GW_WALK_MORE;
	ws->policed = policed;
	/* msg->data covers the first piece of the message: all of it when the
	 * message is in one piece, and then no frame needs a pull. (A piece
	 * the kernel marks shared has no data pointers at all: data ==
	 * data_end == NULL, never linear. Since 6.5 tcp_bpf_sendmsg copies
	 * every byte of a write, sendfile and splice too, into its own pages
	 * before the program runs, so no piece is: the walker reads, and the
	 * socket sends, that copy.) */
	ws->lin = (__u64)((long)msg->data_end - (long)msg->data) == size;
	bpf_loop(GW_WALK_STEPS, gw_walk_cb_msg, &w, 0);

	off = ws->off;
	switch (ws->res) {
	case GW_WALK_DONE:
		return gw_send_self(c, msg, size);
	case GW_WALK_NEED:
		/* hold all of it (the writer sees success) until the frame is
		 * whole; the bytes before it stay walked (cork_done) */
		need = ws->need;
		c->cork_done = off;
		c->corked_for = need;
		bpf_msg_apply_bytes(msg, 0);
		bpf_msg_cork_bytes(msg, need);
		return SK_PASS;
	case GW_WALK_DIVERT:
		/* all of it to the helper, which forwards the `off` bytes
		 * walked here unparsed and takes over at that frame (a
		 * partial redirect would lose the rest of a held message) */
		return gw_divert(c, msg, tp, cfg, ws->reason, ws->stream, off, sslot);
	case GW_WALK_FAIL:
		return gw_fail_walk(c, cfg, ws->reason, ws->stream, sslot);
	}
	/* GW_WALK_MORE: more steps than one run takes (or stopped inside a
	 * block): send what is walked, the kernel runs the program on the rest */
	if (in_cork || off == 0 || ws->mode != GW_W_FRAME)
		return gw_fail(c, msg, cfg, GW_REASON_BOUND, 0);
	return gw_send_self(c, msg, off);
}

SEC("sk_msg")
int gw_sk_msg(struct sk_msg_md *msg)
{
	__u32 actual, gap, size, sslot = 0;
	struct gw_scratch *s;
	struct gw_config *cfg;
	struct tcp_sock *tp;
	struct gw_conn *c;
	int r, in_cork, policed;

	if (!msg->sk)
		return SK_DROP;
	size = msg->size; /* one load of the ctx field (clang must not rebase it) */
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
	tp = bpf_skc_to_tcp_sock(msg->sk);
	if (!tp)
		return gw_fail(c, msg, cfg, GW_REASON_UNWALKED, 0);
	/* identity and service under the live policy (once per generation) */
	policed = gw_refresh(c, cfg, gw_live_gen(cfg), tp) == 0;
	if (c->flags & GW_CONN_DIVERTED) {
		r = gw_diverted(c, msg, cfg);
		if (r != GW_RESUME)
			return r;
	}

	/* The socket must hold exactly the bytes the walker let through.
	 * More: bytes got past it (a write that began before the socket was
	 * policed, fast-open data). Fewer: a write it passed went out only in
	 * part (non-blocking socket, signal, MSG_FASTOPEN on a connected
	 * socket) and the writer may send anything in place of the rest. That
	 * is followed only where the rest held no byte the walker read: then
	 * whatever takes its place is payload it would have skipped anyway. */
	/* kTLS and other ULPs send through their own path (tls_sw_sendmsg),
	 * where a failed push keeps its verdict: not followed */
	if (tp->inet_conn.icsk_ulp_ops)
		return gw_fail(c, msg, cfg, GW_REASON_ULP, 0);
	/* after shutdown(SHUT_WR) the FIN took a sequence number and nothing
	 * more can be sent: refuse quietly, the writer gets an error */
	if (tp->inet_conn.icsk_inet.sk.sk_shutdown & GW_SEND_SHUTDOWN)
		return SK_DROP;
	actual = tp->write_seq - c->seq0;
	if (actual != (__u32)c->approved) {
		gap = (__u32)c->approved - actual;
		if ((__s32)gap < 0 || gw_resync(c, tp, actual))
			return gw_fail(c, msg, cfg, GW_REASON_UNWALKED, 0);
	}
	/* A cork is honoured only until the message is full (17 pieces); then
	 * the kernel re-runs the program on fewer bytes than it asked for and
	 * sends them. A frame cut there cannot be followed. */
	in_cork = c->corked_for != 0;
	if (in_cork && size < c->corked_for)
		return gw_fail(c, msg, cfg, GW_REASON_CORK_FLUSH, 0);

	s = gw_scratch_claim(&sslot);
	if (!s)
		return gw_fail(c, msg, cfg, GW_REASON_BUSY, 0);
	if (sslot > 1)
		gw_count(GW_CNT_SCRATCH_NEXT, 1);
	r = gw_walk_msg(c, msg, cfg, tp, s, sslot, size, in_cork, policed);
	gw_scratch_release(s);
	return r;
}

/*
 * Server side (issue 11): the same walker over the bytes a protected local
 * server receives, as the stream verdict of gw_srv_sockhash. Every frame
 * of the buffer is walked, every whole header block decided against the
 * caller's identity (from its address, gw_peers; none: every RPC denied)
 * and a denied :path rewritten in place; the buffer passes with one
 * verdict. What it cannot follow yet fails the connection closed (this
 * buffer and every later one are dropped, so the server reads nothing
 * more; an event says why): a frame the walker must read (the preface,
 * a frame header, a HEADERS frame) cut at the end of a buffer (the receive
 * side has no cork: a hold-back is to be built), a block for the fallback
 * helper. Bytes are read by copy (bpf_skb_load_bytes) at any offset, so
 * buffers of any size are walked; DATA is skipped by length, unread.
 */
#define GW_TCP_LISTEN 10
#define GW_TCP_CLOSE 7
#define GW_TCP_CLOSE_WAIT 8
#define GW_LOOPBACK_IFINDEX 1
#define GW_ADJ_ROOM_MAX 4095 /* bytes one bpf_skb_adjust_room call adds, at most */

/* Who is calling: a caller on this host, in the server's network namespace
 * (its socket found by the reversed 4-tuple), is known by its cgroup path,
 * never by the address it connects from (any local process could choose
 * one a policy trusts); any other caller by its source address (gw_peers). */
/* Is the socket connected with these ends (as gw_conn_ends keeps them:
 * addresses IPv4-mapped for IPv4, sport host order, dport network order),
 * in this network namespace, bound to no device? Checked against the
 * connection's own state, never the shared key it was found by (a run
 * nested on this CPU could have rewritten that). Bound to no device: two
 * connections of one namespace can have the same ends only in different
 * L3 domains (VRFs), each bound to its own. */
static __always_inline int gw_sock_ends_are(struct tcp_sock *tp, const struct gw_conn_ends *e, __u64 net)
{
	struct sock_common *sc = &tp->inet_conn.icsk_inet.sk.__sk_common;
	__u32 i;

	if (sc->skc_state == GW_TCP_LISTEN || sc->skc_state == GW_TCP_CLOSE || sc->skc_bound_dev_if ||
	    sc->skc_num != e->sport || sc->skc_dport != e->dport || sc->skc_net.net->net_cookie != net)
		return 0;
	if (sc->skc_family == AF_INET)
		return gw_addr_v4(e->saddr) && gw_addr_v4(e->daddr) && sc->skc_rcv_saddr == e->saddr[3] && sc->skc_daddr == e->daddr[3];
	for (i = 0; i < 4; i++)
		if (sc->skc_v6_rcv_saddr.in6_u.u6_addr32[i] != e->saddr[i] ||
		    sc->skc_v6_daddr.in6_u.u6_addr32[i] != e->daddr[i])
			return 0;
	return 1;
}

/* The caller, if the client side of this pin dir walks its connection:
 * noted by sockops (gw_local_calls), and its socket still in gw_sockhash
 * with exactly this connection's ends, in this namespace (a connection
 * has one socket at each end). Its identity then, or -1. */
static __always_inline int gw_srv_walked_caller(struct gw_conn *c, struct gw_config *cfg, __u64 gen,
						__u64 net, int *closing)
{
	struct gw_local_call *k;
	struct tcp_sock *ptp;
	struct bpf_sock *p;
	__u64 *cookie, ck;
	__u32 zero = 0;
	int ident = -1;

	k = bpf_map_lookup_elem(&gw_local_key, &zero);
	if (!k)
		return -1;
	__builtin_memset(k, 0, sizeof(*k));
	k->net = net;
	/* the server side keeps the ends as the caller sees them, too */
	__builtin_memcpy(k->saddr, c->ends.saddr, sizeof(k->saddr));
	__builtin_memcpy(k->daddr, c->ends.daddr, sizeof(k->daddr));
	k->sport = c->ends.sport;
	k->dport = c->ends.dport;
	cookie = bpf_map_lookup_elem(&gw_local_calls, k);
	if (!cookie)
		return -1;
	ck = *cookie;
	*closing = (ck & GW_LOCAL_CLOSING) != 0;
	ck &= ~GW_LOCAL_CLOSING;
	p = bpf_map_lookup_elem(&gw_sockhash, &ck);
	if (!p)
		return -1;
	ptp = bpf_skc_to_tcp_sock(p);
	if (ptp && gw_sock_ends_are(ptp, &c->ends, net))
		ident = gw_ident_of(BPF_CORE_READ(ptp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg, gen);
	bpf_sk_release(p);
	return ident;
}

static __always_inline __u16 gw_srv_caller(struct __sk_buff *skb, struct gw_conn *c,
					   struct gw_config *cfg, __u64 gen, __u64 net)
{
	struct bpf_sock_tuple t = {};
	struct tcp_sock *ptp;
	struct bpf_sock *p;
	__u32 size;
	__u16 ident = 0;
	int walked, closing = 0;

	c->flags &= ~(GW_CONN_PEER_LOCAL | GW_CONN_PEER_WALKED);
	/* over loopback, in this namespace: a caller the client side walks,
	 * counted and reported there when that side decides it for the same
	 * identity and service (the service it resolves by the address it
	 * connected to, as this side's) */
	walked = skb->ingress_ifindex == GW_LOOPBACK_IFINDEX ? gw_srv_walked_caller(c, cfg, gen, net, &closing) : -1;
	if (walked >= 0) {
		c->flags |= GW_CONN_PEER_LOCAL;
		if (walked && gw_resolve_service(c->ends.daddr, c->ends.dport, GW_SLOT_OF(gen)) == c->service)
			c->flags |= GW_CONN_PEER_WALKED;
		return walked;
	}
	if (gw_addr_v4(c->ends.saddr)) {
		t.ipv4.saddr = c->ends.daddr[3];
		t.ipv4.daddr = c->ends.saddr[3];
		t.ipv4.sport = c->ends.dport;
		t.ipv4.dport = bpf_htons(c->ends.sport);
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, c->ends.daddr, 16);
		__builtin_memcpy(t.ipv6.daddr, c->ends.saddr, 16);
		t.ipv6.sport = c->ends.dport;
		t.ipv6.dport = bpf_htons(c->ends.sport);
		size = sizeof(t.ipv6);
	}
	p = bpf_sk_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
	if (!p) {
		if (skb->ingress_ifindex != GW_LOOPBACK_IFINDEX)
			return gw_peer_ident(c->ends.saddr, GW_SLOT_OF(gen));
		/* arrived on loopback (ifindex 1 in every namespace): a caller
		 * on this host whose socket was not found (the lookup reads
		 * an L3 device index from skb->cb, which a queued TCP buffer
		 * reuses, and can miss): no identity rather than its address
		 * (events: a local caller, its cgroup unknown) */
		c->flags |= GW_CONN_PEER_LOCAL;
		return 0;
	}
	/* a listener there is no caller: no identity */
	if (p->state != GW_TCP_LISTEN) {
		c->flags |= GW_CONN_PEER_LOCAL;
		ptp = bpf_skc_to_tcp_sock(p);
		if (ptp)
			ident = gw_ident_of(BPF_CORE_READ(ptp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg,
					    gen);
	}
	bpf_sk_release(p);
	return ident;
}

/* The caller's identity and the service under the live policy (at the
 * first buffer, and again at every new generation): the service from the
 * local port and the server socket's cgroup as they are now. 0, or -1
 * when the connection cannot be looked at. */
static __noinline int gw_srv_refresh(struct __sk_buff *skb, struct gw_conn *c,
				     struct gw_config *cfg, __u64 gen) /* own frame: not on the walk's stack */
{
	struct bpf_sock *ssk = skb->sk;
	struct tcp_sock *tp = NULL;

	if (ssk)
		tp = bpf_skc_to_tcp_sock(ssk);
	if (!tp)
		return -1;
	c->service = gen ? gw_srv_service_of(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup),
					     cfg, skb->local_port, gen)
			 : 0;
	c->ident = gen ? gw_srv_caller(skb, c, cfg, gen,
				       BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net, net_cookie))
		       : 0;
	c->generation = gen;
	c->rp.len = 0;
	return 0;
}

/* A caller known as walked by this host's client side (GW_CONN_PEER_WALKED)
 * stays so only while that walked socket is the one at the other end: a
 * process with CAP_NET_ADMIN over this namespace can close it without a
 * FIN (TCP_REPAIR) and go on with its connection from a socket of its own,
 * which sockops never sees connect. Its bytes come only after the walked
 * socket is gone (closed: out of gw_sockhash; disconnected: CLOSE), so a
 * check at every buffer is enough. 0: still walked; -1: it is not, the
 * caller is to be worked out again (gw_srv_refresh). */
static __noinline int gw_srv_peer_kept(struct __sk_buff *skb, struct gw_conn *c,
				       struct gw_config *cfg, __u64 gen) /* own frame */
{
	struct bpf_sock *ssk = skb->sk;
	struct tcp_sock *tp = NULL;
	int closing = 0;

	if (ssk)
		tp = bpf_skc_to_tcp_sock(ssk);
	if (!tp)
		return -1;
	if (gw_srv_walked_caller(c, cfg, gen,
				 BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net, net_cookie),
				 &closing) == c->ident)
		return 0;
	/* Out of gw_sockhash: closed (or taken over). Its last bytes can still
	 * come after close() (a server that reads late leaves them in the
	 * caller's send queue; one busy with its socket, in the backlog): it
	 * stays the caller while its note says its process closed it with a
	 * FIN, queued after every byte it wrote (gw_note_closing; the note
	 * goes when the socket reaches CLOSE) */
	return closing ? 0 : -1;
}

/* --- holding back a HEADERS frame cut across received buffers --- */

struct gw_hold_claim {
	__u64 cookie;
	__u32 slot; /* the slot taken + 1; 0: none */
};

static long gw_hold_claim_cb(__u32 i, void *ctx)
{
	struct gw_hold_claim *k = ctx;
	struct gw_hold_owner *o;
	__u32 idx = i;

	o = bpf_map_lookup_elem(&gw_srv_hold_owners, &idx);
	if (!o)
		return 1; /* past the last slot */
	if (o->owner || __sync_val_compare_and_swap(&o->owner, 0, k->cookie) != 0)
		return 0;
	o->since = bpf_ktime_get_ns();
	k->slot = idx + 1;
	return 1;
}

/* A hold slot for the connection: its number + 1, counted against the
 * caller's identity (given back with the slot, gw_hold_free); 0: every
 * slot is busy; -1: the identity holds its share of them already (attach
 * --hold-slots-per-identity: a caller that stops inside a HEADERS frame on
 * many connections fails its own past its share, not everyone else's).
 * Apart from gw_hold: the receive path's stack is full. */
__attribute__((noinline)) int gw_hold_take(struct gw_srv_conn *sc, __u64 cookie)
{
	struct gw_hold_claim k = { .cookie = cookie };
	struct gw_srv_hold *h;
	__u32 share, idx, *id;

	if (!sc)
		return 0;
	/* the identity's share id, the same in every generation it is in:
	 * an apply that renumbers identities moves no count (0: none given,
	 * the callers without one share one count) */
	idx = GW_SLOT_OF(sc->c.generation) * GW_MAX_IDENTITIES + (sc->c.ident & (GW_MAX_IDENTITIES - 1));
	id = bpf_map_lookup_elem(&gw_ident_shares, &idx);
	share = id && *id < GW_SLOTS * GW_MAX_IDENTITIES ? *id : 0;
	if (gw_hold_share_take(share))
		return -1;
	bpf_loop(GW_HOLD_SLOTS_MAX, gw_hold_claim_cb, &k, 0); /* stops past the last slot */
	idx = k.slot - 1;
	h = k.slot ? bpf_map_lookup_elem(&gw_srv_holds, &idx) : NULL;
	if (!h) {
		gw_hold_share_give(share);
		if (k.slot) { /* (an array's slot is never missing) */
			struct gw_hold_owner *o = bpf_map_lookup_elem(&gw_srv_hold_owners, &idx);

			if (o)
				__sync_val_compare_and_swap(&o->owner, cookie, 0);
		}
		return 0;
	}
	/* the generation the bytes before resume are decided under (gw_hold) */
	h->gen = sc->c.generation;
	h->share = share + 1; /* given back when the slot is (gw_hold_free) */
	return k.slot;
}

/* Grows the buffer by n zeroed bytes at its head (bpf_skb_adjust_room,
 * GW_ADJ_ROOM_MAX a call): 0, or the bytes it could not add. */
static __always_inline __u32 gw_skb_grow(struct __sk_buff *skb, __u32 n)
{
	__u32 k, i;

	for (i = 0; i < GW_HOLD_MAX / GW_ADJ_ROOM_MAX + 1; i++) {
		if (!n)
			break;
		k = n < GW_ADJ_ROOM_MAX ? n : GW_ADJ_ROOM_MAX;
		if (bpf_skb_adjust_room(skb, k, 0, 0))
			break;
		n -= k;
	}
	return n;
}

/* Gives the held bytes up. The socket counts them as read only when the
 * server reads them or when a buffer that holds them is dropped
 * (copied_seq); until then it reports itself readable. So this buffer,
 * about to be dropped, grows by their number first. */
static __always_inline void gw_hold_settle(struct __sk_buff *skb, struct gw_srv_conn *sc, __u64 cookie)
{
	struct gw_srv_hold *h = gw_hold_of(sc, cookie);

	if (h)
		gw_skb_grow(skb, h->len);
	gw_hold_free(sc, cookie);
}

/* gw_fail_walk on the receive side: a held frame is given up with it */
static __always_inline int gw_srv_fail(struct __sk_buff *skb, struct gw_srv_conn *sc, __u64 cookie,
				       struct gw_config *cfg, __u8 reason, __u32 stream)
{
	gw_hold_settle(skb, sc, cookie);
	return gw_fail_walk(&sc->c, cfg, reason, stream, 0);
}

/*
 * The walk stopped at a HEADERS frame that starts at walk offset f (the
 * carry counts first: pre bytes) and ends at walk offset end, past this
 * buffer. The server must read none of it before it is decided, so:
 *   - its bytes in the buffer, and any walked bytes after the first
 *     GW_TRIM_MAX, go to a hold slot;
 *   - the buffer is trimmed to what is left: passed, or dropped when that
 *     is nothing (trimmed to 0 first, so that the socket's copied_seq,
 *     which counts dropped buffers by their length, counts every byte
 *     once: when it reads them after the release);
 *   - the bytes go back in front of the buffer that completes the frame
 *     (gw_sk_skb), and the walk resumes at the frame.
 * A frame whose header began in the carry (f < pre, its first bytes passed
 * already) keeps the carry: the next walk reads it again.
 */
static __always_inline int gw_hold(struct __sk_buff *skb, struct gw_srv_conn *sc, __u64 cookie,
				   struct gw_config *cfg, __u32 pre, __u32 f, __u32 end, __u32 grown)
{
	struct gw_srv_hold *h;
	__u32 size = skb->len, hs = 0, pass, n, idx, trim_max;
	int res;

	/* what bpf_skb_change_tail keeps at most (SKB_MAX_ALLOC): 4 pages
	 * less the shared info, cache-line aligned */
	trim_max = 4 * 4096 - ((bpf_core_type_size(struct skb_shared_info) + 63) & ~63U);
	if (f < pre) {
		if (f)
			return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
	} else {
		hs = f - pre;
	}
	pass = hs < trim_max ? hs : trim_max;
	n = size - pass;
	/* a caller of no identity gets no slot (every RPC of its is denied);
	 * nor does a buffer that cannot be trimmed to pass: one grown at its
	 * head by a release (gw_hold_release) has its header offsets moved
	 * forward, and change_tail refuses a length below them */
	if (hs >= size || end - pre - pass > GW_HOLD_MAX || pass < grown ||
	    (sc->c.service && !sc->c.ident))
		return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
	res = gw_hold_take(sc, cookie);
	if (res <= 0)
		return gw_srv_fail(skb, sc, cookie, cfg, res ? GW_REASON_HOLD_SHARE : GW_REASON_HOLD, 0);
	sc->hold = res;
	idx = res - 1;
	h = bpf_map_lookup_elem(&gw_srv_holds, &idx);
	if (!h)
		return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
	/* h->len counts only bytes taken off a buffer: what gw_hold_settle
	 * puts back in the count when the hold is given up */
	h->len = 0;
	if (n == 0 || n >= GW_HOLD_MAX || bpf_skb_load_bytes(skb, pass, h->data, n))
		return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
	if (bpf_skb_change_tail(skb, pass, 0))
		return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
	h->len = n;
	h->need = end - pre - pass;
	h->resume = f < pre ? 0 : hs - pass;
	if (f >= pre)
		sc->carry_len = 0;
	sc->c.approved += pass;
	gw_count(GW_CNT_SRV_HOLDS, 1);
	if (h->resume)
		gw_count(GW_CNT_SRV_REPLAYS, 1);
	return pass ? SK_PASS : SK_DROP;
}

/* This buffer does not complete the held frame either: it joins the held
 * bytes, and the server reads nothing of it yet. -1: it cannot. */
static __always_inline int gw_hold_append(struct __sk_buff *skb, struct gw_srv_hold *h)
{
	__u32 size = skb->len, off = h->len;

	if (off >= GW_HOLD_MAX || size == 0 || size >= GW_HOLD_APPEND)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, h->data + off, size))
		return -1;
	if (bpf_skb_change_tail(skb, 0, 0))
		return -1;
	h->len = off + size; /* taken off the buffer: counted when given up */
	return 0;
}

/* The held bytes go back in front of this buffer, which completes their
 * frame: the server reads them with it, as they were sent. -1: they
 * cannot (the connection then fails closed). */
static __always_inline int gw_hold_release(struct __sk_buff *skb, struct gw_srv_hold *h)
{
	__u32 n = h->len, left;

	if (n == 0 || n >= GW_HOLD_MAX)
		return -1;
	left = gw_skb_grow(skb, n);
	if (left) {
		h->len = left; /* what gw_hold_settle still has to count */
		return -1;
	}
	h->len = 0; /* in the buffer now: counted with it */
	return bpf_skb_store_bytes(skb, 0, h->data, n, 0) ? -1 : 0;
}

/* --- a buffer whose bytes a local sender can still change --- */

#define GW_SKBFL_SHARED_FRAG 2 /* skb_shared_info.flags: frags may be shared (enum, no name) */
#define GW_FRAGS_MAX 48        /* CONFIG_MAX_SKB_FRAGS is 17 by default, at most 45 */
#define GW_FRAG_LIST_MAX 64    /* a GRO buffer's chained segments (64 KB of them) */

/* A checked read of one kernel field (CO-RE): a read that faults is
 * never taken for a zero (which would read as "no frags", "no mapping") */
#define GW_KREAD(dst, src) (bpf_core_read(&(dst), sizeof(dst), &(src)) == 0)

/* Can the sender still write this page? A page of a file's page cache or
 * of anonymous memory (its folio's head has a mapping), or one mapped into
 * a process now (_mapcount >= 0: a kernel buffer a process mmap()s, an
 * io_uring or packet ring, then vmsplice()s). 1 also when it cannot be
 * read. Not covered: such a ring page unmapped at this moment and mapped
 * again after (only its sender's SKBFL_SHARED_FRAG mark covers it). */
static __always_inline int gw_page_shared(__u64 netmem)
{
	struct page *pg = (struct page *)(long)netmem;
	struct page *head = pg;
	void *mapping;
	__u64 ch;
	int mapcount;

	if (netmem & 1)
		return 1; /* a net_iov (device memory), no page */
	if (!GW_KREAD(ch, pg->compound_head) || !GW_KREAD(mapcount, pg->_mapcount.counter))
		return 1;
	if (mapcount >= 0)
		return 1;
	if (ch & 1) /* a tail page: the folio's head says whose it is */
		head = (struct page *)(long)(ch - 1);
	if (!GW_KREAD(mapping, head->mapping))
		return 1;
	return mapping != NULL;
}

/* May a byte of one sk_buff's pages change after the walker read it?
 * Bytes are read from the pages when the server reads, not when the
 * verdict runs; a sender on this host (over loopback or a veth pair, which
 * pass its buffers on as they are) can send pages it can still write:
 * sendfile()/splice() send a file's page cache pages, vmsplice() its own
 * memory. The sender marks such a buffer SKBFL_SHARED_FRAG; TCP's
 * coalescing of received buffers did not carry the mark over to the
 * buffer it merges into before fixes of 2026, so each page is looked at
 * too (gw_page_shared). The network stack's own pages (a sender's copy, a
 * driver's receive pages) belong to no mapping and are mapped nowhere.
 * `sh`: the buffer's skb_shared_info (an address read from the kernel).
 * 0: private; 2: private, with chained segments (frag_list) to look at
 * too; 1: a page may be shared, or that cannot be told. A global
 * function: verified once. */
__attribute__((noinline)) int gw_shinfo_shared(__u64 sh)
{
	struct skb_shared_info *si = (struct skb_shared_info *)(long)sh;
	struct sk_buff *list;
	__u64 netmem;
	__u8 flags, nr;
	__u32 i;

	if (!sh || !bpf_core_field_exists(struct skb_frag, netmem) ||
	    !bpf_core_field_exists(struct skb_shared_info, flags))
		return 1; /* a kernel whose layout is not known here: copy */
	if (!GW_KREAD(flags, si->flags) || (flags & GW_SKBFL_SHARED_FRAG) || !GW_KREAD(nr, si->nr_frags) ||
	    nr > GW_FRAGS_MAX)
		return 1;
	for (i = 0; i < GW_FRAGS_MAX; i++) {
		if (i >= nr)
			break;
		if (!GW_KREAD(netmem, si->frags[i].netmem) || gw_page_shared(netmem))
			return 1;
	}
	if (!GW_KREAD(list, si->frag_list))
		return 1;
	return list ? 2 : 0;
}

/* an sk_buff's skb_shared_info (end is an offset from head: 64-bit
 * kernels), or 0 when it cannot be read */
static __always_inline __u64 gw_kskb_shinfo(struct sk_buff *k)
{
	unsigned char *head;
	__u32 end;

	if (bpf_core_field_size(k->end) != sizeof(__u32) || !GW_KREAD(head, k->head) || !GW_KREAD(end, k->end) ||
	    !head)
		return 0;
	return (__u64)(long)head + end;
}

struct gw_shared_walk {
	__u64 k; /* the chained segment to look at next */
	int shared;
};

static long gw_frag_list_cb(__u32 i, void *ctx)
{
	struct gw_shared_walk *w = ctx;
	struct sk_buff *k = (struct sk_buff *)(long)w->k, *next;

	if (!k)
		return 1;
	/* a chained segment with a chain of its own: not expected, copied */
	if (gw_shinfo_shared(gw_kskb_shinfo(k)) || !GW_KREAD(next, k->next)) {
		w->shared = 1;
		return 1;
	}
	w->k = (__u64)(long)next;
	return 0;
}

/* Is every byte of the buffer in memory only the network stack can
 * write? The context of an sk_skb program is the kernel's sk_buff (the
 * verifier maps __sk_buff's fields onto it): read as such. */
static __noinline int gw_skb_private(struct __sk_buff *skb)
{
	struct sk_buff *k = (struct sk_buff *)(void *)skb, *list;
	struct gw_shared_walk w = {};
	struct skb_shared_info *sh;
	__u32 data_len;
	int r;

	if (!skb || !GW_KREAD(data_len, k->data_len))
		return 0;
	if (!data_len)
		return 1; /* linear: the head is the kernel's */
	sh = (struct skb_shared_info *)(long)gw_kskb_shinfo(k);
	r = gw_shinfo_shared((__u64)(long)sh);
	if (r != 2)
		return r == 0;
	if (!GW_KREAD(list, sh->frag_list))
		return 0;
	w.k = (__u64)(long)list;
	if (bpf_loop(GW_FRAG_LIST_MAX, gw_frag_list_cb, &w, 0) < 0 || w.shared || w.k)
		return 0; /* more chained segments than looked at count as shared */
	return 1;
}

SEC("sk_skb/stream_verdict")
int gw_sk_skb(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct gw_walk_state *ws;
	struct gw_walk w = {};
	struct gw_config *cfg;
	struct gw_scratch *s;
	struct gw_srv_conn *sc;
	struct gw_srv_hold *h;
	struct gw_conn *c;
	__u32 size = skb->len, sslot = 0, off, pre, i, v, start = 0, need, grown = 0;
	int res, reason, stream;
	__u64 gen;
	__u8 b;

	sc = bpf_map_lookup_elem(&gw_srv_conns, &cookie);
	if (!sc)
		return SK_DROP; /* no state: nothing can follow its bytes */
	c = &sc->c;
	cfg = gw_get_config();
	if (!cfg || (c->flags & GW_CONN_FAILED)) {
		gw_hold_settle(skb, sc, cookie);
		return SK_DROP;
	}
	if (!size) {
		/* the FIN: a held frame can never be whole. The server reads
		 * the stream up to it, and its end (the socket's shutdown
		 * state, not this buffer: dropped when it counts the held
		 * bytes, gw_hold_settle) */
		if (!sc->hold)
			return SK_PASS;
		gw_hold_settle(skb, sc, cookie);
		return SK_DROP;
	}
	if (sc->hold) {
		h = gw_hold_of(sc, cookie);
		if (!h)
			return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
		if (h->len + size < h->need) {
			if (gw_hold_append(skb, h))
				return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_NOMEM, 0);
			return SK_DROP; /* of a buffer trimmed to nothing */
		}
		start = h->resume;
		if (start && h->gen != gw_live_gen(cfg))
			/* bytes decided under a policy no longer live: never
			 * replayed (a caller could hold allowed RPCs behind a
			 * cut frame until a revocation) */
			return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_HOLD, 0);
		if (gw_hold_release(skb, h))
			return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_NOMEM, 0);
		gw_hold_free(sc, cookie);
		grown = skb->len - size;
		size = skb->len;
	}
	/* the walker decides on what it reads, the server must read the
	 * same: a buffer whose pages its sender can still write (sendfile,
	 * splice from this host) is copied into the buffer's own memory
	 * first, and walked there. Not a buffer that is all payload of a
	 * frame begun before it (DATA of a large request): the walk reads no
	 * byte of it, and the server takes it as payload whatever it holds */
	if (!(c->skip >= size && !sc->carry_len && !grown) && !gw_skb_private(skb)) {
		if (bpf_skb_pull_data(skb, skb->len))
			return gw_srv_fail(skb, sc, cookie, cfg, GW_REASON_NOMEM, 0);
	}
	gen = gw_live_gen(cfg);
	if ((c->flags & GW_CONN_PEER_WALKED) && c->generation == gen && gw_srv_peer_kept(skb, c, cfg, gen))
		c->generation = 0; /* the walked socket is gone: who is calling now? */
	if (c->generation != gen && gw_srv_refresh(skb, c, cfg, gen))
		return gw_fail_walk(c, cfg, GW_REASON_UNWALKED, 0, 0);
	s = gw_scratch_claim(&sslot);
	if (!s)
		return gw_fail_walk(c, cfg, GW_REASON_BUSY, 0, 0);
	ws = &s->w;
	pre = sc->carry_len < H2_PREFACE_LEN ? sc->carry_len : 0;
	w.src.ctx = skb;
	w.src.pos = &ws->pos;
	w.src.kind = GW_SRC_SKB;
	ws->pos.buf_len = 0;
	if (sslot == 1) { /* the CPU's first scratch slot: its block buffer too */
		__u32 zero = 0;

		w.src.buf = bpf_map_lookup_elem(&gw_blkbuf, &zero);
	}
	ws->pos.pre_len = pre;
	__builtin_memcpy(ws->pos.pre, sc->carry, GW_CARRY_MAX);
	w.c = c;
	w.cfg = cfg;
	w.s = s;
	w.sslot = sslot;
	c->rs.n = 0;
	ws->size = size + pre; /* the carry, then the buffer */
	ws->off = start; /* (a resumed walk: no carry, gw_hold) */
	ws->mode = GW_W_FRAME;
	ws->res = GW_WALK_MORE;
	ws->policed = c->service != 0; /* a caller of no identity: denied (no rule) */
	ws->lin = 0; /* read by copy: no data pointers */
	bpf_loop(GW_WALK_STEPS, gw_walk_cb_skb, &w, 0);
	res = ws->res;
	reason = ws->reason;
	stream = ws->stream;
	off = ws->off;
	need = ws->need;
	gw_scratch_release(s);
	if (res == GW_WALK_DONE) {
		sc->carry_len = 0;
		c->approved += size;
		return SK_PASS;
	}
	if (res == GW_WALK_NEED && size + pre - off <
	    (c->h2.stage == GW_H2_PREFACE ? H2_PREFACE_LEN : H2_FRAME_HEADER_LEN)) {
		/* a preface or frame header cut at the end: its bytes pass (the
		 * server acts on no part of one) and are read again, carried,
		 * before the next buffer's. Copied forward in place: the byte
		 * read (at off + i) is never before the one written (at i). */
		for (i = 0; i < H2_PREFACE_LEN; i++) {
			v = off + i;
			if (v >= size + pre)
				break;
			if (v < pre) {
				b = sc->carry[v & (GW_CARRY_MAX - 1)];
			} else if (bpf_skb_load_bytes(skb, v - pre, &b, 1)) {
				return gw_fail_walk(c, cfg, GW_REASON_NOMEM, 0, 0);
			}
			sc->carry[i & (GW_CARRY_MAX - 1)] = b;
		}
		sc->carry_len = i;
		c->approved += size;
		return SK_PASS;
	}
	if (res == GW_WALK_NEED)
		/* a HEADERS frame cut at the end (gw_h2_next needs it whole) */
		return gw_hold(skb, sc, cookie, cfg, pre, off, need, grown);
	if (res == GW_WALK_FAIL || res == GW_WALK_DIVERT)
		return gw_fail_walk(c, cfg, reason, stream, 0);
	return gw_fail_walk(c, cfg, GW_REASON_BOUND, 0, 0);
}

/*
 * Server side: the answer a denied caller sees. gw_sk_skb makes a denied
 * RPC's :path unroutable, so the server answers "no such method" its own
 * way: a C-core or grpc-go server with a Trailers-Only HEADERS frame
 * (UNIMPLEMENTED), a @grpc/grpc-js server with RST_STREAM (the client
 * says INTERNAL). This sk_msg program on gw_srv_sockhash walks the frames
 * the server writes (the frame walk only, no HPACK) and, for a stream the
 * receive side denied (gw_srv_note_denied):
 *  - a Trailers-Only HEADERS frame (END_STREAM | END_HEADERS) loses its
 *    END_STREAM and is followed by trailers of ours: the server's header
 *    block reaches the client unchanged (both HPACK tables stay in step)
 *    and becomes the response headers; ours end the stream with
 *    grpc-status 7 and a grpc-message naming grpcwall and the rule;
 *  - an RST_STREAM frame is replaced by a Trailers-Only HEADERS frame of
 *    ours (:status 200, content-type, grpc-status 7, grpc-message).
 * Our header blocks use the static table and literals without indexing
 * only: no table changes. Any other answer (headers and a body, frames cut
 * across writes, a header block over GW_RESP_MAX_BLOCK) is left as it is.
 * The walk follows every byte the server writes, in order: a second
 * writer, or bytes sent past the program, show as the socket's write_seq
 * differing from what the walk passed, and the walk stops for good (lost:
 * answers as the server writes them). The rest of a write that went out
 * in part is written again as it was walked (tcp_bpf keeps the verdict):
 * consistent, except where bytes were added (gw_resp_room). The server's
 * output is not policed, only annotated: dropped only if bytes of ours
 * could be neither written nor taken out again (gw_resp_push).
 */
#define GW_H2_RST_STREAM   0x3
#define GW_RESP_MAX_BLOCK  1024 /* a Trailers-Only block followed by ours: at most this long */
#define GW_RESP_BUF        256  /* room for a frame of ours (a power of two) */
#define GW_RESP_LIN_MAX    0x8000 /* offsets read in place are below this (the verifier tracks
				   * packet ranges to 0xffff) */
#define GW_RESP_STEPS      8192 /* frames walked in one write, at most: past them the walk is lost */
#define GW_RESP_RULE_MAX   96   /* characters of the rule's FILE:LINE in the message */

struct gw_resp_buf {
	__u8 b[GW_RESP_BUF];
};

struct gw_resp_walk {
	struct sk_msg_md *msg;
	struct gw_srv_resp *r;
	__u32 off, size;
	__u32 room;             /* may bytes be added (gw_resp_room)? */
	__u32 lin;              /* msg->data is the message's first byte, data_end its end */
	__u32 drop;             /* bytes of ours that could be neither written nor taken out */
	struct gw_scratch *s;   /* where frames of ours are built; NULL: no denial pending */
};

/* a frame of ours is built in the run's scratch slot (gw_scratch_claim),
 * in the block parser's part, which this program does not use */
_Static_assert(sizeof(struct gw_hp_block) >= sizeof(struct gw_resp_buf), "gw_resp_buf fits in gw_scratch.blk");

static __always_inline __u32 gw_resp_put(__u8 *b, __u32 o, const char *s, __u32 n)
{
	__u32 i;

	for (i = 0; i < n; i++)
		b[(o + i) & (GW_RESP_BUF - 1)] = s[i];
	return o + n;
}

/* Our header blocks' pieces (file scope: libbpf 1.1 cannot place a
 * function's static arrays in .rodata's BTF) */
GW_TABLE char gw_resp_status[] = "\x00\x0bgrpc-status\x01" "7";
GW_TABLE char gw_resp_ctype[] = "\x88\x0f\x10\x10" "application/grpc";
GW_TABLE char gw_resp_mname[] = "\x00\x0cgrpc-message";
GW_TABLE char gw_resp_denied[] = "grpcwall: denied";
GW_TABLE char gw_resp_by[] = " by rule ";
GW_TABLE char gw_resp_norule[] = " (no rule allows it)";
GW_TABLE char gw_resp_client[] = " (decided on the client side)";

/* The rule's FILE:LINE (gw_names detail) from its base name on, into a
 * frame of ours: bpf_loop callbacks, checked once (a loop over each
 * character, unrolled, makes the verifier follow every '/' found apart) */
struct gw_rule_text {
	struct gw_name_val *v;
	struct gw_resp_buf *rb;
	__u32 o;        /* where the copy goes */
	__u32 base;     /* past the last '/' */
	__u32 n;        /* characters copied */
};

/* character k of the rule's FILE:LINE, 0 past its end */
static __always_inline char gw_rule_char(struct gw_rule_text *t, __u32 k)
{
	return k < GW_CGROUP_PATH_MAX ? t->v->detail[k] : 0;
}

static long gw_rule_base_cb(__u32 i, void *ctx)
{
	struct gw_rule_text *t = ctx;
	char ch = gw_rule_char(t, i);

	if (!ch)
		return 1;
	if (ch == '/')
		t->base = i + 1;
	return 0;
}

static long gw_rule_copy_cb(__u32 i, void *ctx)
{
	struct gw_rule_text *t = ctx;
	char ch = gw_rule_char(t, t->base + i);

	if (!ch)
		return 1;
	/* grpc-message is percent-encoded: a plain character or '?' */
	t->rb->b[(t->o + i) & (GW_RESP_BUF - 1)] = ch >= 0x20 && ch <= 0x7e && ch != '%' ? ch : '?';
	t->n = i + 1;
	return 0;
}

/* Builds our HEADERS frame (END_STREAM | END_HEADERS) for the denied
 * stream d into x->b: trailers, or with trailers_only the whole answer.
 * Returns its length (< GW_RESP_BUF). No PADDED flag: C-core 1.51 reads a
 * padded HEADERS frame's block from the wrong byte. */
__noinline __u32 gw_resp_frame(struct gw_resp_buf *rb, const struct gw_denied *d, int trailers_only)
{
	struct gw_name_key k = {};
	struct gw_name_val *v = NULL;
	__u8 *b;

	if (!rb || !d)
		return 0;
	b = rb->b;
	k.slot = d->slot;
	k.kind = GW_NAMEKIND_RULE;
	k.id = d->rule;
	if (d->rule && d->rule != GW_RULE_CLIENT_SIDE)
		v = bpf_map_lookup_elem(&gw_names, &k);
	__u32 o = H2_FRAME_HEADER_LEN, mlen_at, blk;

	__builtin_memset(b, 0, GW_RESP_BUF);
	if (trailers_only)
		o = gw_resp_put(b, o, gw_resp_ctype, sizeof(gw_resp_ctype) - 1);
	o = gw_resp_put(b, o, gw_resp_status, sizeof(gw_resp_status) - 1);
	o = gw_resp_put(b, o, gw_resp_mname, sizeof(gw_resp_mname) - 1);
	mlen_at = o++;
	o = gw_resp_put(b, o, gw_resp_denied, sizeof(gw_resp_denied) - 1);
	if (v) {
		/* the policy file's name and the line (a caller elsewhere learns
		 * no path of this host): what follows the last '/' of FILE:LINE */
		struct gw_rule_text t = { .v = v, .rb = rb, .o = 0, .base = 0, .n = 0 };

		o = gw_resp_put(b, o, gw_resp_by, sizeof(gw_resp_by) - 1);
		bpf_loop(GW_CGROUP_PATH_MAX, gw_rule_base_cb, &t, 0);
		t.o = o;
		bpf_loop(GW_RESP_RULE_MAX, gw_rule_copy_cb, &t, 0);
		o += t.n < GW_RESP_RULE_MAX ? t.n : GW_RESP_RULE_MAX;
	} else if (d->rule == GW_RULE_CLIENT_SIDE) {
		o = gw_resp_put(b, o, gw_resp_client, sizeof(gw_resp_client) - 1);
	} else {
		o = gw_resp_put(b, o, gw_resp_norule, sizeof(gw_resp_norule) - 1);
	}
	b[mlen_at & (GW_RESP_BUF - 1)] = (__u8)(o - mlen_at - 1); /* < 127: one byte */
	blk = o - H2_FRAME_HEADER_LEN;
	b[0] = 0;
	b[1] = (__u8)(blk >> 8);
	b[2] = (__u8)blk;
	b[3] = H2_FRAME_HEADERS;
	b[4] = H2_FLAG_END_STREAM | H2_FLAG_END_HEADERS;
	b[5] = (__u8)(d->stream >> 24) & 0x7f;
	b[6] = (__u8)(d->stream >> 16);
	b[7] = (__u8)(d->stream >> 8);
	b[8] = (__u8)d->stream;
	return o; /* <= 180 */
}

struct gw_resp_copy {
	__u8 *p, *end;
	struct gw_resp_buf *b;
};

static long gw_resp_copy_cb(__u32 i, void *ctx)
{
	struct gw_resp_copy *c = ctx;
	__u8 *q = c->p + (i & (GW_RESP_BUF - 1));

	if (q + 1 > c->end)
		return 1;
	*q = c->b->b[i & (GW_RESP_BUF - 1)];
	return 0;
}

/* Copies our frame (n bytes) to data + at, inside [data, end): 0 or -1. */
static __always_inline int gw_resp_write(struct gw_resp_buf *rb, __u8 *data, __u8 *end, __u32 at, __u32 n)
{
	struct gw_resp_copy c = { .p = data + (at & 0xfff), .end = end, .b = rb };

	if (n > GW_RESP_BUF || (long)(end - data) < (long)(at & 0xfff) + (long)n)
		return -1;
	return bpf_loop(n, gw_resp_copy_cb, &c, 0) == (long)n ? 0 : -1;
}

static __always_inline void gw_resp_lose(struct gw_srv_resp *r)
{
	__u32 i;

	r->lost = 1;
	for (i = 0; i < GW_DENIED_RING; i++)
		if (r->d[i].stream) {
			r->d[i].stream = 0;
			gw_count(GW_CNT_SRV_ANSWERS_KEPT, 1);
		}
}

static __always_inline struct gw_denied *gw_denied_of(struct gw_srv_resp *r, __u32 stream)
{
	__u32 i;

	if (!stream)
		return NULL;
	for (i = 0; i < GW_DENIED_RING; i++)
		if (r->d[i].stream == stream)
			return &r->d[i];
	return NULL;
}

/* A frame header of a denied stream's answer that is not turned: the
 * answer reaches the caller as the server wrote it. */
static __always_inline void gw_resp_kept(struct gw_denied *d, __u8 type, __u8 flags)
{
	if (type == H2_FRAME_HEADERS || type == GW_H2_RST_STREAM || (flags & H2_FLAG_END_STREAM)) {
		d->stream = 0;
		gw_count(GW_CNT_SRV_ANSWERS_KEPT, 1);
	}
}

/*
 * Adding bytes to a message (bpf_msg_push_data) at `at`: [0, at] is made
 * one piece first, so that the bytes go into the message's first
 * scatterlist entry (kernels without upstream f72eed9b84fb place the bytes
 * after a push inside any later entry wrongly). The added bytes get an
 * entry of their own: pulled alone, they need no copy, and are written at
 * once (a push does not zero them: none is sent unwritten; if they cannot
 * be taken out again, the message is dropped, x->drop).
 */
static __always_inline int gw_resp_push(struct gw_resp_walk *x, struct gw_resp_buf *rb, __u32 at, __u32 n)
{
	__u8 *data, *end;

	x->lin = 0; /* push, pull and pop move the data start */
	if (bpf_msg_pull_data(x->msg, 0, at < x->size ? at + 1 : at, 0))
		return -1;
	if (bpf_msg_push_data(x->msg, at, n, 0))
		return -1;
	if (!bpf_msg_pull_data(x->msg, at, at + n, 0)) {
		data = (__u8 *)(long)x->msg->data;
		end = (__u8 *)(long)x->msg->data_end;
		if (!gw_resp_write(rb, data, end, 0, n))
			return 0;
	}
	if (bpf_msg_pop_data(x->msg, at, n, 0))
		x->drop = 1;
	return -1;
}

/* Sets or clears END_STREAM of the frame header at off (in the first
 * scatterlist entry, gw_resp_push): 0 or -1. */
static __always_inline int gw_resp_end_stream(struct gw_resp_walk *x, __u32 off, int set)
{
	__u8 *data, *end;

	if (bpf_msg_pull_data(x->msg, off, off + H2_FRAME_HEADER_LEN, 0))
		return -1;
	data = (__u8 *)(long)x->msg->data;
	end = (__u8 *)(long)x->msg->data_end;
	if (data + H2_FRAME_HEADER_LEN > end)
		return -1;
	if (set)
		data[4] |= H2_FLAG_END_STREAM;
	else
		data[4] &= ~H2_FLAG_END_STREAM;
	return 0;
}

/* The Trailers-Only HEADERS frame at off (payload len, all of it in this
 * write) becomes the response headers, followed by our trailers. 1: done,
 * 0: left as it is. */
static __always_inline int gw_resp_add_trailers(struct gw_resp_walk *x, struct gw_denied *d,
						__u32 off, __u32 len)
{
	__u32 n, at = off + H2_FRAME_HEADER_LEN + len;
	struct gw_scratch *s = x->s;

	if (!s)
		return 0;
	n = gw_resp_frame((struct gw_resp_buf *)&s->blk, d, 0);
	if (n <= H2_FRAME_HEADER_LEN || n > GW_RESP_BUF ||
	    gw_resp_push(x, (struct gw_resp_buf *)&s->blk, at, n))
		return 0;
	if (gw_resp_end_stream(x, off, 0)) {
		/* (cannot fail: the frame is in the one piece made before) the
		 * stream must end once: ours goes again */
		if (bpf_msg_pop_data(x->msg, at, n, 0))
			x->drop = 1;
		return 0;
	}
	x->size += n;
	x->off = at + n;
	return 1;
}

/* The RST_STREAM frame at off (13 bytes, in this write) is replaced by a
 * Trailers-Only HEADERS frame of ours: ours goes in before it, then it
 * comes out (if it cannot, it stays: a reset after the end of a stream is
 * what grpc-go servers send, and clients ignore). 1: done, 0: left. */
static __always_inline int gw_resp_replace_rst(struct gw_resp_walk *x, struct gw_denied *d, __u32 off)
{
	__u32 n, rst = H2_FRAME_HEADER_LEN + 4;
	struct gw_scratch *s = x->s;

	if (!s)
		return 0;
	n = gw_resp_frame((struct gw_resp_buf *)&s->blk, d, 1);
	if (n <= rst || n > GW_RESP_BUF || gw_resp_push(x, (struct gw_resp_buf *)&s->blk, off, n))
		return 0;
	if (bpf_msg_pop_data(x->msg, off + n, rst, 0)) {
		x->size += n;
		x->off = off + n + rst;
	} else {
		x->size += n - rst;
		x->off = off + n;
	}
	return 1;
}

/*
 * May this write grow? tcp_bpf sends a passed message with the writer's
 * flags; when the socket takes only part of it (a non-blocking server, its
 * send buffer full), the rest is freed and the writer told it wrote that
 * many bytes less, bytes of ours included: it would then write again bytes
 * that went out, and the stream would be corrupt. So bytes are added only
 * when the whole message, with them, fits in the send buffer twice over
 * and under the not-sent low-water mark (TCP_NOTSENT_LOWAT). (What is left:
 * the host out of TCP memory, tcp_mem, refusing a write of a socket under
 * its own limits.)
 */
static __always_inline int gw_resp_room(struct tcp_sock *tp, __u32 size)
{
	__u64 need = 2 * ((__u64)size + GW_RESP_BUF) + 4096;
	__s64 sndbuf = tp->inet_conn.icsk_inet.sk.sk_sndbuf;
	__s64 queued = tp->inet_conn.icsk_inet.sk.sk_wmem_queued;
	__u32 lowat = tp->notsent_lowat;

	if (!lowat)
		lowat = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net,
				      ipv4.sysctl_tcp_notsent_lowat);
	if (sndbuf - queued < (__s64)need)
		return 0;
	return (__u64)(__u32)(tp->write_seq - tp->snd_nxt) + need < lowat;
}

static long gw_resp_step(__u32 i, void *ctx)
{
	struct gw_resp_walk *x = ctx;
	struct gw_srv_resp *r = x->r;
	__u32 off = x->off, avail, n, len, stream, k, take, rel;
	__u8 type, flags, h[H2_FRAME_HEADER_LEN];
	struct gw_denied *d;
	__u8 *data, *end;

	if (r->lost || x->drop || off >= x->size)
		return 1;
	avail = x->size - off;
	if (r->skip) {
		/* payload: never read */
		n = r->skip < avail ? r->skip : avail;
		r->skip -= n;
		x->off = off + n;
		return 0;
	}
	if (r->hlen || avail < H2_FRAME_HEADER_LEN) {
		/* a frame header cut at the end of a write: gathered */
		take = H2_FRAME_HEADER_LEN - (r->hlen < H2_FRAME_HEADER_LEN ? r->hlen : H2_FRAME_HEADER_LEN);
		if (take > avail)
			take = avail;
		x->lin = 0;
		if (bpf_msg_pull_data(x->msg, off, off + take, 0)) {
			gw_resp_lose(r);
			return 1;
		}
		data = (__u8 *)(long)x->msg->data;
		end = (__u8 *)(long)x->msg->data_end;
		for (k = 0; k < H2_FRAME_HEADER_LEN; k++) {
			if (k >= take)
				break;
			if (data + k + 1 > end) {
				gw_resp_lose(r);
				return 1;
			}
			r->hdr[(r->hlen + k) & 15] = data[k];
		}
		r->hlen += take;
		x->off = off + take;
		if (r->hlen < H2_FRAME_HEADER_LEN)
			return 1;
		r->hlen = 0;
		for (k = 0; k < H2_FRAME_HEADER_LEN; k++)
			h[k] = r->hdr[k];
		/* its frame began in an earlier write: nothing to change there */
		stream = (((__u32)h[5] << 24) | ((__u32)h[6] << 16) | ((__u32)h[7] << 8) | h[8]) & 0x7fffffff;
		d = gw_denied_of(r, stream);
		if (d)
			gw_resp_kept(d, h[3], h[4]);
		r->skip = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
		return 0;
	}
	rel = 0;
	if (x->lin && off < GW_RESP_LIN_MAX) {
		rel = off; /* the message in one piece from its first byte: read in place */
	} else {
		x->lin = 0; /* a pull moves the data start */
		if (bpf_msg_pull_data(x->msg, off, off + H2_FRAME_HEADER_LEN, 0)) {
			gw_resp_lose(r);
			return 1;
		}
	}
	data = (__u8 *)(long)x->msg->data;
	end = (__u8 *)(long)x->msg->data_end;
	data += rel & (GW_RESP_LIN_MAX - 1);
	if (data + H2_FRAME_HEADER_LEN > end) {
		gw_resp_lose(r);
		return 1;
	}
	len = ((__u32)data[0] << 16) | ((__u32)data[1] << 8) | data[2];
	type = data[3];
	flags = data[4];
	stream = (((__u32)data[5] << 24) | ((__u32)data[6] << 16) | ((__u32)data[7] << 8) | data[8]) & 0x7fffffff;
	d = gw_denied_of(r, stream);
	if (d) {
		if (x->room && type == GW_H2_RST_STREAM && len == 4 && avail >= H2_FRAME_HEADER_LEN + 4 &&
		    gw_resp_replace_rst(x, d, off)) {
			d->stream = 0;
			gw_count(GW_CNT_SRV_PERM_DENIED, 1);
			return 0;
		}
		if (x->room && type == H2_FRAME_HEADERS &&
		    (flags & (H2_FLAG_END_STREAM | H2_FLAG_END_HEADERS)) ==
			    (H2_FLAG_END_STREAM | H2_FLAG_END_HEADERS) &&
		    len <= GW_RESP_MAX_BLOCK && avail >= H2_FRAME_HEADER_LEN + len &&
		    gw_resp_add_trailers(x, d, off, len)) {
			d->stream = 0;
			gw_count(GW_CNT_SRV_PERM_DENIED, 1);
			return 0;
		}
		if (r->lost || x->drop)
			return 1;
		gw_resp_kept(d, type, flags);
	}
	x->off = off + H2_FRAME_HEADER_LEN;
	r->skip = len;
	return 0;
}

#define GW_RESP_FAST_FRAMES 8

/* No denial waits for its answer: the server's frames are only followed
 * by length, each frame header's length read in place (the message in one
 * piece from its first byte), with no bpf_loop and no look at the ring.
 * What it leaves (a frame header cut at the end of the write, more frames,
 * offsets past GW_RESP_LIN_MAX) is gw_resp_step's, from where it stopped. */
static __always_inline void gw_resp_fast(struct gw_resp_walk *x)
{
	struct gw_srv_resp *r = x->r;
	__u32 off = x->off, n, i;
	__u8 *data, *end, *h;

	for (i = 0; i < GW_RESP_FAST_FRAMES; i++) {
		if (r->skip) {
			n = x->size - off;
			if (r->skip < n)
				n = r->skip;
			r->skip -= n;
			off += n;
		}
		if (off >= GW_RESP_LIN_MAX || off + H2_FRAME_HEADER_LEN > x->size)
			break;
		data = (__u8 *)(long)x->msg->data;
		end = (__u8 *)(long)x->msg->data_end;
		h = data + (off & (GW_RESP_LIN_MAX - 1));
		if (h + H2_FRAME_HEADER_LEN > end)
			break;
		r->skip = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
		off += H2_FRAME_HEADER_LEN;
	}
	x->off = off;
}

SEC("sk_msg")
int gw_srv_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	struct gw_resp_walk x;
	struct gw_srv_conn *sc;
	struct gw_srv_resp *r;
	struct tcp_sock *tp;
	__u32 i, pending, sslot = 0;
	__u64 cookie;

	if (!sk)
		return SK_PASS;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return SK_PASS;
	cookie = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_cookie.counter);
	sc = bpf_map_lookup_elem(&gw_srv_conns, &cookie);
	if (!sc)
		return SK_PASS;
	r = &sc->resp;
	if (r->lost)
		return SK_PASS;
	if ((__u32)(tp->write_seq - r->seq0) != (__u32)r->passed) {
		/* bytes went out that this walk did not pass in order */
		gw_resp_lose(r);
		return SK_PASS;
	}
	x.msg = msg;
	x.r = r;
	x.off = 0;
	x.size = msg->size;

	x.lin = (long)msg->data_end - (long)msg->data == (long)x.size;
	x.drop = 0;
	/* a scratch slot only while a denial waits for its answer */
	pending = 0;
	for (i = 0; i < GW_DENIED_RING; i++)
		pending |= r->d[i].stream;
	x.s = pending ? gw_scratch_claim(&sslot) : NULL;
	/* the send buffer's room is read only while a denial waits */
	x.room = x.s ? gw_resp_room(tp, x.size) : 0;
	if (!pending && x.lin && !r->hlen)
		gw_resp_fast(&x);
	if (x.off < x.size)
		bpf_loop(GW_RESP_STEPS, gw_resp_step, &x, 0);
	if (x.s)
		gw_scratch_release(x.s);
	if (x.drop) {
		/* never send bytes that were not written: the server's write
		 * fails (EACCES); the walk cannot follow what it does next */
		gw_resp_lose(r);
		return SK_DROP;
	}
	if (x.off < x.size)
		gw_resp_lose(r); /* more frames than steps */
	r->passed += msg->size;
	return SK_PASS;
}

#define GW_IPPROTO_TCP 6
#define GW_TCP_FLAG_SYN 0x02
#define GW_TCP_FLAG_URG 0x20

#define GW_SOCK_RAW 3
#define GW_IPPROTO_RAW 255

/* A raw socket's IPv4/IPv6 packet: TCP to a policy service is dropped (it
 * could carry bytes into a policed connection's sequence space, or a
 * connection of its own, past sockops and sk_msg alike). Everything else a
 * raw socket sends is not grpcwall's business. */
static __always_inline int gw_guard_raw(struct __sk_buff *skb)
{
	__u32 daddr[4] = {};
	struct gw_config *cfg;
	__u8 ip[40], l4[4];
	__u32 off;
	__u64 gen;

	if (bpf_skb_load_bytes(skb, 0, ip, 20))
		return 1;
	if ((ip[0] >> 4) == 4) {
		if (ip[9] != GW_IPPROTO_TCP)
			return 1;
		if ((((__u32)ip[6] & 0x1f) << 8 | ip[7]) != 0)
			return 1; /* a later fragment: no ports in it; its first one is checked */
		off = (ip[0] & 0xf) * 4;
		daddr[2] = bpf_htonl(0x0000ffff);
		__builtin_memcpy(&daddr[3], &ip[16], 4);
	} else if ((ip[0] >> 4) == 6) {
		if (bpf_skb_load_bytes(skb, 0, ip, 40))
			return 1;
		if (ip[6] == 0 || ip[6] == 43 || ip[6] == 44 || ip[6] == 60)
			return 0; /* extension headers: what follows is not looked for */
		if (ip[6] != GW_IPPROTO_TCP)
			return 1;
		off = 40;
		__builtin_memcpy(daddr, &ip[24], 16);
	} else {
		return 1;
	}
	if (off < 20 || off > 60 || bpf_skb_load_bytes(skb, off, l4, sizeof(l4)))
		return 0; /* a TCP header that cannot be read: not sent */
	cfg = gw_get_config();
	gen = cfg ? gw_live_gen(cfg) : 0;
	if (!gen || !gw_resolve_service(daddr, *(__u16 *)&l4[2], GW_SLOT_OF(gen)))
		return 1;
	gw_count(GW_CNT_GUARD_DROPS, 1);
	return 0;
}

/* Drops the segment; the first drop fails the connection with an event. */
static __always_inline int gw_guard_drop(struct gw_conn *c, __u8 reason)
{
	gw_count(GW_CNT_GUARD_DROPS, 1);
	gw_mark_failed(c, gw_get_config(), reason);
	return 0;
}


/*
 * A segment of a TCP socket that is not policed. A connection to a service
 * from a cgroup with an identity that predates the policy is reset by the
 * loader (gw_reset_predating, run in the network namespace of every thread
 * on the host); one whose namespace no thread is in (kept alive by the
 * socket alone, its maker moved away or handed the descriptor out) is not
 * iterated, and a failed sk_storage create at connect leaves a connection
 * unpoliced too. Neither was ever in the sockhash: no walker saw its bytes.
 * So no payload byte of such a connection leaves the host: the first one
 * fails it with an event (GW_REASON_PREDATES) and the connection keeps a
 * gw_conn that says so; SYN, ACK, FIN and RST still go, so it can end.
 * Cost for every other socket: one array lookup (gw_svc_ports) per segment.
 * A connection to a service of a workload without an identity (not policed
 * by design) has its cgroup path hashed once per generation, into a
 * gw_conn marked GW_CONN_CHECKED.
 */
static __noinline int gw_guard_unpoliced(struct __sk_buff *skb, struct bpf_sock *sk,
					 struct gw_conn *c)
{
	struct gw_config *cfg;
	struct tcp_sock *tp;
	__u32 daddr[4] = {};
	__u32 slot, off, hl;
	__u16 ident, service;
	__u8 ip[20], th[13];
	__u64 gen;

	if (!sk)
		return 1;
	cfg = gw_get_config();
	gen = cfg ? gw_live_gen(cfg) : 0;
	if (!gen)
		return 1;
	slot = GW_SLOT_OF(gen);
	if (c && (c->flags & GW_CONN_PASSIVE))
		return 1; /* an accepted connection: its peer connected to it */
	if (c && (c->flags & GW_CONN_CHECKED) && c->generation == gen)
		return 1; /* looked at in this generation: not a policed workload's */
	if ((!c || !(c->flags & GW_CONN_FAILED)) && !gw_service_port((__u16)sk->dst_port, slot))
		return 1;
	/* a segment without payload goes (as on the policed path); one whose
	 * TCP header is not where it is looked for (IPv6 extension headers,
	 * a routing header needs no privilege) counts as payload */
	off = 0;
	if (!bpf_skb_load_bytes(skb, 0, ip, sizeof(ip))) {
		if ((ip[0] >> 4) == 4 && ip[9] == GW_IPPROTO_TCP)
			off = (ip[0] & 0xf) * 4;
		else if ((ip[0] >> 4) == 6 && ip[6] == GW_IPPROTO_TCP)
			off = 40;
	}
	if (off >= 20 && off <= 60 && !bpf_skb_load_bytes(skb, off, th, sizeof(th))) {
		hl = (th[12] >> 4) * 4;
		if (skb->len <= off + hl)
			return 1;
	}
	if (c && (c->flags & GW_CONN_FAILED)) {
		gw_count(GW_CNT_GUARD_DROPS, 1);
		return 0;
	}
	GW_CTX_IP6(sk, dst, daddr);
	service = gw_resolve_service(daddr, (__u16)sk->dst_port, slot);
	ident = 0;
	if (service) {
		tp = bpf_skc_to_tcp_sock(sk);
		if (!tp)
			return 1;
		ident = gw_ident_of(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg, gen);
	}
	if (!ident) {
		/* not a policed workload's connection to a service: said once
		 * per generation (best effort: without state, asked again) */
		if (!c)
			c = bpf_sk_storage_get(&gw_conns, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (c) {
			c->flags = GW_CONN_CHECKED;
			c->generation = gen;
		}
		return 1;
	}
	gw_count(GW_CNT_GUARD_DROPS, 1);
	c = bpf_sk_storage_get(&gw_conns, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c)
		return 0; /* held back all the same; no event without state */
	__builtin_memset(&c->ends, 0, sizeof(c->ends));
	__builtin_memcpy(c->ends.daddr, daddr, sizeof(daddr));
	c->ends.dport = (__u16)sk->dst_port; /* network order */
	GW_CTX_IP6(sk, src, c->ends.saddr);
	c->ends.sport = (__u16)sk->src_port; /* host order */
	c->flags = 0;
	c->generation = gen;
	c->cookie = bpf_get_socket_cookie(skb);
	c->ident = ident;
	c->service = service;
	gw_mark_failed(c, cfg, GW_REASON_PREDATES);
	return 0;
}

/*
 * The egress guard (cgroup_skb/egress at the attach cgroup): the last
 * word on what a policed connection puts on the wire. sk_msg sees only
 * what goes through tcp_bpf; bytes can reach a socket's send queue past
 * it (a blocking send() that began in SYN_SENT, fast-open data, a verdict
 * the kernel keeps after a failed write, a cork it flushes when the
 * message is full). So every segment of a policed socket is checked here:
 * no payload byte at or past seq0 + approved (what the walker let through)
 * and no urgent data (the receiver takes the urgent byte out of the
 * stream, so the walker's offsets and the server's would differ) leave the
 * host. What the guard holds back is never sent; the connection is failed
 * and ends at its next retransmission timeout (sockops RTO_CB).
 * Sockets that are not policed: gw_guard_unpoliced.
 * Cost for other sockets: one sk_storage and one array lookup per packet.
 */
SEC("cgroup_skb/egress")
int gw_guard(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	__u8 ip[20], th[20];
	__u32 off, hl, seq, len, start, limit;
	struct gw_conn *c;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	if (sk->type == GW_SOCK_RAW && (sk->protocol == GW_IPPROTO_TCP || sk->protocol == GW_IPPROTO_RAW))
		return gw_guard_raw(skb); /* the raw sockets that can write TCP */
	if (sk->protocol != GW_IPPROTO_TCP)
		return 1;
	c = bpf_sk_storage_get(&gw_conns, sk, NULL, 0);
	if (c && (c->flags & GW_CONN_POOL))
		return 1;
	if (!c || !(c->flags & GW_CONN_POLICED))
		return gw_guard_unpoliced(skb, sk, c);
	if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
		return gw_guard_drop(c, GW_REASON_UNWALKED);
	if ((ip[0] >> 4) == 4) {
		off = (ip[0] & 0xf) * 4;
		if (ip[9] != GW_IPPROTO_TCP || off < 20)
			return gw_guard_drop(c, GW_REASON_UNWALKED);
	} else if ((ip[0] >> 4) == 6) {
		off = 40; /* extension headers: not followed, fail closed */
		if (ip[6] != GW_IPPROTO_TCP)
			return gw_guard_drop(c, GW_REASON_UNWALKED);
	} else {
		return gw_guard_drop(c, GW_REASON_UNWALKED);
	}
	if (off > 60 || bpf_skb_load_bytes(skb, off, th, sizeof(th)))
		return gw_guard_drop(c, GW_REASON_UNWALKED);
	if (th[13] & GW_TCP_FLAG_URG)
		return gw_guard_drop(c, GW_REASON_URGENT);
	hl = (th[12] >> 4) * 4;
	if (skb->len <= off + hl)
		return 1; /* no payload: SYN, ACK, FIN, RST */
	len = skb->len - off - hl;
	/* failed before any walker ran on it (a full sockhash, a send from
	 * the handshake, TCP_REPAIR): none of its bytes was approved */
	if ((c->flags & (GW_CONN_FAILED | GW_CONN_IN_MAP)) == GW_CONN_FAILED)
		return gw_guard_drop(c, GW_REASON_UNWALKED);
	seq = ((__u32)th[4] << 24) | ((__u32)th[5] << 16) | ((__u32)th[6] << 8) | th[7];
	start = seq + ((th[13] & GW_TCP_FLAG_SYN) ? 1 : 0);
	limit = c->seq0 + (__u32)c->approved;
	if (c->flags & GW_CONN_DIVERTED) {
		/* the helper sends back exactly the bytes diverted to it */
		__u32 slot = c->pool_slot;
		struct gw_pool_slot *p = bpf_map_lookup_elem(&gw_pool, &slot);

		if (p && p->conn_cookie == c->cookie)
			limit += (__u32)p->diverted;
	}
	if ((__s32)(start + len - limit) > 0)
		return gw_guard_drop(c, GW_REASON_UNWALKED); /* a full sockhash: reported at insert */
	return 1;
}

/* --- the ingress guard: what reaches a protected server past its walker --- */

#define GW_TCP_FLAG_ACK 0x10
#define GW_TCPOPT_MPTCP 30

/* set by the loader: sockets gw_srv_sockhash may hold when the ingress
 * guard lets a new connection in, below its size (attach --max-connections)
 * by a margin for connections between the guard and sockops' insert (one
 * per CPU: a listener's segments are not serialised by its lock) */
const volatile __u64 gw_srv_cap = 0;

/* what gw_srv_sockhash holds now: its own count of elements, read from the
 * map (a socket leaves it when its server closes it or it is destroyed,
 * not at TCP_CLOSE: a count kept by sockops ran ahead of it) */
static __always_inline __u64 gw_srv_held(void)
{
	struct bpf_shtab *h = (struct bpf_shtab *)&gw_srv_sockhash;

	return (__u64)(__u32)h->count.counter;
}

/* one event a GW_GUARD_EVENT_NS per CPU from the ingress guard: what it
 * drops can be a flood (SYNs at the cap, retransmits); counters count all */
#define GW_GUARD_EVENT_NS 100000000ULL

/* a received TCP segment's ends (the caller is the source) */
struct gw_pkt {
	__u32 saddr[4], daddr[4]; /* IPv6 or v4-mapped, network order */
	__u16 sport, dport;       /* host order */
	__u32 off;                /* the TCP header's offset */
	__u32 hl;                 /* its length, options included */
	__u8 flags;
	__u8 th[64];              /* the TCP header, hl bytes of it */
};

/* Reads the IP and TCP headers. -1: not a TCP segment whose header is
 * where it is looked for (IPv6 extension headers are not followed). */
static __always_inline int gw_pkt_parse(struct __sk_buff *skb, struct gw_pkt *p)
{
	__u8 ip[40];
	__u32 hl;

	if (bpf_skb_load_bytes(skb, 0, ip, 20))
		return -1;
	if ((ip[0] >> 4) == 4) {
		if (ip[9] != GW_IPPROTO_TCP)
			return -1;
		p->off = (ip[0] & 0xf) * 4;
		p->saddr[2] = bpf_htonl(0x0000ffff);
		p->daddr[2] = bpf_htonl(0x0000ffff);
		__builtin_memcpy(&p->saddr[3], &ip[12], 4);
		__builtin_memcpy(&p->daddr[3], &ip[16], 4);
	} else if ((ip[0] >> 4) == 6) {
		if (bpf_skb_load_bytes(skb, 0, ip, 40) || ip[6] != GW_IPPROTO_TCP)
			return -1;
		p->off = 40;
		__builtin_memcpy(p->saddr, &ip[8], 16);
		__builtin_memcpy(p->daddr, &ip[24], 16);
	} else {
		return -1;
	}
	if (p->off < 20 || p->off > 60 || bpf_skb_load_bytes(skb, p->off, p->th, 20))
		return -1;
	hl = (p->th[12] >> 4) * 4;
	if (hl < 20)
		return -1;
	hl &= 63;
	if (hl > 20 && bpf_skb_load_bytes(skb, p->off, p->th, hl))
		return -1;
	p->hl = hl;
	p->sport = (__u16)p->th[0] << 8 | p->th[1];
	p->dport = (__u16)p->th[2] << 8 | p->th[3];
	p->flags = p->th[13];
	return 0;
}

/* Does the segment carry an MPTCP option (MP_CAPABLE, MP_JOIN, ...)? */
static __always_inline int gw_pkt_mptcp(struct gw_pkt *p)
{
	__u32 i = 20, n;
	__u8 len;

	for (n = 0; n < 40; n++) {
		if (i >= p->hl || i >= 60)
			return 0;
		if (p->th[i & 63] == 0) /* end of options */
			return 0;
		if (p->th[i & 63] == 1) { /* no-op */
			i++;
			continue;
		}
		if (p->th[i & 63] == GW_TCPOPT_MPTCP)
			return 1;
		len = p->th[(i + 1) & 63];
		if (len < 2)
			return 0; /* malformed: the kernel reads no further either */
		i += len;
	}
	return 0;
}

/* An event for a segment the ingress guard dropped (no connection state:
 * addresses and ports from the segment; the caller by address) */
static __noinline int gw_emit_pkt(struct gw_pkt *p, struct gw_config *cfg, __u64 cookie, __u32 what)
{
	struct gw_event *e;
	__u32 zero = 0;
	__u64 *last, now;

	if (!p || !cfg)
		return 0;
	last = bpf_map_lookup_elem(&gw_guard_in_last, &zero);
	now = bpf_ktime_get_ns();
	if (!last || now - *last < GW_GUARD_EVENT_NS)
		return 0;
	*last = now;
	e = gw_event_open(gw_live_gen(cfg), cookie, p->saddr, p->daddr, (__u32)p->sport << 16 | p->dport);
	if (!e)
		return 0;
	e->ident = gw_peer_ident(p->saddr, GW_SLOT_OF(e->generation));
	e->service = what >> 16;
	e->rule = 0;
	e->verdict = GW_VERDICT_DENY;
	e->reason = what & 0xff;
	e->pid = 0;      /* softirq: no task of the server's */
	e->conn_pid = 0;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	e->stream_id = 0;
	e->side = 1;
	e->path_len = 0;
	e->path[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline __u16 gw_sk_srv_service(struct bpf_sock *sk, struct gw_config *cfg, __u32 slot)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	return gw_srv_service(BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup), cfg,
			      sk->src_port, slot);
}

/*
 * A segment for a protected server's listener (a new connection: the SYN,
 * the ACK that completes the handshake, perhaps with the caller's first
 * bytes, which are queued on the new socket as it is made). Dropped:
 * - every segment, when the protected servers hold gw_srv_cap walked
 *   connections: a new one could not go into gw_srv_sockhash, and its
 *   server would read it unwalked (a caller holding --max-connections
 *   connections open must not get the next one past the walker);
 * - at a listener with an upper layer protocol (MPTCP: Go 1.24 and later
 *   listen with it by default), a segment with an MPTCP option: an MPTCP
 *   subflow cannot go into a sockhash, the server would read it unwalked.
 *   Its caller falls back to plain TCP (Linux after two SYN retransmits),
 *   which is walked.
 */
static __noinline int gw_guard_listener(struct __sk_buff *skb, struct bpf_sock *sk,
					struct gw_config *cfg, __u32 slot)
{
	struct gw_pkt p = {};
	struct tcp_sock *tp;
	__u16 service;
	__u8 reason;

	if (!sk)
		return 1;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 1;
	if (gw_srv_held() < gw_srv_cap) {
		if (!BPF_CORE_READ(tp, inet_conn.icsk_ulp_ops))
			return 1;
		/* an options list that cannot be read counts as one with MPTCP */
		if (!gw_pkt_parse(skb, &p) && !gw_pkt_mptcp(&p))
			return 1;
		reason = GW_REASON_MPTCP;
	} else {
		gw_pkt_parse(skb, &p); /* for the event */
		reason = GW_REASON_SRV_FULL;
	}
	service = gw_sk_srv_service(sk, cfg, slot);
	if (!service)
		return 1; /* not a protected server's listener */
	gw_count(GW_CNT_SRV_REFUSED, 1);
	gw_emit_pkt(&p, cfg, 0, (__u32)reason | (__u32)service << 16);
	return 0;
}

/* A segment for an accepted connection of a protected server that is not
 * walked (no state, or not in gw_srv_sockhash: accepted before the policy
 * protected it, or its insert failed): its payload is dropped, so the
 * server reads nothing of it; what has none (ACK, FIN, RST) goes, so the
 * connection can end (the reset iterator ends it). */
static __noinline int gw_guard_unwalked(struct __sk_buff *skb, struct bpf_sock *sk, struct gw_config *cfg,
					__u32 slot, __u64 cookie)
{
	struct gw_pkt p = {};
	__u16 service;
	__u8 reason;

	if (!sk)
		return 1;
	service = gw_sk_srv_service(sk, cfg, slot);
	if (!service)
		return 1;
	if (!gw_pkt_parse(skb, &p) && skb->len <= p.off + p.hl)
		return 1;
	reason = bpf_map_lookup_elem(&gw_srv_conns, &cookie) ? GW_REASON_NOT_IN_MAP : GW_REASON_PREDATES;
	gw_count(GW_CNT_SRV_UNWALKED, 1);
	gw_emit_pkt(&p, cfg, cookie, (__u32)reason | (__u32)service << 16);
	return 0;
}

/*
 * The ingress guard (cgroup_skb/ingress at the attach cgroup): the server
 * side's last word on what a protected server receives. Its walker
 * (gw_sk_skb) sees only the connections in gw_srv_sockhash; this drops
 * what would reach a protected server past it (gw_guard_listener,
 * gw_guard_unwalked). It runs before the segment is queued (tcp_filter).
 * Cost for every other segment: one array lookup (gw_srv_port_bits) on
 * its local port; for a walked server connection's, one gw_srv_conns
 * lookup besides.
 */
SEC("cgroup_skb/ingress")
int gw_guard_in(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct gw_srv_conn *sc;
	struct gw_config *cfg;
	__u32 slot, port;
	__u64 gen, cookie;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != GW_IPPROTO_TCP)
		return 1;
	cfg = gw_get_config();
	gen = cfg ? gw_live_gen(cfg) : 0;
	if (!gen)
		return 1;
	slot = GW_SLOT_OF(gen);
	port = sk->src_port; /* host order */
	if (!gw_srv_port(port, slot))
		return 1;
	if (sk->state == GW_TCP_LISTEN)
		return gw_guard_listener(skb, sk, cfg, slot);
	cookie = bpf_get_socket_cookie(skb);
	sc = bpf_map_lookup_elem(&gw_srv_conns, &cookie);
	if (sc && (sc->c.flags & GW_CONN_IN_MAP))
		return 1;
	return gw_guard_unwalked(skb, sk, cfg, slot, cookie);
}

extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak; /* 6.5: absent, gw_reset_predating is not loaded */

#define GW_TCP_ESTABLISHED 1
#define GW_TCP_SYN_SENT    2

/*
 * Connections that predate attach (or a policy apply that made them
 * policed) were never put in the sockhash: their RPCs would go unchecked.
 * The loader runs this iterator over every TCP socket; a connected socket
 * whose cgroup carries an identity and whose destination is a service, and
 * that is not already policed, is reset (bpf_sock_destroy) so the client
 * reconnects, under policy. One line per reset goes to the loader.
 */
/* states past ESTABLISHED in which a server connection can still hold a
 * slot or be failed and waiting: CLOSE_WAIT (the caller sent its FIN),
 * FIN_WAIT1/2, CLOSING, LAST_ACK (the server closed; a caller that stops
 * acknowledging keeps it there) */
static __always_inline int gw_srv_state(__u8 st)
{
	return st == 4 || st == 5 || st == GW_TCP_CLOSE_WAIT || st == 9 || st == 11;
}

/* A walked server connection the iterator ends: failed closed, or held
 * inside a HEADERS frame for longer than GW_HOLD_TIMEOUT_NS */
static __always_inline int gw_srv_lingers(struct gw_srv_conn *sc, __u64 cookie)
{
	struct gw_hold_owner *o;
	__u32 idx;

	if (sc->c.flags & GW_CONN_FAILED)
		return 1;
	if (!sc->hold)
		return 0;
	idx = sc->hold - 1;
	o = bpf_map_lookup_elem(&gw_srv_hold_owners, &idx);
	if (!o || o->owner != cookie)
		return 0;
	/* summed over its holds: a caller cannot restart the clock by
	 * completing a frame and cutting the next */
	return sc->held_ns + bpf_ktime_get_ns() - o->since > GW_HOLD_TIMEOUT_NS;
}

static __always_inline int gw_is_detaching(void)
{
	__u32 zero = 0;
	__u32 *d = bpf_map_lookup_elem(&gw_detaching, &zero);

	return d && *d;
}

SEC("iter/tcp")
int gw_reset_predating(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct gw_config *cfg;
	struct tcp_sock *tp;
	struct gw_conn *c;
	__u32 daddr[4] = {};
	__u64 gen;

	if (!skc)
		return 0;
	cfg = gw_get_config();
	gen = cfg ? gw_live_gen(cfg) : 0;
	if (!gen)
		return 0;
	/* a listener on a protected port made outside the service's cgroup
	 * (socket activation: the maker's cgroup is the socket's): what it
	 * accepts is not protected. Named for the loader to warn ("L port
	 * cgroup-id"); nothing here can protect it */
	if (skc->skc_state == GW_TCP_LISTEN && !gw_is_detaching()) {
		__u32 slot = GW_SLOT_OF(gen), port = skc->skc_num;
		struct cgroup *cg;

		tp = bpf_skc_to_tcp_sock(skc);
		if (!tp || !gw_srv_port(port, slot))
			return 0;
		cg = BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_cgrp_data.cgroup);
		if (!gw_srv_service(cg, cfg, port, slot))
			BPF_SEQ_PRINTF(ctx->meta->seq, "L %u %llu\n", port, BPF_CORE_READ(cg, kn, id));
		return 0;
	}
	/* SYN_SENT too: a connect() whose sockops callback ran under the old
	 * policy would otherwise become established unpoliced */
	if (skc->skc_state != GW_TCP_ESTABLISHED && skc->skc_state != GW_TCP_SYN_SENT &&
	    !gw_srv_state(skc->skc_state))
		return 0;
	if (skc->skc_family == AF_INET) {
		daddr[2] = bpf_htonl(0x0000ffff);
		daddr[3] = skc->skc_daddr;
	} else if (skc->skc_family == AF_INET6) {
		daddr[0] = skc->skc_v6_daddr.in6_u.u6_addr32[0];
		daddr[1] = skc->skc_v6_daddr.in6_u.u6_addr32[1];
		daddr[2] = skc->skc_v6_daddr.in6_u.u6_addr32[2];
		daddr[3] = skc->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		return 0;
	}
	/* server side: a connection a protected server accepted that is not
	 * walked on receive (accepted before attach, or before the apply that
	 * made its service protected; or its sockhash insert failed) */
	if (skc->skc_state != GW_TCP_SYN_SENT) {
		struct gw_srv_conn *sc;
		__u64 cookie;

		tp = bpf_skc_to_tcp_sock(skc);
		cookie = tp ? bpf_get_socket_cookie(tp) : 0;
		sc = cookie ? bpf_map_lookup_elem(&gw_srv_conns, &cookie) : NULL;
		if (sc && (sc->c.flags & GW_CONN_IN_MAP) && (gw_srv_lingers(sc, cookie) || gw_is_detaching())) {
			/* walked on receive, and failed closed (its bytes all
			 * dropped) or stopped inside a held HEADERS frame, or
			 * grpcwall is being detached: ended */
			if (bpf_sock_destroy(skc))
				return 0;
			gw_count(GW_CNT_CONNS_RESET, 1);
			BPF_SEQ_PRINTF(ctx->meta->seq, "[%pI6]:%u\n", daddr, bpf_ntohs(skc->skc_dport));
			return 0;
		}
		if (skc->skc_state == GW_TCP_ESTABLISHED && tp &&
		    gw_srv_service(BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_cgrp_data.cgroup), cfg,
				   skc->skc_num, GW_SLOT_OF(gen))) {
			if (sc && (sc->c.flags & GW_CONN_IN_MAP))
				return 0;
			if (bpf_sock_destroy(skc))
				return 0;
			gw_count(GW_CNT_CONNS_RESET, 1);
			BPF_SEQ_PRINTF(ctx->meta->seq, "[%pI6]:%u\n", daddr, bpf_ntohs(skc->skc_dport));
			return 0;
		}
	}
	if (gw_srv_state(skc->skc_state) || gw_is_detaching())
		return 0; /* (server side only) */
	if (!gw_resolve_service(daddr, skc->skc_dport, GW_SLOT_OF(gen)))
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	/* the socket's cgroup path, as sockops records it */
	if (!gw_ident_of(BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_cgrp_data.cgroup), cfg, gen))
		return 0;
	c = bpf_sk_storage_get(&gw_conns, tp, NULL, 0);
	if (c && (c->flags & GW_CONN_PASSIVE))
		return 0; /* accepted: its destination is its peer's */
	if (c && (c->flags & GW_CONN_POLICED) &&
	    ((c->flags & GW_CONN_IN_MAP) || skc->skc_state == GW_TCP_SYN_SENT))
		return 0; /* policed already (or once established): it resolves its identity again */
	if (bpf_sock_destroy(skc))
		return 0;
	gw_count(GW_CNT_CONNS_RESET, 1);
	BPF_SEQ_PRINTF(ctx->meta->seq, "[%pI6]:%u\n", daddr, bpf_ntohs(skc->skc_dport));
	return 0;
}
