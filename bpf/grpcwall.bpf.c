// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * grpcwall datapath.
 *
 * sockops: at connect() (in the connecting task's context) record the
 * task's cgroup ancestry and the destination; if that makes the connection
 * policed under the live policy, put the socket in gw_sockhash once it is
 * established, which binds the sk_msg program to it.
 *
 * sk_msg: runs on every write of a policed connection.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

/*
 * PLACEHOLDER until the HTTP/2 + HPACK datapath lands (issue 3): passes
 * every byte of a policed connection. Connections that failed closed at
 * insertion are dropped.
 */
SEC("sk_msg")
int gw_sk_msg(struct sk_msg_md *msg)
{
	struct gw_conn *c;

	if (!msg->sk)
		return SK_DROP;
	c = bpf_sk_storage_get(&gw_conns, msg->sk, NULL, 0);
	if (!c || (c->flags & GW_CONN_FAILED))
		return SK_DROP;
	bpf_msg_apply_bytes(msg, msg->size);
	return SK_PASS;
}
