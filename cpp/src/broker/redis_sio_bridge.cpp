// The Socket.IO manager bridge: subscribes to python-socketio's / Flask-SocketIO's channels,
// holds (or waits for) the leader lease, and hands each message to the node (see the header).
#include "skyrelay/broker/redis_sio_bridge.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <exception>
#include <thread>
#include <unordered_map>

#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/sio_manager_message.hpp"

namespace skyrelay::redis {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {
constexpr std::chrono::milliseconds max_backoff{5'000};

// Takes the lease when nobody holds it, extends it for its holder; 1 when ARGV[1] holds it.
constexpr const char* lease_script = R"lua(
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
)lua";

// Gives the lease up, only when ARGV[1] holds it.
constexpr const char* release_script = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";
}  // namespace

struct redis_sio_bridge::impl {
  // One lease per channel: nodes may listen on different channels, and each channel's
  // emits need one republisher among the nodes that hear it.
  struct lease {
    std::string key;  // <prefix>manager:leader:<channel>
    bool held{false};
    clock_type::time_point until{};
  };

  impl(redis_sio_bridge_options o, manager_actions a)
      : opts(std::move(o)),
        actions(std::move(a)),
        guard(io.get_executor()),
        reconnect_timer(io),
        tick_timer(io),
        stop_timer(io) {
    for (const auto& c : opts.channels) leases[c].key = opts.prefix + "manager:leader:" + c;
  }

  void connect();
  void lost(unsigned g);
  void tick();
  void on_message(unsigned g, const redis_message& m);
  void handle_emit(manager_message& m, const lease& l);
  void stop();
  void count_leases() {
    unsigned n = 0;
    for (const auto& [c, l] : leases) n += l.held;
    leading = n;
  }

  static bool holds(const lease& l) { return l.held && clock_type::now() < l.until; }

  redis_sio_bridge_options opts;
  manager_actions actions;
  std::unordered_map<std::string, lease> leases;  // by channel; the thread's
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  asio::steady_timer reconnect_timer, tick_timer, stop_timer;
  std::thread thread;

  std::atomic<std::uint64_t> received{0}, republished{0}, applied{0}, malformed{0},
      acks_dropped{0}, failed{0};
  std::atomic<unsigned> leading{0};  // channels whose lease this node holds

  // The thread's.
  std::shared_ptr<redis_connection> cmd, sub;
  unsigned gen{0};
  bool ready{false}, stopping{false};
  std::chrono::milliseconds backoff{100};
};

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
    sub->subscribe(opts.channels, [this, g](std::error_code ec, redis_value) {
      if (g != gen) return;
      if (ec) return lost(g);
      ready = true;
      backoff = std::chrono::milliseconds{100};
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
  if (cmd) cmd->close();
  if (sub) sub->close();
  reconnect_timer.expires_after(backoff);
  backoff = std::min(backoff * 2, max_backoff);
  reconnect_timer.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping) connect();
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
      cmd->execute({"EVAL", lease_script, "1", l.key, opts.node_id,
                    std::to_string(opts.lease_ttl.count())},
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
    case kind::emit: return handle_emit(*m, l->second);
    case kind::enter_room: actions.enter(m->sid, m->room); break;
    case kind::leave_room: actions.leave(m->sid, m->room); break;
    case kind::close_room: actions.close_room(m->room); break;
    case kind::disconnect: actions.disconnect(m->sid, m->room.nsp); break;
    case kind::other: return;  // acks going back to python-socketio servers, unknown methods
  }
  ++applied;
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
    cmd->execute({"EVAL", release_script, "1", key, opts.node_id},
                 [close, left](std::error_code, redis_value) {
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
  asio::post(i->io, [i] {
    i->connect();
    i->tick();
  });
  i->thread = std::thread([i] { i->io.run(); });
}

void redis_sio_bridge::stop() {
  impl* i = impl_.get();
  if (!i->thread.joinable()) return;
  asio::post(i->io, [i] { i->stop(); });
  i->guard.reset();
  i->thread.join();
  i->cmd.reset();
  i->sub.reset();
}

redis_sio_bridge::~redis_sio_bridge() { stop(); }

manager_counters redis_sio_bridge::counters() const {
  return {impl_->received.load(), impl_->republished.load(), impl_->applied.load(),
          impl_->malformed.load(), impl_->acks_dropped.load(), impl_->failed.load(),
          impl_->leading.load()};
}

}  // namespace skyrelay::redis
