// The Socket.IO manager bridge: subscribes to python-socketio's / Flask-SocketIO's channels,
// holds (or waits for) the leader lease, and hands each message to the node (see the header).
#include "skyrelay/broker/redis_sio_bridge.hpp"

#include <boost/asio/post.hpp>

#include <exception>

#include "redis_sio_bridge_impl.hpp"
#include "skyrelay/core/thread_name.hpp"

namespace skyrelay::redis {

namespace {

// Takes the lease when nobody holds it, extends it for its holder; 1 when ARGV[1] holds it.
const redis_script lease_script{R"lua(
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
)lua"};

// Gives the lease up, only when ARGV[1] holds it.
const redis_script release_script{R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua"};
}  // namespace

redis_connection::reply_handler redis_sio_bridge::impl::on_thread(
    redis_connection::reply_handler done) {
  // From the client's thread to the bridge's; nothing once the bridge is gone.
  return [w = self, done = std::move(done)](std::error_code ec, redis_value v) mutable {
    if (auto i = w.lock())
      asio::post(i->io, [done = std::move(done), ec, v = std::move(v)]() mutable {
        done(ec, std::move(v));
      });
  };
}

void redis_sio_bridge::impl::keyed_eval(const redis_script& s, const std::string& key,
                                        std::vector<std::string> args,
                                        redis_connection::reply_handler done) {
  if (keyed) return keyed->async_eval(s, {key}, args, on_thread(std::move(done)));
  std::vector<std::string> full{"EVAL", s.text, "1", key};
  full.insert(full.end(), args.begin(), args.end());
  cmd->execute(std::move(full), std::move(done));
}

void redis_sio_bridge::impl::keyed_get(const std::string& key,
                                       redis_connection::reply_handler done) {
  if (keyed) return keyed->async_call({"GET", key}, on_thread(std::move(done)));
  cmd->execute({"GET", key}, std::move(done));
}

void redis_sio_bridge::impl::connect() {
  const unsigned g = ++gen;
  ready = false;
  redis_connection::options co;
  co.url = opts.url;
  co.mode = redis_connection::role::commands;
  cmd = redis_connection::create(io.get_executor(), co);
  co.mode = redis_connection::role::subscriber;
  sub = redis_connection::create(io.get_executor(), co);
  cmd->set_error_handler([this, g](std::error_code) { lost(g); });
  sub->set_error_handler([this, g](std::error_code) { lost(g); });
  sub->set_message_handler([this, g](redis_message m) { on_message(g, m); });
  auto up = std::make_shared<int>(0);
  auto started = [this, g, up](std::error_code ec) {
    if (g != gen) return;
    if (ec) return lost(g);
    if (++*up < 2) return;
    auto channels = opts.channels;
    for (const auto& [ack, c] : applied_channels) channels.push_back(ack);
    sub->subscribe(channels, [this, g](std::error_code ec, redis_value) {
      if (g != gen) return;
      if (ec) return lost(g);
      ready = true;
      backoff.reset();
      tick_timer.cancel();  // ask for the lease now rather than at the next tick
    });
  };
  cmd->start(started);
  sub->start(started);
}

void redis_sio_bridge::impl::lost(unsigned g) {
  if (g != gen || stopping) return;
  ++gen;
  ready = false;
  for (auto& [c, l] : leases) l.held = false;
  count_leases();
  clear_order();
  if (cmd) cmd->close();
  if (sub) sub->close();
  backoff.schedule(reconnect_timer, [this] {
    if (!stopping) connect();
  });
}

void redis_sio_bridge::impl::tick() {
  if (stopping) return;
  if (ready) {
    // The lease counts from when it was asked for, less a fifth: Redis's TTL starts later,
    // so this node stops acting before any other node can take the key.
    const auto asked = clock_type::now();
    const unsigned g = gen;
    for (auto& [channel, l] : leases) {
      keyed_eval(lease_script, l.key, {opts.node_id, std::to_string(opts.lease_ttl.count())},
                 [this, g, asked, c = channel](std::error_code ec, redis_value v) {
        if (g != gen || stopping) return;
        auto& l = leases.at(c);
        l.held = !ec && v.integer == 1;
        if (l.held) l.until = asked + opts.lease_ttl - opts.lease_ttl / 5;
        count_leases();
      });
    }
  }
  tick_timer.expires_after(opts.renew_every);
  tick_timer.async_wait([this](boost::system::error_code) {
    if (!stopping) tick();  // cancelled early (connected): tick now
  });
}

void redis_sio_bridge::impl::on_message(unsigned g, const redis_message& msg) {
  if (g != gen || stopping) return;
  if (applied_channels.count(msg.channel)) return on_applied(msg.payload);
  auto l = leases.find(msg.channel);
  if (l == leases.end()) return;  // not a channel of ours (cannot happen: SUBSCRIBE only)
  ++received;
  std::string error;
  auto m = parse_manager_message(msg.payload, error);
  if (!m) {
    ++malformed;  // counted on /metrics; a producer's bug must not stop the others
    return;
  }
  using kind = manager_message::kind;
  switch (m->what) {
    case kind::emit:
      if (!holds(l->second)) return;  // the leader republishes it; every node gets it there
      if (!order.empty()) {  // held behind a room method (redis_sio_bridge_order.cpp)
        order.push_back({msg.channel, std::move(*m), nullptr});
        if (order.size() > opts.order_max) drain();
        return;
      }
      return handle_emit(*m, l->second);
    case kind::other: return;  // acks going back to python-socketio servers, unknown methods
    default: return on_room_method(msg.channel, std::move(*m));
  }
}

void redis_sio_bridge::impl::handle_emit(manager_message& m, const lease& l) {
  if (!holds(l)) return;  // the channel's leader republishes it; every node gets it from there
  try {
    actions.publish(m.pub);
    ++republished;
    if (m.wants_ack) ++acks_dropped;
  } catch (const std::exception&) {
    ++failed;  // the broker cannot reach Redis: lost, as it would be for python-socketio
  }
}

void redis_sio_bridge::impl::stop() {
  stopping = true;
  ++gen;
  reconnect_timer.cancel();
  tick_timer.cancel();
  clear_order();
  applies.clear();
  apply_timer.cancel();
  auto close = [this] {
    stop_timer.cancel();
    if (cmd) cmd->close();
    if (sub) sub->close();
  };
  std::vector<std::string> held;
  for (const auto& [c, l] : leases)
    if (l.held) held.push_back(l.key);
  if (!ready || held.empty()) return close();
  // Hand the leases over at once rather than after their TTL; bounded if Redis is silent.
  auto left = std::make_shared<std::size_t>(held.size());
  for (const auto& key : held)
    keyed_eval(release_script, key, {opts.node_id}, [close, left](std::error_code, redis_value) {
      if (--*left == 0) close();
    });
  stop_timer.expires_after(std::chrono::milliseconds{500});
  stop_timer.async_wait([close](boost::system::error_code ec) {
    if (!ec) close();
  });
}

redis_sio_bridge::redis_sio_bridge(redis_sio_bridge_options opts, manager_actions actions)
    : impl_(std::make_shared<impl>(std::move(opts), std::move(actions))) {
  impl* i = impl_.get();
  i->self = impl_;
  asio::post(i->io, [i] {
    i->connect();
    i->tick();
  });
  i->thread = std::thread([i] { i->io.run(); });
  name_thread(i->thread, "skyrelay-bridge");
}

void redis_sio_bridge::stop() {
  impl* i = impl_.get();
  if (!i->thread.joinable()) return;
  asio::post(i->io, [i] { i->stop(); });
  i->guard.reset();
  i->thread.join();
  i->keyed.reset();  // joins its thread: none of its answers is posted after this
  i->cmd.reset();
  i->sub.reset();
}

redis_sio_bridge::~redis_sio_bridge() { stop(); }

manager_counters redis_sio_bridge::counters() const {
  return {impl_->received.load(), impl_->republished.load(), impl_->applied.load(),
          impl_->malformed.load(), impl_->acks_dropped.load(), impl_->failed.load(),
          impl_->order_waits.load(), impl_->order_timeouts.load(), impl_->leading.load()};
}

}  // namespace skyrelay::redis
