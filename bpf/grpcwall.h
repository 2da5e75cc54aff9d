/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Every struct that crosses the kernel/userspace boundary: map keys and
 * values, ring buffer events, counters. Included by the BPF programs and
 * by the C++ loader; both compilers check the sizes (GW_ABI_ASSERT below).
 * Padding is spelled out so both compilers agree on the layout.
 */
#ifndef GRPCWALL_H
#define GRPCWALL_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Every struct that crosses the boundary has its size asserted here, where
 * both compilers see it: clang -target bpf builds the programs, g++ the
 * loader, and a layout that differs between them fails one of the builds. */
#if defined(GW_ABI_SIZES)
#define GW_ABI_ASSERT(t, n) /* scripts/abi-sizes: print them instead */
#elif defined(__cplusplus)
#define GW_ABI_ASSERT(t, n) static_assert(sizeof(struct t) == (n), "layout of struct " #t " changed: update both sides")
#else
#define GW_ABI_ASSERT(t, n) _Static_assert(sizeof(struct t) == (n), "layout of struct " #t " changed: update both sides")
#endif

#define GW_PATH_MAX        256  /* longest :path the datapath decides */
#define GW_NAME_MAX        64   /* identity / service names */
#define GW_CGROUP_PATH_MAX 192  /* identity cgroup as written in the policy */
#define GW_CGROUP_DEPTH    16   /* deepest cgroup level an identity can be at */
#define GW_MAX_IDENTITIES  16384
#define GW_MAX_SERVICES    1024
#define GW_MAX_PAIRS       65536 /* (identity, service) pairs with rules */
#define GW_MAX_RULES       32768 /* rule ids per generation, 1-based */
#define GW_MAX_NAMES       262144
#define GW_MAX_CONNS       65536
#define GW_MAX_PEER_CIDRS  4096  /* identity cidrs per generation (gw_peers) */

/* Two policy slots: `policy apply` fills the inactive one, then flips
 * gw_config.generation in one write, so no reader sees half a policy.
 * Generation g (>= 1) always lives in slot (g + 1) & 1, so the datapath
 * reads only the 8-byte generation (one load, never torn) and derives
 * the slot from it: the two can never come from different applies. */
#define GW_SLOTS 2
#define GW_SLOT_OF(gen) ((__u32)(((gen) + 1) & 1))

/* Kinds of method-table keys; mixed into the hash key so a path can never
 * collide with a wildcard entry of another kind. */
enum gw_match_kind {
	GW_MATCH_EXACT   = 0, /* "/pkg.Svc/Method"  hash of the full path      */
	GW_MATCH_SERVICE = 1, /* service wildcard: hash of "/pkg.Svc/"       */
	GW_MATCH_ANY     = 2, /* "*"                hash of ""                  */
	GW_MATCH_DEFAULT = 3, /* what no entry matches: deny, or audit         */
	/* an enforcing deny entry's path (or "/pkg.Svc/") in ASCII lower case,
	 * as GW_FOLD_KEY: a path that matches no exact entry and folds to it
	 * is denied, whatever its wildcard allows (a server may route method
	 * names ignoring case: ASP.NET Core's, under grpc-dotnet) */
	GW_MATCH_EXACT_FOLD   = 4,
	GW_MATCH_SERVICE_FOLD = 5,
};

/* A fold key: the low 32 bits of the fold kind's hash (what a :path record
 * keeps of it) under a tag no full 64-bit key is likely to have (2^-64 a
 * key). 32 bits: a canonical path that folds to none of a pair's N deny
 * entries still meets one's key with odds N / 2^32 (then it is denied, the
 * same for that path until the next attach's key; never the other way) */
#define GW_FOLD_KEY(h32) (0xf01d5eed00000000ULL | (__u64)(__u32)(h32))

