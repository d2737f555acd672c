/* receiver IFNAME: counts frames of the bench ethertype (recvmmsg x64, poll) until none has come
 * for 300 ms after the first; prints "ready" once bound, then the count. */
#include "common.h"

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: receiver IFNAME\n"); return 2; }
  int fd = packet_socket(argv[1], BENCH_TYPE);
  static struct batch b;
  batch_init(&b);
  printf("ready\n");
  fflush(stdout);
  long received = 0;
  for (;;) {
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, received ? 300 : 30000) == 0) break;
    int n;
    while ((n = recvmmsg(fd, b.msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) received += n;
  }
  printf("%ld\n", received);
  return 0;
}
