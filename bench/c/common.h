/* Shared by the reference programs of `npm run bench`: an AF_PACKET socket bound to a device,
 * and a clock.  Frames are ethertype 0x88b5 (IEEE local experimental). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TYPE 0x88b5
#define BATCH 64
#define SLOT 2048

static inline int packet_socket(const char *ifname, int protocol) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(protocol));
  if (fd < 0) { perror("socket"); exit(1); }
  int rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(protocol), .sll_ifindex = (int) if_nametoindex(ifname) };
  if (!sll.sll_ifindex || bind(fd, (struct sockaddr *) &sll, sizeof sll) < 0) { perror(ifname); exit(1); }
  char scrap[1];
  while (recv(fd, scrap, 1, MSG_DONTWAIT | MSG_TRUNC) >= 0) {}
  return fd;
}

static inline double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* Receive buffers: BATCH slots of SLOT bytes, one iovec and mmsghdr each. */
struct batch { char data[BATCH][SLOT]; struct iovec iov[BATCH]; struct mmsghdr msgs[BATCH]; };

static inline void batch_init(struct batch *b) {
  memset(b->msgs, 0, sizeof b->msgs);
  for (int i = 0; i < BATCH; i++) {
    b->iov[i] = (struct iovec) { b->data[i], SLOT };
    b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
    b->msgs[i].msg_hdr.msg_iovlen = 1;
  }
}
