/* Native reference for bench/ingest.ts: counts conntrack NEW events on a raw NETLINK_NETFILTER socket. */
/*
 * Usage: ct-listen RCVBUF_BYTES
 * Prints "ready" once subscribed; on stdin "stat" prints "stat NEW OVERRUNS DATAGRAMS"; on "quit" or EOF prints the
 * final stat line and exits. One recv() per datagram, like libmnl's mnl_socket_recvfrom() loop.
 */
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_RCVBUFFORCE
#define SO_RCVBUFFORCE 33
#endif

static unsigned long long news, overruns, datagrams;

static void stat_line(void) {
	printf("stat %llu %llu %llu\n", news, overruns, datagrams);
	fflush(stdout);
}

int main(int argc, char **argv) {
	int rcvbuf = argc > 1 ? atoi(argv[1]) : 16 << 20;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0) { perror("socket"); return 1; }
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) { perror("SO_RCVBUFFORCE"); return 1; }
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
	int group = NFNLGRP_CONNTRACK_NEW;
	if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) { perror("membership"); return 1; }
	printf("ready\n");
	fflush(stdout);

	static char buf[65536];
	char line[64];
	size_t linelen = 0;
	struct pollfd pf[2] = { { .fd = 0, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR) continue;
			perror("poll");
			return 1;
		}
		if (pf[1].revents) {
			for (;;) {
				ssize_t n = recv(fd, buf, sizeof buf, 0);
				if (n < 0) {
					if (errno == ENOBUFS) { overruns++; continue; }
					if (errno == EAGAIN || errno == EINTR) break;
					perror("recv");
					return 1;
				}
				datagrams++;
				for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
					if (h->nlmsg_type == ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW) &&
					    (h->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)))
						news++;
				}
			}
		}
		if (pf[0].revents) {
			ssize_t n = read(0, line + linelen, sizeof line - 1 - linelen);
			if (n <= 0) break;
			linelen += (size_t)n;
			line[linelen] = 0;
			char *nl;
			while ((nl = strchr(line, '\n'))) {
				*nl = 0;
				if (!strcmp(line, "quit")) { stat_line(); return 0; }
				stat_line();
				linelen -= (size_t)(nl + 1 - line);
				memmove(line, nl + 1, linelen + 1);
			}
			if (linelen >= sizeof line - 1) linelen = 0;
		}
	}
	stat_line();
	return 0;
}
