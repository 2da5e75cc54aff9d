/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* hpack/ over a plain buffer: for unit tests, the fuzzer and the
 * userspace fallback. The kernel binds the same code to sk_msg data. */
#ifndef GW_HPACK_USERSPACE_H
#define GW_HPACK_USERSPACE_H

#include <linux/types.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

struct gw_buf {
	const unsigned char *p;
	__u32 len;
};
#define GW_SRC_T struct gw_buf

static inline int gw_src_byte(struct gw_buf *s, __u32 off)
{
	return off < s->len ? s->p[off] : -1;
}

#include "h2.h"

/* Parses a whole header block: the same steps the kernel runs from bpf_loop
 * (sp: the table's spill, which userspace always has). */
static inline int gw_hp_parse_block(struct gw_hp_block *b, struct gw_hp_table *t,
				    struct gw_hp_spill *sp, const unsigned char *p, __u32 len,
				    const struct gw_hp_keys *k)
{
	struct gw_buf src = { p, len };

	gw_hp_block_init(b, len);
	while (!gw_hp_step(b, t, sp, &src))
		;
	if (b->st != GW_HP_DONE)
		return -1;
	gw_hp_path_finish(b, t, k, sp);
	return 0;
}

/* Does the spill hold a record of a live entry (the kernel makes one only
 * then)? */
static inline int gw_hp_spill_used(const struct gw_hp_table *t, const struct gw_hp_spill *sp)
{
	__u32 i;

	for (i = 0; i < GW_HP_ENTRIES; i++)
		if ((sp->r[i].flags & GW_HPE_PATH) && gw_hp_live(t, sp->r[i].ins))
			return 1;
	return 0;
}

#endif
