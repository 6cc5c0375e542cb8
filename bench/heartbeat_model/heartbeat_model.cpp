// The heartbeat batching in isolation: one Asio I/O thread holds N connections (Unix socket
// pairs), pings each every PERIOD seconds from its own steady_timer and reads its pong; a peer
// thread answers every ping at once (epoll). The timers' first deadlines are spread evenly
// over one period, as connections opened over time are. Mode "exact": each deadline is
// last + PERIOD (skyrelay before the grid); "grid": rounded up with net::heartbeat_due (after).
// Prints the I/O thread's CPU and voluntary context switches (its wake-ups) over the hold.
//
//   g++ -std=c++20 -O2 -Icpp/include bench/heartbeat_model/heartbeat_model.cpp -lpthread \
//       -o heartbeat_model && ./heartbeat_model exact 9000 10 30 && ./heartbeat_model grid 9000 10 30
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/net/heartbeat_grid.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

struct conn {
  asio::local::stream_protocol::socket sock;
  asio::steady_timer timer;
  char buf[64];
  clock_type::time_point due;
  conn(asio::io_context& io, int fd) : sock(io, asio::local::stream_protocol(), fd), timer(io) {}
};

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  const bool grid = std::strcmp(argv[1], "grid") == 0;
  const int n = std::atoi(argv[2]);
  const auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(std::atof(argv[3])));
  const double hold = std::atof(argv[4]);
  if (n <= 0 || n > 9500 || hold <= 0 || hold > 600) return 2;  // bounded: 2 fds a connection
  asio::io_context io(1);
  const int ep = epoll_create1(0);
  std::vector<std::unique_ptr<conn>> conns;
  std::vector<int> peers;
  for (int i = 0; i < n; ++i) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 3;
    conns.push_back(std::make_unique<conn>(io, sv[0]));
    peers.push_back(sv[1]);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = sv[1];
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
  }
  std::atomic<bool> stop{false};
  std::thread peer([&] {  // answers each ping with a pong at once
    std::vector<epoll_event> evs(1024);
    char b[256];
    while (!stop.load()) {
      const int k = epoll_wait(ep, evs.data(), int(evs.size()), 50);
      for (int j = 0; j < k; ++j)
        while (read(evs[j].data.fd, b, sizeof b) > 0) (void)!write(evs[j].data.fd, "po", 2);
    }
  });
  const auto next = [&](clock_type::time_point exact) {
    return grid ? skyrelay::net::heartbeat_due(exact, period) : exact;
  };
  std::function<void(conn&)> arm = [&](conn& c) {
    c.timer.expires_at(next(c.due));
    c.timer.async_wait([&, cp = &c](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code wec;
      cp->sock.write_some(asio::buffer("pi", 2), wec);  // the ping
      cp->due = clock_type::now() + period;
      arm(*cp);
    });
  };
  std::function<void(conn&)> read = [&](conn& c) {
    c.sock.async_read_some(asio::buffer(c.buf), [&, cp = &c](boost::system::error_code ec, std::size_t) {
      if (!ec) read(*cp);
    });
  };
  const auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    conns[i]->due = start + period * i / n;
    arm(*conns[i]);
    read(*conns[i]);
  }
  rusage r0{}, r1{};
  std::atomic<bool> measured{false};
  asio::steady_timer window(io);
  // One period to settle, then the hold is measured on the I/O thread itself.
  window.expires_at(start + period);
  window.async_wait([&](boost::system::error_code) {
    getrusage(RUSAGE_THREAD, &r0);
    window.expires_after(std::chrono::duration_cast<clock_type::duration>(
        std::chrono::duration<double>(hold)));
    window.async_wait([&](boost::system::error_code) {
      getrusage(RUSAGE_THREAD, &r1);
      measured = true;
      io.stop();
    });
  });
  io.run();
  stop = true;
  peer.join();
  const auto cpu = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  const double pings = n * hold / std::chrono::duration<double>(period).count();
  std::printf("{\"mode\":\"%s\",\"connections\":%d,\"period_s\":%.1f,\"hold_s\":%.0f,"
              "\"io_cpu_pct\":%.2f,\"io_wakeups_per_s\":%.1f,\"cpu_us_per_ping\":%.2f}\n",
              grid ? "grid" : "exact", n, std::chrono::duration<double>(period).count(), hold,
              (cpu(r1) - cpu(r0)) / hold * 100, (r1.ru_nvcsw - r0.ru_nvcsw) / hold,
              (cpu(r1) - cpu(r0)) / pings * 1e6);
  return measured ? 0 : 1;
}
