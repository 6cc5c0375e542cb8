// Fan-out load client: opens N connections, reads every message, counts deliveries and
// measures publish-to-receive latency from the "t" field (CLOCK_MONOTONIC ns) that the server
// under test puts in each payload. One thread, raw epoll: the client must stay cheaper than the
// servers it measures. It speaks WebSocket (plain frames or Engine.IO/Socket.IO over them) and
// Server-Sent Events (a GET whose response is a text/event-stream, chunked or not), each over
// plain TCP or over TLS (OpenSSL, non-blocking, in the same epoll loop).
//
// Usage: loadclient --port P [--path /ws/bench] [--clients 1000] [--duration 8] [--warmup 2]
//                   [--expect N]   (stop once every connection has N timestamped messages)
//                   [--protocol ws|socketio|sse]
//                   [--tls 1]      (wss / https; the certificate is not verified...)
//                   [--ca FILE]    (...unless a CA file is given: implies --tls, verifies the
//                                   chain and that the certificate names 127.0.0.1)
//                   [--deflate 1]  (offer permessage-deflate; inflate RSV1 messages with zlib)
//                   [--bind-base 127.1.0.1 --bind-count K]  (connection i binds its socket to
//                                   the base address + i % K before connecting, so the
//                                   ephemeral ports of one source address do not run out)
//                   [--hold S]     (keep the connections S seconds longer before the hard stop:
//                                   a connection-scale run holds them idle, then one message)
//                   [--connect-concurrency 64]  (connections being opened at once; each is
//                                   non-blocking in the event loop, which meanwhile serves the
//                                   open ones: pings are answered while thousands more open)
// Prints one JSON line with the results.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

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

// Server-Sent Events read state: the chunked transfer decoding of the response body, then the
// event stream's lines (https://html.spec.whatwg.org/multipage/server-sent-events.html).
struct sse_state {
  enum class chunk_step : std::uint8_t { size, extension, size_lf, data, data_cr, data_lf, done };
  bool chunked = false;          // Transfer-Encoding: chunked (else the body runs to close)
  chunk_step step = chunk_step::size;
  std::uint64_t chunk_left = 0;  // bytes of the current chunk not yet seen
  bool size_digits = false;      // the current size line has a hex digit
  std::string text;              // decoded body not yet split into complete lines
  bool skip_lf = false;          // the last line ended with CR: a following LF belongs to it
  std::string data;              // the current event's data lines, joined with LF, or
  std::string_view data_view;    // its one data line while that is still in `text`
  bool has_data = false;
  bool data_owned = false;       // `data` holds it, not `data_view`
};

struct conn {
  int fd = -1;
  SSL* ssl = nullptr;       // TLS only
  std::string out;          // TLS only: bytes not yet taken by SSL_write
  std::size_t out_try = 0;  // TLS only: the length an SSL_write that must be retried was given
  bool read_wants_write = false;  // TLS only: SSL_read said WANT_WRITE
  bool in_epoll_out = false;      // TLS only: EPOLLOUT is in the registered events
  std::string pending;  // an incomplete frame carried over between reads
  std::uint64_t received = 0;
  bool closed = false;
  sse_state sse;
  // Opening (non-blocking, in the event loop): TCP connect, TLS handshake, request, head.
  enum class phase : std::uint8_t { idle, connecting, handshaking, heading, open, failed };
  phase step = phase::idle;
  std::string head;              // the response head read so far (then freed)
  std::size_t request_sent = 0;  // plain: bytes of the request already sent
  std::int64_t started_ns = 0;   // when its connect began (for the open timeout)
};

