/* forwarder IN OUT: forwards frames of the bench ethertype from IN to OUT (recvmmsg x64 then
 * sendmmsg x64, poll) until none has come for 300 ms after the first; prints "ready", then the
 * number forwarded. */
#include "common.h"

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: forwarder IN OUT\n"); return 2; }
  int in = packet_socket(argv[1], BENCH_TYPE);
  int out = packet_socket(argv[2], 0);
  static struct batch b;
  batch_init(&b);
  printf("ready\n");
  fflush(stdout);
  long forwarded = 0;
  for (;;) {
    struct pollfd p = { in, POLLIN, 0 };
    if (poll(&p, 1, forwarded ? 300 : 30000) == 0) break;
    int n;
    while ((n = recvmmsg(in, b.msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
      for (int i = 0; i < n; i++) b.iov[i].iov_len = b.msgs[i].msg_len;
      int done = 0;
      while (done < n) {
        int r = sendmmsg(out, b.msgs + done, n - done, 0);
        if (r < 0) { if (errno == ENOBUFS || errno == EAGAIN) continue; perror("sendmmsg"); return 1; }
        done += r;
      }
      for (int i = 0; i < n; i++) b.iov[i].iov_len = SLOT;
      forwarded += n;
    }
  }
  printf("%ld\n", forwarded);
  return 0;
}
