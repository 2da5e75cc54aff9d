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

/* Is port (host order) a protected server's port in the slot? One array
 * lookup (gw_srv_port_bits). */
static __always_inline int gw_srv_port(__u32 port, __u32 slot)
{
	struct gw_port_bits *bits = bpf_map_lookup_elem(&gw_srv_port_bits, &slot);

	return bits && ((bits->w[(port >> 6) & 1023] >> (port & 63)) & 1);
}

/* An address as gw_conn_ends keeps it: is it IPv4 (::ffff:a.b.c.d)? */
static __always_inline int gw_addr_v4(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* The live generation: one load (see GW_SLOT_OF). */
static __always_inline __u64 gw_live_gen(struct gw_config *cfg)
{
	return *(volatile __u64 *)&cfg->generation;
}

#endif
