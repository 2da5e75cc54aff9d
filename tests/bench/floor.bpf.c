// SPDX-License-Identifier: GPL-2.0
/* The bench's floor: what the sk_msg architecture costs by itself, with no
 * parsing (PROTOCOL-NOTES.md section 8, issue 10). A sockops program puts the
 * client cgroup's established TCP sockets to the server port into a sockhash;
 * the sockhash's sk_msg verdict program passes every message untouched. So a
 * write takes the tcp_bpf sendmsg path and runs one BPF program, as under
 * grpcwall, and does nothing else.
 *
 * The server side's floor (lean-floor-server): floor_sockops_srv, attached at
 * the servers' cgroup, puts the server's accepted sockets on the port into a
 * second sockhash whose sk_skb stream verdict passes every buffer untouched:
 * the receive path of grpcwall's server side (sk_psock verdict, ingress
 * queue, tcp_bpf_recvmsg) with one empty program run per buffer.
 *
 * Built and loaded by tests/bench/bench.py (clang -target bpf, bpftool prog
 * loadall + cgroup attach + prog attach msg_verdict); never by the loader.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef FLOOR_PORT
#define FLOOR_PORT 50052 /* bench.py's LEAN_PORT; -DFLOOR_PORT=... to change */
#endif

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64); /* socket cookie */
  __type(value, __u64);
} floor_sockhash SEC(".maps");

SEC("sockops")
int floor_sockops(struct bpf_sock_ops *skops) {
  __u64 cookie;

  switch (skops->op) {
  case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
    /* remote_port is network order in the high half (bpf.h), local_port host order */
    if (skops->family != 2 /* AF_INET */ || bpf_ntohl(skops->remote_port) != FLOOR_PORT)
      return 1;
    cookie = bpf_get_socket_cookie(skops);
    /* the sockhash drops the socket by itself when it closes */
    bpf_sock_hash_update(skops, &floor_sockhash, &cookie, BPF_NOEXIST);
    break;
  default:
    break;
  }
  return 1;
}

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} floor_srv_sockhash SEC(".maps");

SEC("sockops")
int floor_sockops_srv(struct bpf_sock_ops *skops) {
  __u64 cookie;

  if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB || skops->family != 2 /* AF_INET */ ||
      skops->local_port != FLOOR_PORT)
    return 1;
  cookie = bpf_get_socket_cookie(skops);
  bpf_sock_hash_update(skops, &floor_srv_sockhash, &cookie, BPF_NOEXIST);
  return 1;
}

SEC("sk_skb/stream_verdict")
int floor_sk_skb(struct __sk_buff *skb) {
  (void)skb;
  return SK_PASS;
}

SEC("sk_msg")
int floor_sk_msg(struct sk_msg_md *msg) {
  (void)msg;
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