enum gw_verdict {
	GW_VERDICT_NONE  = 0,
	GW_VERDICT_ALLOW = 1,
	GW_VERDICT_DENY  = 2,
	GW_VERDICT_AUDIT = 3, /* would be denied; passed because the rule audits */
};

/* Why an event was raised besides a plain policy verdict. */
enum gw_reason {
	GW_REASON_POLICY      = 0,
	GW_REASON_NO_RULE     = 1,  /* identity has no rule for this service   */
	GW_REASON_BAD_PATH    = 2,  /* :path missing, repeated or not /svc/m   */
	GW_REASON_PATH_LONG   = 3,  /* :path longer than GW_PATH_MAX           */
	GW_REASON_NOT_H2      = 4,  /* no HTTP/2 connection preface            */
	GW_REASON_PROTOCOL    = 5,  /* HTTP/2 or HPACK protocol error          */
	GW_REASON_BOUND       = 6,  /* header block over the in-kernel bound   */
	GW_REASON_CONTINUATION= 7,  /* header block continues in CONTINUATION  */
	GW_REASON_TABLE       = 8,  /* dynamic table model no longer trusted   */
	GW_REASON_NOMEM       = 9,  /* kernel could not pull the frame         */
	GW_REASON_PREDATES    = 10, /* connection predates attach: reset       */
	GW_REASON_FALLBACK    = 11, /* fallback helper gone or gave up         */
	GW_REASON_UNWALKED    = 12, /* bytes reached the socket past the walker:
				     * sent before it was policed, in the SYN
				     * (fast open), or after a failed write  */
	GW_REASON_URGENT      = 13, /* urgent data (MSG_OOB)                   */
	GW_REASON_NOT_IN_MAP  = 14, /* sockhash full: the walker cannot run    */
	GW_REASON_CORK_FLUSH  = 15, /* the kernel sent a held, partial frame   */
	GW_REASON_ULP         = 16, /* an upper layer (kTLS) on a policed socket */
	GW_REASON_RAW         = 17, /* TCP to a service from a raw socket      */
	GW_REASON_FORMAT      = 18, /* method table of another grpcwall version */
	GW_REASON_BUSY        = 19, /* no walk scratch: every slot of the CPU
				     * held by a run preempted mid-walk */
	GW_REASON_REGRANT     = 20, /* allowed now, denied (rewritten) when its
				     * :path went into the table: reconnect */
	GW_REASON_HOLD        = 21, /* server side: a HEADERS frame cut across
				     * received buffers could not be held */
	GW_REASON_MPTCP       = 22, /* server side: MPTCP to a protected server
				     * (a subflow cannot be walked): refused */
	GW_REASON_SRV_FULL    = 23, /* server side: the protected servers hold
				     * their most walked connections: refused */
	GW_REASON_REPAIR      = 24, /* a policed socket connected in TCP_REPAIR
				     * mode (no handshake: a resumed stream) */
	GW_REASON_HOLD_SHARE  = 25, /* server side: the caller's identity holds
				     * its share of the hold slots */
	GW_REASON_MAX
};

/* server side: slots of gw_srv_holds (HEADERS frames held back until
 * whole), each ~80 KiB; attach --hold-slots, at most GW_HOLD_SLOTS_MAX */
#define GW_HOLD_SLOTS     64
#define GW_HOLD_SLOTS_MAX 1024
/* a hold this old: its caller stopped inside a HEADERS frame (while held,
 * the server's socket polls readable with nothing to read): reset */
#define GW_HOLD_TIMEOUT_NS (10ULL * 1000000000ULL)

/* [0] of gw_limits: what attach sets besides the map sizes */
struct gw_limits {
	__u32 hold_share; /* hold slots one identity may hold at once (--hold-slots-per-identity); 0: any */
	__u32 pad0;
};

struct gw_hold_owner {
	__u64 owner; /* socket cookie of the connection holding the slot; 0: free */
	__u64 since; /* bpf_ktime_get_ns() when it took it */
};

