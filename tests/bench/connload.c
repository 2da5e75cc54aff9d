// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * One connection per request (make bench, issue 10): WORKERS processes each
 * loop connect(), one write of the connection preface, an empty SETTINGS
 * frame and a unary gRPC call (HEADERS + DATA with END_STREAM), read until
 * the call's stream ends, close with an RST (SO_LINGER 0: no TIME_WAIT
 * piles up on the client's ports). Calls that end inside
 * [WARMUP, WARMUP + DURATION) seconds are counted.
 *
 *   connload IP PORT PATH WORKERS DURATION WARMUP
 *
 * Prints "calls N failed M seconds S block B" (N: completed in the window;
 * B: bytes of the request's HPACK header block).
 *
 *   connload IP PORT PATH WORKERS DURATION WARMUP keep PADS
 *
 * keep: the HEADERS-block cost per byte (make bench). Each worker opens ONE
 * connection and makes its calls on it one after another (streams 1, 3, ...),
 * each HEADERS + DATA in one write. The block carries PADS more headers
 * (x-pad-NN: 16 bytes, literals without indexing, so every call's block is
 * the same bytes and none is kept in a dynamic table): the walker parses
 * 86 + 27 x PADS bytes per call (to 10.250.240.2:50052; longer than a
 * repeat block).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H2_DATA     0x0
#define H2_HEADERS  0x1
#define H2_RST      0x3
#define H2_SETTINGS 0x4
#define H2_GOAWAY   0x7
#define H2_WINDOW_UPDATE 0x8
#define H2_END_STREAM  0x1
#define H2_END_HEADERS 0x4

struct counts {
	uint64_t calls, failed;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t put_frame(uint8_t *p, uint8_t type, uint8_t flags, uint32_t stream, const uint8_t *pay,
			size_t len)
{
	p[0] = len >> 16;
	p[1] = len >> 8;
	p[2] = len;
	p[3] = type;
	p[4] = flags;
	p[5] = stream >> 24;
	p[6] = stream >> 16;
	p[7] = stream >> 8;
	p[8] = stream;
	memcpy(p + 9, pay, len);
	return 9 + len;
}

/* an HPACK string literal, raw (RFC 7541 5.2), shorter than 127 bytes */
static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	p[0] = n;
	memcpy(p + 1, s, n);
	return 1 + n;
}

static size_t block_len;

/* the request: preface and SETTINGS (unless !hello), HEADERS (literals
 * without indexing, so the same bytes every time) and DATA holding an empty
 * gRPC message on `stream` */
static size_t build(uint8_t *out, const char *ip, int port, const char *path, int pads, int hello,
		    uint32_t stream)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const uint8_t msg[5] = { 0, 0, 0, 0, 0 };
	uint8_t blk[8192];
	char auth[64], name[16];
	size_t n = 0, b = 0;
	int i;

	snprintf(auth, sizeof(auth), "%s:%d", ip, port);
	blk[b++] = 0x83;                       /* :method POST (static 3) */
	blk[b++] = 0x86;                       /* :scheme http (static 6) */
	blk[b++] = 0x04;                       /* :path, name static 4 */
	b += put_str(blk + b, path);
	blk[b++] = 0x01;                       /* :authority, name static 1 */
	b += put_str(blk + b, auth);
	blk[b++] = 0x0f;                       /* content-type, name static 31 */
	blk[b++] = 0x10;
	b += put_str(blk + b, "application/grpc");
	blk[b++] = 0x00;                       /* te: trailers, new name */
	b += put_str(blk + b, "te");
	b += put_str(blk + b, "trailers");
	for (i = 0; i < pads; i++) {
		blk[b++] = 0x00;               /* x-pad-NN: new name, 27 bytes */
		snprintf(name, sizeof(name), "x-pad-%02d", i % 100);
		b += put_str(blk + b, name);
		b += put_str(blk + b, "0123456789abcdef");
	}
	block_len = b;
	if (hello) {
		memcpy(out, preface, sizeof(preface) - 1);
		n = sizeof(preface) - 1;
		n += put_frame(out + n, H2_SETTINGS, 0, 0, NULL, 0);
	}
	n += put_frame(out + n, H2_HEADERS, H2_END_HEADERS, stream, blk, b);
	n += put_frame(out + n, H2_DATA, H2_END_STREAM, stream, msg, sizeof(msg));
	return n;
}

/* keep: read until `stream` ends; SETTINGS acknowledged. 1: it ended */
static int read_call(int s, uint32_t want, uint8_t *buf, size_t cap, size_t *have)
{
	static const uint8_t ack[9] = { 0, 0, 0, H2_SETTINGS, 0x1, 0, 0, 0, 0 };
	size_t off;
	ssize_t r;

	for (;;) {
		off = 0;
		while (*have - off >= 9) {
			uint32_t flen = (uint32_t)buf[off] << 16 | (uint32_t)buf[off + 1] << 8 | buf[off + 2];
			uint8_t type = buf[off + 3], flags = buf[off + 4];
			uint32_t stream = ((uint32_t)buf[off + 5] << 24 | (uint32_t)buf[off + 6] << 16 |
					   (uint32_t)buf[off + 7] << 8 | buf[off + 8]) & 0x7fffffff;

			if (*have - off < 9 + flen)
				break;
			off += 9 + flen;
			if (type == H2_SETTINGS && !(flags & 0x1) && write(s, ack, sizeof(ack)) != sizeof(ack))
				return 0;
			if (type == H2_GOAWAY || (stream == want && type == H2_RST))
				return 0;
			if (stream == want && (type == H2_HEADERS || type == H2_DATA) && (flags & H2_END_STREAM)) {
				memmove(buf, buf + off, *have - off);
				*have -= off;
				return 1;
			}
		}
		memmove(buf, buf + off, *have - off);
		*have -= off;
		if (*have == cap)
			return 0;
		r = read(s, buf + *have, cap - *have);
		if (r <= 0)
			return 0;
		*have += r;
	}
}

