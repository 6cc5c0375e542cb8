// The Redis broker's connections, publishing, sid registry and timers (the receiving side is
// in redis_broker_receive.cpp).
#include <boost/asio/post.hpp>

#include <cctype>
#include <future>
#include <random>
#include <stdexcept>
#include <string_view>

#include "redis_broker_impl.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/core/thread_name.hpp"

namespace skyrelay::redis {

namespace {
constexpr std::chrono::milliseconds alive_ttl{10'000};

// A Redis glob matching `text` literally.
std::string glob_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

// The publish script's arguments (after EVALSHA, sha, numkeys): ARGV[8] is the replication ID,
// filled in when the publication is sent (redis_wire.cpp, publish_script).
constexpr std::size_t replid_arg = 3 + 7;

}  // namespace

// `master_replid:<id>` of an INFO replication answer; empty when absent.
std::string replication_id(const std::string& info) {
  constexpr std::string_view key = "master_replid:";
  const auto at = info.find(key);
  if (at == std::string::npos) return {};
  const auto start = at + key.size();
  const auto end = info.find_first_of("\r\n", start);
  return info.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

redis_broker::impl::impl(hub& local, redis_broker_options o)
    : hub_(local),
      opts(std::move(o)),
      node_channel(opts.prefix + "node:" + opts.node_id),
      heartbeat_payload("heartbeat:" + opts.node_id),
      guard(io.get_executor()),
      reconnect_timer(io),
      tick_timer(io) {
  // The "/" broadcasts are followed from the start, with Redis's epoch: they are the first
  // channel of every SSE cursor, which must read the same on every node.
  auto& f = chans[broadcast_tag("/")];
  f.ch = {"/", ""};
  f.broadcasts = f.wanted = true;
}

void redis_broker::impl::set_status(bool ok, std::string reason) {
  std::lock_guard lock(mu);
  status = {ok, std::move(reason)};
  if (!ok) publisher.reset();
}

void redis_broker::impl::connect() {
  const unsigned g = ++gen;
  ready = false;
  if (opts.url.uses_sentinel() && !located) return locate(g);  // redis_broker_sentinel.cpp
  if (clustered()) return discover(g, 0);                      // redis_cluster_topology.cpp
  located = false;
  redis_connection::options co;
  co.url = opts.url;
  co.mode = redis_connection::role::commands;
  cmd = redis_connection::create(io.get_executor(), co);
  co.mode = redis_connection::role::subscriber;
  sub = redis_connection::create(io.get_executor(), co);
  cmd->set_error_handler([this, g](std::error_code ec) {
    lost(g, "the connection to redis was lost: " + ec.message());
  });
  sub->set_error_handler([this, g](std::error_code ec) {
    lost(g, "the subscriber connection to redis was lost: " + ec.message());
  });
  sub->set_message_handler([this, g](redis_message m) { on_message(g, std::move(m)); });
  auto up = std::make_shared<int>(0);
  auto started = [this, g, up](std::error_code ec) {
    if (g != gen) return;
    if (ec) return lost(g, "cannot connect to redis at " + opts.url.host + ":" +
                               std::to_string(opts.url.port) + ": " + ec.message());
    if (++*up == 2) on_ready(g);
  };
  cmd->start(started);
  sub->start(started);
}

void redis_broker::impl::on_ready(unsigned g) {
  if (clustered()) return load_scripts(g, [this, g] { on_loaded(g); });  // each master's
  // Which server this is, as replication knows it: a failover shows as another ID.
  cmd->execute({"INFO", "replication"}, [this, g](std::error_code ec, redis_value v) {
    if (g != gen) return;
    replid = ec ? std::string() : replication_id(v.str);
    load_script(g);
  });
}

void redis_broker::impl::load_script(unsigned g) {
  cmd->execute({"SCRIPT", "LOAD", publish_script()}, [this, g](std::error_code ec, redis_value v) {
    if (g != gen) return;
    if (ec) return lost(g, "SCRIPT LOAD failed: " + (v.str.empty() ? ec.message() : v.str));
    {
      std::lock_guard lock(mu);
      sha = v.str;
    }
    on_loaded(g);
  });
}

void redis_broker::impl::on_loaded(unsigned g) {
  const std::string alive = node_channel + ":alive";
  exec(alive, {"SET", alive, opts.node_id, "PX", ms(alive_ttl)}, nullptr);
  // A restarted server lost the registry: this node's connections are registered again.
  for (const auto& sid : sids) {
    const std::string k = opts.prefix + "sid:" + sid;
    exec(k, {"SET", k, opts.node_id}, nullptr);
  }
  sub->psubscribe({glob_escape(opts.prefix) + "{b*"}, nullptr);
  sub->subscribe({node_channel}, [this, g](std::error_code ec, redis_value) {
    if (g != gen) return;
    if (ec) return lost(g, "SUBSCRIBE failed: " + ec.message());
    ready = true;
    last_heard = clock_type::now();
    backoff.reset();
    if (ever_connected) ++reconnects;
    ever_connected = true;
    {
      std::lock_guard lock(mu);
      publisher = cmd;
      status = {true, {}};
    }
    // Every channel followed before is followed again and caught up from its stream.
    std::vector<std::string> tags;
    for (auto& [tag, f] : chans) {
      f.subscribed = f.syncing = false;
      tags.push_back(tag);
    }
    for (const auto& tag : tags) {
      auto& f = chans.at(tag);
      if (f.known && f.broadcasts) sync(tag);
      else if (f.wanted) start_follow(tag, nullptr);
    }
  });
}

void redis_broker::impl::lost(unsigned g, std::string reason) {
  if (g != gen || stopping) return;
  ++gen;
  ready = false;
  set_status(false, std::move(reason));
  if (cmd) cmd->close();
  if (sub) sub->close();
  for (auto& s : shards) {
    s.cmd->close();
    s.sub->close();
  }
  syncing = 0;
  buffer.clear();
  // A start_follow in flight never finishes (its answers are dropped): its waiters hear it
  // failed, and the next connection starts it again.
  std::vector<std::function<void(bool)>> waiters;
  for (auto& [tag, f] : chans) {
    f.subscribed = f.syncing = f.starting = false;
    for (auto& w : f.waiters) waiters.push_back(std::move(w));
    f.waiters.clear();
  }
  backoff.schedule(reconnect_timer, [this] {
    if (!stopping) connect();
  });
  for (auto& w : waiters) w(false);
}

void redis_broker::impl::tick() {
  const auto now = clock_type::now();
  if (ready) {
    const std::string alive = node_channel + ":alive";
    exec(alive, {"SET", alive, opts.node_id, "PX", ms(alive_ttl)}, nullptr);
    // Comes back on the subscriber connection; if it stops coming, the node is deaf.
    cmd->execute({"PUBLISH", node_channel, heartbeat_payload}, nullptr);
    if (now - last_heard > opts.deaf_after)
      lost(gen, "no message from redis for " + ms(opts.deaf_after) +
                    " ms on the subscriber connection (deaf); reconnecting");
    else if (now - last_refresh > std::max(opts.history_ttl, std::chrono::milliseconds{60'000}) / 3)
      refresh();
  }
  tick_timer.expires_after(opts.heartbeat);
  tick_timer.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping) tick();
  });
}

void redis_broker::impl::publish_async(const publication& p, publish_done done) {
  auto refuse = [&](std::exception_ptr e) {
    if (!done) std::rethrow_exception(e);
    publish_outcome r;
    r.error = std::move(e);
    done(std::move(r));
  };
  {
    std::lock_guard lock(mu);
    if (!status.ok || !publisher)
      return refuse(std::make_exception_ptr(
          broker_unavailable("the Redis broker cannot publish: " + status.reason)));
  }
  // A caller without a completion (emit) waits for a place; one with (the publish API's I/O
  // thread) must never wait, and is refused at once.
  if (!take_slot(!done)) {
    ++refused;
    return refuse(std::make_exception_ptr(broker_busy(
        "the Redis broker cannot publish now: " + std::to_string(opts.max_queued_publishes) +
        " publications are waiting for redis already (redis is slower than the publishers, "
        "or stalled); retry later")));
  }
  auto o = std::make_shared<outgoing>();
  o->ts = utc_now_iso8601();
  o->n = ++uids;
  o->single_room = p.to.size() == 1 && p.to_conns.empty();
  o->args = {"EVALSHA", "", "0", opts.prefix, encode_body(p, o->ts, opts.node_id),
             opts.node_id + ":" + std::to_string(o->n), p.nsp,
             std::to_string(std::max<std::size_t>(opts.history_max, 100)),
             ms(std::max(opts.history_ttl, std::chrono::milliseconds{60'000})),
             hub_.epoch_prefix(), "", std::to_string(p.to.size())};
  o->args.insert(o->args.end(), p.to.begin(), p.to.end());
  o->args.push_back(std::to_string(p.to_conns.size()));
  o->args.insert(o->args.end(), p.to_conns.begin(), p.to_conns.end());
  // One FIFO queue (the io_context's) from every thread to the command connection: what one
  // thread publishes is sent, and so numbered by Redis, in the order it published.
  asio::post(io, [this, o, done = std::move(done)]() mutable {
    if (done && !quiet) {
      o->key = ++next_key;
      completions.emplace(o->key, std::move(done));
    }
    done = nullptr;  // dropped here after quiesce(), never called
    send(std::move(o));
  });
}

bool redis_broker::impl::take_slot(bool may_wait) {
  auto fits = [this] {
    auto q = queued.load();
    while (q < opts.max_queued_publishes)
      if (queued.compare_exchange_weak(q, q + 1)) return true;
    return false;
  };
  if (fits()) return true;
  if (!may_wait) return false;
  std::unique_lock lock(slot_mu);
  ++slot_waiters;  // before fits() looks again: release_slot() then sees a waiter
  const bool ok = slot_freed.wait_for(lock, opts.publish_timeout, fits);
  --slot_waiters;
  return ok;
}

void redis_broker::impl::release_slot() {
  --queued;
  if (slot_waiters.load() == 0) return;
  std::lock_guard lock(slot_mu);
  slot_freed.notify_all();
}

void redis_broker::impl::send(std::shared_ptr<outgoing> o) {
  if (!ready) {  // lost since publish_async() looked
    release_slot();
    ++failed;
    publish_outcome r;
    r.error = std::make_exception_ptr(broker_unavailable(
        "the Redis broker lost its connection to redis; the publication was not sent"));
    return complete(o->key, std::move(r));
  }
  if (clustered()) return cluster_send(std::move(o));  // redis_broker_cluster.cpp
  if (!o->retried) o->args[1] = sha;
  o->args[replid_arg] = replid;  // the server's, as read at this connect
  cmd->execute(o->args, [this, o](std::error_code ec, redis_value v) {
    answered(o, ec, std::move(v));
  });
}

// On the broker's thread, in the order the publications were sent.
void redis_broker::impl::answered(const std::shared_ptr<outgoing>& o, std::error_code ec,
                                  redis_value v) {
  if (ec == redis_errc::server_error && v.str.rfind("NOSCRIPT", 0) == 0 && !o->retried) {
    // The server forgot the script (SCRIPT FLUSH): sent again whole, which loads it. Only
    // publications already in flight then can land out of their publisher's order.
    o->retried = true;
    o->args[0] = "EVAL";
    o->args[1] = publish_script();
    return send(o);
  }
  publish_outcome r;
  if (ec == redis_errc::server_error) {
    r.error = std::make_exception_ptr(
        std::runtime_error("redis refused the publish script: " + v.str));
  } else if (ec) {
    r.error = std::make_exception_ptr(broker_unavailable(
        "the Redis broker lost its connection before redis answered (" + ec.message() +
        "); the publication may or may not have been carried"));
  }
  release_slot();
  if (r.error) {
    ++failed;
    return complete(o->key, std::move(r));
  }
  ++publishes;
  if (!o->key) return;
  r.meta.id = id_base + o->n;
  r.meta.ts = o->ts;
  auto positions = std::make_shared<std::vector<channel_pos>>();
  for (std::size_t i = 0; i + 2 < v.elements.size(); i += 3) {
    auto t = parse_tag(v.elements[i].str);
    if (!t) continue;
    positions->push_back({t->broadcasts ? std::string() : t->ch.room, t->broadcasts,
                          static_cast<std::uint64_t>(v.elements[i + 2].integer)});
    r.meta.epochs.push_back(v.elements[i + 1].str);
  }
  if (o->single_room && positions->size() == 1 && !positions->front().broadcast)
    r.meta.seq = positions->front().pos;
  if (!positions->empty()) r.meta.positions = std::move(positions);
  complete(o->key, std::move(r));
}

void redis_broker::impl::complete(std::uint64_t key, publish_outcome r) {
  auto it = key ? completions.find(key) : completions.end();
  if (it == completions.end()) return;  // nobody waits, or quiesce() dropped it
  auto done = std::move(it->second);
  completions.erase(it);
  done(std::move(r));
}

void redis_broker::impl::sid_changed(const std::string& sid, bool added) {
  if (added) sids.insert(sid);
  else sids.erase(sid);
  if (!ready) return;  // registered again on connect
  const std::string k = opts.prefix + "sid:" + sid;
  if (added) exec(k, {"SET", k, opts.node_id}, nullptr);
  // Closed, unless another node took the sid meanwhile (a Socket.IO socket resumed there,
  // redis_sio_recovery.hpp): its entry is that node's.
  else exec(k, {"EVAL", R"lua(
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= '-' and owner ~= ARGV[1] then return 0 end
return redis.call('SET', KEYS[1], '-', 'PX', ARGV[2])
)lua", "1", k, opts.node_id, ms(opts.closed_sid_ttl)}, nullptr);
}

// ---- the public face: posts to the broker's thread ----

redis_broker::redis_broker(hub& local, redis_broker_options opts) {
  if (opts.node_id.empty()) opts.node_id = new_sid().substr(0, 12);
  std::random_device rd;
  const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 20) ^ rd();
  // Local epochs (a channel before it is followed) far above Redis's µs-based ones.
  local.set_epoch_prefix(cluster_epoch_prefix, (std::uint64_t{1} << 62) + ((r & 0xfffff) << 40));
  impl_ = std::make_shared<impl>(local, std::move(opts));
  impl_->id_base = (r >> 20 & 0xffffff) << 40;
  impl* i = impl_.get();
  asio::post(i->io, [i] {
    i->connect();
    i->tick();
  });
  i->thread = std::thread([i] { i->io.run(); });
  name_thread(i->thread, "skyrelay-broker");
}

redis_broker::~redis_broker() {
  impl* i = impl_.get();
  asio::post(i->io, [i] {
    i->stopping = true;
    ++i->gen;
    i->reconnect_timer.cancel();
    i->tick_timer.cancel();
    if (i->cmd) i->cmd->close();
    if (i->sub) i->sub->close();
    for (auto& s : i->shards) {
      s.cmd->close();
      s.sub->close();
    }
  });
  i->guard.reset();
  i->thread.join();
  i->cmd.reset();
  i->sub.reset();
  i->shards.clear();
}

std::size_t redis_broker::publish(const publication& p, publish_meta* out) {
  if (!out) {
    impl_->publish_async(p, nullptr);  // refusals throw; later failures are counted
    return 0;
  }
  auto answer = std::make_shared<std::promise<publish_outcome>>();
  auto outcome = answer->get_future();
  impl_->publish_async(p, [answer](publish_outcome r) { answer->set_value(std::move(r)); });
  if (outcome.wait_for(impl_->opts.publish_timeout) != std::future_status::ready)
    throw broker_unavailable("the Redis broker cannot publish: no answer from redis within " +
                             ms(impl_->opts.publish_timeout) +
                             " ms; the publication may still be carried");
  auto r = outcome.get();
  if (r.error) std::rethrow_exception(r.error);
  if (r.meta.seq) r.meta.topic = p.to.front();
  *out = std::move(r.meta);
  return 0;
}

void redis_broker::publish_async(const publication& p, publish_done done) {
  impl_->publish_async(p, std::move(done));
}

void redis_broker::subscribe(const channel& ch) {
  impl* i = impl_.get();
  asio::post(i->io, [i, ch] { i->want(ch); });
}

void redis_broker::unsubscribe(const channel& ch) {
  impl* i = impl_.get();
  asio::post(i->io, [i, ch] { i->unwant(ch); });
}

history_result redis_broker::history(const history_request& q) {
  // The hub's log of a followed channel is a cache of its stream (warm() fills it first).
  return impl_->hub_.read_history(q);
}

void redis_broker::connection_changed(const std::string& sid, bool added) {
  impl* i = impl_.get();
  asio::post(i->io, [i, sid, added] { i->sid_changed(sid, added); });
}

void redis_broker::warm(const std::vector<channel>& rooms, std::function<void(bool)> done) {
  impl* i = impl_.get();
  asio::post(i->io, [i, rooms, done = std::move(done)]() mutable { i->warm(rooms, std::move(done)); });
}

void redis_broker::quiesce() {
  impl* i = impl_.get();
  auto barrier = std::make_shared<std::promise<void>>();
  auto passed = barrier->get_future();
  asio::post(i->io, [i, barrier] {
    i->quiet = true;
    i->completions.clear();
    barrier->set_value();
  });
  passed.wait_for(std::chrono::seconds(5));  // the thread only ever runs short steps
}

broker_status redis_broker::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->status;
}

broker_counters redis_broker::counters() const {
  return {impl_->publishes.load(), impl_->received.load(), impl_->gaps.load(),
          impl_->resets.load(),    impl_->reconnects.load(), impl_->queued.load(),
          impl_->refused.load(),   impl_->failed.load()};
}

const std::string& redis_broker::node_id() const noexcept { return impl_->opts.node_id; }

std::unique_ptr<skyrelay::broker> make_any_broker(const std::string& url, hub& local,
                                                  std::size_t history_max,
                                                  std::chrono::milliseconds history_ttl) {
  std::string scheme = url.substr(0, url.find("://"));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (url.find("://") == std::string::npos || scheme.rfind("redis", 0) != 0)
    return skyrelay::make_broker(url, local);  // memory, or its refusal of the scheme
  auto opts = parse_broker_url(url);
  opts.history_max = history_max;
  opts.history_ttl = history_ttl;
  return std::make_unique<redis_broker>(local, std::move(opts));
}

}  // namespace skyrelay::redis
