/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Maps shared by all grpcwall programs. Pinned by the loader under the pin
 * dir with these names; `bpftool map dump pinned DIR/<name>` shows fields. */
#ifndef GW_MAPS_H
#define GW_MAPS_H

#include "grpcwall.h"
#include "conn.h"
#include "fallback.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_config);
} gw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_SLOTS * GW_MAX_IDENTITIES);
	__type(key, struct gw_ident_key);
	__type(value, struct gw_ident_val);
} gw_idents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GW_SLOTS * GW_MAX_SERVICES * 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gw_svc_key);
	__type(value, struct gw_svc_val);
} gw_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_SLOTS);
	__type(key, __u32);
	__type(value, struct gw_port_bits);
} gw_svc_ports SEC(".maps");

/* inner template: method hash -> verdict; the loader creates one per pair,
 * sized to the pair's entries (a hash inner map's max_entries may differ from
 * the template's). Preallocated: filled once and never written again, so
 * BPF_F_NO_PREALLOC's allocation per entry only made filling and freeing
 * slow (see ApplyPolicy). */
struct gw_methods {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(struct gw_method_val));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, GW_SLOTS * GW_MAX_PAIRS);
	__type(key, struct gw_pair_key);
	__array(values, struct gw_methods);
} gw_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_SLOTS * GW_MAX_PAIRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gw_pair_key);
	__type(value, struct gw_pair_rules);
} gw_pair_rules SEC(".maps");

/* names for `policy show`; the datapath never reads it */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_MAX_NAMES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gw_name_key);
	__type(value, struct gw_name_val);
} gw_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} gw_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GW_SLOTS * GW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct gw_rule_counters);
} gw_rule_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} gw_events SEC(".maps");

/* policed connections, keyed by socket cookie */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, GW_MAX_CONNS);
	__type(key, __u64);
	__type(value, __u64);
} gw_sockhash SEC(".maps");

/* path text by exact hash, for events about indexed references */
struct gw_path_text {
	char text[GW_PATH_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct gw_path_text);
} gw_paths SEC(".maps");

/* Server side: callers by source address, protected local servers by
 * port (grpcwall.h), and their accepted connections, walked on receive
 * by gw_sk_skb (attached as the stream verdict of gw_srv_sockhash). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GW_SLOTS * GW_MAX_PEER_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gw_peer_key);
	__type(value, struct gw_peer_val);
} gw_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GW_SLOTS * GW_MAX_SERVICES);
	__type(key, struct gw_srv_key);
	__type(value, struct gw_srv_val);
} gw_srv_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, GW_MAX_CONNS);
	__type(key, __u64);
	__type(value, __u64);
} gw_srv_sockhash SEC(".maps");

/* the ports of the slot's protected servers (gw_srv_ports), as bits: the
 * ingress guard's one lookup for a segment that is not theirs */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_SLOTS);
	__type(key, __u32);
	__type(value, struct gw_port_bits);
} gw_srv_port_bits SEC(".maps");

/* Policed client connections to a protected server's port, by their
 * ends as the client sees them and their network namespace: written by
 * sockops when the connection enters gw_sockhash, read by the server side
 * to know a caller the client side walks (its socket then checked in
 * gw_sockhash, so an entry left by a closed connection proves nothing).
 * LRU: an entry pushed out only costs that the caller is looked up by
 * bpf_sk_lookup_tcp and its RPCs are counted on both sides. Sized by the
 * loader (--max-connections). */
struct gw_local_call {
	__u64 net;        /* net_cookie of the namespace */
	__u32 saddr[4];   /* the client's address (IPv4-mapped for IPv4) */
	__u32 daddr[4];   /* the server's */
	__u16 sport;      /* host order */
	__u16 dport;      /* network order */
	__u32 pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GW_MAX_CONNS);
	__type(key, struct gw_local_call);
	__type(value, __u64); /* the client socket's cookie (gw_sockhash key), | GW_LOCAL_CLOSING */
} gw_local_calls SEC(".maps");
#define GW_LOCAL_CLOSING (1ULL << 63) /* gw_local_calls: its process closed it, FIN queued */

