// WebSocket fan-out load client: opens N connections, reads every frame, counts deliveries and
// measures publish-to-receive latency from the "t" field (CLOCK_MONOTONIC ns) that the server
// under test puts in each payload. One thread, raw epoll: the client must stay cheaper than the
// servers it measures.
//
// Usage: loadclient --port P [--path /ws/bench] [--clients 1000] [--duration 8] [--warmup 2]
//                   [--expect N]   (stop once every connection has N timestamped messages)
// Prints one JSON line with the results.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Latency histogram: 1 us buckets up to 200 ms, then 1 ms buckets up to 120 s (overload runs
// queue for longer than 200 ms; their percentiles stay meaningful, only coarser).
struct histogram {
  static constexpr std::int64_t fine_us = 200'000;
  static constexpr std::int64_t limit_us = 120'000'000;
  std::vector<std::uint64_t> buckets =
      std::vector<std::uint64_t>(std::size_t(fine_us + (limit_us - fine_us) / 1000 + 1), 0);
  std::uint64_t count = 0;
  std::int64_t max_us = 0;
  static std::size_t index(std::int64_t us) {
    if (us < fine_us) return std::size_t(us);
    return std::size_t(fine_us + (std::min(us, limit_us) - fine_us) / 1000);
  }
  static double value(std::size_t i) {
    if (std::int64_t(i) < fine_us) return double(i);
    return double(fine_us + (std::int64_t(i) - fine_us) * 1000);
  }
  void add(std::int64_t us) {
    if (us < 0) us = 0;
    buckets[index(us)]++;
    ++count;
    max_us = std::max(max_us, us);
  }
  double percentile(double p) const {
    if (!count) return 0;
    const auto target = static_cast<std::uint64_t>(p * double(count - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i];
      if (seen >= target) return std::min(value(i), double(max_us));
    }
    return double(max_us);
  }
};

struct conn {
  int fd = -1;
  std::string pending;  // an incomplete frame carried over between reads
  std::uint64_t received = 0;
  bool closed = false;
};

struct options {
  int port = 0;
  std::string path = "/ws/bench";
  int clients = 1000;
  double duration = 8;
  double warmup = 2;
  std::uint64_t expect = 0;  // timestamped messages per connection; 0 = run the full window
  bool socketio = false;  // Engine.IO v4 / Socket.IO v5 over WebSocket instead of plain frames
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") o.port = std::atoi(v.c_str());
    else if (k == "--path") o.path = v;
    else if (k == "--clients") o.clients = std::atoi(v.c_str());
    else if (k == "--duration") o.duration = std::atof(v.c_str());
    else if (k == "--warmup") o.warmup = std::atof(v.c_str());
    else if (k == "--expect") o.expect = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--protocol") o.socketio = v == "socketio";
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); std::exit(2); }
  }
  if (!o.port) { std::fprintf(stderr, "--port is required\n"); std::exit(2); }
  o.duration = std::min(o.duration, 120.0);  // hard cap: every run is bounded
  return o;
}

void raise_fd_limit(int need) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rlim_t(need)) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, need);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void send_masked(int fd, unsigned char opcode, std::string_view payload);

