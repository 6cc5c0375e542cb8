// redis_client on a Redis Cluster (redis_client.hpp): the slot map from the seeds, one
// connection per master, and MOVED / ASK answers followed once.
#include <charconv>
#include <optional>

#include "redis_client_impl.hpp"

namespace skyrelay::redis {

namespace {
std::string where(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" (an empty host: the answering
// node's own).
struct redirection {
  bool ask{false};
  std::uint16_t slot{0};
  std::string host;
  std::uint16_t port{0};
};

std::optional<redirection> parse_redirection(const std::string& answer) {
  redirection r;
  std::size_t at;
  if (answer.rfind("MOVED ", 0) == 0) {
    at = 6;
  } else if (answer.rfind("ASK ", 0) == 0) {
    r.ask = true;
    at = 4;
  } else {
    return std::nullopt;
  }
  const auto space = answer.find(' ', at);
  const auto colon = answer.rfind(':');
  if (space == std::string::npos || colon == std::string::npos || colon < space)
    return std::nullopt;
  unsigned slot = 0, port = 0;
  const char* s = answer.data();
  if (std::from_chars(s + at, s + space, slot).ec != std::errc{} || slot > 16383 ||
      std::from_chars(s + colon + 1, s + answer.size(), port).ec != std::errc{} || port == 0 ||
      port > 65535)
    return std::nullopt;
  r.slot = static_cast<std::uint16_t>(slot);
  r.host = answer.substr(space + 1, colon - space - 1);
  r.port = static_cast<std::uint16_t>(port);
  return r;
}
}  // namespace

void redis_client::impl::discover(unsigned g, std::size_t seed) {
  if (seed == 0) seed_errors.clear();
  if (seed >= seeds.size())
    return lost(g, "redis+cluster: no seed gave the slot map (" + seed_errors + ")");
  auto next = [this, g, seed](std::string why) {
    if (g != gen) return;
    seed_errors += (seed_errors.empty() ? "" : "; ") +
                   where(seeds[seed].host, seeds[seed].port) + ": " + why;
    discover(g, seed + 1);
  };
  redis_connection::options o;
  o.url = url;
  o.url.host = seeds[seed].host;
  o.url.port = seeds[seed].port;
  o.mode = redis_connection::role::commands;
  auto c = redis_connection::create(io.get_executor(), o);
  {
    std::lock_guard lock(mu);
    opened = {c};  // lost() and the destructor close it while it asks
  }
  ask_slot_map(c, [this, g] { return g == gen && !stopping; }, next,
               [this, g](const cluster_map& map) { open_masters(g, map); });
}

void redis_client::impl::open_masters(unsigned g, const cluster_map& map) {
  masters_up = 0;
  masters_wanted = map.masters.size();
  std::lock_guard lock(mu);
  opened.clear();
  masters.clear();
  for (const auto& [host, port] : map.masters) master_at(g, host, port);
  owner = map.owner;
}

std::size_t redis_client::impl::master_at(unsigned g, const std::string& host,
                                          std::uint16_t port) {
  const std::string at = where(host, port);
  for (std::size_t i = 0; i < masters.size(); ++i)
    if (masters[i].first == at) return i;
  redis_connection::options o;
  o.url = url;
  o.url.host = host;
  o.url.port = port;
  o.mode = redis_connection::role::commands;
  auto c = redis_connection::create(io.get_executor(), o);
  c->set_error_handler([this, g, at](std::error_code ec) {
    lost(g, "to the redis cluster master " + at + " lost: " + ec.message());
  });
  // Commands given meanwhile wait in the connection's queue until it is ready.
  c->start([this, g, at, w = std::weak_ptr<redis_connection>(c)](std::error_code ec) {
    if (g != gen) return;
    if (ec) return lost(g, "cannot connect to the redis cluster master " + at + ": " + ec.message());
    if (++masters_up != masters_wanted) return;
    std::shared_ptr<redis_connection> first;
    {
      std::lock_guard lock(mu);
      first = masters.front().second;
    }
    ready(g, std::move(first));
  });
  opened.push_back(c);
  masters.emplace_back(at, std::move(c));
  return masters.size() - 1;
}

bool redis_client::impl::follow(const std::string& answer, const std::string& from_host,
                                std::shared_ptr<std::vector<std::string>> args, reply_fn& done) {
  auto r = parse_redirection(answer);
  if (!r || stopping) return false;
  if (r->host.empty()) r->host = from_host;
  std::shared_ptr<redis_connection> c;
  {
    std::lock_guard lock(mu);
    if (!connected || owner.empty()) return false;  // lost meanwhile: the answer goes on
    const std::size_t i = master_at(gen, r->host, r->port);
    // A new master's connection holds the command in its queue until it is ready.
    if (!r->ask) owner[r->slot] = static_cast<int>(i);
    c = masters[i].second;
  }
  ++redirects;
  if (r->ask) c->execute({"ASKING"}, nullptr);
  c->execute(std::move(*args), std::move(done));
  return true;
}

std::uint64_t redis_client::redirects() const noexcept { return impl_->redirects.load(); }

}  // namespace skyrelay::redis
