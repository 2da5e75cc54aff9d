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

#define GW_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define GW_SIPROUND(v0, v1, v2, v3)                                   \
	do {                                                          \
		v0 += v1; v1 = GW_ROTL(v1, 13); v1 ^= v0; v0 = GW_ROTL(v0, 32); \
		v2 += v3; v3 = GW_ROTL(v3, 16); v3 ^= v2;             \
		v0 += v3; v3 = GW_ROTL(v3, 21); v3 ^= v0;             \
		v2 += v1; v1 = GW_ROTL(v1, 17); v1 ^= v2; v2 = GW_ROTL(v2, 32); \
	} while (0)

static inline __u64 gw_siphash(const unsigned char *buf, __u32 len,
			       __u64 k0, __u64 k1, __u32 kind)
{
	__u64 v0 = 0x736f6d6570736575ULL ^ k0;
	__u64 v1 = 0x646f72616e646f6dULL ^ (k1 ^ kind);
	__u64 v2 = 0x6c7967656e657261ULL ^ k0;
	__u64 v3 = 0x7465646279746573ULL ^ (k1 ^ kind);
	__u64 m, b;
	__u32 i, blocks, off, j;

	if (len > GW_HASH_BUF)
		len = GW_HASH_BUF;
	blocks = len / 8;
	for (i = 0; i < GW_HASH_BUF / 8; i++) {
		if (i >= blocks)
			break;
		off = (i * 8) & (GW_HASH_BUF - 8);
		m = 0;
		for (j = 0; j < 8; j++)
			m |= (__u64)buf[off + j] << (8 * j);
		v3 ^= m;
		GW_SIPROUND(v0, v1, v2, v3);
		GW_SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	b = (__u64)(len & 0xff) << 56;
	off = blocks * 8;
	for (j = 0; j < 7; j++) {
		if (off + j >= len)
			break;
		b |= (__u64)buf[(off + j) & (GW_HASH_BUF - 1)] << (8 * j);
	}
	v3 ^= b;
	GW_SIPROUND(v0, v1, v2, v3);
	GW_SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	GW_SIPROUND(v0, v1, v2, v3);
	GW_SIPROUND(v0, v1, v2, v3);
	GW_SIPROUND(v0, v1, v2, v3);
	GW_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

#endif /* GW_SIPHASH_H */
