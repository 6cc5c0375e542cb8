// The Redis broker on a Redis Cluster (`redis+cluster://`): where the masters are, one command
// and one subscriber connection to each, and which one serves a tag. Any change of the
// topology (a MOVED or ASK answer, an unasked sunsubscribe, a lost connection) drops every
// connection and discovers the cluster again: lost() closes them, connect() lands here, and
// on_ready's usual path follows every channel again and catches it up from its stream.
#include "redis_broker_impl.hpp"

namespace skyrelay::redis {

namespace {
bool starts_with(const std::string& s, const char* word) { return s.rfind(word, 0) == 0; }

std::string where(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}
}  // namespace

// Asks the seeds in the URL's order for CLUSTER SLOTS; the first full answer is the topology.
void redis_broker::impl::discover(unsigned g, std::size_t seed) {
  if (seed == 0) seed_errors.clear();
  if (seed >= opts.seeds.size())
    return lost(g, "redis+cluster: no seed gave the slot map (" + seed_errors + ")");
  auto next = [this, g, seed](std::string why) {
    const auto& s = opts.seeds[seed];
    seed_errors += (seed_errors.empty() ? "" : "; ") + where(s.host, s.port) + ": " + why;
    discover(g, seed + 1);
  };
  redis_connection::options co;
  co.url = opts.url;
  co.url.host = opts.seeds[seed].host;
  co.url.port = opts.seeds[seed].port;
  co.mode = redis_connection::role::commands;
  auto c = redis_connection::create(io.get_executor(), co);
  cmd = c;  // lost() and the destructor close it while it asks
  ask_slot_map(c, [this, g] { return g == gen && !stopping; }, next,
               [this, g](const cluster_map& map) { open_shards(g, map); });
}

void redis_broker::impl::open_shards(unsigned g, const cluster_map& map) {
  shards.clear();
  slot_owner = map.owner;
  auto up = std::make_shared<std::size_t>(0);
  const std::size_t want_up = map.masters.size() * 2;
  for (const auto& [host, port] : map.masters) {
    shard s{host, port, nullptr, nullptr};
    redis_connection::options co;
    co.url = opts.url;
    co.url.host = host;
    co.url.port = port;
    co.mode = redis_connection::role::commands;
    s.cmd = redis_connection::create(io.get_executor(), co);
    co.mode = redis_connection::role::subscriber;
    s.sub = redis_connection::create(io.get_executor(), co);
    const std::string at = where(host, port);
    s.cmd->set_error_handler([this, g, at](std::error_code ec) {
      lost(g, "the connection to the redis cluster master " + at + " was lost: " + ec.message());
    });
    s.sub->set_error_handler([this, g, at](std::error_code ec) {
      lost(g, "the subscriber connection to the redis cluster master " + at +
                  " was lost (or its slots moved): " + ec.message());
    });
    s.sub->set_message_handler([this, g](redis_message m) { on_message(g, std::move(m)); });
    auto started = [this, g, up, want_up, at](std::error_code ec) {
      if (g != gen) return;
      if (ec)
        return lost(g, "cannot connect to the redis cluster master " + at + ": " + ec.message());
      if (++*up == want_up) on_ready(g);
    };
    s.cmd->start(started);
    s.sub->start(started);
    shards.push_back(std::move(s));
  }
  cmd = shards.front().cmd;
  sub = shards.front().sub;
}

const std::shared_ptr<redis_connection>& redis_broker::impl::cmd_of(const std::string& key) const {
  if (!clustered() || shards.empty()) return cmd;
  return shards[static_cast<std::size_t>(slot_owner[key_slot(key)])].cmd;
}

const std::shared_ptr<redis_connection>& redis_broker::impl::sub_of(const std::string& tag) const {
  if (!clustered() || shards.empty()) return sub;
  return shards[static_cast<std::size_t>(slot_owner[key_slot(tag)])].sub;
}

bool redis_broker::impl::moved(unsigned g, std::error_code ec, const redis_value& v) {
  if (ec != redis_errc::server_error || !clustered()) return false;
  // CLUSTERDOWN: a master is down or has just come back; asked again after a backoff.
  if (!starts_with(v.str, "MOVED") && !starts_with(v.str, "ASK") &&
      !starts_with(v.str, "TRYAGAIN") && !starts_with(v.str, "CLUSTERDOWN"))
    return false;
  lost(g, "redis+cluster: the cluster answered " + v.str + "; discovering its slots again");
  return true;
}

void redis_broker::impl::exec(const std::string& key, std::vector<std::string> args,
                              redis_connection::reply_handler done) {
  if (!clustered()) return cmd->execute(std::move(args), std::move(done));
  const unsigned g = gen;
  cmd_of(key)->execute(std::move(args), [this, g, done = std::move(done)](std::error_code ec,
                                                                          redis_value v) {
    moved(g, ec, v);
    if (done) done(ec, std::move(v));
  });
}

void redis_broker::impl::follow_channel(const std::string& tag,
                                        redis_connection::reply_handler done) {
  if (!clustered()) return sub->subscribe({opts.prefix + tag}, std::move(done));
  const unsigned g = gen;
  sub_of(tag)->ssubscribe({opts.prefix + tag}, [this, g, done = std::move(done)](
                                                   std::error_code ec, redis_value v) {
    moved(g, ec, v);
    if (done) done(ec, std::move(v));
  });
}

void redis_broker::impl::unfollow_channel(const std::string& tag) {
  if (!clustered()) return sub->unsubscribe({opts.prefix + tag}, nullptr);
  sub_of(tag)->sunsubscribe({opts.prefix + tag}, nullptr);
}

const std::string& redis_broker::impl::replid_of(const std::string& tag) const {
  if (!clustered() || shards.empty()) return replid;
  return shards[static_cast<std::size_t>(slot_owner[key_slot(tag)])].replid;
}

// Each master's replication ID (its slots' channels start a new epoch under another one, as
// on one server), then the script.
void redis_broker::impl::load_scripts(unsigned g, std::function<void()> then) {
  auto left = std::make_shared<std::size_t>(shards.size());
  for (std::size_t i = 0; i < shards.size(); ++i)
    shards[i].cmd->execute({"INFO", "replication"},
                           [this, g, i](std::error_code ec, redis_value v) {
                             if (g == gen) shards[i].replid = ec ? "" : replication_id(v.str);
                           });
  for (const auto& s : shards)
    s.cmd->execute({"SCRIPT", "LOAD", cluster_publish_script()},
                   [this, g, left, then](std::error_code ec, redis_value v) {
      if (g != gen) return;
      if (ec) return lost(g, "SCRIPT LOAD failed: " + (v.str.empty() ? ec.message() : v.str));
      {
        std::lock_guard lock(mu);
        sha = v.str;  // the script's SHA-1: the same on every master
      }
      if (--*left == 0) then();
    });
}

}  // namespace skyrelay::redis