struct options {
  int port = 0;
  std::string path = "/ws/bench";
  int clients = 1000;
  double duration = 8;
  double warmup = 2;
  std::uint64_t expect = 0;  // timestamped messages per connection; 0 = run the full window
  bool socketio = false;  // Engine.IO v4 / Socket.IO v5 over WebSocket instead of plain frames
  bool sse = false;       // Server-Sent Events: GET with Accept: text/event-stream
  bool tls = false;       // wss / https
  std::string ca;         // with TLS: verify against this CA file (else no verification)
  bool deflate = false;   // offer permessage-deflate (the server must accept it)
  std::uint32_t bind_base = 0;  // host order; 0: let the kernel pick the source address
  std::uint32_t bind_count = 1;
  double hold = 0;              // seconds added to the hard stop (capped at 3600)
  int connect_concurrency = 64; // connections being opened at once (connect to head)
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
    else if (k == "--tls") o.tls = v != "0";
    else if (k == "--ca") { o.ca = v; o.tls = true; }
    else if (k == "--deflate") o.deflate = v != "0";
    else if (k == "--bind-base") {
      in_addr a{};
      if (inet_pton(AF_INET, v.c_str(), &a) != 1) {
        std::fprintf(stderr, "--bind-base wants an IPv4 address\n");
        std::exit(2);
      }
      o.bind_base = ntohl(a.s_addr);
    }
    else if (k == "--bind-count") o.bind_count = std::uint32_t(std::max(1, std::atoi(v.c_str())));
    else if (k == "--hold") o.hold = std::clamp(std::atof(v.c_str()), 0.0, 3600.0);
    else if (k == "--connect-concurrency")
      o.connect_concurrency = std::clamp(std::atoi(v.c_str()), 1, 100000);
    else if (k == "--protocol") {
      if (v != "ws" && v != "socketio" && v != "sse") {
        std::fprintf(stderr, "--protocol is ws, socketio or sse\n");
        std::exit(2);
      }
      o.socketio = v == "socketio";
      o.sse = v == "sse";
    }
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); std::exit(2); }
  }
  if (!o.port) { std::fprintf(stderr, "--port is required\n"); std::exit(2); }
  o.duration = std::min(o.duration, 120.0);  // hard cap: every run is bounded
  return o;
}

// Raises the soft descriptor limit toward `need`, up to the hard limit (raising the hard
// limit needs CAP_SYS_RESOURCE); says so when even that is too few.
void raise_fd_limit(int need) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rlim_t(need)) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, need);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < rlim_t(need))
    std::fprintf(stderr, "loadclient: RLIMIT_NOFILE hard limit %llu < %d needed\n",
                 (unsigned long long)rl.rlim_max, need);
}

void send_masked(conn& c, unsigned char opcode, std::string_view payload);
std::string masked_frame(unsigned char opcode, std::string_view payload);

bool header_has(std::string_view head, std::string_view name, std::string_view value);

// The client side TLS context: TLS 1.2 or 1.3, OpenSSL's defaults otherwise. Without a CA
// file the server's certificate is not verified (a benchmark on loopback against a throwaway
// self-signed certificate); with one, the chain and the name 127.0.0.1 are.
SSL_CTX* make_tls_context(const options& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Read ahead: OpenSSL takes what the socket has, up to its buffer, in one recv, instead of a
  // recv for each record header and another for its body.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!o.ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.ca.c_str(), nullptr) != 1) {
      SSL_CTX_free(ctx);
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), "127.0.0.1");
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

void close_conn(conn& c) {
  if (c.ssl) SSL_free(c.ssl);
  c.ssl = nullptr;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
}

char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? char(ch - 'A' + 'a') : ch; }

// Whether the response head has a field `name` (lower case) whose value contains `value`
// (lower case), both compared without regard to case.
bool header_has(std::string_view head, std::string_view name, std::string_view value) {
  std::size_t at = head.find("\r\n");
  while (at != std::string_view::npos) {
    const std::size_t start = at + 2;
    const std::size_t end = std::min(head.find("\r\n", start), head.size());
    const std::string_view line = head.substr(start, end - start);
    const std::size_t colon = line.find(':');
    if (colon == name.size() &&
        std::equal(name.begin(), name.end(), line.begin(),
                   [](char a, char b) { return a == lower(b); })) {
      std::string v(line.substr(colon + 1));
      std::transform(v.begin(), v.end(), v.begin(), lower);
      if (v.find(value) != std::string::npos) return true;
    }
    at = end < head.size() ? end : std::string_view::npos;
  }
  return false;
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

std::string masked_frame(unsigned char opcode, std::string_view payload) {
  std::string f;
  f.push_back(char(0x80 | opcode));
  f.push_back(char(0x80 | payload.size()));  // control frames only: <= 125 bytes
  const unsigned char key[4] = {1, 2, 3, 4};
  f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(char(payload[i] ^ key[i % 4]));
  return f;
}

int g_epfd = -1;  // the event loop's epoll fd (TLS writes that must wait add EPOLLOUT)

// EPOLLIN, plus EPOLLOUT while a TLS connection has bytes to write or a read that waits for
// the socket to take some. Level-triggered: EPOLLOUT is only registered while needed.
void tls_update_events(conn& c, std::uint32_t index) {
  const bool want_out = !c.out.empty() || c.read_wants_write;
  if (want_out == c.in_epoll_out) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0u);
  ev.data.u32 = index;
  epoll_ctl(g_epfd, EPOLL_CTL_MOD, c.fd, &ev);
  c.in_epoll_out = want_out;
}