// Blocking connect and WebSocket handshake; returns the fd and any bytes after the response.
int open_ws(const options& o, std::string& leftover) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(std::uint16_t(o.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) { close(fd); return -1; }
  std::string req = "GET " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) { close(fd); return -1; }
  std::string resp;
  char buf[4096];
  while (resp.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) { close(fd); return -1; }
    resp.append(buf, std::size_t(n));
  }
  if (resp.compare(0, 12, "HTTP/1.1 101") != 0) { close(fd); return -1; }
  leftover = resp.substr(resp.find("\r\n\r\n") + 4);
  if (o.socketio) send_masked(fd, 0x1, "40");  // Socket.IO CONNECT to "/"
  tv = {0, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Finds `<token><digits>` at or after `pos` and returns the number, or -1; `pos` ends after the
// digits. The token includes its quotes and colon, so `"t":` does not match `"ts":`.
std::int64_t find_number(std::string_view payload, std::string_view token, std::size_t& pos) {
  while ((pos = payload.find(token, pos)) != std::string_view::npos) {
    pos += token.size();
    std::int64_t v = 0;
    bool any = false;
    while (pos < payload.size() && payload[pos] >= '0' && payload[pos] <= '9') {
      v = v * 10 + (payload[pos++] - '0');
      any = true;
    }
    if (any) return v;
  }
  pos = payload.size();
  return -1;
}

void send_masked(int fd, unsigned char opcode, std::string_view payload) {
  std::string f;
  f.push_back(char(0x80 | opcode));
  f.push_back(char(0x80 | payload.size()));  // control frames only: <= 125 bytes
  const unsigned char key[4] = {1, 2, 3, 4};
  f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(char(payload[i] ^ key[i % 4]));
  (void)send(fd, f.data(), f.size(), MSG_NOSIGNAL);
}

struct stats {
  bool measuring = false;
  std::uint64_t deliveries = 0;
  histogram latency;
  std::int64_t first_ns = 0;
  std::uint64_t expect = 0;
  int complete = 0;  // connections that have received `expect` messages
  std::int64_t seq_lo = INT64_MAX, seq_hi = -1;  // publication numbers seen in the window
};

// Consumes complete frames from `data`; returns the bytes used.
std::size_t consume(conn& c, const char* data, std::size_t n, stats& st) {
  std::size_t used = 0;
  while (n - used >= 2) {
    const auto* p = reinterpret_cast<const unsigned char*>(data + used);
    std::uint64_t len = p[1] & 0x7F;
    std::size_t head = 2;
    if (len == 126) {
      if (n - used < 4) break;
      len = (std::uint64_t(p[2]) << 8) | p[3];
      head = 4;
    } else if (len == 127) {
      if (n - used < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      head = 10;
    }
    if (n - used < head + len) break;
    const unsigned op = p[0] & 0x0F;
    std::string_view payload(data + used + head, std::size_t(len));
    if (op == 0x1) {
      std::size_t pos = 0;
      const std::int64_t t = find_number(payload, "\"t\":", pos);
      if (t > 0) {
        const std::int64_t now = now_ns();
        if (!st.first_ns) st.first_ns = now;
        if (++c.received == st.expect) ++st.complete;
        if (st.measuring) {
          ++st.deliveries;
          st.latency.add((now - t) / 1000);
          // The payload's "seq" (after "t") numbers publications: its span over the window is
          // how many messages the server published in it, delivered to this client or not.
          const std::int64_t seq = find_number(payload, "\"seq\":", pos);
          if (seq >= 0) {
            st.seq_lo = std::min(st.seq_lo, seq);
            st.seq_hi = std::max(st.seq_hi, seq);
          }
        }
      }
      else if (payload == "2") send_masked(c.fd, 0x1, "3");  // Engine.IO ping -> pong
    } else if (op == 0x9) {
      send_masked(c.fd, 0xA, payload);
    } else if (op == 0x8) {
      // Answer the close handshake with the status code echoed; the server then closes TCP.
      if (!c.closed) send_masked(c.fd, 0x8, payload.substr(0, std::min<std::size_t>(payload.size(), 2)));
      c.closed = true;
    }
    used += head + std::size_t(len);
  }
  return used;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  raise_fd_limit(o.clients + 64);
  std::vector<conn> conns(std::size_t(o.clients));
  int epfd = epoll_create1(0);
  stats st;
  st.expect = o.expect;
  int connected = 0;
  std::vector<char> buf(1 << 20);
  for (int i = 0; i < o.clients; ++i) {
    std::string leftover;
    int fd = open_ws(o, leftover);
    if (fd < 0) continue;
    conns[i].fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = std::uint32_t(i);
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    if (!leftover.empty()) conns[i].pending = leftover;
    ++connected;
  }
  std::fprintf(stderr, "loadclient: %d/%d connected\n", connected, o.clients);

  const double cpu_start_total = cpu_seconds();
  const std::int64_t hard_stop = now_ns() + std::int64_t((o.warmup + o.duration + 60) * 1e9);
  std::int64_t measure_start = 0, measure_end = 0;
  double cpu_at_start = 0, cpu_at_end = 0;
  std::vector<epoll_event> events(1024);
  for (;;) {
    const std::int64_t now = now_ns();
    if (now > hard_stop) break;
    if (!measure_start && st.first_ns && now >= st.first_ns + std::int64_t(o.warmup * 1e9)) {
      measure_start = now;
      cpu_at_start = cpu_seconds();
      st.measuring = true;
    }
    const bool all_done = st.expect && connected && st.complete >= connected;
    if (all_done || (measure_start && now >= measure_start + std::int64_t(o.duration * 1e9))) {
      measure_end = now;
      cpu_at_end = cpu_seconds();
      break;
    }
    int n = epoll_wait(epfd, events.data(), int(events.size()), 50);
    for (int k = 0; k < n; ++k) {
      conn& c = conns[events[k].data.u32];
      for (int reads = 0; reads < 4; ++reads) {
        ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
          c.closed = true;
          break;
        }
        if (r < 0) break;
        if (c.pending.empty()) {
          std::size_t used = consume(c, buf.data(), std::size_t(r), st);
          c.pending.assign(buf.data() + used, std::size_t(r) - used);
        } else {
          c.pending.append(buf.data(), std::size_t(r));
          std::size_t used = consume(c, c.pending.data(), c.pending.size(), st);
          c.pending.erase(0, used);
        }
        if (std::size_t(r) < buf.size()) break;
      }
    }
  }
  if (!measure_end) {
    measure_end = now_ns();
    cpu_at_end = cpu_seconds();
  }
  int closed = 0;
  for (auto& c : conns) {
    if (c.closed) ++closed;
    if (c.fd >= 0) close(c.fd);
  }
  const double window = measure_start ? (measure_end - measure_start) / 1e9 : 0.0;
  const std::int64_t published = st.seq_hi >= 0 ? st.seq_hi - st.seq_lo + 1 : 0;
  std::printf(
      "{\"clients\":%d,\"connected\":%d,\"closed_by_server\":%d,\"deliveries\":%llu,"
      "\"duration_s\":%.3f,\"deliveries_per_s\":%.1f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
      "\"p999_us\":%.0f,\"max_us\":%lld,\"client_cpu_s\":%.3f,\"client_cpu_total_s\":%.3f,"
      "\"expect\":%llu,\"complete_clients\":%d,\"published_in_window\":%lld,"
      "\"published_per_s\":%.1f}\n",
      o.clients, connected, closed, (unsigned long long)st.deliveries, window,
      window > 0 ? st.deliveries / window : 0.0, st.latency.percentile(0.50),
      st.latency.percentile(0.99), st.latency.percentile(0.999), (long long)st.latency.max_us,
      cpu_at_end - cpu_at_start, cpu_seconds() - cpu_start_total,
      (unsigned long long)o.expect, st.complete, (long long)published,
      window > 0 ? published / window : 0.0);
  return connected == o.clients ? 0 : 1;
}
