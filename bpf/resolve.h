/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Identity and service resolution against the live policy slot. */
#ifndef GW_RESOLVE_H
#define GW_RESOLVE_H

#include "maps.h"

static __always_inline struct gw_config *gw_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&gw_config, &zero);
}

/* Deepest recorded cgroup path that is an identity wins: a process in
 * cloudcity/terminal/x carries cloudcity/terminal's identity unless
 * cloudcity/terminal/x is an identity of its own. */
static __always_inline __u16 gw_resolve_ident(const struct gw_conn_origin *o,
					      __u32 slot)
{
	struct gw_ident_key k = { .slot = slot };
	struct gw_ident_val *v;
	__u32 i;

	for (i = 0; i < GW_CGROUP_DEPTH; i++) {
		if (i >= o->ncgroups)
			break;
		k.path_hash = o->cgroups[(o->ncgroups - 1 - i) & (GW_CGROUP_DEPTH - 1)];
		v = bpf_map_lookup_elem(&gw_idents, &k);
		if (v)
			return v->ident;
	}
	return 0;
}

static __always_inline __u16 gw_resolve_service(const __u32 *daddr, __u16 dport,
						__u32 slot)
{
	struct gw_svc_key k = {
		.prefixlen = GW_SVC_PREFIX_FIXED + 128,
		.slot = slot,
		.port = dport,
		.addr = { daddr[0], daddr[1], daddr[2], daddr[3] },
	};
	struct gw_svc_val *v = bpf_map_lookup_elem(&gw_services, &k);

	return v ? v->service : 0;
}

/* Is dport (network order) the port of a service of the slot? One array
 * lookup (gw_svc_ports), before a service lookup where most sockets are
 * not to a service. */
static __always_inline int gw_service_port(__u16 dport, __u32 slot)
{
	struct gw_port_bits *bits = bpf_map_lookup_elem(&gw_svc_ports, &slot);
	__u32 port = bpf_ntohs(dport);

	return bits && ((bits->w[(port >> 6) & 1023] >> (port & 63)) & 1);
}

#define GW_REFRESH_STALE (-2)

/* Re-resolve a connection's identity and service when the policy
 * generation changed since it was last looked at. Returns 0 when the
 * connection is (still) policed, -1 when not, GW_REFRESH_STALE when the
 * live policy has identities deeper than the path recorded at connect
 * (the reset iterator resets such connections at the apply; this is the
 * backstop). */
static __always_inline int gw_refresh(struct gw_conn *c, __u64 gen, __u32 depth)
{
	__u32 need = c->origin.level < depth ? c->origin.level : depth;

	if (c->generation == gen)
		return (c->ident && c->service) ? 0 : -1;
	if (c->origin.ncgroups < need)
		return GW_REFRESH_STALE;
	c->ident = gw_resolve_ident(&c->origin, GW_SLOT_OF(gen));
	c->service = gw_resolve_service(c->origin.daddr, c->origin.dport, GW_SLOT_OF(gen));
	c->generation = gen;
	return (c->ident && c->service) ? 0 : -1;
}

/* The live generation: one load (see GW_SLOT_OF). */
static __always_inline __u64 gw_live_gen(struct gw_config *cfg)
{
	return *(volatile __u64 *)&cfg->generation;
}

#endif
