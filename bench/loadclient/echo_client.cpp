// Closed-loop echo load client for bench/run_handlers.py: N connections, each sending its next
// request as soon as the answer to the previous one arrives, speaking the wire protocols
// directly (no client library), so that its own ceiling lies far above the servers it drives.
// One thread, raw epoll, like bench/loadclient/loadclient.cpp (which only reads: a fan-out
// client); this one writes a request per answer and checks every answer.
//
//   --proto sio:  Engine.IO v4 / Socket.IO v5 over WebSocket (GET
//                 /socket.io/?EIO=4&transport=websocket). After the 101 it sends the CONNECT
//                 "40", waits for the server's "40{...}", then sends `42<id>["echo",<data>]`
//                 and expects `43<id>[<data>]`: the ack id must be the one outstanding and the
//                 echoed data must carry the request's "seq" and pad. Engine.IO pings ("2") are
//                 answered ("3").
//   --proto json: skyrelay's JSON protocol on /ws: `{"type":"request","id":"<n>","event":"echo",
//                 "data":<data>}` answered by `{"type":"response","id":"<n>","ok":true,
//                 "data":<data>}` (the same checks); other messages (welcome) are skipped.
//
// <data> is `{"seq":<n>,"pad":"x"*40}`, ~64 bytes each way, as bench/echo_load.mjs sends.
// WebSocket pings are answered with pongs. Bounded in time (--seconds, at most 60; the whole run
// at most warmup + seconds + 40 s) and count (--max answers in the window).
//
// Usage: echo_client --proto sio|json --port P [--clients 100] [--warmup 1] [--seconds 5]
//                    [--max 20000000]
// Prints one JSON line: {"answers":n,"seconds":s,"errors":e,"client_cpu_s":c,"connected":k}
// for the measured window (after --warmup), the format of bench/echo_load.mjs plus two fields.

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
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "bench_clock.hpp"

