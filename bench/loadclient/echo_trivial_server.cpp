// The trivial echo server: the least a server can do for bench/loadclient/echo_client.cpp, so
// that bench/run_handlers.py measures the echo client's own ceiling beside the servers under
// test (as trivial_server.cpp does for the fan-out client).
//
// One thread, raw epoll, no library, no JSON parsing. It answers any HTTP request with `101
// Switching Protocols` (with the Sec-WebSocket-Accept that client libraries check), unmasks the client's frames, and
// answers each text message by slicing it:
//   --proto sio:  "40" -> `40{"sid":"trivial"}`; `42<id>["echo",<data>]` -> `43<id>[<data>]`
//                 (the text between the first comma and the closing bracket); "3" (pong) and
//                 anything else is dropped;
//   --proto json: a message with `"id":"<n>"` and `"data":<data>}` -> `{"type":"response",
//                 "id":"<n>","ok":true,"data":<data>}`.
// The answers to one read go out in one send().
//
// Usage: echo_trivial_server --port P [--proto sio|json] [--seconds 120]
// Prints READY once listening (the line run_handlers.py waits for); exits after --seconds.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "bench_clock.hpp"

namespace {

using bench::now_ns;

struct conn {
  int fd = -1;
  bool upgraded = false;
  std::string in;
  std::string out;
};

void append_text(std::string& out, std::string_view a, std::string_view b = {},
                 std::string_view c = {}, std::string_view d = {}) {
  const std::size_t n = a.size() + b.size() + c.size() + d.size();
  out.push_back(char(0x81));
  if (n < 126) {
    out.push_back(char(n));
  } else {
    out.push_back(char(126));
    out.push_back(char(n >> 8));
    out.push_back(char(n & 0xff));
  }
  out.append(a).append(b).append(c).append(d);
}

void answer(bool sio, std::string_view m, std::string& out) {
  if (sio) {
    if (m.size() >= 2 && m[0] == '4' && m[1] == '0') {
      append_text(out, "40{\"sid\":\"trivial\"}");
      return;
    }
    if (m.size() < 3 || m[0] != '4' || m[1] != '2') return;
    const std::size_t open = m.find('[');
    const std::size_t comma = m.find(',', open);
    if (open == std::string_view::npos || comma == std::string_view::npos || m.back() != ']')
      return;
    append_text(out, "43", m.substr(2, open - 2), "[", m.substr(comma + 1));
    return;
  }
  const std::size_t id = m.find("\"id\":\"");
  const std::size_t data = m.find("\"data\":");
  if (id == std::string_view::npos || data == std::string_view::npos || m.back() != '}') return;
  const std::size_t id_end = m.find('"', id + 6);
  if (id_end == std::string_view::npos) return;
  append_text(out, "{\"type\":\"response\",\"id\":\"", m.substr(id + 6, id_end - id - 6),
              "\",\"ok\":true,", m.substr(data, m.size() - data));
}

// Answers the complete frames in c.in (unmasking them in place); false on a close frame.
bool on_frames(bool sio, conn& c) {
  std::size_t used = 0;
  std::string& in = c.in;
  while (in.size() - used >= 6) {
    auto* p = reinterpret_cast<unsigned char*>(in.data() + used);
    std::uint64_t len = p[1] & 0x7F;
    std::size_t head = 2;
    if (len == 126) {
      if (in.size() - used < 8) break;
      len = (std::uint64_t(p[2]) << 8) | p[3];
      head = 4;
    } else if (len == 127) {
      return false;  // the benchmark never sends such frames
    }
    const unsigned char* key = p + head;
    head += 4;  // client frames are masked
    if (in.size() - used < head + len) break;
    unsigned char* payload = p + head;
    for (std::size_t i = 0; i < len; ++i) payload[i] ^= key[i & 3];
    const unsigned op = p[0] & 0x0F;
    if (op == 0x8) return false;
    if (op == 0x1)
      answer(sio, std::string_view(reinterpret_cast<char*>(payload), std::size_t(len)), c.out);
    used += head + std::size_t(len);
  }
  in.erase(0, used);
  return true;
}

bool flush(conn& c) {
  std::size_t sent = 0;
  while (sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + sent, c.out.size() - sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) { sent += std::size_t(n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;
  }
  c.out.erase(0, sent);
  return true;
}

// The Sec-WebSocket-Accept for the request head's Sec-WebSocket-Key (RFC 6455 4.2.2): client
// libraries such as `ws` (under socket.io-client) check it.
std::string accept_key(const std::string& head) {
  std::string key;
  for (std::size_t at = head.find("\r\n"); at != std::string::npos;) {
    const std::size_t end = head.find("\r\n", at + 2);
    const std::string line = head.substr(at + 2, end == std::string::npos ? std::string::npos
                                                                           : end - at - 2);
    constexpr std::string_view name = "sec-websocket-key:";
    if (line.size() > name.size() &&
        std::equal(name.begin(), name.end(), line.begin(),
                   [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b); })) {
      key = line.substr(name.size());
      key.erase(0, key.find_first_not_of(' '));
      key.erase(key.find_last_not_of(' ') + 1);
    }
    at = end;
  }
  key += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), std::size_t(n));
}

// Reads what there is; false when the peer is gone.
bool on_readable(bool sio, conn& c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      break;
    }
    c.in.append(buf, std::size_t(n));
    if (std::size_t(n) < sizeof buf) break;
  }
  if (!c.upgraded) {
    const std::size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return true;
    const std::string accept = accept_key(c.in.substr(0, end + 2));
    c.in.erase(0, end + 4);
    c.upgraded = true;
    c.out += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n";
    if (sio)  // the Engine.IO open packet, as a real server sends it first
      append_text(c.out, "0{\"sid\":\"trivial\",\"upgrades\":[],\"pingInterval\":25000,"
                         "\"pingTimeout\":20000,\"maxPayload\":1000000}");
  }
  if (!on_frames(sio, c)) return false;
  return flush(c);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  bool sio = true;
  double seconds = 120;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--port") port = std::atoi(v.c_str());
    else if (k == "--proto") sio = v != "json";
    else if (k == "--seconds") seconds = std::clamp(std::atof(v.c_str()), 1.0, 600.0);
  }
  if (port <= 0) {
    std::fprintf(stderr, "usage: echo_trivial_server --port P [--proto sio|json]\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(std::uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1024) != 0) {
    std::perror("listen");
    return 1;
  }
  const int ep = epoll_create1(0);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  std::printf("READY\n");
  std::fflush(stdout);
  std::vector<conn> conns;  // by fd
  const std::int64_t stop = now_ns() + std::int64_t(seconds * 1e9);
  std::vector<epoll_event> events(1024);
  while (now_ns() < stop) {
    const int n = epoll_wait(ep, events.data(), int(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (cfd < 0) break;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (conns.size() <= std::size_t(cfd)) conns.resize(std::size_t(cfd) + 1);
          conns[std::size_t(cfd)] = conn{};
          conns[std::size_t(cfd)].fd = cfd;
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = cfd;
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      conn& c = conns[std::size_t(fd)];
      if (c.fd < 0) continue;
      if (!on_readable(sio, c)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
      }
    }
  }
  for (auto& c : conns)
    if (c.fd >= 0) ::close(c.fd);
  return 0;
}