/* counters, per CPU, index into gw_counters[] */
enum gw_counter {
	GW_CNT_ALLOWED = 0,
	GW_CNT_DENIED,
	GW_CNT_AUDITED,
	GW_CNT_FALLBACK_BLOCKS,
	GW_CNT_FALLBACK_BYTES,
	GW_CNT_PARSE_ERRORS,
	GW_CNT_CONNS_OPENED,   /* policed connections put in the sockhash */
	GW_CNT_CONNS_CLOSED,   /* unused: status derives closes from what
				* gw_sockhash still holds (no STATE_CB) */
	GW_CNT_HEADER_BLOCKS,
	GW_CNT_DROPPED_CONNS,  /* connections failed closed (SK_DROP)     */
	GW_CNT_EVENTS_LOST,    /* ring buffer full                        */
	GW_CNT_CONNS_RESET,    /* predated attach/apply: reset to reconnect */
	GW_CNT_FALLBACK_RESUMED, /* diverted connections back on the kernel path */
	GW_CNT_GUARD_DROPS,    /* segments the egress guard held back     */
	GW_CNT_SHORT_WRITES,   /* writes sent only in part, followed on   */
	GW_CNT_REPEATS,        /* allowed blocks: the held repeat, unparsed */
	GW_CNT_SCRATCH_NEXT,   /* walks in a scratch slot past the first: a
				* run preempted mid-walk held it */
	GW_CNT_SRV_CONNS,      /* server side: accepted connections walked on receive */
	GW_CNT_SRV_HOLDS,      /* server side: HEADERS frames held until whole */
	GW_CNT_SRV_REPLAYS,    /* ... of which with decided bytes before them (replayed) */
	GW_CNT_SRV_FAILED,     /* server side: connections failed closed (the helper resets them) */
	GW_CNT_SRV_REFUSED,    /* server side: segments for protected listeners dropped
				* (MPTCP, or at their most walked connections) */
	GW_CNT_SRV_UNWALKED,   /* server side: payload segments of protected servers'
				* connections that are not walked, dropped */
	GW_CNT_SRV_PERM_DENIED, /* server side: answers to denied RPCs turned into
				 * PERMISSION_DENIED (gw_srv_msg) */
	GW_CNT_SRV_ANSWERS_KEPT, /* ... left as the server wrote them (not Trailers-Only
				  * or RST_STREAM, cut across writes, or the walk lost) */
	GW_CNT_MAX
};

/* How method tables are read. 2: the most specific key found decides
 * (exact, service, `*`, default), each key compiled with the verdict of
 * every entry that matches its paths. 0 (before it was recorded): every
 * key found was ranked deny > audit > allow. A datapath must never read a
 * format it was not written for (attach refuses it). */
#define GW_TABLE_FORMAT 3

struct gw_config {
	__u64 generation;   /* bumped by every policy apply; 0 = no policy */
	__u32 format;       /* method-table format of the live policy (GW_TABLE_FORMAT); the
			     * live slot is GW_SLOT_OF(generation) */
	__u32 ident_depth;  /* deepest identity level of any policy applied (only grows) */
	__u64 key0, key1;   /* SipHash key, random per attach */
	__u64 hash_any;     /* precomputed keys of the "*" and default entries */
	__u64 hash_default;
};

/* identity map: cgroup path key (gw_cgroup_hash) -> identity, per slot */
struct gw_ident_key {
	__u32 slot;
	__u32 pad0;
	__u64 path_hash;
};
struct gw_ident_val {
	__u16 ident;        /* 1-based, within its generation */
	__u16 pad0;
	__u32 pad1;
};

/* Addresses are IPv6, network order; IPv4 as v4-mapped (::ffff:a.b.c.d),
 * so one trie and one code path serve both families. */
#define GW_V4_MAPPED_BITS 96

