/* l2fwd A B: forwards every frame both ways between devices A and B (AF_PACKET sockets of every
 * ethertype, recvmmsg then sendmmsg in batches of 64, one thread, poll) until SIGTERM or SIGINT;
 * prints "ready" once both sockets are bound, then "<frames A->B> <frames B->A>". */
#include "common.h"
#include <signal.h>

static volatile sig_atomic_t stopping;
static void stop(int signo) { (void) signo; stopping = 1; }

/* Moves every frame waiting on `in` to `out`; returns how many, or -1 on a send error. */
static long pump(int in, int out, struct batch *b) {
  long moved = 0;
  int n;
  while ((n = recvmmsg(in, b->msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
    for (int i = 0; i < n; i++) b->iov[i].iov_len = b->msgs[i].msg_len;
    int done = 0;
    while (done < n && !stopping) {
      int r = sendmmsg(out, b->msgs + done, n - done, 0);
      if (r < 0) { if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) continue; perror("sendmmsg"); return -1; }
      done += r;
    }
    for (int i = 0; i < n; i++) b->iov[i].iov_len = SLOT;
    moved += n;
  }
  return moved;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: l2fwd A B\n"); return 2; }
  struct sigaction action = { .sa_handler = stop };
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  int fds[2] = { packet_socket(argv[1], ETH_P_ALL), packet_socket(argv[2], ETH_P_ALL) };
  int one = 1;
  for (int i = 0; i < 2; i++) {
    if (setsockopt(fds[i], SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) { perror("PACKET_IGNORE_OUTGOING"); return 1; }
  }
  static struct batch b;
  batch_init(&b);
  printf("ready\n");
  fflush(stdout);
  long moved[2] = { 0, 0 };
  while (!stopping) {
    struct pollfd p[2] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 } };
    if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      long n = pump(fds[i], fds[1 - i], &b);
      if (n < 0) return 1;
      moved[i] += n;
    }
  }
  printf("%ld %ld\n", moved[0], moved[1]);
  return 0;
}