namespace {

using bench::now_ns;
using bench::cpu_seconds;

struct options {
  bool sio = true;
  int port = 0;
  int clients = 100;
  double warmup = 1;
  double seconds = 5;
  std::uint64_t max = 20'000'000;
};

enum class phase : std::uint8_t { heading, joining, running, dead };

struct conn {
  int fd = -1;
  phase step = phase::heading;
  std::string in;          // bytes read and not yet consumed (the head, then frames)
  std::string out;         // bytes the socket did not take yet
  bool want_out = false;   // EPOLLOUT registered
  std::uint64_t id = 0;    // the outstanding request's id (Socket.IO ack id / JSON id)
  std::uint64_t seq = 0;   // its data's "seq"
};

const std::string pad(40, 'x');
const unsigned char mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

// A masked client frame (text, pong or close) around `payload`, appended to `out`.
void append_frame(std::string& out, unsigned char opcode, std::string_view payload) {
  out.push_back(char(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    out.push_back(char(0x80 | n));
  } else {  // requests stay far below 64 KiB
    out.push_back(char(0x80 | 126));
    out.push_back(char(n >> 8));
    out.push_back(char(n & 0xff));
  }
  out.append(reinterpret_cast<const char*>(mask_key), 4);
  const std::size_t at = out.size();
  out.append(payload);
  for (std::size_t i = 0; i < n; ++i) out[at + i] = char(out[at + i] ^ mask_key[i & 3]);
}

// Writes what c.out holds; false when the connection failed.
bool flush(conn& c, int ep, std::uint32_t index) {
  std::size_t sent = 0;
  while (sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + sent, c.out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) { sent += std::size_t(n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;
  }
  c.out.erase(0, sent);
  const bool want = !c.out.empty();
  if (want != c.want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    ev.data.u32 = index;
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = want;
  }
  return true;
}

// The next request of connection `c`, queued in c.out.
void queue_request(const options& o, conn& c) {
  ++c.id;
  ++c.seq;
  char text[160];
  int n;
  if (o.sio)
    n = std::snprintf(text, sizeof text, "42%llu[\"echo\",{\"seq\":%llu,\"pad\":\"%s\"}]",
                      (unsigned long long)c.id, (unsigned long long)c.seq, pad.c_str());
  else
    n = std::snprintf(text, sizeof text,
                      "{\"type\":\"request\",\"id\":\"%llu\",\"event\":\"echo\",\"data\":"
                      "{\"seq\":%llu,\"pad\":\"%s\"}}",
                      (unsigned long long)c.id, (unsigned long long)c.seq, pad.c_str());
  append_frame(c.out, 0x1, std::string_view(text, std::size_t(n)));
}

// Whether the echoed data `d` carries connection c's outstanding seq and the pad. Servers may
// format JSON with or without spaces (json.dumps writes `"seq": 5`), so the value is found
// after the key and any spaces.
bool data_matches(const conn& c, std::string_view d) {
  std::size_t at = d.find("\"seq\":");
  if (at == std::string_view::npos) return false;
  at += 6;
  while (at < d.size() && d[at] == ' ') ++at;
  std::uint64_t v = 0;
  bool any = false;
  while (at < d.size() && d[at] >= '0' && d[at] <= '9') {
    v = v * 10 + std::uint64_t(d[at++] - '0');
    any = true;
  }
  return any && v == c.seq && d.find(pad) != std::string_view::npos;
}

// Reads a decimal number at the front of `s`, advancing it; false if there is none.
bool take_number(std::string_view& s, std::uint64_t& v) {
  v = 0;
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + std::uint64_t(s[i++] - '0');
  s.remove_prefix(i);
  return i > 0;
}

struct stats {
  bool counting = false;
  std::uint64_t answers = 0;
  std::uint64_t errors = 0;
  int running = 0;  // connections in the request loop
};

// One text message from the server. Returns whether the connection should send its next
// request (an answer to the outstanding one arrived).
bool on_text(const options& o, conn& c, std::string_view m, stats& st) {
  if (o.sio) {
    if (m == "2") {  // Engine.IO ping
      append_frame(c.out, 0x1, "3");
      return false;
    }
    if (m.size() >= 2 && m[0] == '4' && m[1] == '0' && c.step == phase::joining) {
      c.step = phase::running;
      ++st.running;
      return true;
    }
    if (m.size() >= 2 && m[0] == '4' && m[1] == '3' && c.step == phase::running) {
      std::string_view rest = m.substr(2);
      std::uint64_t id = 0;
      const bool ok = take_number(rest, id) && id == c.id && !rest.empty() && rest[0] == '[' &&
                      data_matches(c, rest);
      if (!ok) ++st.errors;
      if (st.counting) ++st.answers;
      return true;
    }
    if (m.size() >= 2 && m[0] == '4' && (m[1] == '4' || m[1] == '1')) ++st.errors;  // error, disconnect
    return false;  // the Engine.IO open packet, other events
  }
  if (m.find("\"type\":\"response\"") == std::string_view::npos) return false;  // welcome
  std::size_t at = m.find("\"id\":\"");
  bool ok = at != std::string_view::npos && c.step == phase::running;
  if (ok) {
    std::string_view rest = m.substr(at + 6);
    std::uint64_t id = 0;
    ok = take_number(rest, id) && id == c.id && m.find("\"ok\":true") != std::string_view::npos &&
         data_matches(c, m);
  }
  if (!ok) ++st.errors;
  if (st.counting) ++st.answers;
  return true;
}

// Consumes the complete frames in c.in; false when the connection must end.
bool on_frames(const options& o, conn& c, stats& st, bool& send_next) {
  std::size_t used = 0;
  const std::string& in = c.in;
  while (in.size() - used >= 2) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data() + used);
    std::uint64_t len = p[1] & 0x7F;
    std::size_t head = 2;
    if (len == 126) {
      if (in.size() - used < 4) break;
      len = (std::uint64_t(p[2]) << 8) | p[3];
      head = 4;
    } else if (len == 127) {
      if (in.size() - used < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      head = 10;
    }
    if (in.size() - used < head + len) break;
    const unsigned op = p[0] & 0x0F;
    const std::string_view payload(in.data() + used + head, std::size_t(len));
    used += head + std::size_t(len);
    if (op == 0x1) {
      if (on_text(o, c, payload, st)) send_next = true;
    } else if (op == 0x9) {
      append_frame(c.out, 0xA, payload);
    } else if (op == 0x8) {
      return false;
    }
  }
  c.in.erase(0, used);
  return true;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--proto") {
      if (v != "sio" && v != "json") {
        std::fprintf(stderr, "--proto is sio or json\n");
        std::exit(2);
      }
      o.sio = v == "sio";
    } else if (k == "--port") o.port = std::atoi(v.c_str());
    else if (k == "--clients") o.clients = std::clamp(std::atoi(v.c_str()), 1, 10000);
    else if (k == "--warmup") o.warmup = std::clamp(std::atof(v.c_str()), 0.0, 30.0);
    else if (k == "--seconds") o.seconds = std::clamp(std::atof(v.c_str()), 0.1, 60.0);
    else if (k == "--max") o.max = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (!o.port) {
    std::fprintf(stderr, "--port is required\n");
    std::exit(2);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  const int ep = epoll_create1(0);
  std::vector<conn> conns(std::size_t(o.clients));
  const std::string request =
      std::string("GET ") + (o.sio ? "/socket.io/?EIO=4&transport=websocket" : "/ws") +
      " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(o.port) +
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  // Connecting: blocking connect and request (loopback, a hundred connections), then the
  // socket goes non-blocking into the loop, which reads the head.
  for (std::uint32_t i = 0; i < conns.size(); ++i) {
    conn& c = conns[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(o.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) {
      std::fprintf(stderr, "echo_client: connect %u: %s\n", i, std::strerror(errno));
      return 1;
    }
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  stats st;
  const std::int64_t t_start = now_ns();
  const std::int64_t hard_stop = t_start + std::int64_t((o.warmup + o.seconds + 40) * 1e9);
  std::int64_t all_running = 0, window_start = 0, window_end = 0;
  double cpu0 = 0, cpu1 = 0;
  std::vector<epoll_event> events(1024);
  std::vector<char> buf(1 << 16);
  int dead = 0;
  const auto kill = [&](conn& c) {
    if (c.step == phase::dead) return;
    if (c.step == phase::running) --st.running;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    c.step = phase::dead;
    ++dead;
  };
  for (;;) {
    const std::int64_t now = now_ns();
    if (now > hard_stop) break;
    if (!all_running && st.running == o.clients) all_running = now;
    if (all_running && !window_start && now >= all_running + std::int64_t(o.warmup * 1e9)) {
      window_start = now;
      cpu0 = cpu_seconds();
      st.counting = true;
      st.answers = 0;
      st.errors = 0;
    }
    if (window_start && (now >= window_start + std::int64_t(o.seconds * 1e9) ||
                         st.answers >= o.max)) {
      window_end = now;
      cpu1 = cpu_seconds();
      break;
    }
    if (dead == o.clients) break;
    const int n = epoll_wait(ep, events.data(), int(events.size()), 20);
    for (int k = 0; k < n; ++k) {
      const std::uint32_t i = events[k].data.u32;
      conn& c = conns[i];
      if (c.step == phase::dead) continue;
      if ((events[k].events & EPOLLOUT) && !flush(c, ep, i)) { kill(c); continue; }
      if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      bool ok = true, send_next = false;
      for (;;) {
        const ssize_t r = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          ok = false;
          break;
        }
        if (r < 0) break;
        c.in.append(buf.data(), std::size_t(r));
        if (std::size_t(r) < buf.size()) break;
      }
      if (ok && c.step == phase::heading) {
        const std::size_t end = c.in.find("\r\n\r\n");
        if (end != std::string::npos) {
          if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) {
            std::fprintf(stderr, "echo_client: no upgrade: %.60s\n", c.in.c_str());
            ok = false;
          } else {
            c.in.erase(0, end + 4);
            if (o.sio) {
              c.step = phase::joining;
              append_frame(c.out, 0x1, "40");  // Socket.IO CONNECT to "/"
            } else {  // the JSON protocol needs no join: the first request goes now
              c.step = phase::running;
              ++st.running;
              send_next = true;
            }
          }
        }
      }
      if (ok && c.step != phase::heading) ok = on_frames(o, c, st, send_next);
      // A connection that just joined sends its first request; an answered one its next.
      if (ok && send_next) queue_request(o, c);
      if (ok && !c.out.empty()) ok = flush(c, ep, i);
      if (!ok) kill(c);
    }
  }
  if (!window_end) {
    window_end = now_ns();
    cpu1 = cpu_seconds();
  }
  const double window = window_start ? double(window_end - window_start) / 1e9 : 0.0;
  std::printf("{\"answers\":%llu,\"seconds\":%.3f,\"errors\":%llu,\"client_cpu_s\":%.3f,"
              "\"connected\":%d,\"closed\":%d}\n",
              (unsigned long long)st.answers, window, (unsigned long long)st.errors,
              cpu1 - cpu0, st.running, dead);
  for (auto& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  if (!window_start) {
    std::fprintf(stderr, "echo_client: only %d of %d connections joined\n", st.running,
                 o.clients);
    return 1;
  }
  return 0;
}