/* service LPM trie: prefix bits count over slot|pad|port|addr */
struct gw_svc_key {
	__u32 prefixlen;    /* 32 + prefix length over addr (IPv4 /n: 96 + n) */
	__u8  slot;
	__u8  pad0;
	__u16 port;         /* network byte order */
	__u32 addr[4];      /* IPv6 or v4-mapped, network byte order */
};
#define GW_SVC_PREFIX_FIXED 32
struct gw_svc_val {
	__u16 service;      /* 1-based, within its generation */
	__u16 pad0;
	__u32 pad1;
};

/* Server side (issue 11). gw_peers: the identities of callers by source
 * address, an LPM trie over slot|pad|addr (longest prefix wins). */
struct gw_peer_key {
	__u32 prefixlen;    /* 32 + prefix length over addr (IPv4 /n: 96 + n) */
	__u8  slot;
	__u8  pad0[3];
	__u32 addr[4];      /* IPv6 or v4-mapped, network byte order */
};
#define GW_PEER_PREFIX_FIXED 32
struct gw_peer_val {
	__u16 ident;        /* 1-based, within its generation */
	__u16 pad0;
	__u32 pad1;
};

/* gw_srv_ports: the services whose local server this host protects, by
 * (slot, local port): a connection accepted on that port by a socket of
 * the service's cgroup (or one below it) is walked on receive. */
struct gw_srv_key {
	__u32 slot;
	__u32 port;         /* host byte order */
};
struct gw_srv_val {
	__u16 service;      /* 1-based, within its generation */
	__u16 levels;       /* how deep the service's cgroup is (1..GW_CGROUP_DEPTH) */
	__u32 pad0;
	__u64 cgroup_key;   /* path key (gw_cgroup_hash) of the service's cgroup */
};

/* gw_svc_ports: the ports of a slot's services, one bit each (bit p of
 * w[p / 64] for host-order port p), written with the slot's services. The
 * egress guard's first test for a TCP segment of a socket that is not
 * policed: only one to a service port is looked at further. */
struct gw_port_bits {
	__u64 w[65536 / 64];
};

/* outer policy map key: one inner method table per (identity, service) */
struct gw_pair_key {
	__u32 slot;
	__u16 ident;
	__u16 service;
};

/* inner method table: keyed SipHash of (kind, pattern) -> entry */
struct gw_method_val {
	__u8  verdict;      /* enum gw_verdict (never NONE in a table) */
	__u8  kind;         /* enum gw_match_kind, for show/debug      */
	__u16 rule;         /* rule id that put it there, 1-based       */
	__u8  format;       /* GW_TABLE_FORMAT: the datapath denies an entry of
			     * any other format (a table an older grpcwall
			     * wrote, which it would read differently) */
	__u8  local;        /* 1: `rule` is 1-based into the pair's gw_pair_rules
			     * entry, not a rule id: pairs whose rules have the
			     * same entries share one table (the verdict is the
			     * table's either way) */
	__u8  pad0[2];
};

/* gw_pair_rules: the rule ids of a pair whose method table is shared, in
 * the order the table's local rule numbers count them (1 = rule[0]). A
 * pair with more rules than this has a table of its own, with rule ids. */
#define GW_PAIR_RULES 16 /* a power of two: the datapath masks the index */
struct gw_pair_rules {
	__u16 n;
	__u16 rule[GW_PAIR_RULES];
};

/* side tables for userspace: names of what the maps hold */
struct gw_name_key {
	__u32 slot;
	__u32 kind;         /* 0 identity, 1 service, 2 rule, 3 method */
	__u64 id;           /* ident/service/rule id, or method hash   */
};
#define GW_NAMEKIND_IDENT   0
#define GW_NAMEKIND_SERVICE 1
#define GW_NAMEKIND_RULE    2
#define GW_NAMEKIND_METHOD  3
struct gw_name_val {
	char  text[GW_PATH_MAX];   /* identity/service name, rule "from->to", pattern */
	char  detail[GW_CGROUP_PATH_MAX]; /* cgroup path, "port cidrs", "file:line" */
	__u64 aux;                 /* cgroup id, port, rule audit flag */
};