/* [0]: the server side's gw_local_calls key, built here: the receive
 * path's stack is full (the walk's frames) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_local_call);
} gw_local_key SEC(".maps");

/* [0]: when the ingress guard last sent an event, per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gw_guard_in_last SEC(".maps");

/* [0] != 0: detach is under way (sockops detached); the reset iterator
 * ends every walked server connection, whose unread bytes the freed server
 * sockhash would lose (set by detach, never cleared: the maps go next) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gw_detaching SEC(".maps");

/* The receive side's state of an accepted connection, keyed by socket
 * cookie (sk_skb programs may not use sk_storage): made by sockops at
 * PASSIVE_ESTABLISHED, deleted at close (STATE_CB). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, GW_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct gw_srv_conn);
} gw_srv_conns SEC(".maps");

/*
 * Server side: a HEADERS frame cut at the end of a received buffer. The
 * server reads none of it until its last byte has arrived and it has been
 * decided: its bytes wait in a slot here (gw_sk_skb), taken off the buffer
 * that brought them, and go back in front of the buffer that completes it.
 * A slot is its connection's alone until freed (the release, a FIN, a
 * failure, or the close, STATE_CB), so nothing else writes what it holds.
 */
#define GW_HOLD_MAX    65536 /* bytes one slot holds, a power of two */
#define GW_HOLD_APPEND 16400 /* room past them for an append (< 9 + GW_H2_MAX_BLOCK bytes) */
/* the most a trimmed buffer keeps: bpf_skb_change_tail refuses a length over
 * SKB_MAX_ALLOC (16064 B on x86-64 with 4 KiB pages) */
#define GW_TRIM_MAX    15872

struct gw_srv_hold {
	__u64 gen;     /* the policy generation the bytes before resume were decided under */
	__u32 len;     /* bytes held, < GW_HOLD_MAX */
	__u32 need;    /* the frame is whole once len plus the next buffers reach this */
	__u32 resume;  /* the next walk starts here: held bytes before it are decided */
	__u32 share;   /* the gw_srv_hold_shares entry (share id) it is counted in + 1; 0: none */
	__u8 data[GW_HOLD_MAX + GW_HOLD_APPEND];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_HOLD_SLOTS); /* the loader sets it: attach --hold-slots */
	__type(key, __u32);
	__type(value, struct gw_srv_hold);
} gw_srv_holds SEC(".maps");

/* who holds each slot (claimed by compare-and-swap of owner), apart from
 * the bytes so that the fallback helper reads it cheaply: it has the reset
 * iterator end a connection whose hold is older than GW_HOLD_TIMEOUT_NS */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_HOLD_SLOTS); /* as many as gw_srv_holds */
	__type(key, __u32);
	__type(value, struct gw_hold_owner);
} gw_srv_hold_owners SEC(".maps");

/* hold slots held now by each caller identity, by its share id
 * (gw_ident_shares): an identity takes at most gw_limits.hold_share of
 * them, so no one caller's identity can take every slot from the others
 * (gw_hold_share_take). [0]: callers whose identity has no share id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_SLOTS * GW_MAX_IDENTITIES);
	__type(key, __u32);
	__type(value, __u32);
} gw_srv_hold_shares SEC(".maps");

/* [slot * GW_MAX_IDENTITIES + identity]: the identity's share id, an index
 * into gw_srv_hold_shares. The loader gives an identity name the same id in
 * every generation it is in (identity numbers are positions in the file and
 * change with an apply; a hold is counted under one id whatever the
 * numbering when it ends), and a new name an id no name of the last
 * generation has and no hold is counted under. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_SLOTS * GW_MAX_IDENTITIES);
	__type(key, __u32);
	__type(value, __u32);
} gw_ident_shares SEC(".maps");

/* [0]: limits attach sets (struct gw_limits) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_limits);
} gw_limits SEC(".maps");

/* one gw_conn of zeros, never written: what a gw_srv_conns entry starts
 * from (too large for the stack) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_srv_conn);
} gw_conn_blank SEC(".maps");

static __always_inline struct gw_srv_conn *gw_srv_blank(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&gw_conn_blank, &zero);
}

/* per-connection state: origin (identity at connect) and parser */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct gw_conn);
} gw_conns SEC(".maps");

/* :path records of connections that keep more live :path entries than
 * the table model's ring (hpack/hpack.h): made when first needed */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct gw_hp_spill);
} gw_spill SEC(".maps");