// Writes what c.out holds through TLS. An SSL_write that says WANT_WRITE or WANT_READ must be
// repeated with the same bytes (their address may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
// so its length is kept in out_try. Returns false when the connection failed.
bool tls_flush(conn& c) {
  while (!c.out.empty()) {
    const std::size_t len = c.out_try ? c.out_try : std::min<std::size_t>(c.out.size(), 1 << 20);
    ERR_clear_error();
    const int r = SSL_write(c.ssl, c.out.data(), int(len));
    if (r > 0) {
      c.out.erase(0, std::size_t(r));
      c.out_try = 0;
      continue;
    }
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      c.out_try = len;
      return true;
    }
    return false;
  }
  return true;
}

// A pong, close or Engine.IO pong: plain connections send it at once (as before: a control
// frame into an idle socket buffer); TLS ones queue it behind any write still waiting.
void send_masked(conn& c, unsigned char opcode, std::string_view payload) {
  const std::string f = masked_frame(opcode, payload);
  if (!c.ssl) {
    (void)send(c.fd, f.data(), f.size(), MSG_NOSIGNAL);
    return;
  }
  c.out.append(f);
  if (!c.out_try && !tls_flush(c)) c.closed = true;
}

struct stats {
  bool measuring = false;
  std::uint64_t deliveries = 0;
  histogram latency;
  std::int64_t first_ns = 0;
  std::uint64_t expect = 0;
  int complete = 0;  // connections that have received `expect` messages
  std::int64_t seq_lo = INT64_MAX, seq_hi = -1;  // publication numbers seen in the window
  std::int64_t read_ns = 0;  // when the read being parsed returned: the receipt time
  std::uint64_t wire_bytes = 0;  // bytes read in the measured window (plain TCP)
  std::uint64_t compressed = 0;  // messages that came compressed (RSV1), in the window
};

// A permessage-deflate message inflated (the server compresses each one on its own, so the
// state is reset every time); empty on an error.
std::string_view inflate_message(std::string_view payload) {
  static z_stream z{};
  static bool ready = false;
  static std::string out;
  if (!ready) ready = inflateInit2(&z, -15) == Z_OK;
  else inflateReset(&z);
  static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
  std::string in(payload);
  in.append(reinterpret_cast<const char*>(tail), 4);
  out.resize(std::max<std::size_t>(out.size(), in.size() * 8 + 1024));
  z.next_in = reinterpret_cast<Bytef*>(in.data());
  z.avail_in = uInt(in.size());
  std::size_t produced = 0;
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = uInt(out.size() - produced);
    const int rc = inflate(&z, Z_SYNC_FLUSH);
    produced = out.size() - z.avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return {};
    if (z.avail_in == 0 && z.avail_out != 0) break;
    out.resize(out.size() * 2);
  }
  return std::string_view(out.data(), produced);
}

// Counts one message if it carries the timestamp token: a delivery, its latency, and the span
// of publication numbers. Returns whether it did.
bool count_message(conn& c, std::string_view payload, stats& st) {
  std::size_t pos = 0;
  const std::int64_t t = find_number(payload, "\"t\":", pos);
  if (t <= 0) return false;
  const std::int64_t now = st.read_ns;
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
  return true;
}

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
    if (p[0] & 0x40) {  // RSV1: permessage-deflate
      payload = inflate_message(payload);
      if (st.measuring) ++st.compressed;
    }
    if (op == 0x1) {
      if (!count_message(c, payload, st) && payload == "2")
        send_masked(c, 0x1, "3");  // Engine.IO ping -> pong
    } else if (op == 0x9) {
      send_masked(c, 0xA, payload);
    } else if (op == 0x8) {
      // Answer the close handshake with the status code echoed; the server then closes TCP.
      if (!c.closed) send_masked(c, 0x8, payload.substr(0, std::min<std::size_t>(payload.size(), 2)));
      c.closed = true;
    }
    used += head + std::size_t(len);
  }
  return used;
}

