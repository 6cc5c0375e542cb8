// The trivial fan-out server: the least a server can do for the load client, so that a run
// measures the load client's own ceiling beside the servers under test.
//
// One thread, raw epoll, no library. It answers any HTTP request with `101 Switching Protocols`
// (the load client checks nothing else), reads and discards whatever the clients send (their
// Socket.IO CONNECT, pongs), and publishes like bench/servers/common.py: in 1 ms ticks, the
// messages due by then at --rate. Each message is encoded once, as the WebSocket text frame a
// real server would send for the chosen protocol (--protocol ws: skyrelay's JSON-protocol event
// envelope; socketio: a Socket.IO EVENT `42["tick",{...}]`), with the same ~100-byte payload
// `{"t":<CLOCK_MONOTONIC ns>,"seq":n,"pad":"x"*60}`, and appended to every connection's
// pending bytes; each connection then gets one send() per tick with all it has pending. A
// connection whose pending bytes pass --max-pending (128 KiB; the socket buffer holds more) has
// the tick's messages dropped (the load client counts only what arrives, as with a
// drop_oldest server).
//
// With --io-uring 1 (a build with liburing) a tick's sends to every connection with nothing
// pending go out in one io_uring submission (MSG_DONTWAIT, so each completes inline; what a
// socket does not take waits in its pending bytes for the epoll path), on registered files (no
// descriptor lookup per send) and a ring with one submitter: the least kernel work a send takes
// here, and so the least any server's write path could do: run_lightload.py runs both modes as the floor of CPU per
// delivery beside the servers under test. Between messages it sleeps until the next one is
// due, so a light load costs no idle ticks.
//
// Usage: trivial_server --port P --clients N --rate R --seconds S [--protocol ws|socketio]
//                       [--io-uring 0|1]
// Prints PUBLISHING once N clients have connected (after their upgrade) and DONE <published>
// at the end, like the Python benchmark servers; the harness passes the same arguments.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "bench_clock.hpp"

#ifdef TRIVIAL_HAVE_LIBURING
#include <liburing.h>
#endif

namespace {

using bench::now_ns;

struct options {
  int port = 0;
  int clients = 1000;
  double rate = 1000;
  double seconds = 10;
  bool socketio = false;
  bool io_uring = false;
  std::size_t max_pending = 128 << 10;  // per connection: enough to keep its socket full
};

struct conn {
  int fd = -1;
  bool upgraded = false;
  std::string head;     // the request until its blank line
  std::string pending;  // bytes not yet taken by the socket
  std::size_t sent = 0;  // of `pending`
  bool registered = false;  // in the ring's file table (--io-uring 1)
};

// An unmasked server-to-client text frame around `payload`.
std::string text_frame(const std::string& payload) {
  std::string f;
  f.push_back(char(0x81));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(char(n));
  } else {
    f.push_back(char(126));
    f.push_back(char(n >> 8));
    f.push_back(char(n & 0xff));
  }
  return f + payload;
}

std::string message(bool socketio, std::uint64_t seq) {
  const std::string data = "{\"t\":" + std::to_string(now_ns()) + ",\"seq\":" +
                           std::to_string(seq) + ",\"pad\":\"" + std::string(60, 'x') + "\"}";
  if (socketio) return text_frame("42[\"tick\"," + data + "]");
  // The shape and size of skyrelay's JSON-protocol event (docs/protocol.md).
  return text_frame("{\"type\":\"event\",\"topic\":\"bench\",\"event\":\"tick\",\"data\":" + data +
                    ",\"id\":" + std::to_string(seq + 1) + ",\"ts\":\"2026-01-01T00:00:00.000000Z\"}");
}

