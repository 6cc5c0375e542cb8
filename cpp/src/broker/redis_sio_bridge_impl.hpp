// The Socket.IO manager bridge's inside (redis_sio_bridge.hpp): shared by its connection and
// lease code (redis_sio_bridge.cpp) and its ordering of room methods before emits
// (redis_sio_bridge_order.cpp). Everything here runs on the bridge's thread unless noted.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "skyrelay/broker/redis_backoff.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_sio_bridge.hpp"
#include "skyrelay/broker/sio_manager_message.hpp"

namespace skyrelay::redis {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

struct redis_sio_bridge::impl {
  // One lease per channel: nodes may listen on different channels, and each channel's
  // emits need one republisher among the nodes that hear it.
  struct lease {
    std::string key;  // <prefix>manager:leader:<channel>
    bool held{false};
    clock_type::time_point until{};
  };

  // A room method the leader waits for before it republishes what followed it on the
  // channels (redis_sio_bridge_order.cpp): until the sid's node said it applied it, the sid
  // is on no live node, or `deadline` passed.
  struct barrier {
    std::string key;  // applied_key() of the method
    bool looked_up{false}, wait_ack{false}, acked{false};
    clock_type::time_point deadline{};
  };
  // The leader's queue, in the order Redis sent the messages: an emit, or a barrier.
  struct queued {
    std::string channel;
    std::optional<manager_message> emit;
    std::shared_ptr<barrier> wait;
  };

  impl(redis_sio_bridge_options o, manager_actions a)
      : opts(std::move(o)),
        actions(std::move(a)),
        guard(io.get_executor()),
        reconnect_timer(io),
        tick_timer(io),
        stop_timer(io),
        order_timer(io),
        apply_timer(io) {
    if (!opts.seeds.empty()) keyed = std::make_unique<redis_client>(opts.url, opts.seeds);
    for (const auto& c : opts.channels) {
      leases[c].key = opts.prefix + "manager:leader:" + c;
      applied_channels[opts.prefix + "manager:applied:" + c] = c;
    }
  }

  void connect();
  void lost(unsigned g);
  // A command on one key (a one-key script, GET): on `cmd`, or on a cluster through `keyed`
  // to the key's master; `done` runs on the bridge's thread either way.
  void keyed_eval(const redis_script& s, const std::string& key, std::vector<std::string> args,
                  redis_connection::reply_handler done);
  void keyed_get(const std::string& key, redis_connection::reply_handler done);
  redis_connection::reply_handler on_thread(redis_connection::reply_handler done);
  void tick();
  void on_message(unsigned g, const redis_message& m);
  void handle_emit(manager_message& m, const lease& l);
  void stop();
  // redis_sio_bridge_order.cpp: room methods applied in order, acknowledged, and waited for.
  void on_room_method(const std::string& channel, manager_message m);
  void run_applies();
  void applied_here(unsigned g, const std::string& channel, const manager_message& m);
  void announce(const std::string& channel, const manager_message& m);
  void await_method(const std::string& channel, const manager_message& m);
  void on_applied(const std::string& key);
  void drain();
  void arm_order_timer();
  void clear_order();
  static std::string applied_key(const manager_message& m);
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
      acks_dropped{0}, failed{0}, order_waits{0}, order_timeouts{0};
  std::atomic<unsigned> leading{0};  // channels whose lease this node holds

  // The thread's.
  std::shared_ptr<redis_connection> cmd, sub;
  std::unique_ptr<redis_client> keyed;  // redis+cluster only; reset by stop() after the join
  unsigned gen{0};
  bool ready{false}, stopping{false};
  redis_backoff backoff;
  std::weak_ptr<impl> self;  // for completions from other threads (broker::warm)
  // Ordering (redis_sio_bridge_order.cpp). By ack channel: the manager channel.
  std::unordered_map<std::string, std::string> applied_channels;
  std::deque<queued> order;                   // the leader's; at most opts.order_max
  asio::steady_timer order_timer;             // the front barrier's deadline
  std::deque<std::pair<std::string, manager_message>> applies;  // room methods, in order
  bool applying{false};                       // an enter_room waits for its room's warm
  unsigned apply_gen{0};
  asio::steady_timer apply_timer;             // bounds that wait
};

}  // namespace skyrelay::redis
