// The Redis broker's state and steps (private to cpp/src/broker). Everything but the members
// under `mu` is touched on the broker's one thread only (see redis_broker.hpp).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_wire.hpp"

namespace skyrelay::redis {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

struct redis_broker::impl {
  // One channel this node follows (a room with local members, or a namespace's broadcasts,
  // followed by pattern), and where it stands: the last seq delivered in `epoch`.
  struct follow {
    channel ch;
    bool broadcasts{false};
    bool wanted{false};      // a room: the hub has local members (or a warm asked for it)
    bool subscribed{false};  // SUBSCRIBE confirmed on the current connection
    bool known{false};       // epoch and last are where the node stands
    bool syncing{false};     // a catch-up from the stream is in flight
    bool starting{false};    // start_follow in flight; `waiters` hear when it is done
    std::vector<std::function<void(bool)>> waiters;
    bool just_synced{false}; // caught up; a gap seen now cannot be filled: a reset
    std::string epoch;
    std::uint64_t last{0};
    clock_type::time_point warmed{};  // warmed without members: unfollowed if none come
  };

  impl(hub& local, redis_broker_options o);

  // ---- redis_broker.cpp: connections, publishing, registry, timers ----
  void connect();
  // redis+sentinel (redis_broker_sentinel.cpp): asks the sentinels where the master is, sets
  // opts.url's host and port to it and connects; or lost() with every sentinel's answer.
  void locate(unsigned g);
  void on_ready(unsigned gen);
  void lost(unsigned gen, std::string reason);
  void set_status(bool ok, std::string reason);
  void tick();
  void refresh();
  std::size_t publish(const publication& p, publish_meta* out);
  void sid_changed(const std::string& sid, bool added);

  // ---- redis_broker_receive.cpp: following, messages, gaps ----
  void want(const channel& ch);
  void unwant(const channel& ch);
  // Loads where the channel stands (its epoch, seq and stored tail) into the hub when the node
  // does not know it, subscribes, catches up; then `done(true)` (false: connection lost).
  void start_follow(const std::string& tag, std::function<void(bool)> done);
  void on_message(unsigned gen, redis_message m);
  // Delivers one message; false when it revealed a gap (a catch-up is started; the message
  // is handed again after it).
  bool handle(const std::string& payload);
  void sync(const std::string& tag);
  void drain();
  void warm(const std::vector<channel>& rooms, std::function<void(bool)> done);

  std::string key(const std::string& tag, const char* suffix) const {
    return opts.prefix + tag + suffix;
  }
  // The keys' TTL in ms: the history's age bound, at least 60 s.
  std::string ms_ttl() const {
    return std::to_string(std::max(opts.history_ttl, std::chrono::milliseconds{60'000}).count());
  }

  hub& hub_;
  redis_broker_options opts;
  const std::string node_channel;  // <prefix>node:<id>
  const std::string heartbeat_payload;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  asio::steady_timer reconnect_timer, tick_timer;

  // Shared with publishing threads.
  mutable std::mutex mu;
  broker_status status{false, "connecting to redis"};
  std::shared_ptr<redis_connection> publisher;  // the command connection, while ok
  std::string sha;

  std::atomic<std::uint64_t> publishes{0}, received{0}, gaps{0}, resets{0}, reconnects{0};
  std::atomic<std::uint64_t> uids{0};
  std::uint64_t id_base{0};  // receipts' ids: random high bits, so nodes' ids differ

  // The broker thread's.
  std::shared_ptr<redis_connection> cmd, sub;
  unsigned gen{0};
  bool ready{false}, stopping{false}, ever_connected{false};
  bool located{false};  // redis+sentinel: opts.url names the master just found
  std::chrono::milliseconds backoff{100};
  clock_type::time_point last_heard{}, last_refresh{};
  std::unordered_map<std::string, follow> chans;  // by tag
  std::unordered_set<std::string> sids;           // this node's connections
  std::deque<std::string> buffer;                 // live messages held during a catch-up
  unsigned syncing{0};
  bool overflowed{false};
  bool quiet{false};  // quiesce() was called: warm's `done` is no longer called
  std::deque<std::string> recent_order;           // uids delivered lately (direct dedup)
  std::unordered_set<std::string> recent;
  std::thread thread;
};

}  // namespace skyrelay::redis