// One complete line of an event stream, without its line end: a blank line ends the event (one
// delivery when its data carries the timestamp), "data" lines gather, comments (keep-alives)
// and the other fields (event, id, retry) do not matter for counting.
void sse_line(conn& c, std::string_view line, stats& st) {
  sse_state& s = c.sse;
  if (line.empty()) {
    if (s.has_data) count_message(c, s.data_owned ? std::string_view(s.data) : s.data_view, st);
    s.data.clear();
    s.has_data = s.data_owned = false;
    return;
  }
  if (line[0] == ':') return;
  const std::size_t colon = line.find(':');
  if (line.substr(0, colon) != "data") return;
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  if (!s.has_data) {  // the usual event has one data line: read it where it is
    s.data_view = value;
    s.has_data = true;
    return;
  }
  if (!s.data_owned) s.data.assign(s.data_view);
  s.data_owned = true;
  s.data.push_back('\n');
  s.data.append(value);
}

// Splits the decoded body into lines (CRLF, LF or CR ends one, also across reads) and keeps
// the incomplete last line. memchr finds the line ends: a byte loop here was a third of the
// client's CPU at 10^6 events/s.
void sse_lines(conn& c, stats& st) {
  sse_state& s = c.sse;
  const char* p = s.text.data();
  const std::size_t n = s.text.size();
  std::size_t start = 0;
  if (s.skip_lf && n) {
    if (p[0] == '\n') start = 1;
    s.skip_lf = false;
  }
  const auto find = [&](char ch, std::size_t from) {
    const void* hit = std::memchr(p + from, ch, n - from);
    return hit ? std::size_t(static_cast<const char*>(hit) - p) : n;
  };
  std::size_t next_lf = find('\n', start), next_cr = find('\r', start);
  while (start < n) {
    if (next_lf < start) next_lf = find('\n', start);
    if (next_cr < start) next_cr = find('\r', start);
    const std::size_t end = std::min(next_lf, next_cr);
    if (end == n) break;
    sse_line(c, std::string_view(p + start, end - start), st);
    start = end + 1;
    if (p[end] == '\r') {
      if (start == n) s.skip_lf = true;
      else if (p[start] == '\n') ++start;
    }
  }
  if (s.has_data && !s.data_owned) {  // the event goes on in the next read: keep its data
    s.data.assign(s.data_view);
    s.data_owned = true;
  }
  s.text.erase(0, start);
}

int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// Takes response body bytes as they arrive: undoes the chunked transfer coding (size line,
// data, CRLF; extensions skipped; the zero-size chunk ends the stream) when the response has
// it, then reads the event stream. Returns false when the stream ended or broke.
bool sse_body(conn& c, const char* data, std::size_t n, stats& st) {
  using step = sse_state::chunk_step;
  sse_state& s = c.sse;
  if (!s.chunked) {
    s.text.append(data, n);
    sse_lines(c, st);
    return true;
  }
  bool ok = true;
  for (std::size_t i = 0; i < n && ok && s.step != step::done;) {
    if (s.step == step::data) {
      const std::size_t take = std::size_t(std::min<std::uint64_t>(s.chunk_left, n - i));
      s.text.append(data + i, take);
      i += take;
      s.chunk_left -= take;
      if (!s.chunk_left) s.step = step::data_cr;
      continue;
    }
    const char ch = data[i++];
    switch (s.step) {
      case step::size:
        if (const int d = hex_digit(ch); d >= 0 && s.chunk_left < (1ull << 40)) {
          s.chunk_left = s.chunk_left * 16 + std::uint64_t(d);
          s.size_digits = true;
          break;
        }
        if (ch == ';' || ch == ' ' || ch == '\t') s.step = step::extension;
        else if (ch == '\r') s.step = step::size_lf;
        else ok = false;
        break;
      case step::extension:
        if (ch == '\r') s.step = step::size_lf;
        break;
      case step::size_lf:
        if (ch != '\n' || !s.size_digits) { ok = false; break; }
        s.size_digits = false;
        s.step = s.chunk_left ? step::data : step::done;
        break;
      case step::data_cr:
        if (ch == '\r') s.step = step::data_lf;
        else ok = false;
        break;
      case step::data_lf:
        if (ch == '\n') s.step = step::size;
        else ok = false;
        break;
      case step::data:
      case step::done:
        break;
    }
  }
  sse_lines(c, st);
  if (!ok) std::fprintf(stderr, "loadclient: bad chunked encoding on fd %d\n", c.fd);
  return ok && s.step != step::done;
}

