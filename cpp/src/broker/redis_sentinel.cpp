#include "redis_sentinel.hpp"

#include <charconv>

namespace skyrelay::redis {
namespace {

constexpr std::chrono::milliseconds sentinel_connect_timeout{2'000};

struct search {
  boost::asio::any_io_executor ex;
  redis_url url;
  locate_tracker track;
  locate_handler done;
  std::size_t next = 0;
  std::string why;
};

std::string where(const redis_endpoint& e) { return e.host + ":" + std::to_string(e.port); }

void ask_next(const std::shared_ptr<search>& s);

void note_and_go_on(const std::shared_ptr<search>& s, std::string what) {
  if (!s->why.empty()) s->why += "; ";
  s->why += std::move(what);
  ask_next(s);
}

std::optional<redis_endpoint> parse_answer(const redis_value& v) {
  if (v.type != redis_value::kind::array || v.elements.size() != 2) return std::nullopt;
  const std::string& port = v.elements[1].str;
  unsigned n = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (ec != std::errc() || p != port.data() + port.size() || n == 0 || n > 65535 ||
      v.elements[0].str.empty())
    return std::nullopt;
  return redis_endpoint{v.elements[0].str, static_cast<std::uint16_t>(n)};
}

// ROLE on the server a sentinel named: its first element says master or slave.
void check_role(const std::shared_ptr<search>& s, const std::string& sentinel,
                redis_endpoint master) {
  redis_connection::options co;
  co.url = s->url;
  co.url.sentinels.clear();
  co.url.host = master.host;
  co.url.port = master.port;
  co.url.db = 0;
  co.connect_timeout = sentinel_connect_timeout;
  auto c = redis_connection::create(s->ex, co);
  if (!s->track(c)) return;
  const std::string label = where(master) + " (named by sentinel " + sentinel + ")";
  c->start([s, c, label, master](std::error_code ec) {
    if (ec) return note_and_go_on(s, label + ": " + ec.message());
    c->execute({"ROLE"}, [s, c, label, master](std::error_code ec, redis_value v) {
      c->close();
      if (ec) return note_and_go_on(s, label + ": ROLE: " + (v.str.empty() ? ec.message() : v.str));
      if (v.elements.empty() || v.elements[0].str != "master")
        return note_and_go_on(s, label + " is not a master (" +
                                     (v.elements.empty() ? "?" : v.elements[0].str) + ")");
      auto done = std::move(s->done);
      done(master, {});
    });
  });
}

void ask_next(const std::shared_ptr<search>& s) {
  if (s->next == s->url.sentinels.size()) {
    auto done = std::move(s->done);
    return done(std::nullopt, "no sentinel named a reachable master for \"" +
                                  s->url.master_name + "\": " + s->why);
  }
  const redis_endpoint sentinel = s->url.sentinels[s->next++];
  redis_connection::options co;
  co.url.host = sentinel.host;
  co.url.port = sentinel.port;
  co.connect_timeout = sentinel_connect_timeout;
  auto c = redis_connection::create(s->ex, co);
  if (!s->track(c)) return;
  const std::string label = "sentinel " + where(sentinel);
  c->start([s, c, label](std::error_code ec) {
    if (ec) return note_and_go_on(s, label + ": " + ec.message());
    c->execute({"SENTINEL", "get-master-addr-by-name", s->url.master_name},
               [s, c, label](std::error_code ec, redis_value v) {
      c->close();
      if (ec) return note_and_go_on(s, label + ": " + (v.str.empty() ? ec.message() : v.str));
      auto master = parse_answer(v);
      if (!master) return note_and_go_on(s, label + " does not know the master");
      check_role(s, where(s->url.sentinels[s->next - 1]), *master);
    });
  });
}

}  // namespace

void locate_master(boost::asio::any_io_executor ex, const redis_url& url, locate_tracker track,
                   locate_handler done) {
  auto s = std::make_shared<search>();
  s->ex = std::move(ex);
  s->url = url;
  s->track = std::move(track);
  s->done = std::move(done);
  ask_next(s);
}

}  // namespace skyrelay::redis
