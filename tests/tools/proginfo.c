// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * proginfo PINNED_PROG...: one line per program, "NAME TYPE VERIFIED_INSNS",
 * where VERIFIED_INSNS is what the verifier processed to accept it (bpftool
 * 7.1 does not print it). Tests use it to keep every program well inside the
 * verifier's 1,000,000-instruction limit.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int i, rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PINNED_PROG...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		int fd = bpf_obj_get(argv[i]);

		memset(&info, 0, sizeof(info));
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			rc = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		printf("%s %u %u\n", info.name, info.type, info.verified_insns);
		close(fd);
	}
	return rc;
}