/* the same for the server side, keyed by socket cookie (sk_skb programs
 * may not use sk_storage): made when first needed, deleted at close
 * (STATE_CB); sized by the loader like gw_srv_conns */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, GW_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct gw_hp_spill);
} gw_srv_spills SEC(".maps");

/* The server side's copy of the header block being parsed, per CPU: read
 * from here, not one bpf_skb_load_bytes per byte. Used by the run that
 * holds the CPU's first walk scratch slot only (a nested run has another). */
struct gw_blkbuf {
	__u8 b[GW_BLKBUF_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_blkbuf);
} gw_blkbuf SEC(".maps");

/* one spill of zeros, never written: what a gw_srv_spills entry starts from */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_hp_spill);
} gw_spill_blank SEC(".maps");

/* identity by cgroup id, for one generation (grpcwall.bpf.c, gw_ident_of) */
struct gw_ident_cached {
	__u64 generation;
	__u16 ident;
	__u16 pad0[3];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct gw_ident_cached);
} gw_ident_cache SEC(".maps");

/* a protected service's port and a server socket's cgroup (by id), for
 * one generation: the service, or 0 when the cgroup is not under the
 * service's (grpcwall.bpf.c, gw_srv_service_of). Spares hashing the
 * server's cgroup path twice per accepted connection (sockops at accept,
 * gw_sk_skb at its first buffer): cgroup v2 paths do not change (no
 * rename), ids are not reused, and a slot's gw_srv_ports change only
 * under a new generation. */
struct gw_srv_svc_key {
	__u64 cgroup;     /* kernfs id */
	__u32 port;       /* host order */
	__u32 slot;
};
struct gw_srv_svc_cached {
	__u64 generation;
	__u16 service;
	__u16 pad0[3];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct gw_srv_svc_key);
	__type(value, struct gw_srv_svc_cached);
} gw_srv_svc_cache SEC(".maps");

/* per-run scratch: see struct gw_scratch */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GW_SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct gw_scratch);
} gw_scratch SEC(".maps");

/* the userspace fallback: see fallback.h */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_POOL_SLOTS);
	__type(key, __u32);
	__type(value, struct gw_pool_slot);
} gw_pool SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_POOL_SLOTS * GW_FB_RET_CELLS);
	__type(key, __u32);
	__type(value, __u64);
} gw_fb_ret SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GW_POOL_SLOTS);
	__type(key, __u32);
	__type(value, struct gw_h2_model);
} gw_fb_model SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gw_fb_stats);
} gw_fb_stats SEC(".maps");

/* the helper's deny/audit events; `grpcwall monitor` drains it with the ring buffer */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4096);
	__type(value, struct gw_event);
} gw_fb_events SEC(".maps");

/* A free scratch slot of this CPU, marked busy (*sslot: its index + 1), or
 * NULL when every one is taken by a run this CPU is in the middle of. */
static __always_inline struct gw_scratch *gw_scratch_claim(__u32 *sslot)
{
	struct gw_scratch *s;
	__u32 i, k;

	for (i = 0; i < GW_SCRATCH_SLOTS; i++) {
		/* the key a copy: the counter stays in a register the verifier
		 * tracks (a counter whose address the lookup takes can sit in
		 * an untracked stack slot, and the loop reads as infinite) */
		k = i;
		s = bpf_map_lookup_elem(&gw_scratch, &k);
		if (s && __sync_val_compare_and_swap(&s->busy, 0, 1) == 0) {
			*sslot = i + 1;
			/* nothing of the last run (another connection's) is named */
			s->blk.path_how = GW_PATH_NONE;
			s->w.f.stream = 0;
			return s;
		}
	}
	return NULL;
}

static __always_inline void gw_scratch_release(struct gw_scratch *s)
{
	__sync_lock_test_and_set(&s->busy, 0);
}

/* The parser of the run's own claimed slot (sslot: index + 1). */
static __always_inline struct gw_hp_block *gw_scratch_of(__u32 sslot)
{
	__u32 i = sslot - 1;
	struct gw_scratch *s;

	if (!sslot || i >= GW_SCRATCH_SLOTS)
		return NULL;
	s = bpf_map_lookup_elem(&gw_scratch, &i);
	return s ? &s->blk : NULL;
}

static __always_inline void gw_count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&gw_counters, &idx);

	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

#endif /* GW_MAPS_H */