// Takes bytes read from a connection: frames for WebSocket, the response body for SSE.
// Returns false when an SSE stream ended or broke.
inline bool feed(conn& c, const char* data, std::size_t n, stats& st, const options& o) {
  if (o.sse) return sse_body(c, data, n, st);
  if (c.pending.empty()) {
    const std::size_t used = consume(c, data, n, st);
    c.pending.assign(data + used, n - used);
  } else {
    c.pending.append(data, n);
    const std::size_t used = consume(c, c.pending.data(), c.pending.size(), st);
    c.pending.erase(0, used);
  }
  return true;
}

enum class tls_result : std::uint8_t { idle, more, ended };

// A TLS connection is ready (or has decrypted bytes OpenSSL holds, which epoll cannot see):
// writes what waits, then reads records until OpenSSL wants the socket again, at most 64
// records a turn so that one busy connection cannot starve the others. `more` means bytes are
// left inside OpenSSL: the caller comes back without waiting for epoll.
tls_result tls_ready(conn& c, std::uint32_t index, char* buf, std::size_t cap, stats& st,
                     const options& o) {
  if (!c.out.empty() && !tls_flush(c)) return tls_result::ended;
  for (int reads = 0; reads < 64; ++reads) {
    ERR_clear_error();
    const int r = SSL_read(c.ssl, buf, int(std::min<std::size_t>(cap, 1 << 30)));
    if (r > 0) {
      st.read_ns = now_ns();
      if (!feed(c, buf, std::size_t(r), st, o)) return tls_result::ended;
      continue;
    }
    switch (SSL_get_error(c.ssl, r)) {
      case SSL_ERROR_WANT_READ:
        c.read_wants_write = false;
        tls_update_events(c, index);
        return tls_result::idle;
      case SSL_ERROR_WANT_WRITE:  // e.g. a TLS 1.3 KeyUpdate answer the socket cannot take yet
        c.read_wants_write = true;
        tls_update_events(c, index);
        return tls_result::idle;
      default:  // close_notify, a reset, or a TLS error
        return tls_result::ended;
    }
  }
  tls_update_events(c, index);
  return SSL_has_pending(c.ssl) ? tls_result::more : tls_result::idle;
}


// ---- Opening connections, non-blocking, inside the event loop ----------------------------

std::string request_text(const options& o) {
  if (o.sse)
    return "GET " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\n\r\n";
  return "GET " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n" +
         std::string(o.deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "") + "\r\n";
}

void set_events(conn& c, std::uint32_t index, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u32 = index;
  epoll_ctl(g_epfd, EPOLL_CTL_MOD, c.fd, &ev);
  c.in_epoll_out = (events & EPOLLOUT) != 0;
}