// Writes what `c` has pending; false when the connection is gone.
bool flush(conn& c) {
  while (c.sent < c.pending.size()) {
    const ssize_t n = ::send(c.fd, c.pending.data() + c.sent, c.pending.size() - c.sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    c.sent += std::size_t(n);
  }
  c.pending.clear();
  c.sent = 0;
  return true;
}

// Reads the request head (answering 101 at its end) or discards client frames; false when the
// peer is gone.
bool on_readable(conn& c, int& upgraded) {
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (c.upgraded) continue;
    c.head.append(buf, std::size_t(n));
    if (c.head.find("\r\n\r\n") == std::string::npos) continue;
    c.upgraded = true;
    ++upgraded;
    c.head.clear();
    c.pending = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
    if (!flush(c)) return false;
  }
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") o.port = std::atoi(v.c_str());
    else if (k == "--clients") o.clients = std::atoi(v.c_str());
    else if (k == "--rate") o.rate = std::atof(v.c_str());
    else if (k == "--seconds") o.seconds = std::min(std::atof(v.c_str()), 120.0);
    else if (k == "--protocol") o.socketio = v == "socketio";
    else if (k == "--max-pending") o.max_pending = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--io-uring") o.io_uring = v == "1";
    // the Python servers' other options (--certfile, --broker, ...) do not apply here
  }
  if (o.port <= 0 || o.clients <= 0 || o.rate <= 0) {
    std::fprintf(stderr, "usage: trivial_server --port P --clients N --rate R --seconds S "
                         "[--protocol ws|socketio]\n");
    std::exit(2);
  }
#ifndef TRIVIAL_HAVE_LIBURING
  if (o.io_uring) {
    std::fprintf(stderr, "trivial_server: built without liburing, --io-uring 1 unavailable\n");
    std::exit(2);
  }
#endif
  return o;
}

#ifdef TRIVIAL_HAVE_LIBURING
// One ring; send_all() puts one send per connection in it and submits them together.
class uring_sender {
 public:
  uring_sender() {
    if (const int e = io_uring_queue_init(kEntries, &ring_, IORING_SETUP_SINGLE_ISSUER); e < 0) {
      std::fprintf(stderr, "io_uring_queue_init: %s\n", std::strerror(-e));
      std::exit(1);
    }
    // One slot per descriptor number: a connection's slot is its fd.
    if (const int e = io_uring_register_files_sparse(&ring_, kSlots); e < 0) {
      std::fprintf(stderr, "io_uring_register_files_sparse: %s\n", std::strerror(-e));
      std::exit(1);
    }
  }

  // A new connection's descriptor into its slot (false: no slot, it stays on the epoll path),
  // and out again before it is closed (a registered file keeps its socket open).
  bool enter(int fd) {
    return fd < int(kSlots) && io_uring_register_files_update(&ring_, unsigned(fd), &fd, 1) == 1;
  }
  void leave(int fd) {
    if (fd < 0 || fd >= int(kSlots)) return;
    int none = -1;
    io_uring_register_files_update(&ring_, unsigned(fd), &none, 1);
  }
  ~uring_sender() { io_uring_queue_exit(&ring_); }
  uring_sender(const uring_sender&) = delete;
  uring_sender& operator=(const uring_sender&) = delete;