/* keep: one connection, calls one after another until the end */
static void keep_worker(const struct sockaddr_in *sa, const char *ip, int port, const char *path, int pads,
			double t0, double warmup, double duration, uint64_t *calls)
{
	/* the connection's receive window to the largest: the server's
	 * 5-byte answers never wait for a WINDOW_UPDATE */
	static const uint8_t win[13] = { 0, 0, 4, H2_WINDOW_UPDATE, 0, 0, 0, 0, 0, 0x7f, 0xff, 0x00, 0x00 };
	static uint8_t req[16384], buf[65536];
	struct timeval tv = { .tv_sec = 5 };
	uint32_t stream = 1;
	size_t len, have = 0;
	int one = 1, s;
	double t;

	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		_exit(1);
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)))
		_exit(1);
	len = build(req, ip, port, path, pads, 1, 0);
	len -= 9 + block_len + 9 + 5; /* the preface and SETTINGS only */
	if (write(s, req, len) != (ssize_t)len || write(s, win, sizeof(win)) != sizeof(win))
		_exit(1);
	for (;;) {
		int ok;

		len = build(req, ip, port, path, pads, 0, stream);
		ok = write(s, req, len) == (ssize_t)len && read_call(s, stream, buf, sizeof(buf), &have);
		stream += 2;
		t = now() - t0;
		if (t >= warmup + duration)
			_exit(0);
		if (!ok)
			_exit(1); /* the connection is gone: counted so far, no more */
		if (t < warmup)
			continue;
		(*calls)++;
	}
}

/* 1: stream 1 ended; 0: reset, refused or timed out */
static int one_call(const struct sockaddr_in *sa, const uint8_t *req, size_t len)
{
	static const struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	struct timeval tv = { .tv_sec = 5 };
	uint8_t buf[16384];
	size_t have = 0, off;
	int one = 1, ok = 0, s;
	ssize_t r;

	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return 0;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)) || write(s, req, len) != (ssize_t)len)
		goto out;
	for (;;) {
		r = read(s, buf + have, sizeof(buf) - have);
		if (r <= 0)
			goto out;
		have += r;
		off = 0;
		while (have - off >= 9) {
			uint32_t flen = (uint32_t)buf[off] << 16 | (uint32_t)buf[off + 1] << 8 | buf[off + 2];
			uint8_t type = buf[off + 3], flags = buf[off + 4];
			uint32_t stream = ((uint32_t)buf[off + 5] << 24 | (uint32_t)buf[off + 6] << 16 |
					   (uint32_t)buf[off + 7] << 8 | buf[off + 8]) & 0x7fffffff;

			if (have - off < 9 + flen)
				break;
			if (type == H2_GOAWAY || (stream == 1 && type == H2_RST))
				goto out;
			if (stream == 1 && (type == H2_HEADERS || type == H2_DATA) && (flags & H2_END_STREAM)) {
				ok = 1;
				goto out;
			}
			off += 9 + flen;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
		if (have == sizeof(buf))
			goto out;
	}
out:
	close(s);
	return ok;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct counts *cnt, sum = { 0, 0 };
	double duration, warmup, t0;
	uint8_t req[16384];
	int workers, i, keep = 0, pads = 0, status, bad = 0;
	size_t len;

	if (argc == 9 && !strcmp(argv[7], "keep")) {
		keep = 1;
		pads = atoi(argv[8]);
	}
	if ((argc != 7 && !keep) || pads < 0 || pads > 256) {
		fprintf(stderr, "usage: connload IP PORT PATH WORKERS DURATION WARMUP [keep PADS(0-256)]\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || strlen(argv[3]) > 120) {
		fprintf(stderr, "connload: bad address or path\n");
		return 2;
	}
	sa.sin_port = htons(atoi(argv[2]));
	workers = atoi(argv[4]);
	duration = atof(argv[5]);
	warmup = atof(argv[6]);
	if (workers < 1 || workers > 64 || duration <= 0 || warmup < 0) {
		fprintf(stderr, "connload: 1-64 workers, a positive duration\n");
		return 2;
	}
	len = build(req, argv[1], atoi(argv[2]), argv[3], pads, 1, 1);
	cnt = mmap(NULL, sizeof(*cnt) * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cnt == MAP_FAILED) {
		perror("connload: mmap");
		return 1;
	}
	memset(cnt, 0, sizeof(*cnt) * workers);
	t0 = now();
	for (i = 0; i < workers; i++) {
		pid_t p = fork();

		if (p < 0) {
			perror("connload: fork");
			return 1;
		}
		if (p == 0) {
			if (keep)
				keep_worker(&sa, argv[1], atoi(argv[2]), argv[3], pads, t0, warmup, duration,
					    &cnt[i].calls);
			for (;;) {
				int ok = one_call(&sa, req, len);
				double t = now() - t0;

				if (t >= warmup + duration)
					_exit(0);
				if (t < warmup)
					continue;
				if (ok)
					cnt[i].calls++;
				else
					cnt[i].failed++;
			}
		}
	}
	for (;;) {
		pid_t w = wait(&status);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
		bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	}
	if (bad)
		fprintf(stderr, "connload: a kept connection failed\n");
	for (i = 0; i < workers; i++) {
		sum.calls += cnt[i].calls;
		sum.failed += cnt[i].failed;
	}
	printf("calls %llu failed %llu seconds %.3f block %zu\n", (unsigned long long)sum.calls,
	       (unsigned long long)sum.failed, duration, block_len);
	return bad;
}