// Starts opening connection `index`: a non-blocking socket bound to its source address,
// connecting. Returns false when that already failed.
bool start_open(const options& o, conn& c, std::uint32_t index) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  c.fd = fd;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (o.bind_base) {
    // IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, per (source, destination), not
    // reserved at bind, so each source address offers its whole ephemeral range.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(o.bind_base + index % o.bind_count);
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(std::uint16_t(o.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)
    return false;
  c.step = conn::phase::connecting;
  c.started_ns = now_ns();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = index;
  c.in_epoll_out = true;
  return epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

enum class open_result : std::uint8_t { pending, open, failed };

bool head_complete(const conn& c) { return c.head.find("\r\n\r\n") != std::string::npos; }

// Reads the response head: false on a failure, true with c.step still `heading` while it waits.
bool read_head(conn& c, std::uint32_t index, const std::string& request) {
  char buf[4096];
  if (!c.ssl) {
    while (c.request_sent < request.size()) {
      const ssize_t n = send(c.fd, request.data() + c.request_sent,
                             request.size() - c.request_sent, MSG_NOSIGNAL);
      if (n > 0) { c.request_sent += std::size_t(n); continue; }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        set_events(c, index, EPOLLIN | EPOLLOUT);
        return true;
      }
      return false;
    }
    while (!head_complete(c)) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) { c.head.append(buf, std::size_t(n)); continue; }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (c.in_epoll_out) set_events(c, index, EPOLLIN);
        return true;
      }
      return false;
    }
    return true;
  }
  if (!c.out.empty() && !tls_flush(c)) return false;
  while (!head_complete(c)) {
    ERR_clear_error();
    const int n = SSL_read(c.ssl, buf, int(sizeof buf));
    if (n > 0) { c.head.append(buf, std::size_t(n)); continue; }
    const int e = SSL_get_error(c.ssl, n);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return false;
    const bool want_out = e == SSL_ERROR_WANT_WRITE || !c.out.empty();
    if (want_out != c.in_epoll_out) set_events(c, index, EPOLLIN | (want_out ? EPOLLOUT : 0u));
    return true;
  }
  return true;
}