/* per rule counters: index slot * GW_MAX_RULES + rule */
struct gw_rule_counters {
	__u64 allowed;
	__u64 denied;
	__u64 audited;
	__u64 pad0;
};

/* A connection's two ends, kept per connection for events and the
 * service lookup; its identity is read from its cgroup when the policy
 * generation moves (gw_cgroup_ident), never kept. */
struct gw_conn_ends {
	__u32 daddr[4];     /* IPv6 or v4-mapped, network order */
	__u32 saddr[4];     /* ... known once established */
	__u16 dport;        /* network order */
	__u16 sport;        /* host order, known once established */
	__u32 pid;          /* the task that connected */
	char  comm[16];
};

/* The fallback helper's copy of a diverted connection's origin: its ends
 * and the identity keys of its cgroup path at the divert (the helper
 * resolves the identity against later policies from these). */
struct gw_conn_origin {
	__u64 cgroups[GW_CGROUP_DEPTH]; /* [i]: path key of the socket's cgroup's
					 * ancestor (or itself) at level i + 1 */
	__u32 ncgroups;     /* levels recorded: every level, up to GW_CGROUP_DEPTH */
	__u32 daddr[4];     /* IPv6 or v4-mapped, network order */
	__u32 saddr[4];     /* ... known once established */
	__u16 dport;        /* network order */
	__u16 sport;        /* host order, known once established */
	__u32 pid;
	__u32 level;        /* the socket's cgroup level (ncgroups is at most that) */
	__u32 pad0;
	char  comm[16];
};

/* ring buffer event */
struct gw_event {
	__u64 ts_ns;        /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 generation;
	__u64 cookie;       /* socket cookie */
	__u32 saddr[4];     /* IPv6 or v4-mapped, network order */
	__u32 daddr[4];
	__u16 sport, dport; /* host order */
	__u16 ident, service;
	__u16 rule;
	__u8  verdict;      /* enum gw_verdict */
	__u8  reason;       /* enum gw_reason */
	__u32 pid;          /* task that wrote the request */
	__u32 conn_pid;     /* task that made the connection */
	char  comm[16];
	__u32 stream_id;
	__u16 path_len;     /* bytes in path[] (may be truncated) */
	__u16 side;         /* 0: client side (sk_msg); server side (sk_skb): 1 the
			     * caller known by its address, 2 by its cgroup (a
			     * socket of this host) */
	char  path[GW_PATH_MAX];
};

GW_ABI_ASSERT(gw_config, 48);
GW_ABI_ASSERT(gw_limits, 8);
GW_ABI_ASSERT(gw_ident_key, 16);
GW_ABI_ASSERT(gw_ident_val, 8);
GW_ABI_ASSERT(gw_svc_key, 24);
GW_ABI_ASSERT(gw_svc_val, 8);
GW_ABI_ASSERT(gw_peer_key, 24);
GW_ABI_ASSERT(gw_peer_val, 8);
GW_ABI_ASSERT(gw_srv_key, 8);
GW_ABI_ASSERT(gw_srv_val, 16);
GW_ABI_ASSERT(gw_port_bits, 8192);
GW_ABI_ASSERT(gw_pair_key, 8);
GW_ABI_ASSERT(gw_method_val, 8);
GW_ABI_ASSERT(gw_pair_rules, 34);
GW_ABI_ASSERT(gw_name_key, 16);
GW_ABI_ASSERT(gw_name_val, 456);
GW_ABI_ASSERT(gw_rule_counters, 32);
GW_ABI_ASSERT(gw_conn_origin, 200);
GW_ABI_ASSERT(gw_conn_ends, 56);
GW_ABI_ASSERT(gw_event, 360);

#endif /* GRPCWALL_H */
