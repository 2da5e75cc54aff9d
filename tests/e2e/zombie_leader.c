// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * A workload whose connection predates the policy and that hides the
 * connection's network namespace from the reset of predating connections
 * (tests/e2e/attack.bats).
 *
 *   zombie_leader IP PORT METHOD GOFILE [zombie|away]     (IP: IPv4 or IPv6)
 *
 * Connects, writes the connection preface and SETTINGS, prints "connected".
 * zombie (the default): the main thread exits while a worker thread keeps
 * the connection; the process is a zombie leader, its /proc/PID/ns/net is
 * gone, its thread's is not. away: the process moves to a new network
 * namespace of its own (unshare), so no thread on the host is in the one
 * the connection lives in; only the socket keeps it. Then it waits for
 * GOFILE, sends one unary call to /cloudcity.DoorManager/METHOD and prints
 * "reset" when the connection is gone, "answered" once the server replied,
 * "unanswered" when nothing came back in 4 seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int sock;
static const char *gofile, *method, *authority;

static size_t frame(unsigned char *p, int type, int flags, int stream, const unsigned char *pay, size_t n)
{
	p[0] = n >> 16, p[1] = n >> 8, p[2] = n, p[3] = type, p[4] = flags;
	p[5] = 0, p[6] = 0, p[7] = 0, p[8] = stream;
	memcpy(p + 9, pay, n);
	return 9 + n;
}

static size_t lit(unsigned char *p, const char *name, const char *value)
{
	size_t a = strlen(name), b = strlen(value);

	p[0] = 0; /* literal without indexing, new name */
	p[1] = a;
	memcpy(p + 2, name, a);
	p[2 + a] = b;
	memcpy(p + 3 + a, value, b);
	return 3 + a + b;
}

static void *worker(void *arg)
{
	static const unsigned char req[] = { 0, 0, 0, 0, 2, 8, 1 }; /* DoorRequest{door_id: 1} */
	unsigned char blk[512], out[1024], in[4096];
	char path[128];
	size_t b = 0, n = 0;

	(void)arg;
	while (access(gofile, F_OK) != 0)
		usleep(20000);
	snprintf(path, sizeof(path), "/cloudcity.DoorManager/%s", method);
	b += lit(blk + b, ":method", "POST");
	b += lit(blk + b, ":scheme", "http");
	b += lit(blk + b, ":path", path);
	b += lit(blk + b, ":authority", authority);
	b += lit(blk + b, "content-type", "application/grpc");
	b += lit(blk + b, "te", "trailers");
	n += frame(out + n, 0x1, 0x4, 1, blk, b);
	n += frame(out + n, 0x0, 0x1, 1, req, sizeof(req));
	if (send(sock, out, n, MSG_NOSIGNAL) != (ssize_t)n) {
		printf("reset\n");
		fflush(stdout);
		exit(0);
	}
	for (;;) {
		ssize_t r = recv(sock, in, sizeof(in), 0);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			printf("unanswered\n");
			break;
		}
		if (r <= 0) {
			printf("reset\n");
			break;
		}
		/* anything but the server's SETTINGS / ack: a reply to the call */
		if (r >= 9 && in[3] != 0x4) {
			printf("answered\n");
			break;
		}
	}
	fflush(stdout);
	exit(0);
}

int main(int argc, char **argv)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int v6 = argc > 1 && strchr(argv[1], ':') != NULL;
	unsigned char settings[9];
	struct timeval tv = { .tv_sec = 10 };
	static char auth[64];
	pthread_t t;
	int one = 1;

	int away = argc == 6 && !strcmp(argv[5], "away");

	if (argc < 5 || argc > 6 ||
	    (v6 ? inet_pton(AF_INET6, argv[1], &sa6.sin6_addr) : inet_pton(AF_INET, argv[1], &sa.sin_addr)) != 1) {
		fprintf(stderr, "usage: zombie_leader IP PORT METHOD GOFILE [zombie|away]\n");
		return 2;
	}
	sa.sin_port = sa6.sin6_port = htons(atoi(argv[2]));
	method = argv[3];
	gofile = argv[4];
	snprintf(auth, sizeof(auth), v6 ? "[%s]:%s" : "%s:%s", argv[1], argv[2]);
	authority = auth;
	if (away)
		tv.tv_sec = 4;
	sock = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if ((v6 ? connect(sock, (struct sockaddr *)&sa6, sizeof(sa6)) : connect(sock, (struct sockaddr *)&sa, sizeof(sa))) ||
	    send(sock, preface, sizeof(preface) - 1, 0) != sizeof(preface) - 1 ||
	    send(sock, settings, frame(settings, 0x4, 0, 0, NULL, 0), 0) != 9) {
		perror("zombie_leader");
		return 1;
	}
	if (away && unshare(CLONE_NEWNET)) {
		perror("zombie_leader: unshare(CLONE_NEWNET)");
		return 1;
	}
	printf("connected\n");
	fflush(stdout);
	if (away)
		worker(NULL);
	if (pthread_create(&t, NULL, worker, NULL))
		return 1;
	pthread_exit(NULL); /* the leader goes; the worker keeps the connection */
}