// Moves connection `index` on when its socket is ready: connect done, TLS handshake, request,
// response head (checked: 101 with the offered extension, or 200 text/event-stream), and the
// Socket.IO CONNECT. Bytes after the head are fed as the stream's first.
open_result advance_open(const options& o, SSL_CTX* tls, conn& c, std::uint32_t index,
                         const std::string& request, stats& st) {
  using phase = conn::phase;
  if (c.step == phase::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
      return open_result::failed;
    sockaddr_in peer{};
    socklen_t plen = sizeof peer;
    if (getpeername(c.fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0)
      return open_result::pending;  // not connected yet
    if (tls) {
      c.ssl = SSL_new(tls);
      if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) return open_result::failed;
      c.step = phase::handshaking;
    } else {
      c.step = phase::heading;
    }
  }
  if (c.step == phase::handshaking) {
    ERR_clear_error();
    const int r = SSL_connect(c.ssl);
    if (r != 1) {
      const int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        const bool want_out = e == SSL_ERROR_WANT_WRITE;
        if (want_out != c.in_epoll_out) set_events(c, index, EPOLLIN | (want_out ? EPOLLOUT : 0u));
        return open_result::pending;
      }
      static bool told = false;  // the first failure says why; the count comes at the end
      if (!told) ERR_print_errors_fp(stderr);
      told = true;
      ERR_clear_error();
      return open_result::failed;
    }
    c.out = request;  // written by tls_flush in read_head
    c.step = phase::heading;
  }
  if (!read_head(c, index, request)) return open_result::failed;
  if (!head_complete(c)) return open_result::pending;
  const std::size_t head_end = c.head.find("\r\n\r\n");
  const std::string_view head(c.head.data(), head_end);
  if (o.sse) {
    if (c.head.compare(0, 12, "HTTP/1.1 200") != 0 ||
        !header_has(head, "content-type", "text/event-stream"))
      return open_result::failed;
    c.sse.chunked = header_has(head, "transfer-encoding", "chunked");
  } else if (c.head.compare(0, 12, "HTTP/1.1 101") != 0 ||
             (o.deflate && !header_has(head, "sec-websocket-extensions", "permessage-deflate"))) {
    return open_result::failed;
  }
  const std::string leftover = c.head.substr(head_end + 4);
  std::string().swap(c.head);
  c.step = phase::open;
  if (o.socketio) send_masked(c, 0x1, "40");  // Socket.IO CONNECT to "/"
  if (c.closed) return open_result::failed;
  const bool want_out = c.ssl && !c.out.empty();
  if (want_out != c.in_epoll_out) set_events(c, index, EPOLLIN | (want_out ? EPOLLOUT : 0u));
  c.read_wants_write = false;
  st.read_ns = now_ns();
  if (!leftover.empty() && !feed(c, leftover.data(), leftover.size(), st, o))
    return open_result::failed;
  return open_result::open;
}
}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  raise_fd_limit(o.clients + 64);
  std::vector<conn> conns(std::size_t(o.clients));
  int epfd = epoll_create1(0);
  g_epfd = epfd;
  SSL_CTX* tls = nullptr;
  if (o.tls && !(tls = make_tls_context(o))) {
    ERR_print_errors_fp(stderr);
    std::fprintf(stderr, "loadclient: cannot set up TLS (CA file %s)\n", o.ca.c_str());
    return 2;
  }
  std::string tls_version, tls_cipher;  // as negotiated on the first connection
  // OpenSSL writes to the socket with write(2), not send(MSG_NOSIGNAL): a pong or close echo
  // to a server that has just closed must fail with EPIPE, not end the client.
  if (tls) std::signal(SIGPIPE, SIG_IGN);
  stats st;
  st.expect = o.expect;
  int connected = 0, failed = 0, in_flight = 0;
  std::vector<char> buf(1 << 20);
  const std::string request = request_text(o);
  // TLS connections whose records OpenSSL holds already decrypted or read ahead: epoll will
  // not report them, so they are served without waiting (each one as it opens, at first).
  std::vector<std::uint32_t> tls_more, tls_next;
  const auto tls_turn = [&](std::uint32_t i) {
    conn& c = conns[i];
    if (c.closed && c.fd < 0) return;
    switch (tls_ready(c, i, buf.data(), buf.size(), st, o)) {
      case tls_result::ended:
        epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
        close_conn(c);
        c.closed = true;
        break;
      case tls_result::more:
        tls_next.push_back(i);
        break;
      case tls_result::idle:
        break;
    }
  };

  // Opening: at most --connect-concurrency connections between connect() and their handshake's
  // end at a time, each moved on by its socket's events in the loop below, which meanwhile
  // serves the connections already open (pings, Engine.IO pings). One that has not opened
  // within 10 s fails.
  constexpr std::int64_t open_timeout_ns = 10'000'000'000;
  std::uint32_t next_open = 0;
  std::vector<std::uint32_t> opening;  // in start order: the oldest first, for the timeout
  std::size_t opening_head = 0;
  const std::int64_t connect_start = now_ns();
  double connect_s = -1;
  const auto fail_open = [&](std::uint32_t i) {
    conn& c = conns[i];
    if (c.fd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
    close_conn(c);
    c.step = conn::phase::failed;
    c.closed = true;
    ++failed;
  };
  const auto opened = [&](std::uint32_t i, open_result r) {
    if (r == open_result::pending) return;
    --in_flight;
    if (r == open_result::failed) return fail_open(i);
    ++connected;
    if (conns[i].ssl) {
      if (tls_version.empty()) {
        tls_version = SSL_get_version(conns[i].ssl);
        tls_cipher = SSL_get_cipher_name(conns[i].ssl);
      }
      tls_next.push_back(i);  // OpenSSL may hold records read ahead with the head
    }
  };
  const auto open_more = [&](std::int64_t now) {
    while (opening_head < opening.size()) {  // time out the oldest that are still opening
      conn& c = conns[opening[opening_head]];
      const bool busy = c.step == conn::phase::connecting ||
                        c.step == conn::phase::handshaking || c.step == conn::phase::heading;
      if (busy && now - c.started_ns < open_timeout_ns) break;
      if (busy) {
        --in_flight;
        fail_open(opening[opening_head]);
      }
      ++opening_head;
    }
    if (opening_head > 4096 && opening_head * 2 > opening.size()) {
      opening.erase(opening.begin(), opening.begin() + std::ptrdiff_t(opening_head));
      opening_head = 0;
    }
    while (in_flight < o.connect_concurrency && next_open < conns.size()) {
      const std::uint32_t i = next_open++;
      if (!start_open(o, conns[i], i)) {
        fail_open(i);
        continue;
      }
      ++in_flight;
      opening.push_back(i);
    }
    if (connect_s < 0 && connected + failed == o.clients) {
      connect_s = (now_ns() - connect_start) / 1e9;
      std::fprintf(stderr, "loadclient: %d/%d connected in %.3f s (%d failed)\n", connected,
                   o.clients, connect_s, failed);
    }
  };
  // Events of a connection not open yet move its opening on; true when it took the event.
  const auto opening_event = [&](std::uint32_t i) {
    conn& c = conns[i];
    if (c.step == conn::phase::open) return false;
    if (c.step == conn::phase::connecting || c.step == conn::phase::handshaking ||
        c.step == conn::phase::heading)
      opened(i, advance_open(o, tls, c, i, request, st));
    return true;
  };

  const double cpu_start_total = cpu_seconds();
  // Bounded: the opening gets 60 s plus 10 ms per connection (at most an hour) on top.
  const double open_budget = std::min(3600.0, 60.0 + o.clients * 0.01);
  const std::int64_t hard_stop =
      now_ns() + std::int64_t((o.warmup + o.duration + o.hold + 60 + open_budget) * 1e9);
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
    open_more(now);
    const bool all_done = st.expect && connect_s >= 0 && connected && st.complete >= connected;
    if (all_done || (measure_start && now >= measure_start + std::int64_t(o.duration * 1e9))) {
      measure_end = now;
      cpu_at_end = cpu_seconds();
      break;
    }
    int n = epoll_wait(epfd, events.data(), int(events.size()), tls_more.empty() ? 50 : 0);
    if (tls) {
      tls_next.clear();
      for (int k = 0; k < n; ++k)
        if (!opening_event(events[k].data.u32)) tls_turn(events[k].data.u32);
      for (const std::uint32_t i : tls_more) tls_turn(i);  // may serve one twice: harmless
      std::swap(tls_more, tls_next);
      continue;
    }
    for (int k = 0; k < n; ++k) {
      if (opening_event(events[k].data.u32)) continue;
      conn& c = conns[events[k].data.u32];
      if (c.fd < 0 || c.closed) continue;
      for (int reads = 0; reads < 4; ++reads) {
        ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
          c.closed = true;
          break;
        }
        if (r < 0) break;
        st.read_ns = now_ns();
        if (st.measuring) st.wire_bytes += std::size_t(r);
        if (o.sse) {
          if (!sse_body(c, buf.data(), std::size_t(r), st)) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
            c.closed = true;
            break;
          }
        } else if (c.pending.empty()) {
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
    close_conn(c);
  }
  if (tls) SSL_CTX_free(tls);
  const double window = measure_start ? (measure_end - measure_start) / 1e9 : 0.0;
  const std::int64_t published = st.seq_hi >= 0 ? st.seq_hi - st.seq_lo + 1 : 0;
  std::printf(
      "{\"clients\":%d,\"connected\":%d,\"closed_by_server\":%d,\"deliveries\":%llu,"
      "\"duration_s\":%.3f,\"deliveries_per_s\":%.1f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
      "\"p999_us\":%.0f,\"max_us\":%lld,\"client_cpu_s\":%.3f,\"client_cpu_total_s\":%.3f,"
      "\"expect\":%llu,\"complete_clients\":%d,\"published_in_window\":%lld,"
      "\"published_per_s\":%.1f",
      o.clients, connected, closed - failed, (unsigned long long)st.deliveries, window,
      window > 0 ? st.deliveries / window : 0.0, st.latency.percentile(0.50),
      st.latency.percentile(0.99), st.latency.percentile(0.999), (long long)st.latency.max_us,
      cpu_at_end - cpu_at_start, cpu_seconds() - cpu_start_total,
      (unsigned long long)o.expect, st.complete, (long long)published,
      window > 0 ? published / window : 0.0);
  std::printf(",\"wire_bytes\":%llu,\"compressed_messages\":%llu,\"connect_s\":%.3f,"
              "\"failed_to_open\":%d,\"connect_concurrency\":%d",
              (unsigned long long)st.wire_bytes, (unsigned long long)st.compressed, connect_s,
              failed, o.connect_concurrency);
  if (o.tls)
    std::printf(",\"tls\":true,\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",\"tls_verified\":%s",
                tls_version.c_str(), tls_cipher.c_str(), o.ca.empty() ? "false" : "true");
  std::printf("}\n");
  return connected == o.clients ? 0 : 1;
}
