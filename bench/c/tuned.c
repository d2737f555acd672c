/* tuned A B: the bench's reference forwarder, as good as one thread of C can be: forwards every frame
 * both ways between devices A and B until SIGTERM or SIGINT.  Per port an AF_PACKET SOCK_RAW socket
 * of every ethertype with PACKET_IGNORE_OUTGOING and 32 MiB receive and send buffers
 * (SO_RCVBUFFORCE, SO_SNDBUFFORCE: past net.core.rmem_max/wmem_max); poll(2) on both sockets; on each
 * wake up to 8 recvmmsg batches of 64 (MSG_DONTWAIT) per readable socket, each sent on with sendmmsg
 * (MSG_DONTWAIT).  When the output refuses (ENOBUFS, EAGAIN) it waits for POLLOUT, at most 4 polls of
 * 1 ms, then drops the rest of the batch and counts it, never spinning.  Prints "ready" once both
 * sockets are bound, then "<frames A->B> <frames B->A> <dropped A->B> <dropped B->A>
 * <kernel drops on A> <kernel drops on B>" (the last two: frames the kernel dropped for want of
 * receive-buffer room, PACKET_STATISTICS). */
#include "common.h"
#include <signal.h>

#define BUFFER_BYTES (32 << 20)
#define BATCHES_PER_WAKE 8
#define POLLOUT_TRIES 4

static volatile sig_atomic_t stopping;
static void stop(int signo) { (void) signo; stopping = 1; }

static int tuned_socket(const char *ifname) {
  int fd = packet_socket(ifname, ETH_P_ALL);
  int one = 1, bytes = BUFFER_BYTES;
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) { perror("PACKET_IGNORE_OUTGOING"); exit(1); }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0) { perror("SO_RCVBUFFORCE"); exit(1); }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0) { perror("SO_SNDBUFFORCE"); exit(1); }
  struct tpacket_stats scrap;
  socklen_t length = sizeof scrap;
  getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &scrap, &length); /* reading resets the counters */
  return fd;
}

/* Sends the `n` frames of `b` on `out`; returns how many it dropped (after the bounded wait), or -1 on an error. */
static int send_batch(int out, struct batch *b, int n) {
  int done = 0, tries = 0;
  while (done < n) {
    int r = sendmmsg(out, b->msgs + done, n - done, MSG_DONTWAIT);
    if (r > 0) { done += r; continue; }
    if (r < 0 && errno == EINTR) { if (stopping) break; continue; }
    if (r < 0 && errno != ENOBUFS && errno != EAGAIN) { perror("sendmmsg"); return -1; }
    if (tries++ == POLLOUT_TRIES) break;
    struct pollfd p = { out, POLLOUT, 0 };
    poll(&p, 1, 1);
  }
  return n - done;
}

/* Up to BATCHES_PER_WAKE batches from `in` to `out`: adds to *moved and *dropped; -1 on an error. */
static int pump(int in, int out, struct batch *b, long *moved, long *dropped) {
  for (int k = 0; k < BATCHES_PER_WAKE; k++) {
    int n = recvmmsg(in, b->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return 0;
    for (int i = 0; i < n; i++) b->iov[i].iov_len = b->msgs[i].msg_len;
    int lost = send_batch(out, b, n);
    for (int i = 0; i < n; i++) b->iov[i].iov_len = SLOT;
    if (lost < 0) return -1;
    *moved += n - lost;
    *dropped += lost;
  }
  return 0;
}

static unsigned kernel_drops(int fd) {
  struct tpacket_stats stats = { 0, 0 };
  socklen_t length = sizeof stats;
  getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &length);
  return stats.tp_drops;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: tuned A B\n"); return 2; }
  struct sigaction action = { .sa_handler = stop };
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  int fds[2] = { tuned_socket(argv[1]), tuned_socket(argv[2]) };
  static struct batch b;
  batch_init(&b);
  printf("ready\n");
  fflush(stdout);
  long moved[2] = { 0, 0 }, dropped[2] = { 0, 0 };
  while (!stopping) {
    struct pollfd p[2] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 } };
    if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    for (int i = 0; i < 2; i++) {
      if ((p[i].revents & POLLIN) && pump(fds[i], fds[1 - i], &b, &moved[i], &dropped[i]) < 0) return 1;
    }
  }
  printf("%ld %ld %ld %ld %u %u\n", moved[0], moved[1], dropped[0], dropped[1], kernel_drops(fds[0]), kernel_drops(fds[1]));
  return 0;
}
