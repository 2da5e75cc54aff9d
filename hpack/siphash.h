/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * SipHash-2-4 (Aumasson & Bernstein) over a short buffer, as plain C that
 * compiles for BPF and for userspace. The policy compiler and the kernel
 * hash method paths with the same function and the same per-attach key,
 * so the policed client cannot precompute colliding paths.
 *
 * The buffer must be at least GW_HASH_BUF bytes long (the kernel hashes a
 * path buffer of that size in map memory); only the first len bytes count.
 */
#ifndef GW_SIPHASH_H
#define GW_SIPHASH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GW_HASH_BUF 256 /* == GW_PATH_MAX */
#define GW_CGROUP_NAME_MAX 64  /* longest cgroup name in an identity path */
#define GW_CGROUP_NAME_BUF 128 /* power of two above it */

#define GW_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define GW_SIPROUND(v0, v1, v2, v3)                                   \
	do {                                                          \
		v0 += v1; v1 = GW_ROTL(v1, 13); v1 ^= v0; v0 = GW_ROTL(v0, 32); \
		v2 += v3; v3 = GW_ROTL(v3, 16); v3 ^= v2;             \
		v0 += v3; v3 = GW_ROTL(v3, 21); v3 ^= v0;             \
		v2 += v1; v1 = GW_ROTL(v1, 17); v1 ^= v2; v2 = GW_ROTL(v2, 32); \
	} while (0)

/* ASCII upper case to lower case in the 8 bytes of m where fold is all
 * ones (0: unchanged), without a branch (the verifier follows none) */
#define GW_FOLD_WORD(m, fold) \
	((m) | (((((m) & 0x7f7f7f7f7f7f7f7fULL) + 0x3f3f3f3f3f3f3f3fULL) & \
		 ~(((m) & 0x7f7f7f7f7f7f7f7fULL) + 0x2525252525252525ULL) & ~(m) & \
		 0x8080808080808080ULL & (fold)) >> 2))

/* SipHash-2-4 over buf[0..len), len capped at BUF (a power of two: the
 * verifier sees every read bounded); `kind` keeps hashes of different
 * things apart. One definition, instantiated per buffer size. */
#define GW_SIPHASH_DEFINE(NAME, BUF) \
static inline __u64 NAME(const unsigned char *buf, __u32 len, \
			       __u64 k0, __u64 k1, __u32 kind) \
{ \
	__u64 v0 = 0x736f6d6570736575ULL ^ k0; \
	__u64 v1 = 0x646f72616e646f6dULL ^ (k1 ^ kind); \
	__u64 v2 = 0x6c7967656e657261ULL ^ k0; \
	__u64 v3 = 0x7465646279746573ULL ^ (k1 ^ kind); \
	/* kinds with bit 2 set (4, 5: GW_MATCH_*_FOLD; no other kind may have \
	 * it): the bytes in ASCII lower case */ \
	const __u64 fold = 0 - (__u64)((kind >> 2) & 1); \
	__u64 m, b; \
	__u32 i, blocks, off, j; \
 \
	if (len > BUF) \
		len = BUF; \
	blocks = len / 8; \
	for (i = 0; i < BUF / 8; i++) { \
		if (i >= blocks) \
			break; \
		off = (i * 8) & (BUF - 8); \
		m = 0; \
		for (j = 0; j < 8; j++) \
			m |= (__u64)buf[off + j] << (8 * j); \
		m = GW_FOLD_WORD(m, fold); \
		v3 ^= m; \
		GW_SIPROUND(v0, v1, v2, v3); \
		GW_SIPROUND(v0, v1, v2, v3); \
		v0 ^= m; \
	} \
	b = 0; \
	off = blocks * 8; \
	for (j = 0; j < 7; j++) { \
		if (off + j >= len) \
			break; \
		b |= (__u64)buf[(off + j) & (BUF - 1)] << (8 * j); \
	} \
	b = GW_FOLD_WORD(b, fold) | (__u64)(len & 0xff) << 56; \
	v3 ^= b; \
	GW_SIPROUND(v0, v1, v2, v3); \
	GW_SIPROUND(v0, v1, v2, v3); \
	v0 ^= b; \
	v2 ^= 0xff; \
	GW_SIPROUND(v0, v1, v2, v3); \
	GW_SIPROUND(v0, v1, v2, v3); \
	GW_SIPROUND(v0, v1, v2, v3); \
	GW_SIPROUND(v0, v1, v2, v3); \
	return v0 ^ v1 ^ v2 ^ v3; \
} \

GW_SIPHASH_DEFINE(gw_siphash, GW_HASH_BUF)          /* paths */
GW_SIPHASH_DEFINE(gw_siphash_name, GW_CGROUP_NAME_BUF) /* cgroup names */

/* A :path buffer, for the one hash the walker computes per header block. */
struct gw_hash_path {
	unsigned char b[GW_HASH_BUF];
};

/* gw_siphash over a path buffer. In BPF a global function: the verifier
 * checks it once on its own, instead of once per state of every caller
 * (its data-dependent loop, inlined into the walker's callback, multiplied
 * the walker's states past the 1M-instruction limit on this kernel). */
#if defined(__bpf__) && !defined(GW_HASH_PATH_DEFINED)
#define GW_HASH_PATH_DEFINED
__attribute__((noinline)) __u64 gw_hash_path(const struct gw_hash_path *p, __u32 len, __u64 k0, __u64 k1,
					      __u32 kind)
{
	if (!p) /* the verifier passes global functions' pointers as maybe-NULL */
		return 0;
	return gw_siphash(p->b, len, k0, k1, kind);
}
#elif !defined(__bpf__)
static inline __u64 gw_hash_path(const struct gw_hash_path *p, __u32 len, __u64 k0, __u64 k1, __u32 kind)
{
	return gw_siphash(p->b, len, k0, k1, kind);
}
#endif

/* Kinds of cgroup hashes (beyond enum gw_match_kind). */
#define GW_HASH_CGROUP      8  /* one path component */
#define GW_HASH_CGROUP_LONG 9  /* a component longer than GW_CGROUP_NAME_MAX */

/* The identity key of a cgroup path: chained over its components from the
 * root, h(level i) = SipHash(name_i) keyed with the policy key XOR
 * h(level i-1), so every prefix of a path has its own hash and a cgroup
 * made again at the same path (a restarted service) has the same one.
 * The kernel computes it from the cgroup's ancestors' names, the loader
 * from the policy's path. A name longer than GW_CGROUP_NAME_MAX hashes as
 * another kind, so it can match no identity (which the loader rejects). */
static inline __u64 gw_cgroup_hash(__u64 prev, const unsigned char *name, __u32 len,
				   __u64 k0, __u64 k1)
{
	if (len > GW_CGROUP_NAME_MAX)
		return gw_siphash_name(name, GW_CGROUP_NAME_MAX, k0 ^ prev, k1, GW_HASH_CGROUP_LONG);
	return gw_siphash_name(name, len, k0 ^ prev, k1, GW_HASH_CGROUP);
}

#endif /* GW_SIPHASH_H */
