/* sender IFNAME COUNT SIZE [DST]: sends COUNT frames of SIZE bytes to MAC address DST (default
 * broadcast) as fast as it can (sendmmsg x64); prints "<sent> <seconds>". */
#include "common.h"

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) { fprintf(stderr, "usage: sender IFNAME COUNT SIZE [DST]\n"); return 2; }
  unsigned char dst[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
  if (argc == 5 && sscanf(argv[4], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2], &dst[3], &dst[4], &dst[5]) != 6) {
    fprintf(stderr, "sender: bad MAC address %s\n", argv[4]);
    return 2;
  }
  long count = atol(argv[2]);
  int size = atoi(argv[3]);
  int fd = packet_socket(argv[1], 0);
  static struct batch b;
  batch_init(&b);
  for (int i = 0; i < BATCH; i++) {
    memcpy(b.data[i], dst, 6);
    memcpy(b.data[i] + 6, "\x02\x00\x00\x00\x00\x01", 6);
    b.data[i][12] = BENCH_TYPE >> 8;
    b.data[i][13] = BENCH_TYPE & 0xff;
    b.iov[i].iov_len = size;
  }
  double start = now();
  long sent = 0;
  while (sent < count) {
    int n = count - sent < BATCH ? (int) (count - sent) : BATCH;
    int r = sendmmsg(fd, b.msgs, n, 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) { struct pollfd p = { fd, POLLOUT, 0 }; poll(&p, 1, 1); continue; }
      perror("sendmmsg");
      return 1;
    }
    sent += r;
  }
  printf("%ld %.6f\n", sent, now() - start);
  return 0;
}