  // `frame` to each of `fds` (connections with nothing pending). A short or refused send leaves
  // the rest in the connection's pending bytes; returns the connections whose send failed, for
  // the caller to drop.
  const std::vector<int>& send_all(std::vector<conn>& conns, const std::vector<int>& fds,
                                   const std::string& frame) {
    failed_.clear();
    unsigned queued = 0;
    for (const int fd : fds) {
      if (queued == kEntries) {
        reap(conns, frame, queued);
        queued = 0;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_send(sqe, fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      sqe->flags |= IOSQE_FIXED_FILE;  // `fd` is the slot's index
      io_uring_sqe_set_data64(sqe, std::uint64_t(fd));
      ++queued;
    }
    if (queued) reap(conns, frame, queued);
    return failed_;
  }

 private:
  static constexpr unsigned kEntries = 1024;
  static constexpr unsigned kSlots = 8192;

  void reap(std::vector<conn>& conns, const std::string& frame, unsigned n) {
    // MSG_DONTWAIT: every send completes inside the submission, so this waits for nothing.
    if (const int e = io_uring_submit_and_wait(&ring_, n); e < 0) {
      std::fprintf(stderr, "io_uring_submit_and_wait: %s\n", std::strerror(-e));
      std::exit(1);
    }
    io_uring_cqe* cqe = nullptr;
    for (unsigned i = 0; i < n; ++i) {
      if (io_uring_wait_cqe(&ring_, &cqe) < 0) std::exit(1);
      const int fd = int(io_uring_cqe_get_data64(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (res == int(frame.size())) continue;
      if (res >= 0 || res == -EAGAIN) {
        conn& c = conns[std::size_t(fd)];
        c.pending.assign(frame, res > 0 ? std::size_t(res) : 0);
        c.sent = 0;
      } else {
        failed_.push_back(fd);
      }
    }
  }

  io_uring ring_{};
  std::vector<int> failed_;  // of the last send_all
};
#endif

int listen_on(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(std::uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4096) != 0) {
    std::perror("listen");
    std::exit(1);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  const int lfd = listen_on(o.port);
  const int ep = epoll_create1(0);
  epoll_event ev{EPOLLIN, {.fd = lfd}};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::vector<conn> conns;  // by fd
  int upgraded = 0;
  const std::int64_t connect_deadline = now_ns() + 60'000'000'000;
  std::int64_t start = 0;
  std::uint64_t seq = 0;
  std::vector<epoll_event> events(1024);
#ifdef TRIVIAL_HAVE_LIBURING
  std::optional<uring_sender> uring;
  if (o.io_uring) uring.emplace();
  std::vector<int> ready;  // this tick's connections with nothing pending
#endif
  auto drop = [&](conn& c) {
#ifdef TRIVIAL_HAVE_LIBURING
    if (uring && c.registered) uring->leave(c.fd);
#endif
    ::close(c.fd);
    c.fd = -1;
  };
  while (true) {
    const std::int64_t now = now_ns();
    if (!start && upgraded >= o.clients) {
      std::printf("PUBLISHING\n");
      std::fflush(stdout);
      start = now;
    }
    if (!start && now > connect_deadline) {
      std::fprintf(stderr, "only %d of %d clients connected\n", upgraded, o.clients);
      return 1;
    }
    if (start && now - start >= std::int64_t(o.seconds * 1e9)) break;
    if (start) {  // this tick's messages, encoded once, to every connection's pending bytes
      const auto due = std::uint64_t(o.rate * double(now - start) / 1e9) + 1;
      std::string tick;
      for (; seq < due; ++seq) tick += message(o.socketio, seq);
      if (!tick.empty()) {
#ifdef TRIVIAL_HAVE_LIBURING
        ready.clear();
#endif
        for (auto& c : conns)
          if (c.fd >= 0 && c.upgraded && c.pending.size() < o.max_pending) {
#ifdef TRIVIAL_HAVE_LIBURING
            if (uring && c.registered && c.pending.empty()) {
              ready.push_back(c.fd);
              continue;
            }
#endif
            c.pending += tick;
            if (!flush(c)) drop(c);
          }
#ifdef TRIVIAL_HAVE_LIBURING
        if (uring)
          for (const int fd : uring->send_all(conns, ready, tick)) drop(conns[std::size_t(fd)]);
#endif
      }
    }
    // Wait until the next message is due, rounded up to whole milliseconds (while connecting:
    // 50 ms, for the clients).
    int timeout = 50;
    if (start) {
      const auto next_due = start + std::int64_t(double(seq) * 1e9 / o.rate);
      const auto ahead = next_due - now_ns();
      timeout = ahead <= 0 ? 0 : int(std::min<std::int64_t>((ahead + 999'999) / 1'000'000, 1000));
    }
    const int n = epoll_wait(ep, events.data(), int(events.size()), timeout);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        while (true) {
          const int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (cfd < 0) break;
          const int one = 1;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (conns.size() <= std::size_t(cfd)) conns.resize(std::size_t(cfd) + 1);
          conns[std::size_t(cfd)] = conn{};
          conns[std::size_t(cfd)].fd = cfd;
#ifdef TRIVIAL_HAVE_LIBURING
          if (uring) conns[std::size_t(cfd)].registered = uring->enter(cfd);
#endif
          epoll_event cev{EPOLLIN | EPOLLOUT | EPOLLET, {.fd = cfd}};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      conn& c = conns[std::size_t(fd)];
      if (c.fd < 0) continue;
      bool ok = true;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ok = on_readable(c, upgraded);
      if (ok && (events[i].events & EPOLLOUT)) ok = flush(c);
      if (!ok) drop(c);
    }
  }
  std::printf("DONE %llu\n", static_cast<unsigned long long>(seq));
  std::fflush(stdout);
  for (auto& c : conns)
    if (c.fd >= 0) drop(c);
  return 0;
}
