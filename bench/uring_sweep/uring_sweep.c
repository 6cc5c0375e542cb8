// One publication's writes to N loopback TCP connections: N non-blocking sendmsg calls (the
// epoll path) against one io_uring submission of N sends (the io_uring path), interleaved, on
// this thread pinned to one core while a reader thread on another core drains every socket.
// Prints, per path, the sending thread's CPU per send (RUSAGE_THREAD: user + system, softirq
// of the loopback receive included when it runs in the sender's context) and the sweep's wall
// time (how long the last recipient waits). Bounded: --rounds sweeps per path, --gap-ms apart.
//   cc -O2 -o uring_sweep uring_sweep.c -luring -lpthread
//   ./uring_sweep [--conns 1000] [--rounds 200] [--gap-ms 20] [--bytes 110]
#define _GNU_SOURCE
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int conns = 1000, rounds = 200, gap_ms = 20, bytes = 110;
static int *srv, *cli, epfd;
static volatile int done;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}
static double thread_cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}
static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}
static void* reader(void* arg) {
  (void)arg;
  pin(0);
  struct epoll_event ev[256];
  char buf[65536];
  while (!done) {
    int n = epoll_wait(epfd, ev, 256, 100);
    for (int i = 0; i < n; i++)
      while (recv(ev[i].data.fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  }
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--conns")) conns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--gap-ms")) gap_ms = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--bytes")) bytes = atoi(argv[i + 1]);
  }
  pin(1);
  struct rlimit rl = {65536, 65536};
  setrlimit(RLIMIT_NOFILE, &rl);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(ls, (void*)&a, sizeof a) || listen(ls, 4096) || getsockname(ls, (void*)&a, &al)) return 1;
  srv = calloc(conns, sizeof *srv);
  cli = calloc(conns, sizeof *cli);
  epfd = epoll_create1(0);
  int one = 1;
  for (int i = 0; i < conns; i++) {
    cli[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cli[i], (void*)&a, sizeof a)) return 2;
    srv[i] = accept(ls, NULL, NULL);
    setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cli[i]};
    epoll_ctl(epfd, EPOLL_CTL_ADD, cli[i], &ev);
  }
  pthread_t rt;
  pthread_create(&rt, NULL, reader, NULL);
  struct io_uring ring;
  struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
  if (io_uring_queue_init_params(4096, &ring, &p)) return 3;
  char* msg = malloc(bytes);
  memset(msg, 'x', bytes);
  double cpu[2] = {0}, wall[2] = {0}, worst[2] = {0};
  for (int r = 0; r < 2 * rounds; r++) {
    int mode = r % 2;  // 0: sendmsg each, 1: one io_uring submission
    struct timespec gap = {0, gap_ms * 1000000L};
    nanosleep(&gap, NULL);
    double c0 = thread_cpu_s(), t0 = now_s();
    if (mode == 0) {
      for (int i = 0; i < conns; i++) {
        struct iovec v = {msg, (size_t)bytes};
        struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
        sendmsg(srv[i], &m, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
    } else {
      for (int i = 0; i < conns; i++) {
        struct io_uring_sqe* s = io_uring_get_sqe(&ring);
        io_uring_prep_send(s, srv[i], msg, bytes, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      io_uring_submit_and_wait(&ring, conns);
      io_uring_cq_advance(&ring, io_uring_cq_ready(&ring));
    }
    double t1 = now_s(), c1 = thread_cpu_s();
    cpu[mode] += c1 - c0;
    wall[mode] += t1 - t0;
    if (t1 - t0 > worst[mode]) worst[mode] = t1 - t0;
  }
  done = 1;
  pthread_join(rt, NULL);
  const char* names[2] = {"sendmsg each (epoll path)", "one io_uring submission"};
  for (int m = 0; m < 2; m++)
    printf("%-26s CPU %.0f ns/send, sweep of %d: mean %.2f ms, worst %.2f ms\n", names[m],
           cpu[m] / rounds / conns * 1e9, conns, wall[m] / rounds * 1e3, worst[m] * 1e3);
  printf("io_uring / sendmsg, CPU per send: %.2fx\n", cpu[1] / cpu[0]);
  return 0;
}
